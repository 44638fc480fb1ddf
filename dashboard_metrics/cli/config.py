"""`dashboard-metrics config`: the effective configuration, secrets masked.

By the time this runs, `main` has validated the whole configuration (an invalid one is a
one-line error and exit 2, as for every command); this prints what it came to. Touches no
database.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from dashboard_metrics.cli.parser import SETTING_FLAGS
from dashboard_metrics.core.catalogue import pushed_metrics
from dashboard_metrics.core.setting_types import (
    env_name,
    mask_url,
    parse_api_keys,
    parse_ingest_keys,
    parse_metrics_auth,
)
from dashboard_metrics.core.settings import SETTING_NAMES, Settings, bind_refusal, unknown_variables


def origins(args: argparse.Namespace) -> dict[str, str]:
    """Where each setting's value came from: flag, environment or default."""
    found = {}
    for name in SETTING_NAMES:
        if name in SETTING_FLAGS and getattr(args, name, None) is not None:
            found[name] = SETTING_FLAGS[name].flag
        elif env_name(name) in os.environ:
            found[name] = "environment"
        else:
            found[name] = "default"
    return found


def effective(settings: Settings) -> dict[str, str]:
    """What the settings amount to, where a default depends on other settings."""
    source_schema = settings.effective_source_schema
    keys = len(parse_api_keys(settings.api_keys.get_secret_value()))
    metrics_auth = parse_metrics_auth(settings.metrics_auth.get_secret_value())
    api_auth = [f"{keys} API key{'s' if keys != 1 else ''}"] if keys else []
    if settings.forward_auth_url:
        api_auth.append("forward auth")
    return {
        "rollup database": mask_url(settings.rollup_url),
        "source database": (
            mask_url(settings.source_url) if settings.source_database_url else "the rollup database"
        ),
        "source schema": source_schema or "(none: SQLite)",
        "API cache": (("redis " + str(settings.redis_url)) if settings.redis_url else "in-process")
        if settings.cache_enabled
        else "off",
        "API auth": " and ".join(api_auth) or "none (open API: loopback binds only)",
        "/metrics auth": metrics_auth[0].lower() if metrics_auth else "none",
        "metrics file": metrics_file(settings),
        "events endpoint": _count(
            len(parse_ingest_keys(settings.ingest_keys.get_secret_value())), "ingest key"
        ),
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def metrics_file(settings: Settings) -> str:
    """What the metrics file declared (main installed it before this runs)."""
    if not settings.metrics_file:
        return "none (no pushed metrics)"
    names = [entry.name for entry in pushed_metrics()]
    listed = f": {', '.join(names)}" if names else ""
    return f"{_count(len(names), 'pushed metric')}{listed} ({settings.metrics_file})"


def _print_table(settings: Settings, where: dict[str, str]) -> None:
    rows = [
        (env_name(name), settings.display(name) or "(unset)", where[name]) for name in SETTING_NAMES
    ]
    width = max(len(variable) for variable, _value, _from in rows)
    value_width = min(max(len(value) for _variable, value, _from in rows), 48)
    for variable, value, origin in rows:
        print(f"{variable:<{width}}  {value:<{value_width}}  ({origin})")
    print()
    facts = effective(settings)
    label = max(len(key) for key in facts)
    for key, value in facts.items():
        print(f"{key:<{label}}  {value}")


def run_config(settings: Settings, args: argparse.Namespace) -> int:
    """Print the effective configuration (``--json``: as JSON). ``--check`` also ends with
    whether it is valid and exits 1 when a DASHBOARD_METRICS_* variable is not a setting."""
    unknown = unknown_variables()
    warnings = [f"{name} is not a setting; it is ignored" for name in unknown]
    refusal = bind_refusal(settings)
    notes = [f"serve and up would refuse to start: {refusal}"] if refusal else []
    where = origins(args)
    if args.json:
        document: dict[str, Any] = {
            "settings": {
                env_name(name): {"value": settings.display(name), "from": where[name]}
                for name in SETTING_NAMES
            },
            "effective": effective(settings),
            "warnings": warnings,
            "notes": notes,
        }
        if args.check:
            document["valid"] = not warnings
        print(json.dumps(document, indent=2))
    else:
        _print_table(settings, where)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    if not args.check:
        return 0
    if not args.json:
        print("configuration is valid" if not warnings else "configuration has warnings")
    return 1 if warnings else 0
