"""The metrics file (DASHBOARD_METRICS_METRICS_FILE): pushed metrics declared in YAML.

```yaml
metrics:
  - name: hitl_reviews
    type: counter            # or histogram
    help: Documents sent to human review
    unit: documents
    dimensions: [workflow]   # any of model, workflow, deployment
  - name: review_seconds
    type: histogram
    help: Time a reviewer spent on one document
    unit: seconds
    buckets: [10, 30, 60, 300]
```

`load` validates the whole file and returns catalogue entries; every error is one line naming
the entry. `install` puts them into the catalogue (`catalogue.install_pushed`) at start-up.
"""

from __future__ import annotations

import math
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml

from dashboard_metrics.core.catalogue import (
    BUILTIN,
    DIMENSIONS,
    PUSHED_TABLE,
    Dimension,
    Metric,
    MetricType,
    OrgVia,
    install_pushed,
)
from dashboard_metrics.core.setting_types import ConfigError, env_name

NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_FIELDS = {"name", "type", "help", "unit", "buckets", "dimensions"}
_REQUIRED = ("name", "type", "help")
MAX_BUCKETS = 64
# Grafana unit ids for the units a file is likely to name; anything else shows as a number.
_GRAFANA_UNITS = {
    "seconds": "s",
    "s": "s",
    "milliseconds": "ms",
    "ms": "ms",
    "bytes": "bytes",
    "usd": "currencyUSD",
    "percent": "percent",
}


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{env_name('metrics_file')}: {where}: {message}")


def _entry_name(index: int, raw: Any) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f"metrics[{index}] ({name})" if isinstance(name, str) and name else f"metrics[{index}]"


def _buckets(where: str, kind: MetricType, raw: Any) -> tuple[float, ...]:
    if kind is MetricType.COUNTER:
        if raw is not None:
            raise _fail(where, "buckets are for histograms; a counter has none")
        return ()
    if not isinstance(raw, list) or not raw:
        raise _fail(where, "a histogram needs buckets: a list of upper bounds")
    if len(raw) > MAX_BUCKETS:
        raise _fail(where, f"at most {MAX_BUCKETS} buckets")
    bounds = []
    for bound in raw:
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise _fail(where, f"bucket {bound!r} is not a number")
        if not math.isfinite(bound):
            raise _fail(where, f"bucket {bound!r} is not finite (+Inf is always added)")
        bounds.append(float(bound))
    if any(b <= a for a, b in pairwise(bounds)):
        raise _fail(where, "buckets must be strictly ascending")
    return tuple(bounds)


def _dimensions(where: str, raw: Any) -> tuple[Dimension, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(d, str) for d in raw):
        raise _fail(where, "dimensions must be a list of names")
    known = ", ".join(DIMENSIONS)
    for name in raw:
        if name not in set(DIMENSIONS):
            raise _fail(where, f"dimension {name!r} is not one of {known}")
    if len(set(raw)) != len(raw):
        raise _fail(where, "a dimension is listed twice")
    # Stored in the breakdowns' order, whatever the file's.
    return tuple(d for d in DIMENSIONS if d.value in raw)


def _metric(index: int, raw: Any, taken: dict[str, str]) -> Metric:
    where = _entry_name(index, raw)
    if not isinstance(raw, dict):
        raise _fail(where, "expected a mapping with name, type, help")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise _fail(where, f"unknown field {unknown[0]!r} (expected {', '.join(sorted(_FIELDS))})")
    for field in _REQUIRED:
        if not isinstance(raw.get(field), str) or not raw[field].strip():
            raise _fail(where, f"{field} is required (a non-empty string)")
    name = raw["name"]
    if not NAME.match(name):
        raise _fail(where, "name must be lower-case letters, digits and _ (at most 64)")
    try:
        kind = MetricType(raw["type"])
    except ValueError:
        raise _fail(where, f"type {raw['type']!r} is not counter or histogram") from None
    unit = raw.get("unit", "")
    if not isinstance(unit, str):
        raise _fail(where, "unit must be a string")
    histogram = kind is MetricType.HISTOGRAM
    prometheus_name = name if histogram else f"{name.removesuffix('_total')}_total"
    for claimed in (name, prometheus_name):
        if claimed in taken:
            raise _fail(where, f"{claimed!r} is already {taken[claimed]}")
    taken[name] = taken[prometheus_name] = f"used by {where}"
    return Metric(
        name=name,
        type=kind,
        table=PUSHED_TABLE,
        org_via=OrgVia.PUSHED,
        prometheus_name=prometheus_name,
        help=" ".join(raw["help"].split()),
        unit=unit,
        value="value",
        buckets=_buckets(where, kind, raw.get("buckets")),
        time_column="event_time",
        change_column="received_at",
        grafana_unit=_GRAFANA_UNITS.get(unit.lower(), "short"),
        dimensions=_dimensions(where, raw.get("dimensions")),
    )


def parse(text: str, source: str = "metrics file") -> tuple[Metric, ...]:
    """The pushed metrics a metrics file's text declares (ConfigError naming the entry)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}" if mark is not None else source
        raise _fail(at, f"not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(document, dict) or set(document) != {"metrics"}:
        raise _fail(source, "expected a mapping with one key, metrics: [...]")
    entries = document["metrics"]
    if not isinstance(entries, list):
        raise _fail(source, "metrics must be a list")
    taken = {}
    for entry in BUILTIN:
        taken[entry.name] = taken[entry.prometheus_name] = "a built-in metric"
    return tuple(_metric(index, raw, taken) for index, raw in enumerate(entries))


def load(path: str) -> tuple[Metric, ...]:
    """The pushed metrics of the file at ``path`` ('' : none)."""
    if not path:
        return ()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(path, exc.strerror or str(exc)) from None
    except UnicodeDecodeError:
        raise _fail(path, "not UTF-8 text") from None
    return parse(text, path)


def install(path: str) -> tuple[Metric, ...]:
    """Validate the metrics file at ``path`` and make its metrics part of the catalogue."""
    pushed = load(path)
    install_pushed(pushed)
    return pushed
