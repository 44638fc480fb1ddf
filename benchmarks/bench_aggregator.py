"""Aggregator benchmarks on PostgreSQL (not part of the test run; see benchmarks/README.md).

1. backfill of 30 days vs the floor: the bare GROUP BY queries computing the same hourly, daily
   and monthly per-organization/per-metric numbers and the same breakdown numbers (per
   organization, period and dimension values; hand-written SQL), run and fetched (target <= 1.5x);
2. a tick after 1,000 new source rows on the 2M-row history vs a 20k-row history (target <= 1.5x),
   and an idle tick (nothing new since the previous tick) vs that tick (target <= 5%);
3. our backfill vs the anchor's algorithm (anchor_baseline.py) over the same data.

Every ratio compares timings taken in the same run, interleaved, medians of repetitions.

    UV_PYTHON_DOWNLOADS=never uv run python benchmarks/bench_aggregator.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import agg_setup as db
import anchor_baseline
import psycopg
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect

from dashboard_metrics.aggregator.backfill import Backfill, BackfillOptions
from dashboard_metrics.aggregator.engine import Aggregator
from dashboard_metrics.aggregator.testdata import MODELS
from dashboard_metrics.core import sourcesql
from dashboard_metrics.core.catalogue import FILE_PAGES, Metric, OrgVia, metric_groups
from dashboard_metrics.core.db import rollup_engine, source_engine
from dashboard_metrics.core.schema import Granularity
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.core.source_tables import SOURCE_SCHEMA
from dashboard_metrics.core.timeutil import DAY, day_start

BIG_TEMPLATE = "bench_agg_big_src"
SMALL_TEMPLATE = "bench_agg_small_src"
BIG = "bench_agg_big"
SMALL = "bench_agg_small"
ANCHOR = "bench_agg_anchor"
DAYS = 30


def aggregator_for(database: str) -> Aggregator:
    # The first tick of a fresh history reads everything: no 30 s statement timeout here.
    settings = Settings(database_url=db.sqlalchemy_url(database), statement_timeout_seconds=3600)
    return Aggregator(settings, rollup_engine(settings), source_engine(settings))


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = action()
    return time.perf_counter() - began, result


# -- 1. the floor and the backfill -------------------------------------------------------------
def window(now: datetime) -> tuple[datetime, datetime]:
    """The backfill's window: whole UTC days from now - DAYS to the end of today."""
    return day_start((now - timedelta(days=DAYS)).date()), day_start(now.date() + DAY)


def floor_queries(start: datetime, end: datetime) -> list[tuple[str, dict[str, Any]]]:
    dialect = pg_dialect.dialect()
    queries = []
    for granularity in (Granularity.HOUR, Granularity.DAY, Granularity.MONTH):
        for metrics in metric_groups().values():
            query = sourcesql.group_query(metrics, granularity, [(start, end)], "postgresql")
            compiled = query.compile(
                dialect=dialect,
                schema_translate_map={SOURCE_SCHEMA: "unstract"},
                render_schema_translate=True,
            )
            queries.append((str(compiled), dict(compiled.params)))
    return queries


