"""JSON bodies of series/ and summary/: the hand-written writers against orjson (not part of
the test run).

A realistic large body: 90 days of hourly cells for 30 metrics (one project, no tag: 64,800
points). Every candidate turns the same cells into the same bytes' worth of JSON (parsed
equal; orjson writes no spaces after separators). Rounds alternate between the candidates; the
figure is the median of the per-round ratios against the writer it replaced (copied below),
every round printed.

    uv run python benchmarks/bench_json.py --rounds 9
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from dashboard_metrics.exporter.api import shape
from dashboard_metrics.exporter.api.rollups import Cell


def cells(days: int, metrics: int, seed: int = 1) -> list[Cell]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for m in range(metrics):
        name = f"metric_{m:02d}"
        for hour in range(days * 24):
            value = rng.choice([rng.uniform(0, 1e4), float(rng.randrange(0, 500)), 0.1])
            out.append(
                Cell(
                    start + timedelta(hours=hour),
                    "hourly",
                    name,
                    "counter",
                    "default",
                    "",
                    value,
                    rng.randrange(0, 50),
                )
            )
    return out


Groups = Any  # what shape._series_groups returns

# -- the baseline: the f-string writer before orjson (byte for byte json.dumps) ---------------

_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_INFINITY = float("inf")


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == _INFINITY:
        return "Infinity"
    if value == -_INFINITY:
        return "-Infinity"
    return float.__repr__(value)


def fstring_series(types: dict[str, str], groups: Groups) -> str:
    text = _str
    stamps: dict[datetime, str] = {}
    parts = []
    for (name, project, tag), points in groups:
        data = []
        total_value: float = 0
        total_count = 0
        for when, (value, count) in points:
            stamp = stamps.get(when)
            if stamp is None:
                stamp = stamps[when] = when.isoformat()
            events = int(count)
            total_value += value
            total_count += events
            data.append(f'{{"timestamp": "{stamp}", "value": {_float(value)}, "count": {events}}}')
        parts.append(
            f'{{"metric_name": {text(name)}, "metric_type": {text(types[name])}, '
            f'"project": {text(project)}, "tag": {text(tag)}, "data": [{", ".join(data)}], '
            f'"total_value": {_float(total_value)}, "total_count": {total_count}}}'
        )
    return f"[{', '.join(parts)}]"


def timed(fn: Callable[[], Any], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    import orjson

    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--metrics", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--runs", type=int, default=5, help="best of N per round")
    args = parser.parse_args()
    data = cells(args.days, args.metrics)
    types, groups = shape._series_groups(data, "hour", UTC)
    body = fstring_series(types, groups).encode()
    assert body == json.dumps(shape.series(data, "hour", UTC)).encode()
    assert json.loads(body) == json.loads(shape._series_body(types, groups))
    summary = {"source": "hourly", "summary": shape.summary(data, "hourly", UTC)}
    assert json.loads(json.dumps(summary)) == orjson.loads(orjson.dumps(summary))
    print(
        f"{len(data):,} cells, series body {len(body):,} B, "
        f"summary body {len(json.dumps(summary)):,} B"
    )
    # The grouping (shape._series_groups, the same for every writer) is timed on its own;
    # the writers are timed on its result.
    candidates: dict[str, Callable[[], Any]] = {
        "series: grouping (shared)": lambda: shape._series_groups(data, "hour", UTC),
        "series: f-string writer (before)": lambda: fstring_series(types, groups).encode(),
        "series: orjson writer": lambda: shape._series_body(types, groups),
        "summary: json.dumps (before)": lambda: json.dumps(summary).encode(),
        "summary: orjson.dumps": lambda: orjson.dumps(summary),
    }
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for round_no in range(args.rounds):
        for name, fn in candidates.items():
            # The summary bodies take microseconds: timed in batches of 1,000.
            batch = 1000 if name.startswith("summary") else 1
            seconds[name].append(
                timed(lambda fn=fn, batch=batch: [fn() for _ in range(batch)], args.runs) / batch
            )
        print(
            f"round {round_no}: "
            + ", ".join(
                f"{name.split(':')[1].strip()} {seconds[name][-1] * 1e3:.3f} ms"
                for name in candidates
            )
        )
    for base, name in (
        ("series: f-string writer (before)", "series: orjson writer"),
        ("summary: json.dumps (before)", "summary: orjson.dumps"),
    ):
        ratios = [b / o for b, o in zip(seconds[base], seconds[name], strict=True)]
        print(
            f"{name:28s} median {statistics.median(seconds[name]) * 1e3:8.3f} ms against "
            f"{statistics.median(seconds[base]) * 1e3:8.3f} ms: x{statistics.median(ratios):.2f} "
            f"as fast (rounds {min(ratios):.2f}..{max(ratios):.2f})"
        )
    grouping = statistics.median(seconds["series: grouping (shared)"])
    print(f"grouping alone (either writer pays it): median {grouping * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
