from __future__ import annotations

from tests.harness import Harness, utc


def test_tick_matches_oracle_on_a_small_history(h: Harness) -> None:
    a, b = h.org(), h.org()
    for org in (a, b):
        for hour in range(5):
            created = utc(2026, 3, 14, hour, 15)
            execution = org.execution(created, kind="api" if hour % 2 else "etl")
            done = org.file(execution, created)
            failed = org.file(execution, created, status="ERROR")
            org.pages(done, created, 7)
            org.pages(failed, created, 3)
            org.usage(created, reason="challenge", cost=0.02, tokens=900)
            org.usage(created, reason="summarize", cost=0.5, tokens=40000)
            org.usage(created, usage_type="embedding", reason="")
    h.aggregator.tick()
    h.assert_matches_oracle()
