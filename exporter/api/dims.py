"""What a request splits or narrows its numbers by: the catalogue's dimensions, as `group_by`
and the `model=`, `workflow=`, `deployment=` filters of summary/, series/ and their live twins.

Without any of them a request reads the organization tiers exactly as before; with any, the
breakdown tiers (core/schema.py `BREAKDOWN_TIERS`) or, live, the source's breakdown rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dashboard_metrics.core.catalogue import DIMENSIONS, METRIC_NAMES, METRICS, Dimension


@dataclass(frozen=True)
class Breakdown:
    # Grouped dimensions, in the order asked (the entries carry them in that order).
    group_by: tuple[Dimension, ...] = ()
    # (dimension, value) in DIMENSIONS order: exact matches on the stored id or name.
    filters: tuple[tuple[Dimension, str], ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.group_by or self.filters)

    @property
    def requested(self) -> frozenset[Dimension]:
        return frozenset(self.group_by) | {dimension for dimension, _value in self.filters}

    def metrics(self, metric_name: str | None) -> list[str]:
        """The metrics this selects: those carrying every requested dimension."""
        names = METRIC_NAMES if metric_name is None else (metric_name,)
        return [name for name in names if self.requested <= set(METRICS[name].dimensions)]

    def key_parts(self) -> list[Any]:
        """For cache keys: every grouping and filter, in a stable form."""
        return [
            [dimension.value for dimension in self.group_by],
            [[dimension.value, value] for dimension, value in self.filters],
        ]


NO_BREAKDOWN = Breakdown()
DIMENSION_NAMES: tuple[str, ...] = tuple(dimension.value for dimension in DIMENSIONS)