# The breakdown floor, written by hand (not derived from core/sourcesql.py): per source group,
# the FROM clause with the joins that give the organization and, outer-joined, the execution the
# dimensions come from; the dimension columns; and the expression of a failed file's pages.
_WE = "unstract.workflow_execution e"
_ORG_OF_WORKFLOW = "JOIN unstract.workflow w ON w.id = e.workflow_id " + (
    "JOIN unstract.organization o ON o.id = w.organization_id"
)
_RUN_DIMS = ("coalesce(e.workflow_id::text, '')", "coalesce(e.pipeline_id::text, '')")
BREAKDOWN_FLOOR_FROM: dict[tuple[str, OrgVia], tuple[str, str, str, tuple[str, ...]]] = {
    # (source group): (alias, FROM ... joins, organization string id, dimension columns)
    ("usage", OrgVia.USAGE_ORG_PK): (
        "u",
        "unstract.usage u JOIN unstract.organization o ON o.id = u.organization_id "
        f"LEFT JOIN {_WE} ON e.id::text = u.execution_id",
        "o.organization_id",
        ("u.model_name", "coalesce(u.workflow_id, '')", _RUN_DIMS[1]),
    ),
    ("page_usage", OrgVia.PAGE_USAGE_STRING): (
        "p",
        "unstract.page_usage p JOIN unstract.organization o ON o.organization_id = "
        "p.organization_id LEFT JOIN unstract.workflow_file_execution f ON f.id::text = p.run_id "
        f"LEFT JOIN {_WE} ON e.id = f.workflow_execution_id",
        "p.organization_id",
        _RUN_DIMS,
    ),
    ("workflow_file_execution", OrgVia.FILE_EXECUTION_WORKFLOW): (
        "f",
        f"unstract.workflow_file_execution f JOIN {_WE} ON e.id = f.workflow_execution_id "
        f"{_ORG_OF_WORKFLOW} LEFT JOIN LATERAL (SELECT sum(x.pages_processed) AS pages "
        "FROM unstract.page_usage x WHERE f.status = 'ERROR' AND x.run_id = f.id::text) fp ON true",
        "o.organization_id",
        _RUN_DIMS,
    ),
    ("workflow_execution", OrgVia.WORKFLOW): (
        "e",
        f"{_WE} {_ORG_OF_WORKFLOW}",
        "o.organization_id",
        _RUN_DIMS,
    ),
    ("workflow_execution", OrgVia.API_DEPLOYMENT): (
        "e",
        f"{_WE} JOIN unstract.api_deployment a ON a.id = e.pipeline_id "
        "JOIN unstract.organization o ON o.id = a.organization_id",
        "o.organization_id",
        _RUN_DIMS,
    ),
    ("workflow_execution", OrgVia.ETL_PIPELINE): (
        "e",
        f"{_WE} JOIN unstract.pipeline pl ON pl.id = e.pipeline_id AND pl.pipeline_type = 'ETL' "
        "JOIN unstract.organization o ON o.id = pl.organization_id",
        "o.organization_id",
        _RUN_DIMS,
    ),
}


def breakdown_floor_query(metrics: list[Metric], granularity: Granularity) -> str:
    """One plain GROUP BY (organization, bucket, dimension values) of a source group: count, sum
    and per-bound counts of every metric (FILTER clauses), over [%(start)s, %(end)s)."""
    first = metrics[0]
    alias, source, org, dims = BREAKDOWN_FLOOR_FROM[(first.table, first.org_via)]
    bucket = f"date_trunc('{granularity.value}', {alias}.{first.time_column} AT TIME ZONE 'UTC')"
    aggregates, conditions = [], []
    for entry in metrics:
        condition = " AND ".join(f"{alias}.{c} = '{v}'" for c, v in entry.where) or "true"
        conditions.append(f"({condition})")
        aggregates.append(f"count(*) FILTER (WHERE {condition})")
        if entry.value is None:
            continue
        value = "coalesce(fp.pages, 0)" if entry.value == FILE_PAGES else f"{alias}.{entry.value}"
        aggregates.append(f"sum({value}) FILTER (WHERE {condition})")
        aggregates.extend(
            f"count(*) FILTER (WHERE {condition} AND {value} <= {bound})" for bound in entry.buckets
        )
    keys = ", ".join((org, bucket, *dims))
    return (
        f"SELECT {keys}, {', '.join(aggregates)} FROM {source} "
        f"WHERE {alias}.{first.time_column} >= %(start)s AND {alias}.{first.time_column} < %(end)s "
        f"AND ({' OR '.join(conditions)}) GROUP BY {keys}"
    )


def breakdown_floor_queries(start: datetime, end: datetime) -> list[tuple[str, dict[str, Any]]]:
    """The breakdown rows of every tier: one query per granularity and source group, grouping
    the metrics that carry dimensions (all of them here) by every dimension of the group."""
    queries = []
    for granularity in (Granularity.HOUR, Granularity.DAY, Granularity.MONTH):
        for metrics in metric_groups().values():
            carried = [m for m in metrics if m.dimensions]
            if carried:
                sql = breakdown_floor_query(carried, granularity)
                queries.append((sql, {"start": start, "end": end}))
    return queries


