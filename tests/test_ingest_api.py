"""POST /api/v1/unstract/{org_id}/events/ on both dialects: the contract (defaults, counts,
partial acceptance, every rejection, the rows stored, retries), the auth and scope matrix,
the limits, a database outage, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from dashboard_metrics.core.schema import pushed_events
from dashboard_metrics.core.settings import Settings
from dashboard_metrics.exporter.app import create_app
from dashboard_metrics.exporter.ingest.store import ingest_engine
from tests.harness import Harness, utc

URL = "/api/v1/unstract/{org}/events/"
NOW = utc(2026, 3, 15, 12, 30)  # the `clock` fixture's time
FLOOR = utc(2026, 2, 13, 13)  # hour of (now - 30 days, the hourly retention) + 1 hour
EPOCH = utc(2026, 3, 15, 11).timestamp() + 0.5


@asynccontextmanager
async def client(
    h: Harness, ingest: Engine | None = None, **settings: Any
) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(
        replace(h.settings, **settings),
        clock=h.clock,
        rollup=h.rollup,
        source=h.source,
        ingest=ingest,
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def push(
    c: TestClient[Any, Any], events: list[Any], org: str = "org_a", **headers: str
) -> tuple[int, dict[str, Any]]:
    response = await c.post(URL.format(org=org), json={"events": events}, headers=headers)
    return response.status, await response.json()


def rows(h: Harness) -> dict[tuple[str, str], tuple[Any, ...]]:
    t = pushed_events.c
    columns = [t.metric_name, t.value, t.event_time, t.model, t.workflow, t.deployment]
    with h.rollup.connect() as conn:
        found = conn.execute(select(t.organization_id, t.event_id, *columns, t.received_at))
        return {(r[0], r[1]): tuple(r[2:]) for r in found}


def review(event_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": event_id, "metric": "hitl_reviews", **fields}


# -- the contract ---------------------------------------------------------------------------


async def test_defaults_and_the_rows_stored(h: Harness, pushed_catalogue: str) -> None:
    async with client(h) as c:
        status, body = await push(
            c,
            [
                review("e1"),
                review("e2", value=3, timestamp="2026-03-15T10:15:00Z", labels={"workflow": "w"}),
                {"id": "e3", "metric": "hitl_review_seconds", "value": 42.5, "timestamp": EPOCH},
            ],
        )
    assert status == 200, body
    assert body == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert rows(h) == {
        ("org_a", "e1"): ("hitl_reviews", 1.0, NOW, "", "", "", NOW),
        ("org_a", "e2"): ("hitl_reviews", 3.0, utc(2026, 3, 15, 10, 15), "", "w", "", NOW),
        ("org_a", "e3"): (
            "hitl_review_seconds",
            42.5,
            datetime.fromtimestamp(EPOCH, UTC),
            "",
            "",
            "",
            NOW,
        ),
    }


async def test_timestamp_forms(h: Harness, pushed_catalogue: str) -> None:
    forms = {
        "z": "2026-03-15T10:00:00Z",
        "offset": "2026-03-15T12:00:00+02:00",
        "naive": "2026-03-15T10:00:00",
        "fraction": "2026-03-15T10:00:00.250000+00:00",
        "epoch": int(utc(2026, 3, 15, 10).timestamp()),
        "floor": FLOOR.isoformat(),
        "ahead": (NOW + timedelta(minutes=5)).isoformat(),
    }
    async with client(h) as c:
        status, body = await push(c, [review(k, timestamp=v) for k, v in forms.items()])
    assert (status, body["accepted"], body["rejected"]) == (200, len(forms), [])
    times = {key[1]: row[2] for key, row in rows(h).items()}
    ten = utc(2026, 3, 15, 10)
    assert times == {
        "z": ten,
        "offset": ten,
        "naive": ten,
        "fraction": ten + timedelta(milliseconds=250),
        "epoch": ten,
        "floor": FLOOR,
        "ahead": NOW + timedelta(minutes=5),
    }


REJECTED: list[tuple[Any, str]] = [
    (review("u1", metric="nope"), "unknown metric ('nope'); pushed metrics: hitl_reviews"),
    (review("u2", metric="llm_calls"), "built in"),
    ({"metric": "hitl_reviews"}, "id: required"),
    (review(""), "id: required"),
    (review(7), "id: required"),
    (review("x" * 201), "id: at most 200"),
    (review("nul\x00"), "control characters"),
    (review("v1", value=True), "value: must be a JSON number"),
    (review("v2", value="3"), "value: must be a JSON number"),
    (review("v3", value=None), "value: must be a JSON number"),
    (review("v4", value=-1), "counter; its values cannot be negative"),
    (review("t1", timestamp=(FLOOR - timedelta(seconds=1)).isoformat()), "older than"),
    (review("t2", timestamp=(NOW + timedelta(minutes=5, seconds=1)).isoformat()), "future"),
    (review("t3", timestamp="yesterday"), "timestamp: not an ISO 8601"),
    (review("t4", timestamp=True), "timestamp: an RFC 3339 string or epoch seconds"),
    (review("t5", timestamp=1e300), "epoch seconds out of range"),
    (review("t6", timestamp=None), "timestamp: an RFC 3339"),
    (review("l1", labels={"model": "gpt"}), "'model' is not a label of hitl_reviews"),
    (review("l2", labels={"workflow": ""}), "labels.workflow: a non-empty string"),
    (review("l3", labels={"workflow": 5}), "labels.workflow: a non-empty string"),
    (review("l4", labels={"workflow": "w" * 257}), "at most 256"),
    (review("l5", labels=["workflow"]), "labels: must be an object"),
    (review("f1", project="p"), "unknown field 'project'"),
    ("not an event", "must be a JSON object"),
    (None, "must be a JSON object"),
]


async def test_each_rejection_and_partial_acceptance(h: Harness, pushed_catalogue: str) -> None:
    valid = [
        review("ok1"),
        {"id": "ok2", "metric": "hitl_review_seconds", "value": -2.5},  # not a counter
        review("ok3", labels={"workflow": "w" * 256}),
    ]
    events = [valid[0], *(event for event, _ in REJECTED), *valid[1:]]
    async with client(h) as c:
        status, body = await push(c, events)
    assert status == 200, body
    assert body["accepted"] == 3 and body["duplicates"] == 0
    assert [r["index"] for r in body["rejected"]] == list(range(1, len(REJECTED) + 1))
    for rejection, (_event, expected) in zip(body["rejected"], REJECTED, strict=True):
        assert expected in rejection["error"], rejection
    assert "hitl_completions, hitl_review_seconds" in body["rejected"][0]["error"]
    assert sorted(key[1] for key in rows(h)) == ["ok1", "ok2", "ok3"]


async def test_duplicates_in_the_batch_and_across_retries(
    h: Harness, pushed_catalogue: str
) -> None:
    batch = [review("a", value=1), review("b"), review("a", value=5), review("bad", value=-1)]
    async with client(h) as c:
        first = await push(c, batch)
        stored = rows(h)
        h.clock.advance(minutes=1)
        again = await push(c, batch)
        other_org = await push(c, batch, org="org_b")
    rejected = [{"index": 3, "error": first[1]["rejected"][0]["error"]}]
    assert first == (200, {"accepted": 2, "duplicates": 1, "rejected": rejected})
    assert again == (200, {"accepted": 0, "duplicates": 3, "rejected": rejected})
    assert other_org == (200, {"accepted": 2, "duplicates": 1, "rejected": rejected})
    assert stored[("org_a", "a")][1] == 1.0  # the first occurrence wins
    after = rows(h)
    assert {k: v for k, v in after.items() if k[0] == "org_a"} == stored  # untouched by retry
    assert len(after) == 4


async def test_concurrent_retries_store_each_event_once(h: Harness, pushed_catalogue: str) -> None:
    batch = [review(f"c{i}", labels={"workflow": f"w{i % 3}"}) for i in range(300)]
    async with client(h) as c:
        answers = await asyncio.gather(*(push(c, batch) for _ in range(6)))
    assert all(status == 200 for status, _ in answers)
    assert sum(body["accepted"] for _, body in answers) == 300
    assert sum(body["duplicates"] for _, body in answers) == 5 * 300
    assert len(rows(h)) == 300
    # The partial sums (what the tick folds) count each stored event once: only the request
    # that stored an event summed it.
    with h.rollup.connect() as conn:
        found = conn.execute(text("SELECT sum(metric_count) FROM pushed_event_partials")).scalar()
    assert found == 300


def random_event(rng: random.Random) -> tuple[dict[str, Any], tuple[Any, ...] | None]:
    """An event and the row it stores (None: it is rejected), decided here on its own."""
    event_id = f"r{rng.randrange(150)}"
    metric = rng.choice(["hitl_reviews", "hitl_completions", "hitl_review_seconds"])
    value = rng.choice([0, 1, 2.5, 1e-7, 12345678.125])
    when = NOW - timedelta(seconds=rng.randrange(0, 29 * 86400))
    labels = rng.choice([{}, {"workflow": f"wf-{rng.randrange(3)}"}])
    event = {"id": event_id, "metric": metric, "value": value, "timestamp": when.isoformat()}
    if labels:
        event["labels"] = labels
    flaw = rng.randrange(8)
    if flaw == 0:
        event["value"] = -1 if metric != "hitl_review_seconds" else "x"
    elif flaw == 1:
        event["labels"] = {"model": "m"}
    elif flaw == 2:
        event["timestamp"] = (NOW + timedelta(hours=1)).isoformat()
    else:
        row = (metric, float(value), when, "", labels.get("workflow", ""), "", NOW)
        return event, row
    return event, None


async def test_random_batches_against_a_model(h: Harness, pushed_catalogue: str) -> None:
    rng = random.Random(15)
    stored: dict[tuple[str, str], tuple[Any, ...]] = {}
    async with client(h) as c:
        for _round in range(6):
            org = rng.choice(["org_a", "org_b"])
            drawn = [random_event(rng) for _ in range(rng.randrange(1, 250))]
            expected = {"accepted": 0, "duplicates": 0, "rejected": 0}
            for event, row in drawn:
                key = (org, event["id"])
                outcome = (
                    "rejected" if row is None else "duplicates" if key in stored else "accepted"
                )
                expected[outcome] += 1
                if row is not None:
                    stored.setdefault(key, row)
            status, body = await push(c, [event for event, _row in drawn], org=org)
            assert status == 200, body
            body["rejected"] = len(body["rejected"])
            assert body == expected
    assert rows(h) == stored


async def test_empty_batch(h: Harness, pushed_catalogue: str) -> None:
    async with client(h) as c:
        assert await push(c, []) == (200, {"accepted": 0, "duplicates": 0, "rejected": []})


async def test_without_pushed_metrics_every_event_is_rejected(h: Harness) -> None:
    async with client(h) as c:
        status, body = await push(c, [review("a")])
    assert (status, body["accepted"]) == (200, 0)
    assert "none is declared (DASHBOARD_METRICS_METRICS_FILE)" in body["rejected"][0]["error"]


# -- auth -----------------------------------------------------------------------------------

INGEST_KEYS = "ik-a=org_a,org_c;ik-all=*"
READ_KEYS = "rk-a=org_a;rk-all=*"


async def test_auth_and_scope(
    h: Harness, pushed_catalogue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cases = [
        ("org_a", {}, 401, "not_authenticated"),
        ("org_a", {"Authorization": "Bearer wrong"}, 401, "authentication_failed"),
        ("org_a", {"Authorization": "Basic ik-a"}, 401, "not_authenticated"),
        ("org_a", {"Authorization": "Bearer rk-a"}, 403, "read key"),
        ("org_a", {"Authorization": "Bearer rk-all"}, 403, "read key"),
        ("org_b", {"Authorization": "Bearer ik-a"}, 403, "may not push"),
        ("org_a", {"Authorization": "Bearer ik-a"}, 200, ""),
        ("org_c", {"Authorization": "bearer  ik-a"}, 200, ""),
        ("org_b", {"Authorization": "Bearer ik-all"}, 200, ""),
    ]
    async with client(h, ingest_keys=INGEST_KEYS, api_keys=READ_KEYS) as c:
        for number, (org, headers, status, expected) in enumerate(cases):
            response = await c.post(
                URL.format(org=org), json={"events": [review(f"e{number}")]}, headers=headers
            )
            body = await response.json()
            assert response.status == status, (org, headers, body)
            if status == 401:
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert body["errors"][0]["code"] == expected
            elif status == 403:
                assert body["errors"][0]["code"] == "permission_denied"
                assert expected in body["errors"][0]["detail"]
            else:
                assert body["accepted"] == 1
        # An ingest key does not read.
        read = await c.get(
            "/api/v1/unstract/org_a/metrics/summary/", headers={"Authorization": "Bearer ik-all"}
        )
        assert read.status == 401
    assert sorted(rows(h)) == [("org_a", "e6"), ("org_b", "e8"), ("org_c", "e7")]
    for key in ("ik-a", "ik-all", "rk-a", "rk-all", "wrong"):
        assert key not in caplog.text


@pytest.mark.parametrize(
    ("settings", "status"),
    [
        ({}, 200),  # the read API is open: so is pushing
        ({"api_keys": READ_KEYS}, 403),
        ({"forward_auth_url": "http://127.0.0.1:9/api/{org_id}/profile/"}, 403),
    ],
)
async def test_without_ingest_keys_pushing_is_open_only_when_reading_is(
    h: Harness, pushed_catalogue: str, settings: dict[str, str], status: int
) -> None:
    async with client(h, **settings) as c:
        for headers in ({}, {"Authorization": "Bearer rk-all"}):
            code, body = await push(c, [review("e")], **headers)
            assert code == status, body
            if status == 403:
                assert "DASHBOARD_METRICS_INGEST_KEYS" in body["errors"][0]["detail"]


# -- the request ----------------------------------------------------------------------------


async def post_raw(c: TestClient[Any, Any], data: Any, path: str = URL.format(org="org_a")) -> Any:
    response = await c.post(path, data=data, headers={"Content-Type": "application/json"})
    return response.status, await response.json()


async def test_malformed_bodies_are_400s(h: Harness, pushed_catalogue: str) -> None:
    cases = [
        (b'{"events": [', "body", "Malformed JSON"),
        (b"", "body", "Malformed JSON"),
        (b"\xff\xfe", "body", "Malformed JSON"),
        (b"[]", "body", "must be a JSON object"),
        (b'"events"', "body", "must be a JSON object"),
        (b"{}", "events", "Required: a list"),
        (b'{"events": {"id": "a"}}', "events", "Required: a list"),
        (b'{"events": null}', "events", "Required: a list"),
        (b'{"events": [], "more": 1}', "more", "Unknown field"),
        (b'{"events": [{"id": "a", "metric": "hitl_reviews", "value": 1e999}]}', "body", ""),
    ]
    async with client(h) as c:
        for data, attr, detail in cases:
            status, body = await post_raw(c, data)
            assert status == 400, (data, body)
            assert body["type"] == "validation_error"
            assert body["errors"][0]["attr"] == attr
            assert detail in body["errors"][0]["detail"]
        status, body = await post_raw(c, b'{"events": []}', URL.format(org="org_a") + "?x=1")
        assert (status, body["errors"][0]["attr"]) == (400, "x")
        status, body = await post_raw(c, b'{"events": []}', URL.format(org="o" * 65))
        assert (status, body["errors"][0]["attr"]) == (400, "org_id")
        response = await c.get(URL.format(org="org_a"))
        assert response.status == 405
        assert (await response.json())["type"] == "client_error"
    assert rows(h) == {}


async def test_limits_are_413s(h: Harness, pushed_catalogue: str) -> None:
    async with client(h) as c:
        status, body = await push(c, [review(str(i)) for i in range(10_001)])
        assert status == 413 and "10000 events" in body["errors"][0]["detail"], body
        status, body = await push(c, [review(str(i)) for i in range(10_000)])
        assert (status, body["accepted"]) == (200, 10_000)
        # Over 5 MB: refused by its Content-Length, and by the bytes of a chunked body.
        padding = b" " * (5 * 1024 * 1024)
        big = b'{"events": []' + padding + b"}"
        status, body = await post_raw(c, big)
        assert status == 413 and "5 MB" in body["errors"][0]["detail"]

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"events": ['
            for _ in range(6):
                yield b" " * (1024 * 1024)
            yield b"]}"

        status, body = await post_raw(c, chunks())
        assert status == 413 and body["type"] == "client_error"
        # Exactly 5 MB is allowed.
        exact = b'{"events": []' + b" " * (5 * 1024 * 1024 - 14) + b"}"
        assert len(exact) == 5 * 1024 * 1024
        status, body = await post_raw(c, exact)
        assert (status, body["accepted"]) == (200, 0)
    assert len(rows(h)) == 10_000


async def test_database_down_is_503(
    h: Harness, db_settings: Settings, pushed_catalogue: str
) -> None:
    if h.dialect == "sqlite":
        gone = replace(db_settings, database_url=f"sqlite:///{db_settings.data_dir}/gone/x.db")
    else:
        gone = replace(db_settings, database_url="postgresql://nobody@127.0.0.1:9/none")
    engine = ingest_engine(gone)
    try:
        async with client(h, ingest=engine) as c:
            status, body = await push(c, [review("e")])
            assert status == 503, body
            assert body["errors"][0]["code"] == "database_unavailable"
            # Nothing to write: no database needed.
            assert (await push(c, [review("e", metric="x")]))[0] == 200
    finally:
        engine.dispose()


# -- the document ---------------------------------------------------------------------------


async def test_openapi_documents_the_endpoint_and_the_pushed_metrics(
    h: Harness, pushed_catalogue: str
) -> None:
    async with client(h) as c:
        doc = await (await c.get("/api/openapi.json")).json()
    operation = doc["paths"]["/api/v1/unstract/{org_id}/events/"]["post"]
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "413", "503"}
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EventBatch"
    }
    schemas = doc["components"]["schemas"]
    assert "10000 events" in schemas["EventBatch"]["properties"]["events"]["description"]
    event = schemas["PushedEvent"]
    pushed = ["hitl_reviews", "hitl_completions", "hitl_review_seconds"]
    assert sorted(event["properties"]["metric"]["enum"]) == sorted(pushed)
    assert list(event["properties"]["labels"]["properties"]) == ["workflow"]
    summary = doc["paths"]["/api/v1/unstract/{org_id}/metrics/summary/"]["get"]
    metric = next(p for p in summary["parameters"] if p["name"] == "metric_name")
    assert set(pushed) <= set(metric["schema"]["enum"])
    json.dumps(doc)  # serialisable as served


def test_openapi_without_pushed_metrics_lists_only_the_built_in_ones() -> None:
    from dashboard_metrics.core.catalogue import BUILTIN
    from dashboard_metrics.exporter.openapi import document

    doc = document()
    summary = doc["paths"]["/api/v1/unstract/{org_id}/metrics/summary/"]["get"]
    metric = next(p for p in summary["parameters"] if p["name"] == "metric_name")
    assert sorted(metric["schema"]["enum"]) == sorted(m.name for m in BUILTIN)
    assert "enum" not in doc["components"]["schemas"]["PushedEvent"]["properties"]["metric"]
