"""Retry, deadline and breaker timings, with the values the README states, on a controlled clock.

README ("A failing backend"): each call is tried 3 times in all, with exponential backoff and
full jitter between tries; a per-call deadline of 30 s; the breaker's cool-down is 1 s, doubling
to 10 s while probes fail.
"""

from __future__ import annotations

import itertools
import random

import anyio
import pytest

from workers.breaker import CircuitBreaker, RetryPolicy
from workers.resilient import OPEN_WAIT_SECONDS, ResilientSink, RetriesFailed
from workers.sinks.jsonl import JsonLinesSink


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_defaults_are_the_documented_ones() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.deadline) == (3, 30.0)
    breaker = CircuitBreaker()
    assert (breaker.threshold, breaker.base_cooldown, breaker.max_cooldown) == (1, 1.0, 10.0)
    assert OPEN_WAIT_SECONDS == 5.0


def test_backoff_is_full_jitter_below_a_doubling_cap() -> None:
    policy = RetryPolicy()
    highest = random.Random()
    highest.uniform = lambda low, high: high  # type: ignore[method-assign]
    lowest = random.Random()
    lowest.uniform = lambda low, high: low  # type: ignore[method-assign]
    assert [policy.pause(n, highest) for n in (1, 2, 3, 6, 10)] == [0.1, 0.2, 0.4, 2.0, 2.0]
    assert all(policy.pause(n, lowest) == 0.0 for n in range(1, 8))
    seeded = random.Random(7)
    pauses = [policy.pause(2, seeded) for _ in range(2000)]
    assert 0.0 <= min(pauses) < 0.02 and 0.18 < max(pauses) <= 0.2  # spread over [0, 0.2]


def test_breaker_cooldown_doubles_to_its_cap_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock=clock)
    assert breaker.allows_call() and not breaker.is_open
    breaker.failure()  # one failed (already retried) call opens it
    assert breaker.is_open and not breaker.allows_call()
    expected = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    for cooldown in expected:
        assert breaker.cooldown == cooldown
        clock.now += cooldown - 0.001
        assert not breaker.allows_call(), cooldown
        clock.now += 0.001
        assert breaker.allows_call(), cooldown  # one probe
        breaker.failure()  # the probe failed: a longer cool-down from now
    breaker.success()
    assert not breaker.is_open and breaker.cooldown == 1.0 and breaker.allows_call()


async def test_three_tries_in_all_then_both_causes(tmp_path: anyio.Path) -> None:
    calls: list[int] = []

    class Flaky(JsonLinesSink):
        async def write(self, records: list[object]) -> None:  # type: ignore[override]
            calls.append(1)
            raise (ConnectionError if len(calls) == 1 else TimeoutError)(f"try {len(calls)}")

    sink = ResilientSink(Flaky(str(tmp_path)), None, RetryPolicy(base=0.001))
    with pytest.raises(RetriesFailed) as failed:
        await sink._call(sink.inner.write, [])
    assert len(calls) == 3
    assert "ConnectionError: try 1" in str(failed.value) and "TimeoutError: try 3" in str(
        failed.value
    )


async def test_a_call_past_its_deadline_is_cut_and_retried(tmp_path: anyio.Path) -> None:
    started: list[float] = []

    class Hung(JsonLinesSink):
        async def write(self, records: list[object]) -> None:  # type: ignore[override]
            started.append(anyio.current_time())
            await anyio.sleep(3600)

    policy = RetryPolicy(base=0.001, deadline=0.2)
    sink = ResilientSink(Hung(str(tmp_path)), None, policy)
    with pytest.raises(TimeoutError, match=r"no answer within 0\.2s"):
        await sink._call(sink.inner.write, [])
    assert len(started) == 3
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert all(0.19 < gap < 1.0 for gap in gaps), gaps  # each try was cut at its deadline
