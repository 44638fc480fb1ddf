"""The usage families written straight to exposition text.

prometheus_client's encoders are generic (per-sample name escaping, label sorting, objects per
sample); for these fixed-shape families a direct writer is several times faster. The output is
byte for byte what `generate_latest` (text 0.0.4) and the OpenMetrics encoder give for the
families `usage.families_from` builds (tested), without the OpenMetrics "# EOF" marker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client.utils import floatToGoString

from dashboard_metrics.core.catalogue import CATALOGUE
from dashboard_metrics.core.catalogue import Metric as CatalogueMetric
from dashboard_metrics.exporter.metrics.buckets import cumulative, le_labels

# organization, metric, monotonic value, monotonic count, monotonic buckets (JSON), true count
TotalsRow = tuple[str, str, float, int, str | None, int]
# (label, value) pairs sorted by label name
Labels = tuple[tuple[str, str], ...]
# One exposed series: labels, monotonic value, count and per-bucket counts, true count
SeriesRow = tuple[Labels, float, int, tuple[int, ...] | None, int]


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def label_text(labels: Labels) -> str:
    """``a="x",b="y"``: the labels as prometheus_client writes them (sorted by name)."""
    return ",".join(f'{name}="{_label(value)}"' for name, value in labels)


def _help(text: str, openmetrics: bool) -> str:
    text = text.replace("\\", r"\\").replace("\n", r"\n")
    return text.replace('"', r"\"") if openmetrics else text


def _header(
    out: list[str], name: str, kind: str, doc: str, openmetrics: bool, unit: str = ""
) -> None:
    # Text format names a counter family with its _total suffix, OpenMetrics without it; only
    # OpenMetrics has UNIT lines.
    shown = name if openmetrics or kind != "counter" else f"{name}_total"
    out.append(f"# HELP {shown} {_help(doc, openmetrics)}\n# TYPE {shown} {kind}\n")
    if unit and openmetrics:
        out.append(f"# UNIT {shown} {unit}\n")


def _counter(
    out: list[str],
    name: str,
    doc: str,
    samples: Sequence[tuple[Labels, float]],
    om: bool,
    unit: str = "",
) -> None:
    base = name.removesuffix("_total")
    _header(out, base, "counter", doc, om, unit)
    total = f"{base}_total"
    out.extend(
        f"{total}{{{label_text(labels)}}} {floatToGoString(value)}\n" for labels, value in samples
    )


def _histogram(
    out: list[str],
    name: str,
    doc: str,
    metric: CatalogueMetric,
    rows: Sequence[SeriesRow],
    om: bool,
    unit: str,
) -> None:
    _header(out, name, "histogram", doc, om, unit)
    labels = le_labels(metric.buckets)
    for series_labels, value, _count, per_bucket, _true in rows:
        if per_bucket is None or len(per_bucket) != len(labels):
            continue  # stored with another bucket layout (as usage.families_from skips it)
        # prometheus_client sorts every label, le included: it falls between the others.
        before = "".join(f'{k}="{_label(v)}",' for k, v in series_labels if k < "le")
        after = "".join(f',{k}="{_label(v)}"' for k, v in series_labels if k > "le")
        plain = label_text(series_labels)
        running = 0
        for bound, running in cumulative(labels, per_bucket):
            out.append(
                f'{name}_bucket{{{before}le="{bound}"{after}}} {floatToGoString(float(running))}\n'
            )
        out.append(f"{name}_count{{{plain}}} {floatToGoString(float(running))}\n")
        out.append(f"{name}_sum{{{plain}}} {floatToGoString(value)}\n")


def render(
    series: Mapping[str, Sequence[SeriesRow]],
    names: Mapping[str, tuple[str, str, str, str, str]],
    openmetrics: bool,
) -> bytes:
    """``series``: metric -> rows sorted by labels; ``names``: metric -> (family name, help,
    corrections family name, corrections help, OpenMetrics unit)."""
    out: list[str] = []
    for metric in CATALOGUE:
        rows = series.get(metric.name, ())
        name, doc, fix_name, fix_doc, unit = names[metric.name]
        if metric.is_histogram:
            _histogram(out, name, doc, metric, rows, openmetrics, unit)
        else:
            # The sum of the events' values, as usage.families_from.
            _counter(out, name, doc, [(r[0], float(r[1])) for r in rows], openmetrics, unit)
        fixes = [(r[0], float(max(0, r[2] - r[4]))) for r in rows]
        _counter(out, fix_name, fix_doc, fixes, openmetrics)
    return "".join(out).encode()
