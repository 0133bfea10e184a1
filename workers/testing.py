"""Test doubles for the tracker's own tests and for users' tests: faults around a real sink.

:class:`FaultySink` wraps a real sink (the SDK untouched) and injects slow, hung or failing
calls. In the application's process use it with :func:`tracker.testing.wrap_sinks`; in the
tracker worker, describe it with :func:`faulty`, which the worker builds like any sink.
"""

from __future__ import annotations

import math
import time
from typing import Any

import anyio

from workers.counters import Counters
from workers.flush import FlushRequest
from workers.records import Record
from workers.sinks.base import Sink
from workers.sinks.spec import SinkSpec


class DelegatingSink(Sink):
    """A sink that hands every call to ``inner``: the base of wrappers that add something.

    ``inner`` may be a :class:`SinkSpec`: the wrapper is then built where the sink runs (in the
    tracker worker) and builds the real sink there.
    """

    def __init__(self, inner: Sink | SinkSpec) -> None:
        """Wrap ``inner`` (built first when it is a spec)."""
        if isinstance(inner, SinkSpec):
            inner = inner.build()
        self.inner = inner
        self.name = inner.name
        self.needs_complexity = inner.needs_complexity
        self.needs_pages = inner.needs_pages
        self.needs_sentences = inner.needs_sentences

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def counters(self) -> Counters:
        """The real sink's counters."""
        return self.inner.counters

    @property
    def archive_path(self) -> Any:  # type: ignore[override]
        """The real sink's archive."""
        return self.inner.archive_path

    @archive_path.setter
    def archive_path(self, value: Any) -> None:
        self.inner.archive_path = value

    async def open(self) -> None:
        """Open the real sink (with the row limit the pipeline gave this wrapper)."""
        self.inner.table_rows = self.table_rows
        self.inner.session_keys = self.session_keys
        await self.inner.open()

    async def write(self, records: list[Record]) -> None:
        """Write to the real sink."""
        await self.inner.write(records)

    async def flush(self, request: FlushRequest) -> None:
        """Flush the real sink."""
        await self.inner.flush(request)

    async def rotate(self, label: str) -> None:
        """Rotate the real sink's tables."""
        await self.inner.rotate(label)

    async def log_health(self, values: dict[str, float], step: int) -> None:
        """The real sink's health scalars."""
        await self.inner.log_health(values, step)

    async def reset_counters(self) -> None:
        """Reset the real sink's counters."""
        await self.inner.reset_counters()

    async def close(self) -> None:
        """Close the real sink."""
        await self.inner.close()


class FaultySink(DelegatingSink):
    """Delegates to ``inner``, with faults injected before each call reaches it.

    ``delay``: seconds added to every write; ``fail_every``: every n-th write raises; ``down``:
    every call raises (an outage; flip it at any time); ``hang``: every write hangs until
    cancelled; ``stall``: seconds ``open`` blocks the whole tracker worker (``time.sleep``, not
    a cancellable wait), as a worker too slow to start or stuck in a call that holds its loop;
    ``open_delay``: seconds ``open`` waits (the loop runs on), as an SDK slow to log in.
    ``calls`` counts the calls that reached the wrapper, ``calls_while_down`` those made during
    an outage (a circuit breaker keeps it small). The fault comes before the real
    call, so a failed call delivered nothing: what the archive holds is what got through.
    """

    def __init__(
        self,
        inner: Sink | SinkSpec,
        *,
        delay: float = 0.0,
        fail_every: int = 0,
        down: bool = False,
        hang: bool = False,
        stall: float = 0.0,
        open_delay: float = 0.0,
    ) -> None:
        """Wrap ``inner`` with the faults."""
        super().__init__(inner)
        self.stall = stall
        self.open_delay = open_delay
        self.delay = delay
        self.fail_every = fail_every
        self.down = down
        self.hang = hang
        self.writes = 0
        self.calls = 0
        self.calls_while_down = 0

    def fresh(self) -> FaultySink:
        """A twin around a fresh inner sink (a forked child's)."""
        faults = {"delay": self.delay, "fail_every": self.fail_every, "down": self.down}
        faults |= {"hang": self.hang, "stall": self.stall, "open_delay": self.open_delay}
        return FaultySink(self.inner.fresh(), **faults)

    def _fault(self, what: str) -> None:
        self.calls += 1
        if self.down:
            self.calls_while_down += 1
            raise ConnectionError(f"injected outage: {what} refused")

    async def open(self) -> None:
        """Fault (or stall the worker), then open the real sink."""
        self._fault("open")
        if self.stall:
            time.sleep(self.stall)  # blocks the worker's loop on purpose: nothing else runs
        if self.open_delay:
            await anyio.sleep(self.open_delay)
        await super().open()

    async def write(self, records: list[Record]) -> None:
        """Fault (or wait), then write to the real sink."""
        self._fault("write")
        self.writes += 1
        if self.hang:
            await anyio.sleep(math.inf)
        if self.delay:
            await anyio.sleep(self.delay)
        if self.fail_every and self.writes % self.fail_every == 0:
            raise ConnectionError(f"injected fault on write {self.writes}")
        await self.inner.write(records)

    async def flush(self, request: FlushRequest) -> None:
        """Fault, then flush the real sink."""
        self._fault("flush")
        await self.inner.flush(request)

    async def rotate(self, label: str) -> None:
        """Fault, then rotate the real sink's tables."""
        self._fault("rotate")
        await self.inner.rotate(label)

    async def log_health(self, values: dict[str, float], step: int) -> None:
        """Fault, then the real sink's health scalars."""
        self._fault("health")
        await self.inner.log_health(values, step)


def faulty(spec: SinkSpec, **faults: Any) -> SinkSpec:
    """``spec`` wrapped in a :class:`FaultySink` with ``faults``, built in the tracker worker."""
    return SinkSpec(
        "workers.testing.FaultySink",
        {"inner": spec, **faults},
        spec.name,
        spec.needs_complexity,
        spec.needs_pages,
        spec.in_process,
        spec.custom_metrics,
    )
