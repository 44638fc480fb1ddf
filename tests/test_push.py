"""`dashboard-metrics push FILE` against a real HTTP server that keeps the events endpoint's
contract (auth and scope, limits, accepted/duplicates/rejected, idempotent by (org, id)) and
answers 503 to the first try of every batch, so every run also proves the retries."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dashboard_metrics.cli.errors import CommandError
from dashboard_metrics.cli.main import main
from dashboard_metrics.cli.push import Batch, Sender, batches, event_id, parse_lines

KEYS = {"k-write-a": {"org_a"}, "k-write-all": {"*"}}
METRICS = {"hitl_reviews", "hitl_completions"}


@dataclass
class Recorded:
    org: str
    authorization: str | None
    body: bytes
    status: int

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(json.loads(self.body)["events"])


@dataclass
class Ingest:
    """A stand-in for POST /api/v1/unstract/{org_id}/events/."""

    url: str = ""
    fail_first: int = 1  # 503s before a body is taken, per distinct body
    retry_after: str | None = "0"
    delay: float = 0.0  # seconds before answering the first try of a body
    requests: list[Recorded] = field(default_factory=list)
    stored: dict[str, set[str]] = field(default_factory=dict)  # org -> ids
    tries: dict[bytes, int] = field(default_factory=dict)

    def error(self, status: int, detail: str) -> web.Response:
        body = {"type": "client_error", "errors": [{"detail": detail}], "message": detail}
        headers = {"Retry-After": self.retry_after} if status == 503 and self.retry_after else None
        return web.json_response(body, status=status, headers=headers)

    async def handle(self, request: web.Request) -> web.Response:
        org, raw = request.match_info["org_id"], await request.read()
        response = await self._answer(request, org, raw)
        self.requests.append(
            Recorded(org, request.headers.get("Authorization"), raw, response.status)
        )
        return response

    async def _answer(self, request: web.Request, org: str, raw: bytes) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if key not in KEYS:
            return self.error(401, "Authentication credentials were not provided or are invalid.")
        if not KEYS[key] & {org, "*"}:
            return self.error(403, f"This key may not write to organization {org}.")
        if len(raw) > 5_000_000:
            return self.error(413, "The body is over 5 MB.")
        try:
            events = json.loads(raw)["events"]
        except (ValueError, KeyError):
            return self.error(400, "Malformed JSON.")
        if len(events) > 10_000:
            return self.error(413, "At most 10000 events.")
        self.tries[raw] = self.tries.get(raw, 0) + 1
        if self.tries[raw] == 1 and self.delay:
            await asyncio.sleep(self.delay)
        if self.tries[raw] <= self.fail_first:
            return self.error(503, "The database is unavailable.")
        return web.json_response(self.store(org, events))

    def store(self, org: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        accepted, duplicates, rejected = 0, 0, []
        ids = self.stored.setdefault(org, set())
        for index, event in enumerate(events):
            if event.get("metric") not in METRICS:
                rejected.append(
                    {"index": index, "error": f"unknown metric {event.get('metric')!r}"}
                )
            elif event["id"] in ids:
                duplicates += 1
            else:
                ids.add(event["id"])
                accepted += 1
        return {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}

    def taken(self) -> list[Recorded]:
        return [r for r in self.requests if r.status == 200]


@pytest.fixture
def ingest() -> Iterator[Ingest]:
    state = Ingest()
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/api/v1/unstract/{org_id}/events/", state.handle)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    loop.run_until_complete(web.SockSite(runner, sock).start())
    state.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield state
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.run_until_complete(runner.cleanup())
    loop.close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("DASHBOARD_METRICS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DASHBOARD_METRICS_PUSH_KEY", "k-write-all")


def write_events(path: Path, events: list[dict[str, Any] | str]) -> Path:
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in events))
    return path


def output(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line and not line.startswith("{")]
    assert "Traceback" not in captured.err
    return captured.out, "\n".join(err)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    _out, err = output(capsys)
    assert len(err.splitlines()) == 1, err
    assert err.startswith("dashboard-metrics: error: ")
    return err


# -- sending ----------------------------------------------------------------------------------


def test_push_sends_batches_per_org_with_the_key_and_retries(
    ingest: Ingest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events: list[dict[str, Any] | str] = []
    for i in range(23):
        event: dict[str, Any] = {"metric": "hitl_reviews", "labels": {"workflow": f"w{i % 3}"}}
        if i % 4 == 0:
            event["org_id"] = "org_b"
        if i == 5:
            event["id"] = "my-own-id"
        events.append(event)
        if i == 10:
            events.append("   ")  # blank lines are skipped
    path = write_events(tmp_path / "events.jsonl", events)
    argv = ["push", str(path), "--org-id", "org_a", "--url", ingest.url, "--batch-size", "5"]
    assert main(argv) == 0
    out, _err = output(capsys)
    assert f"sent 23 events in 6 batches to {ingest.url}: 23 accepted, 0 duplicates" in out
    taken = ingest.taken()
    assert [r.org for r in taken] == ["org_b"] * 2 + ["org_a"] * 4  # in order of appearance
    assert [len(r.events) for r in taken] == [5, 1, 5, 5, 5, 2]
    assert all(r.authorization == "Bearer k-write-all" for r in ingest.requests)
    # Every batch was refused once (503) and sent again, the same bytes.
    assert len(ingest.requests) == 12
    assert [r.status for r in ingest.requests[:2]] == [503, 200]
    assert ingest.requests[0].body == ingest.requests[1].body
    sent = [e for r in taken for e in r.events]
    assert all("org_id" not in e for e in sent)
    assert "my-own-id" in ingest.stored["org_a"]
    assert sum(e["id"].startswith("line-") for e in sent) == 22
    assert len({e["id"] for e in sent}) == 23

    # Again: the same ids, so everything is a duplicate.
    ingest.requests.clear()
    assert main(argv) == 0
    out, _err = output(capsys)
    assert "sent 23 events in 6 batches" in out and "0 accepted, 23 duplicates" in out
    assert [e["id"] for r in ingest.taken() for e in r.events] == [e["id"] for e in sent]


def test_rejections_are_reported_by_line_and_exit_1(
    ingest: Ingest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events: list[dict[str, Any] | str] = [{"metric": "hitl_reviews"} for _ in range(10)]
    for line in (2, 4, 5, 6, 7, 8, 9):
        events[line - 1] = {"metric": f"nope_{line}"}
    events.insert(2, "")  # line 3 is blank: the rejected lines move to 3, 5..10
    path = write_events(tmp_path / "events.jsonl", events)
    assert main(["push", str(path), "--org-id", "org_a", "--url", ingest.url]) == 1
    out, _err = output(capsys)
    assert "sent 10 events in 1 batch to" in out
    assert "3 accepted, 0 duplicates (already there), 7 rejected" in out
    assert "  line 2: unknown metric 'nope_2'" in out
    assert "  line 5: unknown metric 'nope_4'" in out
    assert "  line 8: unknown metric 'nope_7'" in out
    assert "line 9:" not in out  # the first five are shown
    assert "  ... and 2 more rejected" in out


def test_stdin(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = "".join(
        json.dumps({"metric": "hitl_completions", "org_id": "org_a"}) + "\n" for _ in range(3)
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    monkeypatch.setenv("DASHBOARD_METRICS_PUSH_KEY", "k-write-a")
    assert main(["push", "-", "--url", ingest.url]) == 0
    assert "3 accepted" in output(capsys)[0]
    assert ingest.requests[-1].authorization == "Bearer k-write-a"


def test_a_batch_stays_under_5_mb(
    ingest: Ingest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = "x" * 400_000
    events: list[dict[str, Any] | str] = [
        {"metric": "hitl_reviews", "labels": {"workflow": big}} for _ in range(30)
    ]
    path = write_events(tmp_path / "big.jsonl", events)
    assert main(["push", str(path), "--org-id", "org_a", "--url", ingest.url]) == 0
    taken = ingest.taken()
    assert len(taken) == 3
    assert all(len(r.body) <= 5_000_000 for r in taken)
    assert sum(len(r.events) for r in taken) == 30
    assert "30 accepted" in output(capsys)[0]


def test_backoff_doubles_and_gives_up_after_the_retries(ingest: Ingest) -> None:
    ingest.fail_first, ingest.retry_after = 10, None
    delays: list[float] = []
    sender = Sender(ingest.url, "k-write-all", retries=4, timeout=10, sleep=delays.append)
    batch = Batch("org_a", parse_lines(['{"metric": "hitl_reviews"}'], "org_a"))
    with pytest.raises(
        CommandError,
        match=r"answered 503: The database is unavailable \(gave up after 5 attempts",
    ):
        sender.send(batch)
    assert delays == [0.5, 1.0, 2.0, 4.0]
    ingest.fail_first = 3
    delays.clear()
    other = Batch("org_a", parse_lines(['{"metric": "hitl_completions"}'], "org_a"))
    assert sender.send(other)["accepted"] == 1
    assert delays == [0.5, 1.0, 2.0]


def test_a_timeout_is_retried(ingest: Ingest) -> None:
    ingest.fail_first, ingest.delay = 0, 2.0
    delays: list[float] = []
    sender = Sender(ingest.url, "k-write-all", retries=2, timeout=0.3, sleep=delays.append)
    batch = Batch("org_a", parse_lines(['{"metric": "hitl_reviews"}'], "org_a"))
    assert sender.send(batch) == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert delays == [0.5]
    impatient = Sender(ingest.url, "k-write-all", retries=0, timeout=0.3, sleep=delays.append)
    other = Batch("org_a", parse_lines(['{"metric": "hitl_completions"}'], "org_a"))
    with pytest.raises(CommandError, match=r"no answer from .* within 0\.3 s \(--timeout\)"):
        impatient.send(other)


def test_429_is_retried_as_the_server_asks(ingest: Ingest) -> None:
    original = ingest.error

    def too_many(status: int, detail: str) -> web.Response:
        if status != 503:
            return original(status, detail)
        return web.json_response({"message": "slow down"}, status=429, headers={"Retry-After": "3"})

    ingest.error = too_many  # type: ignore[method-assign]
    delays: list[float] = []
    sender = Sender(ingest.url, "k-write-all", retries=1, timeout=10, sleep=delays.append)
    batch = Batch("org_a", parse_lines(['{"metric": "hitl_reviews"}'], "org_a"))
    assert sender.send(batch)["accepted"] == 1
    assert delays == [3.0]


# -- refusals and bad input -------------------------------------------------------------------


def test_a_refused_key_stops_with_the_server_message(
    ingest: Ingest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_events(tmp_path / "e.jsonl", [{"metric": "hitl_reviews", "org_id": "org_b"}])
    monkeypatch.setenv("DASHBOARD_METRICS_PUSH_KEY", "k-write-a")
    assert main(["push", str(path), "--url", ingest.url]) == 1
    line = one_line(capsys)
    assert line.endswith(
        "refused the batch of line 1 for org_b: 403 This key may not write to organization org_b"
    )
    assert len(ingest.requests) == 1  # a 403 is not retried
    assert main(["push", str(path), "--url", ingest.url, "--key", "wrong"]) == 1
    assert ": 401 Authentication credentials" in one_line(capsys)


def test_a_refusal_after_sent_batches_says_so(
    ingest: Ingest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events: list[dict[str, Any] | str] = [
        {"metric": "hitl_reviews"},
        {"metric": "hitl_reviews", "org_id": "org_b"},
    ]
    path = write_events(tmp_path / "e.jsonl", events)
    assert (
        main(["push", str(path), "--org-id", "org_a", "--url", ingest.url, "--key", "k-write-a"])
        == 1
    )
    out, err = output(capsys)
    assert err.endswith(
        "403 This key may not write to organization org_b "
        "(the 1 events before it were sent; re-running the file is safe)"
    )
    assert "sent 1 events in 1 batch to" in out and "1 accepted" in out


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ['{"metric": "hitl_reviews"}', "", '{"metric": '],
            "line 3: not valid JSON (Expecting value at column 11)",
        ),
        (
            ['{"metric": "hitl_reviews"}', "[1, 2]"],
            "line 2: expected a JSON object (one event), got [1, 2]",
        ),
        (
            ['{"metric": "hitl_reviews", "value": NaN}'],
            "line 1: not valid JSON (NaN is not valid JSON)",
        ),
        (['{"metric": "hitl_reviews", "org_id": 7}'], "line 1: org_id must be a non-empty string"),
    ],
)
def test_a_bad_line_stops_before_anything_is_sent(
    ingest: Ingest,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    lines: list[str],
    message: str,
) -> None:
    path = write_events(tmp_path / "e.jsonl", [*lines, '{"metric": "hitl_reviews"}'])
    assert main(["push", str(path), "--org-id", "org_a", "--url", ingest.url]) == 2
    assert one_line(capsys) == f"dashboard-metrics: error: {message}"
    assert ingest.requests == []


def test_a_line_without_an_organization(
    ingest: Ingest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_events(
        tmp_path / "e.jsonl",
        [{"metric": "hitl_reviews", "org_id": "org_a"}, {"metric": "hitl_reviews"}],
    )
    assert main(["push", str(path), "--url", ingest.url]) == 2
    assert one_line(capsys).endswith("line 2: no organization: add an org_id or pass --org-id")
    assert ingest.requests == []


def test_an_unreachable_url_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    path = write_events(tmp_path / "e.jsonl", [{"metric": "hitl_reviews"}])
    url = f"http://127.0.0.1:{port}"
    assert main(["push", str(path), "--org-id", "org_a", "--url", url, "--retries", "0"]) == 1
    line = one_line(capsys)
    assert line.startswith(
        f"dashboard-metrics: error: cannot reach {url}/api/v1/unstract/org_a/events/: "
    )
    assert line.endswith("(gave up after 1 attempt; --retries)")


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["push", "absent.jsonl", "--org-id", "org_a"]) == 2
    assert (
        one_line(capsys)
        == "dashboard-metrics: error: cannot read absent.jsonl: No such file or directory"
    )
    path = write_events(tmp_path / "e.jsonl", [{"metric": "hitl_reviews"}])
    assert main(["push", str(path), "--org-id", "o", "--url", "127.0.0.1:8080"]) == 2
    assert "--url: expected http(s)://HOST[:PORT]" in one_line(capsys)
    with pytest.raises(SystemExit) as exit_info:
        main(["push", str(path), "--batch-size", "10001"])
    assert exit_info.value.code == 2
    assert "--batch-size: at most 10000" in capsys.readouterr().err
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + b'{"metric": "hitl_reviews"}\n')
    assert (
        main(["push", str(bom), "--org-id", "o", "--url", "http://127.0.0.1:9", "--retries", "0"])
        == 1
    )
    assert "cannot reach" in one_line(capsys)  # line 1 was read: the BOM is not JSON's
    empty = write_events(tmp_path / "empty.jsonl", ["", "  "])
    assert main(["push", str(empty)]) == 0
    assert "nothing to push" in output(capsys)[0]


# -- the pieces -------------------------------------------------------------------------------


def test_ids_depend_on_the_line_number_and_text() -> None:
    assert event_id(1, '{"metric": "a"}') == event_id(1, '{"metric": "a"}')
    assert event_id(1, '{"metric": "a"}') != event_id(2, '{"metric": "a"}')
    assert event_id(1, '{"metric": "a"}') != event_id(1, '{"metric": "b"}')
    # Line endings and surrounding blanks are not part of the text.
    first = parse_lines(['{"metric": "a"}\n'], "o")[0]
    second = parse_lines(['  {"metric": "a"}\r\n'], "o")[0]
    assert first.body == second.body


def test_batches_keep_file_order_per_organization() -> None:
    lines = parse_lines([json.dumps({"metric": "a", "org_id": org}) for org in "abab"], None)
    got = [(b.org, [line.number for line in b.lines]) for b in batches(lines, 1000)]
    assert got == [("a", [1, 3]), ("b", [2, 4])]
    small = list(batches(lines, 1000, max_body=len(lines[0].body) * 2 + 14))
    assert [len(b.lines) for b in small] == [1, 1, 1, 1]