def run_floor(database: str, queries: list[tuple[str, dict[str, Any]]], jit: bool = True) -> int:
    """Plain SQL over one connection, every row fetched; returns the rows fetched. The backfill
    turns JIT off, so the floor is timed both ways and the faster counts."""
    fetched = 0
    with psycopg.connect(db.libpq_url(database)) as conn:
        if not jit:
            conn.execute("SET jit = off")
        for sql, params in queries:
            fetched += len(conn.execute(sql, params).fetchall())
    return fetched


def run_backfill(database: str) -> dict[str, int]:
    aggregator = aggregator_for(database)
    try:
        report = Backfill(aggregator, BackfillOptions(days=DAYS)).run()
    finally:
        aggregator.rollup.dispose()
        aggregator.source.dispose()
    return {tier: figures.rows for tier, figures in report.tiers.items()}


def read_tiers(database: str) -> dict[str, dict[tuple[str, str, str], tuple[float, int]]]:
    tiers = {"hourly": "timestamp", "daily": "date", "monthly": "month"}
    out: dict[str, dict[tuple[str, str, str], tuple[float, int]]] = {}
    with psycopg.connect(db.libpq_url(database)) as conn:
        for tier, column in tiers.items():
            rows = conn.execute(
                f'SELECT organization_id, "{column}"::text, metric_name, metric_value, '
                f"metric_count FROM event_metrics_{tier}"
            ).fetchall()
            out[tier] = {(r[0], r[1], r[2]): (float(r[3]), int(r[4])) for r in rows}
    return out


def same_numbers(
    ours: dict[str, dict[tuple[str, str, str], tuple[float, int]]],
    anchor: dict[str, dict[tuple[str, str, str], tuple[float, int]]],
) -> dict[str, str]:
    """Per tier: do both algorithms store the same keys, values (to 1e-6) and counts?"""
    verdict = {}
    for tier, rows in ours.items():
        other = anchor[tier]
        bad = [
            k
            for k in rows.keys() | other.keys()
            if k not in rows
            or k not in other
            or rows[k][1] != other[k][1]
            or abs(rows[k][0] - other[k][0]) > 1e-6 * max(1.0, abs(rows[k][0]))
        ]
        verdict[tier] = f"{len(rows)} rows, {len(bad)} differ"
    return verdict


# -- 2. ticks after 1,000 new rows ---------------------------------------------------------------
def org_setups(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT o.id, o.organization_id, "
        "(SELECT array_agg(w.id::text ORDER BY w.workflow_name) FROM unstract.workflow w "
        " WHERE w.organization_id = o.id), "
        "(SELECT p.id::text FROM unstract.pipeline p WHERE p.organization_id = o.id "
        " AND p.pipeline_type = 'ETL'), "
        "(SELECT a.id::text FROM unstract.api_deployment a WHERE a.organization_id = o.id) "
        "FROM unstract.organization o ORDER BY o.id"
    ).fetchall()
    return [{"pk": r[0], "org": r[1], "workflows": r[2], "etl": r[3], "api": r[4]} for r in rows]


