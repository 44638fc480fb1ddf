"""`dashboard-metrics push FILE`: send pushed events (JSON lines) to a running service's events
endpoint, `POST {url}/api/v1/unstract/{org_id}/events/`.

The whole file is read and checked first (JSON, one object a line, an organization for every
line), so a bad line stops the command before anything is sent. A line without an `id` gets
one derived from its line number and text: re-running the same file sends the same ids, and the
endpoint is idempotent by (organization, id). That is also what makes retrying a batch safe
after a timeout, a dropped connection, a 429 or a 502/503/504.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import quote, urlsplit

from dashboard_metrics.aggregator.progress import ProgressBar
from dashboard_metrics.cli.errors import CommandError, InputError
from dashboard_metrics.core.settings import Settings

log = logging.getLogger("dashboard_metrics.push")

MAX_BODY = 5_000_000  # bytes: the endpoint answers 413 above 5 MB
ENVELOPE = len(b'{"events":[]}')
RETRY_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF_FIRST = 0.5  # seconds before the first retry; doubled for each further one
BACKOFF_MAX = 30.0
SHOWN_REJECTIONS = 5


# -- reading the file ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One event of the file: its line number, organization and JSON as sent."""

    number: int
    org: str
    body: bytes


def event_id(number: int, text: str) -> str:
    """The id of a line that has none: the same line of the same file, the same id."""
    digest = hashlib.sha256(f"{number}\n{text}".encode()).hexdigest()
    return f"line-{digest[:40]}"


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode(number: int, text: str) -> dict[str, Any]:
    try:
        event = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at column {exc.colno}"
        raise InputError(f"line {number}: not valid JSON ({where})") from None
    except ValueError as exc:  # NaN, Infinity
        raise InputError(f"line {number}: not valid JSON ({exc})") from None
    if not isinstance(event, dict):
        raise InputError(f"line {number}: expected a JSON object (one event), got {text[:40]}")
    return event


def parse_line(number: int, text: str, default_org: str | None) -> Line:
    event = _decode(number, text)
    org = event.pop("org_id", None)
    if org is None:
        org = default_org
        if not org:
            raise InputError(f"line {number}: no organization: add an org_id or pass --org-id")
    if not isinstance(org, str) or not org.strip():
        raise InputError(f"line {number}: org_id must be a non-empty string")
    if event.get("id") is None:
        event["id"] = event_id(number, text)
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) + ENVELOPE > MAX_BODY:
        raise InputError(f"line {number}: the event is over the endpoint's 5 MB limit")
    return Line(number, org, body)


def parse_lines(lines: Iterable[str], default_org: str | None) -> list[Line]:
    """Every event of ``lines`` (blank lines skipped); the first bad line is an InputError."""
    return [
        parse_line(number, text.strip(), default_org)
        for number, text in enumerate(lines, start=1)
        if text.strip()
    ]


def read_events(path: str, default_org: str | None) -> list[Line]:
    if path == "-":
        return _read(sys.stdin, "stdin", default_org)
    try:
        with open(path, encoding="utf-8-sig") as stream:  # a BOM is not part of line 1
            return _read(stream, path, default_org)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read(stream: IO[str], name: str, default_org: str | None) -> list[Line]:
    try:
        return parse_lines(stream, default_org)
    except UnicodeDecodeError:
        raise InputError(f"{name}: not UTF-8 text") from None


# -- batches ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    org: str
    lines: list[Line]

    def body(self) -> bytes:
        return b'{"events":[' + b",".join(line.body for line in self.lines) + b"]}"

    def where(self) -> str:
        first, last = self.lines[0].number, self.lines[-1].number
        span = f"line {first}" if first == last else f"lines {first}-{last}"
        return f"the batch of {span} for {self.org}"


def batches(lines: list[Line], size: int, max_body: int = MAX_BODY) -> Iterator[Batch]:
    """Per organization, in file order: at most ``size`` events and ``max_body`` bytes each."""
    by_org: dict[str, list[Line]] = {}
    for line in lines:
        by_org.setdefault(line.org, []).append(line)
    for org, group in by_org.items():
        current: list[Line] = []
        length = ENVELOPE
        for line in group:
            if current and (len(current) == size or length + len(line.body) + 1 > max_body):
                yield Batch(org, current)
                current, length = [], ENVELOPE
            current.append(line)
            length += len(line.body) + 1
        if current:
            yield Batch(org, current)


# -- sending ------------------------------------------------------------------------------------


@dataclass
class Totals:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, error)
    batches: int = 0


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    retry_after: float | None


def server_message(body: bytes) -> str:
    """The error text of the service's JSON error body, else the body's start."""
    try:
        document = json.loads(body)
        message = document.get("message") or document["errors"][0]["detail"]
        return str(message).rstrip(".")
    except (ValueError, AttributeError, KeyError, IndexError, TypeError):
        return body.decode("utf-8", "replace").strip()[:200] or "(empty answer)"


def _retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), BACKOFF_MAX) if value else None
    except ValueError:  # an HTTP date: use our own backoff
        return None


