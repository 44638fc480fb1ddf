"""A PostgreSQL dataquery for grafana-foundation-sdk, which has no SQL query type of its own.

The SDK's documented extension: a `cog.variants.Dataquery` subclass, a builder for it, and a
runtime registration under the plugin id, so dashboards holding it also decode again.
"""

from __future__ import annotations

from typing import Any, Self

from grafana_foundation_sdk.cog import runtime
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models.common import DataSourceRef

from dashboard_metrics.dashboards.common import POSTGRES_TYPE, ROLLUPS


class SqlQuery(Dataquery):
    def __init__(
        self,
        raw_sql: str = "",
        ref_id: str = "A",
        fmt: str = "time_series",
        datasource: DataSourceRef | None = None,
    ) -> None:
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.format = fmt
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }
        if self.datasource is not None:
            payload["datasource"] = self.datasource.to_json()
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        source = data.get("datasource")
        return cls(
            raw_sql=str(data.get("rawSql", "")),
            ref_id=str(data.get("refId", "A")),
            fmt=str(data.get("format", "time_series")),
            datasource=DataSourceRef.from_json(source) if isinstance(source, dict) else None,
        )


class Sql(Builder[SqlQuery]):
    """`Sql(query).ref_id("A").table()`: a raw SQL query on the rollup database."""

    def __init__(self, raw_sql: str) -> None:
        self._internal = SqlQuery(raw_sql=raw_sql, datasource=ROLLUPS)

    def build(self) -> SqlQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Self:
        self._internal.format = "table"
        return self


def register() -> None:
    """Let the SDK decode our SQL targets from dashboard JSON (``dataquery_from_json``).
    Explicit, not at import: building dashboards needs no registry."""
    runtime.register_dataquery_variant(
        runtime.DataqueryConfig(identifier=POSTGRES_TYPE, from_json_hook=SqlQuery.from_json)
    )
