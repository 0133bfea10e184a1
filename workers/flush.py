"""Flush barriers: what a caller asks of a flush, and what it gets back."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.event import Kind

logger = logging.getLogger("tracker.flush")


@dataclass
class FlushRequest:
    """A barrier through the queue: sinks write their session tables when it comes out.

    ``options`` carries backend-specific flush parameters (Comet's reset arguments, …).
    """

    name: str | None = None
    langchain_asset: Any = None
    finish: bool = False
    reset: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    done: Future[FlushResult] = field(default_factory=Future)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the caller's future (it stays with the caller)."""
        state = dict(self.__dict__)
        del state["done"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle with a fresh future."""
        self.__dict__.update(state, done=Future())


@dataclass
class FlushResult:
    """What a flush achieved by the time it returned.

    ``written``: events every backend stored since the previous flush (a finish whose archive
    could not be written stores nothing); ``spooled``: events that wait in a spool instead (the
    most of any one backend); ``lost``: events a backend refused with no spool to keep them;
    ``dropped``: events refused by the full queue; ``pending``: events still on their way at
    the deadline (0 unless ``timed_out``); ``seconds``: how long the caller waited;
    ``errors``: what went wrong, one line each, naming the backend and the cause;
    ``streamed``: with a broker transport, events added to the stream (the workers then write
    the archives: ``written`` stays 0 here);
    ``skipped``: generations that went without an enrichment since the previous flush, per
    enrichment (``"visualizations"``, ``"complexity"``), because they came later than the
    ``enrichment_budget``.
    """

    written: int = 0
    spooled: int = 0
    lost: int = 0
    dropped: int = 0
    pending: int = 0
    timed_out: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    archives: list[Path] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    streamed: int = 0

    @property
    def ok(self) -> bool:
        """True when everything queued before the flush reached the backends without error."""
        return not self.timed_out and not self.errors and self.pending == 0


def warn_if_blocking_a_loop() -> None:
    """A sync flush inside a running event loop blocks that loop: say so (it is allowed)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    logger.warning(
        "tracker: flush_tracker() was called inside a running event loop, which it blocks until "
        "the flush is done; use 'await handler.aflush_tracker(...)' there"
    )


def stalled(stats: dict[str, Any]) -> list[str]:
    """Why a flush may not have finished in time, from ``stats()``: one line per backend."""
    errors = [
        f"{name}: the backend session has not opened yet (the server may be unreachable); "
        "its events wait in the spool (counted lost with spool=False)"
        for name in stats.get("opening", [])
    ]
    errors += [
        f"{name}: the backend is down (circuit breaker open); events wait in the spool"
        for name in stats.get("backend_down", [])
        if name not in stats.get("opening", [])
    ]
    return errors


class FlushWaiting:
    """``flush`` (blocking) and ``aflush`` (awaitable) over a pipeline's ``submit``: one
    implementation for the worker's pipeline and for the application's side of it."""

    #: (processed, dropped) as of the last flush: what a timed-out result counts from.
    _since_flush: tuple[int, int]
    #: The pipeline's queue (an :class:`~workers.queue.EventQueue`), and whether it finished.
    queue: Any
    closed: bool

    def wake(self) -> None:
        """Ask the consumer to take a batch now (the pipeline's own)."""
        raise NotImplementedError

    def submit(self, request: FlushRequest) -> None:
        """Put a flush barrier in the queue (answered at once if the pipeline finished)."""
        if self.closed:
            request.done.set_result(FlushResult(errors=["the tracker was already finished"]))
            return
        self.queue.put_control(Kind.FLUSH, (request,))
        self.wake()

    def reset_counters(self) -> None:
        """Queue a ``reset_callback_meta``: it applies after the events already queued."""
        self.queue.put_control(Kind.RESET, ())
        self.wake()

    def stats(self) -> dict[str, Any]:
        """The pipeline's counters (the pipeline's own)."""
        raise NotImplementedError

    def drain_at_exit(self, timeout: float) -> None:
        """Interpreter exit: deliver what is queued and finish, within ``timeout`` seconds."""
        if self.closed:
            return
        result = self.flush(FlushRequest(finish=True), timeout)
        if result.timed_out:
            logger.warning(
                "tracker: %d events were not delivered to %s when the exit drain timed out "
                "after %.1fs",
                result.pending,
                self._destination(),
                timeout,
            )

    def _destination(self) -> str:
        """Where this pipeline delivers, as the exit drain's warning names it."""
        return "the sinks"

    def _refuse_blocking_flush(self) -> None:
        """Raise where a blocking flush would wait for itself (nowhere, by default)."""

    def flush(self, request: FlushRequest, timeout: float | None) -> FlushResult:
        """Block until ``request`` came out of every sink, or ``timeout`` seconds passed."""
        warn_if_blocking_a_loop()
        self._refuse_blocking_flush()
        started = time.monotonic()
        self.submit(request)
        try:
            result = request.done.result(timeout)
        except concurrent.futures.TimeoutError:
            result = self._timed_out()
        result.seconds = time.monotonic() - started
        return result

    async def aflush(self, request: FlushRequest, timeout: float | None) -> FlushResult:
        """Await ``request`` without blocking the caller's loop; same result as :meth:`flush`."""
        started = time.monotonic()
        self.submit(request)
        waiter = asyncio.wrap_future(request.done)
        try:
            # shield: cancelling or timing out the caller must not cancel the flush itself.
            result = await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            result = self._timed_out()
        result.seconds = time.monotonic() - started
        return result

    def _timed_out(self) -> FlushResult:
        stats = self.stats()
        delivered, dropped = self._since_flush
        return FlushResult(
            written=stats["processed"] - delivered,
            dropped=stats["dropped"] - dropped,
            pending=stats["pending"],
            timed_out=True,
            errors=stalled(stats),
        )