class Sender:
    """POSTs batches to the events endpoint, retrying what is safe to retry."""

    def __init__(
        self,
        url: str,
        key: str,
        retries: int,
        timeout: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.retries = retries
        self.timeout = timeout
        self.sleep = sleep

    def endpoint(self, org: str) -> str:
        return f"{self.url}/api/v1/unstract/{quote(org, safe='')}/events/"

    def post(self, url: str, body: bytes) -> Answer:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Answer(response.status, response.read(), None)
        except urllib.error.HTTPError as exc:
            with exc:
                return Answer(exc.code, exc.read(), _retry_after(exc.headers.get("Retry-After")))

    def _attempt(self, batch: Batch, url: str, body: bytes) -> Answer | str:
        """The answer (a success, or a 429/5xx worth retrying), or why the request failed.
        Any other refusal stops the command: retrying would get the same answer."""
        try:
            answer = self.post(url, body)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, TimeoutError):
                return f"no answer from {url} within {self.timeout:g} s (--timeout)"
            return f"cannot reach {url}: {getattr(reason, 'strerror', None) or reason}"
        if not 200 <= answer.status < 300 and answer.status not in RETRY_STATUSES:
            raise CommandError(
                f"{url} refused {batch.where()}: {answer.status} {server_message(answer.body)}"
            )
        return answer

    def send(self, batch: Batch) -> dict[str, Any]:
        """The endpoint's answer to ``batch``: {accepted, duplicates, rejected}."""
        url, body = self.endpoint(batch.org), batch.body()
        failure = ""
        for attempt in range(self.retries + 1):
            result = self._attempt(batch, url, body)
            wait = None
            if isinstance(result, str):
                failure = result
            elif result.status < 300:
                return _document(url, result)
            else:
                failure = f"{url} answered {result.status}: {server_message(result.body)}"
                wait = result.retry_after
            if attempt == self.retries:
                break
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**attempt) if wait is None else wait
            log.warning(
                "push retry",
                extra={"fields": {"error": failure, "attempt": attempt + 1, "delay": delay}},
            )
            self.sleep(delay)
        tries = "1 attempt" if self.retries == 0 else f"{self.retries + 1} attempts"
        raise CommandError(f"{failure} (gave up after {tries}; --retries)")


def _document(url: str, answer: Answer) -> dict[str, Any]:
    try:
        document = json.loads(answer.body)
        if isinstance(document, dict) and isinstance(document.get("rejected"), list):
            return document
    except ValueError:
        pass
    raise CommandError(f"{url} answered {answer.status} without an events answer")


def _count(document: dict[str, Any], name: str) -> int:
    value = document.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def record(totals: Totals, batch: Batch, document: dict[str, Any]) -> None:
    """Add one batch's answer; a rejection's index becomes the line number of the file."""
    totals.batches += 1
    totals.sent += len(batch.lines)
    totals.accepted += _count(document, "accepted")
    totals.duplicates += _count(document, "duplicates")
    for entry in document["rejected"]:
        index = entry.get("index") if isinstance(entry, dict) else None
        error = str(entry.get("error", "rejected")) if isinstance(entry, dict) else str(entry)
        number = 0  # an index out of the batch: the error alone
        if isinstance(index, int) and 0 <= index < len(batch.lines):
            number = batch.lines[index].number
        totals.rejected.append((number, error))


def summary(totals: Totals, url: str) -> list[str]:
    lines = [
        f"sent {totals.sent} events in {totals.batches} "
        f"batch{'es' if totals.batches != 1 else ''} to {url}: {totals.accepted} accepted, "
        f"{totals.duplicates} duplicates (already there), {len(totals.rejected)} rejected"
    ]
    for number, error in totals.rejected[:SHOWN_REJECTIONS]:
        lines.append(f"  line {number}: {error}" if number else f"  {error}")
    hidden = len(totals.rejected) - SHOWN_REJECTIONS
    if hidden > 0:
        lines.append(f"  ... and {hidden} more rejected")
    return lines


def default_url(settings: Settings) -> str:
    """The service on this machine as `serve` would bind it (HOST and PORT)."""
    host = settings.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"--url: expected http(s)://HOST[:PORT], got {url!r}")
    return url.rstrip("/")


def run_push(
    settings: Settings, args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep
) -> int:
    url = check_url(args.url or default_url(settings))
    lines = read_events(args.file, args.org_id)
    if not lines:
        print(f"nothing to push: {args.file} holds no events")
        return 0
    sender = Sender(url, settings.push_key.get_secret_value(), args.retries, args.timeout, sleep)
    totals = Totals()
    bar = ProgressBar(len(lines), "push")
    try:
        for batch in batches(lines, args.batch_size):
            record(totals, batch, sender.send(batch))
            bar.advance(len(batch.lines), batch.org)
    except CommandError as exc:
        if not totals.sent:
            raise
        print("\n".join(summary(totals, url)))  # what the batches before it did
        raise CommandError(
            f"{exc} (the {totals.sent} events before it were sent; re-running the file is safe)"
        ) from None
    finally:
        bar.close()
    print("\n".join(summary(totals, url)))
    return 1 if totals.rejected else 0