def insert_new_rows(database: str, rng: random.Random, total: int = 1000) -> int:
    """``total`` new source rows in the current hour, modified_at = now, spread over random
    organizations the way generate-test-data shapes them (executions, files, pages, usage)."""
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    tables: dict[str, list[tuple[Any, ...]]] = {
        "workflow_execution": [],
        "workflow_file_execution": [],
        "page_usage": [],
        "usage": [],
    }
    with psycopg.connect(db.libpq_url(database)) as conn:
        setups = org_setups(conn)
        while sum(len(v) for v in tables.values()) < total:
            org = rng.choice(setups)
            created = hour + (now - hour) * rng.random()
            kind = rng.choice(("api", "etl", "manual"))
            pipeline = {"api": org["api"], "etl": org["etl"], "manual": None}[kind]
            execution = str(uuid.uuid4())
            workflow = org["workflows"][1 if kind == "api" else 0]
            tables["workflow_execution"].append((execution, pipeline, workflow, created, now))
            for _ in range(rng.randint(1, 3)):
                file_id = str(uuid.uuid4())
                status = rng.choices(("COMPLETED", "ERROR", "EXECUTING"), (85, 10, 5))[0]
                tables["workflow_file_execution"].append((file_id, execution, status, created, now))
                if status != "EXECUTING":
                    tables["page_usage"].append(
                        (str(uuid.uuid4()), org["org"], file_id, rng.randint(1, 50), created)
                    )
                for index in range(rng.randint(1, 4) + 1):
                    llm = index > 0
                    reason = rng.choice(("extraction", "challenge", "summarize")) if llm else ""
                    tokens = rng.randint(200, 7000)
                    # Every dimension has a value: the model, the execution's workflow, and
                    # its deployment through execution_id (the breakdown path and its scans).
                    tables["usage"].append(
                        (str(uuid.uuid4()), org["pk"], execution, workflow, file_id,
                         "llm" if llm else "embedding", reason, tokens,
                         round(rng.uniform(0.00005, 0.08), 6), created, now, rng.choice(MODELS))
                    )  # fmt: skip
        excess = sum(len(v) for v in tables.values()) - total
        del tables["usage"][len(tables["usage"]) - excess :]
        columns = {
            "workflow_execution": "id, pipeline_id, workflow_id, created_at, modified_at, "
            "execution_mode, execution_method, execution_type, status, execution_log_id, "
            "result_acknowledged, total_files, error_message, attempts, execution_time",
            "workflow_file_execution": "id, workflow_execution_id, status, created_at, "
            "modified_at, file_name",
            "page_usage": "id, organization_id, run_id, pages_processed, created_at, "
            "file_name, file_type, file_size",
            "usage": "id, organization_id, execution_id, workflow_id, run_id, usage_type, "
            "llm_usage_reason, total_tokens, cost_in_dollars, created_at, modified_at, "
            "model_name, adapter_instance_id, embedding_tokens, prompt_tokens, completion_tokens",
        }
        extra = {
            "workflow_execution": (
                "INSTANT",
                "DIRECT",
                "COMPLETE",
                "COMPLETED",
                "",
                False,
                1,
                "",
                1,
                9.5,
            ),
            "workflow_file_execution": ("doc.pdf",),
            "page_usage": ("doc.pdf", "application/pdf", 100_000),
            "usage": ("adapter-1", 0, 0, 0),
        }
        with conn.cursor() as cursor:
            for table, rows in tables.items():
                with cursor.copy(f"COPY unstract.{table} ({columns[table]}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row((*row, *extra[table]))
    return sum(len(v) for v in tables.values())


def run_tick(aggregator: Aggregator) -> float:
    seconds, _ = timed(lambda: aggregator.tick(reconcile=False))
    return seconds


# -- the run --------------------------------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values)


def bench_backfill(reps: int, results: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    # The floor computes the same numbers as the backfill: the organization rows and the
    # breakdown rows of the three tiers.
    parts = {
        "organization": floor_queries(*window(now)),
        "breakdown": breakdown_floor_queries(*window(now)),
    }
    for queries in parts.values():
        run_floor(BIG, queries)  # warm the caches; not measured
    floors: dict[bool, list[float]] = {True: [], False: []}
    backfills = []
    for rep in range(reps):
        for jit in (True, False):
            total, split = 0.0, []
            for name, queries in parts.items():
                run = lambda q=queries, j=jit: run_floor(BIG, q, j)  # noqa: E731
                seconds, fetched = timed(run)  # type: ignore[misc]
                total += seconds
                split.append(f"{name} {seconds:.2f}s ({fetched} rows)")
            floors[jit].append(total)
            jit_name = "on" if jit else "off"
            print(f"  rep {rep + 1} floor, JIT {jit_name}: {', '.join(split)}", file=sys.stderr)
        db.reset_rollups(BIG)
        seconds, rows = timed(lambda: run_backfill(BIG))
        backfills.append(seconds)
        print(
            f"  rep {rep + 1}: floor {floors[True][-1]:.2f}s (jit off {floors[False][-1]:.2f}s), "
            f"backfill {seconds:.2f}s {rows}",
            file=sys.stderr,
        )
    # A re-run over existing rows (what an operator repairing a month does).
    rerun, _ = timed(lambda: run_backfill(BIG))
    results["floor_jit_on_s"] = floors[True]
    results["floor_jit_off_s"] = floors[False]
    floors_used = min(floors.values(), key=median)
    results["floor_s"] = floors_used
    results["backfill_s"] = backfills
    results["backfill_rerun_s"] = rerun
    results["backfill_ratio"] = median(backfills) / median(floors_used)
    results["backfill_rerun_ratio"] = rerun / median(floors_used)


def bench_anchor(results: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    start, _ = window(now)
    db.clone(BIG_TEMPLATE, ANCHOR)
    anchor_s, report = timed(lambda: anchor_baseline.run(db.libpq_url(ANCHOR), start, now))
    print(f"  anchor baseline {anchor_s:.2f}s {vars(report)}", file=sys.stderr)
    db.reset_rollups(BIG)
    ours_s, _ = timed(lambda: run_backfill(BIG))
    results["anchor_s"] = anchor_s
    results["anchor_ours_s"] = ours_s
    results["anchor_queries"] = report.source_queries
    results["anchor_statements"] = report.upsert_statements
    results["anchor_speedup"] = anchor_s / ours_s
    results["anchor_same_numbers"] = same_numbers(read_tiers(BIG), read_tiers(ANCHOR))
    db.drop(ANCHOR)


def bench_ticks(reps: int, results: dict[str, Any], small_template: str = SMALL_TEMPLATE) -> None:
    rng = random.Random(7)
    db.clone(small_template, SMALL)
    for database in (BIG, SMALL):
        run_backfill(database)
    aggregators = {name: aggregator_for(name) for name in (BIG, SMALL)}
    for name, aggregator in aggregators.items():  # watermarks, reconciliation, housekeeping
        seconds, _ = timed(lambda a=aggregator: a.tick())  # type: ignore[misc]
        print(f"  first tick on {name}: {seconds:.2f}s (not measured)", file=sys.stderr)
        seconds, _ = timed(lambda a=aggregator: a.tick(reconcile=False))  # type: ignore[misc]
        print(f"  idle tick on {name}: {seconds:.3f}s (not measured)", file=sys.stderr)
    times: dict[str, list[float]] = {BIG: [], SMALL: []}
    idle: list[float] = []
    for rep in range(reps):
        for name in (BIG, SMALL) if rep % 2 == 0 else (SMALL, BIG):
            inserted = insert_new_rows(name, rng)
            times[name].append(run_tick(aggregators[name]))
            line = f"  rep {rep + 1}: {name} +{inserted} rows, tick {times[name][-1] * 1000:.0f} ms"
            if name == BIG:  # the next tick finds nothing new
                seconds, result = timed(lambda: aggregators[BIG].tick(reconcile=False))
                assert result.dirty_hours == 0, result.as_dict()
                idle.append(seconds)
                line += f", idle tick {seconds * 1000:.1f} ms"
            print(line, file=sys.stderr)
    for aggregator in aggregators.values():
        aggregator.rollup.dispose()
        aggregator.source.dispose()
    results["tick_big_s"] = times[BIG]
    results["tick_small_s"] = times[SMALL]
    results["tick_ratio"] = median(times[BIG]) / median(times[SMALL])
    results["idle_tick_s"] = idle
    results["idle_ratio"] = median(idle) / median(times[BIG])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records-per-day", type=int, default=50, help="big history (>= 2M usage)")
    parser.add_argument("--backfill-reps", type=int, default=3)
    parser.add_argument("--tick-reps", type=int, default=9)
    parser.add_argument("--only", choices=("backfill", "anchor", "tick"), action="append")
    parser.add_argument("--keep", action="store_true", help="keep the bench_agg_* databases")
    # The small history of the tick comparison: 3 days by default (as recorded). With
    # --small-days 30 --small-records-per-day 1 it spans the big one's month (about 42k usage
    # rows, the least 200 organizations make over 30 days): the comparison then isolates the
    # history's size from how many days of the current month each holds.
    parser.add_argument("--small-days", type=int, default=3)
    parser.add_argument("--small-records-per-day", type=int, default=5)
    args = parser.parse_args()
    small_template = (
        SMALL_TEMPLATE
        if (args.small_days, args.small_records_per_day) == (3, 5)
        else f"bench_agg_small_{args.small_days}d{args.small_records_per_day}_src"
    )
    parts = args.only or ["backfill", "anchor", "tick"]
    db.create_template(BIG_TEMPLATE, orgs=200, days=DAYS, records_per_day=args.records_per_day)
    db.create_template(
        small_template, orgs=200, days=args.small_days, records_per_day=args.small_records_per_day
    )
    results: dict[str, Any] = {
        "big_rows": db.counts(BIG_TEMPLATE),
        "small_rows": db.counts(small_template),
    }
    print(f"big history {results['big_rows']}", file=sys.stderr)
    print(f"small history {results['small_rows']}", file=sys.stderr)
    db.clone(BIG_TEMPLATE, BIG)
    try:
        if "backfill" in parts:
            print("backfill vs floor", file=sys.stderr)
            bench_backfill(args.backfill_reps, results)
        if "anchor" in parts:
            print("anchor baseline vs backfill", file=sys.stderr)
            bench_anchor(results)
        if "tick" in parts:
            print("ticks after 1,000 new rows", file=sys.stderr)
            bench_ticks(args.tick_reps, results, small_template)
    finally:
        if not args.keep:
            for name in db.bench_databases():
                db.drop(name)
    report(results)
    return 0


def report(results: dict[str, Any]) -> None:
    def fmt(values: list[float]) -> str:
        return (
            f"median {median(values):.3f}s of {len(values)} ({min(values):.3f}..{max(values):.3f})"
        )

    print(f"usage rows: big {results['big_rows']['usage']}, small {results['small_rows']['usage']}")
    if "backfill_ratio" in results:
        ratio = results["backfill_ratio"]
        print(f"floor, JIT on (server default): {fmt(results['floor_jit_on_s'])}")
        print(f"floor, JIT off:                 {fmt(results['floor_jit_off_s'])}")
        print(f"floor used (the faster):        {fmt(results['floor_s'])}")
        print(f"backfill --days {DAYS} (empty rollups):  {fmt(results['backfill_s'])}")
        print(f"  ratio backfill/floor: {ratio:.2f}x (target <= 1.5x: {ratio <= 1.5})")
        print(
            f"backfill re-run over existing rows: {results['backfill_rerun_s']:.3f}s, "
            f"{results['backfill_rerun_ratio']:.2f}x the floor"
        )
    if "anchor_speedup" in results:
        print(
            f"anchor baseline: {results['anchor_s']:.2f}s ({results['anchor_queries']} source "
            f"queries, {results['anchor_statements']} upsert statements); ours "
            f"{results['anchor_ours_s']:.2f}s; speed-up {results['anchor_speedup']:.1f}x"
        )
        print(f"  same values and counts as ours: {results['anchor_same_numbers']}")
    if "tick_ratio" in results:
        ratio = results["tick_ratio"]
        print(f"tick after 1,000 rows, 2M history:  {fmt(results['tick_big_s'])}")
        print(f"tick after 1,000 rows, 20k history: {fmt(results['tick_small_s'])}")
        print(f"  ratio big/small: {ratio:.2f}x (target <= 1.5x: {ratio <= 1.5})")
        idle = results["idle_ratio"]
        print(f"idle tick, 2M history:             {fmt(results['idle_tick_s'])}")
        print(f"  ratio idle/after 1,000 rows: {idle:.1%} (target <= 5%: {idle <= 0.05})")


if __name__ == "__main__":
    sys.exit(main())
