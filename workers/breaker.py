"""Retry with exponential backoff and jitter, and a circuit breaker for a dead backend.

Shaped after the usual client-side patterns (AWS's "exponential backoff and jitter", the circuit
breaker of Nygard's *Release It!*): a failed call is retried a few times with growing, randomized
pauses; after a run of failures the breaker opens and callers stop calling the backend at all
until a cool-down has passed, then one probe call decides whether it closes again. The cool-down
grows while probes keep failing, so a long outage costs a probe every ``max_cooldown`` seconds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How one backend call is retried.

    ``attempts`` calls at most; pause before retry *n* is uniform in [0, min(cap, base · 2ⁿ)]
    ("full jitter"); each call is abandoned after ``deadline`` seconds where that cannot
    half-deliver it (see :class:`workers.resilient.ResilientSink`).
    """

    attempts: int = 3
    base: float = 0.05
    cap: float = 2.0
    deadline: float = 30.0
    #: Opening a session (a ClearML Task, a Comet experiment) and flushing it
    #: (tables, assets, with finish the archive) take longer than a batch.
    open_deadline: float = 60.0
    flush_deadline: float = 600.0

    def pause(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based); ``rng`` for tests."""
        return (rng or random).uniform(0.0, min(self.cap, self.base * 2**retry))


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive failures → one probe after the cool-down."""

    def __init__(
        self,
        threshold: int = 1,
        cooldown: float = 1.0,
        max_cooldown: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``threshold`` failed (already retried) calls open it; cool-downs double up to a cap.

        ``clock``: seconds, monotonic (a test passes one it controls).
        """
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._now = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.cooldown = cooldown
        self.trips = 0

    @property
    def is_open(self) -> bool:
        """True while calls should not reach the backend (apart from probes)."""
        return self.opened_at is not None

    def allows_call(self) -> bool:
        """Whether a call (or, while open, a probe) may go to the backend now."""
        opened = self.opened_at
        return opened is None or self._now() - opened >= self.cooldown

    def success(self) -> None:
        """A call went through: close, forget the failures."""
        self.failures = 0
        self.opened_at = None
        self.cooldown = self.base_cooldown

    def failure(self) -> None:
        """A call failed after its retries: count it; open, or stay open for longer."""
        self.failures += 1
        if self.opened_at is not None:  # a failed probe
            self.cooldown = min(self.max_cooldown, self.cooldown * 2)
            self.opened_at = self._now()
        elif self.failures >= self.threshold:
            self.opened_at = self._now()
            self.trips += 1
