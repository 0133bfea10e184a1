"""A sink wrapper that survives its backend: retries, a circuit breaker and a durable spool.

Every pipeline wraps each of its sinks in a :class:`ResilientSink`:

- a failed call is retried (``RetryPolicy``) and, if it still fails, the breaker opens;
- while the breaker is open, or while older batches still wait in the spool, batches are appended
  to the spool instead (order is kept: nothing overtakes what is spooled), and the backend is not
  called at all but for one probe per cool-down;
- when a probe succeeds the spool is replayed in order, oldest first, each batch once (cursor).

Abandoning a call at its deadline could half-deliver it, and a retry would then write it twice.
Where that can happen the wrapper does not abandon: the SDK sinks run their calls in worker
threads, which anyio never abandons (a late call completes and counts as delivered). What the
deadline cuts is waiting on anything else (a hung injected fault, a hung open).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from workers.breaker import CircuitBreaker, RetryPolicy
from workers.counters import Counters
from workers.flush import FlushRequest
from workers.options import EXIT_DRAIN_ENV
from workers.records import Record
from workers.sinks.base import Sink
from workers.spool import Spool, SpoolError

logger = logging.getLogger("tracker.resilient")


#: How long batches and flushes wait for a backend that is still opening (a login takes a
#: second or two; past this the backend is treated as down and its batches spooled).
OPEN_WAIT_SECONDS = 5.0


class RetriesFailed(RuntimeError):
    """Every attempt failed, the last one otherwise than the first (both are in the message)."""


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class SpoolPendingError(RuntimeError):
    """A flush returned while events wait in the spool, or were lost, or it failed."""


class ResilientSink(Sink):
    """Delivers to ``inner`` with retries; spools what it cannot deliver and replays it later."""

    def __init__(
        self,
        inner: Sink,
        spool: Callable[[], Spool] | None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        """Wrap ``inner``; ``spool`` opens the spool (in a worker thread, at open).

        Without a spool, batches that still fail after their retries are lost: counted in
        ``lost`` and reported by the next flush.
        """
        self.inner = inner
        self.name = inner.name
        self.needs_complexity = inner.needs_complexity
        self.needs_pages = inner.needs_pages
        self.needs_sentences = inner.needs_sentences
        self._spool_factory = spool
        self.spool: Spool | None = None
        self._spool_opening = threading.Lock()  # the open's thread, or the exit's spooling
        #: Why the spool could not be opened (it is not tried again).
        self.spool_error: str | None = None
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.opened = False
        self.spooled = 0
        self.replayed = 0
        self.lost = 0
        self._lost_unreported = 0
        self.last_error: str | None = None
        self._warned_trip = -1
        #: Set when the exit deadline passed: no more backend writes, everything is spooled.
        self.force_spool = False
        #: The last flush's own call failed (a finish then stored nothing: no archive).
        self.flush_failed = False
        #: Called (on the loop) once the backend opened, before anything is written to it.
        self.on_opened: Callable[[], None] | None = None
        #: ``time.monotonic()`` when the open began, while it has not returned.
        self.opening_since: float | None = None
        self._replay_lock: anyio.Lock | None = None
        self._open_done: anyio.Event | None = None
        self._open_slow = False  # the first open outlasted OPEN_WAIT_SECONDS

    def fresh(self) -> ResilientSink:
        """A twin around a fresh inner sink, with its own spool (a forked child's)."""
        return ResilientSink(self.inner.fresh(), self._spool_factory, self.retry)

    @property
    def counters(self) -> Counters:
        """The wrapped sink's seed counters."""
        return self.inner.counters

    @property  # type: ignore[override]
    def archive_path(self) -> Path | None:
        """The wrapped sink's archive."""
        return self.inner.archive_path

    @property
    def in_spool(self) -> int:
        """Events waiting in the spool right now."""
        return self.spool.pending_events if self.spool is not None else 0

    def _backlogged(self) -> bool:
        return self.force_spool or not self.opened or self.breaker.is_open or self.in_spool > 0

    # -- the Sink protocol -------------------------------------------------------------------

    def opening(self) -> None:
        """The open is on its way (started in the background): a write that comes before it
        began waits for it as for an open in progress, rather than finding no session."""
        if not self.opened and self.opening_since is None:
            self.opening_since = time.monotonic()

    async def open(self) -> None:
        """Open the backend; if it is down, start spooling and retry at each cool-down.

        Batches may arrive while this runs (the pipeline does not wait for it: an SDK that
        never answers must not hold anything back); until the backend is open they are spooled.
        """
        self.inner.table_rows = self.table_rows
        self.inner.session_keys = self.session_keys
        self.opening_since = time.monotonic()  # from here on, nothing else may open it
        try:
            await anyio.to_thread.run_sync(self._open_spool)
            await self._call(self.inner.open)
        except Exception as exc:
            if self.spool is None:
                raise
            self._failed(exc, "open")
            return
        finally:
            self.opening_since = None
            self._opened_event().set()
        self._now_open()
        self.breaker.success()
        await self._replay()  # what an earlier run left behind comes first

    async def write(self, records: list[Record]) -> None:
        """Deliver ``records``, or spool them (in order) when the backend cannot take them."""
        await self._wait_for_open()
        if self._backlogged():
            if self.spool is None and self._spool_factory is not None:
                await self._open_spool_or_note()
            if self.spool is not None:
                await self._spool(records)
                await self.maintain()
                return
            if self.force_spool or self.opening_since is not None:
                self.last_error = self.last_error or "the backend session is still opening"
                self._lose(records)
                return
            if not self.breaker.allows_call():  # no spool: a dead backend is not hammered
                self._lose(records)
                return
        try:
            await self._call(self.inner.write, records)
        except Exception as exc:
            self._failed(exc, "write")
            if self.spool is None:
                self._lose(records)
            else:
                await self._spool(records)
            return
        self.breaker.success()

    async def flush(self, request: FlushRequest) -> None:
        """Replay the spool first (one probe even during a cool-down), then flush the backend.

        Raises (so the flush result lists it) when events are still spooled or were lost.
        """
        await self._wait_for_open()
        if self._backlogged():
            await self.maintain(probe=True)
        problems: list[str] = []
        self.flush_failed = False
        # A backend that is down is not asked to flush, unless this is the last chance.
        if self.opened and (not self.breaker.is_open or request.finish):
            try:
                await self._call(self.inner.flush, request)
            except Exception as exc:
                self._failed(exc, "flush")
                problems.append(f"the flush failed: {type(exc).__name__}: {exc}")
                self.flush_failed = True
        if self._lost_unreported:
            if self.spool_error is not None:
                keeper = f"the spool could not be opened ({self.spool_error})"
            elif self._spool_factory is not None:
                keeper = "the spool could not keep them"
            else:
                keeper = "there is no spool to keep them (spool=False)"
            problems.append(
                f"{self._lost_unreported} events were lost: {self._why_undelivered()} and {keeper}"
            )
            self._lost_unreported = 0
        if self.in_spool:
            why = self._why_undelivered()
            if self.opening_since is not None:
                opening = time.monotonic() - self.opening_since
                # At exit the deadline is the cause: a starved host opens an offline SDK slowly.
                why = (
                    f"{why}: its session was still opening ({opening:.0f}s; a server may be "
                    "unreachable, or the SDK slow to start)"
                    if self.force_spool and self.last_error is None
                    else f"the backend session has not opened after {opening:.0f}s (the "
                    "server may be unreachable)"
                )
            problems.append(
                f"{self.in_spool} events wait in the spool at {self.spool.directory} because "  # type: ignore[union-attr]
                f"{why}; they are replayed in order when it answers again, or by the next "
                "handler started with the same spool"
            )
        if request.finish and self.spool is not None:
            self.spool.close()
        if problems:
            raise SpoolPendingError("; ".join(problems))

    def _why_undelivered(self) -> str:
        """Why events did not reach the backend: its last error, or the exit drain's deadline
        (a healthy but slow backend has no error to name)."""
        if self.last_error is not None:
            return f"the backend failed ({self.last_error})"
        if self.force_spool:
            return (
                f"the exit drain's deadline ({EXIT_DRAIN_ENV}) passed before the backend had them"
            )
        return "the backend did not take them (no error was reported)"

    def _opened_event(self) -> anyio.Event:
        """Set once the first open returned (created on the loop that sets and waits on it)."""
        if self._open_done is None:
            self._open_done = anyio.Event()
        return self._open_done

    async def _wait_for_open(self) -> None:
        """Give a login in progress up to OPEN_WAIT_SECONDS, once; after that, spool at once.

        A normal login takes a second or two, and what arrives meanwhile waits in the queue. A
        backend that does not answer gets no more waits: its batches go to the spool (or are
        lost without one, counted) and flushes say that it is still opening.
        """
        if self.opening_since is None or self._open_slow or self.force_spool:
            return
        with anyio.move_on_after(OPEN_WAIT_SECONDS):
            await self._opened_event().wait()
        if self.opening_since is not None and not self.force_spool:
            self._open_slow = True
            logger.warning(
                "tracker: the %s backend has not opened after %.0fs; %s until it does",
                self.name,
                OPEN_WAIT_SECONDS,
                "spooling" if self.spool is not None else "dropping events (no spool)",
            )

    def stop_waiting(self) -> None:
        """On the loop: the exit deadline passed, a write waiting for the open goes on now."""
        self._opened_event().set()

    def spool_now(self, records: list[Record]) -> None:
        """The exit deadline passed: store ``records`` in the spool at once, or count them lost.

        The spool may not be open yet (a deadline that passed while the worker was starting):
        it is opened here, on the spot.
        """
        try:
            spool = self._open_spool()
        except Exception:  # kept in spool_error: the flush names it as the cause
            spool = None
        if spool is None:
            self._lose(records)
            return
        try:
            spool.append([record.to_wire() for record in records])
        except SpoolError as exc:
            self.last_error = str(exc)
            self._lose(records)
            return
        self.spooled += len(records)

    async def rotate(self, label: str) -> None:
        """Write the session tables so far, unless batches wait in the spool (they come first:
        the next rotation or flush writes them with the rest)."""
        if self.opened and not self._backlogged():
            try:
                await self._once(self.inner.rotate, label)
            except Exception as exc:
                self._failed(exc, "rotation")
                raise

    async def log_health(self, values: dict[str, float], step: int) -> None:
        """Forward a health sample, unless the backend is down (it would only be spooled)."""
        if self.opened and not self.breaker.is_open:
            values = {**values, "in_spool": float(self.in_spool)}
            await self._once(self.inner.log_health, values, step)

    async def reset_counters(self) -> None:
        """Forward a queued counter reset."""
        if self.opened:
            await self.inner.reset_counters()

    async def close(self) -> None:
        """Release the wrapped sink and the spool directory."""
        try:
            if self.opened:
                await self.inner.close()
        finally:
            if self.spool is not None:
                self.spool.close()

    async def maintain(self, probe: bool = False) -> None:
        """If the breaker allows it (or ``probe``), reopen the backend and replay the spool."""
        if self.opening_since is not None:  # the first open is still trying: never a second
            return
        if self.force_spool or not (probe or self.breaker.allows_call()):
            return
        if not self.opened:
            try:
                await self._once(self.inner.open)
            except Exception as exc:
                self._failed(exc, "open")
                return
            self._now_open()
        await self._replay(probe)

    # -- internals ---------------------------------------------------------------------------

    def _now_open(self) -> None:
        self.opened = True
        if self.on_opened is not None:
            try:
                self.on_opened()
            except Exception:  # a report that could not go out must not fail the open
                logger.debug("tracker: the open report failed", exc_info=True)

    def _open_spool(self) -> Spool | None:
        """The spool, opened once by whichever needs it first; None without one.

        Blocking (SQLite): called from a thread, or at exit on the loop. The first failure
        raises and is kept in ``spool_error``; the spool is not tried again.
        """
        if self.spool is None and self._spool_factory is not None and self.spool_error is None:
            with self._spool_opening:
                if self.spool is None and self.spool_error is None:
                    try:
                        self.spool = self._spool_factory()
                    except Exception as exc:
                        self.spool_error = f"{type(exc).__name__}: {exc}"
                        raise
        return self.spool

    async def _open_spool_or_note(self) -> None:
        """Open the spool for a write that came before the open did (a failure is kept in
        ``spool_error``, the cause its events are lost with)."""
        with contextlib.suppress(Exception):
            await anyio.to_thread.run_sync(self._open_spool)

    async def _replay(self, probe: bool = False) -> None:
        if self._replay_lock is None:
            self._replay_lock = anyio.Lock()
        async with self._replay_lock:  # open and a write's maintain() may both get here
            await self._replay_locked(probe)

    async def _replay_locked(self, probe: bool) -> None:
        spool = self.spool
        while spool is not None and spool.pending_batches:
            if self.force_spool:  # past the exit's deadline the backend is not called again
                return
            if not (probe or self.breaker.allows_call()):
                return
            probe = False  # one forced probe at most
            item = await anyio.to_thread.run_sync(spool.peek)
            if item is None:
                spool.pending_batches = spool.pending_events = 0
                return
            position, batch = item
            records = [Record.from_wire(wire) for wire in batch]
            try:
                await self._once(self.inner.write, records)
            except Exception as exc:
                self._failed(exc, "replay")
                return
            await anyio.to_thread.run_sync(spool.commit, position, len(batch))
            self.replayed += len(batch)
            self.breaker.success()
            if not spool.pending_batches:
                logger.warning(
                    "tracker: the %s backend is back; %d spooled events replayed",
                    self.name,
                    self.replayed,
                )

    async def _call(self, step: Callable[..., Awaitable[None]], *args: Any) -> None:
        """``step(*args)`` with the retry policy: backoff with jitter between attempts.

        When the last attempt fails otherwise than the first, both causes are told: a retry
        often fails only because the first attempt half-happened.
        """
        retry = self.retry
        first: Exception | None = None
        for attempt in range(1, retry.attempts + 1):
            try:
                await self._once(step, *args)
                return
            except Exception as exc:
                first = first or exc
                if attempt == retry.attempts:
                    if _cause(exc) == _cause(first):
                        raise
                    raise RetriesFailed(
                        f"{_cause(exc)} (after {attempt} attempts; the first failed with "
                        f"{_cause(first)})"
                    ) from exc
            await anyio.sleep(retry.pause(attempt))

    async def _once(self, step: Callable[..., Awaitable[None]], *args: Any) -> None:
        retry = self.retry
        deadline = {
            self.inner.open: retry.open_deadline,
            self.inner.flush: retry.flush_deadline,
            self.inner.rotate: retry.flush_deadline,
        }.get(step, retry.deadline)
        # move_on_after, not fail_after: a TimeoutError the backend raises itself is its own
        # cause, not a missed deadline.
        with anyio.move_on_after(deadline) as scope:
            await step(*args)
        if scope.cancelled_caught:
            raise TimeoutError(f"no answer within {deadline:g}s")

    async def _spool(self, records: list[Record]) -> None:
        batch = [record.to_wire() for record in records]
        # append fsyncs: off the runtime loop, which every pipeline of the process shares.
        try:
            await anyio.to_thread.run_sync(self.spool.append, batch)  # type: ignore[union-attr]
        except SpoolError as exc:  # a full disk: these are lost, and said to be
            self.last_error = str(exc)
            self._lose(records)
            raise
        self.spooled += len(records)

    def _lose(self, records: list[Record]) -> None:
        self.lost += len(records)
        self._lost_unreported += len(records)

    def _failed(self, exc: BaseException, what: str) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.breaker.failure()
        # One warning per outage (breaker trip), never one per batch or event.
        if self.breaker.trips != self._warned_trip:
            self._warned_trip = self.breaker.trips
            where = (
                f"spooling to {self.spool.directory} until it answers"
                if self.spool is not None
                else "dropping what it refuses (no spool)"
            )
            logger.warning(
                "tracker: the %s backend failed during %s (%s); %s",
                self.name,
                what,
                self.last_error,
                where,
            )
