"""Frames on their way into the tracker worker's pipe, written in order by a thread of their own.

Why not write from the forwarding thread: a pipe holds 64 KB, a few hundred events. Whenever the
worker fell behind, the forwarding thread waited in the pipe write, and the backlog waited in the
handlers' queues as the live objects the callbacks recorded, which the application's garbage
collector walks at every collection (issue 15: 1,500 events waited there at each full collection
of the LangGraph benchmark, 450 with this outbox). Here a backlog waits as the bytes it was
encoded to, which the collector never looks at, up to a byte limit; past the limit the sender
waits, as it did on the pipe.

Holding while busy: a batch of events may also wait here while the application's process is
busy (:mod:`workers.busy`), until ``hold_seconds`` after the busy spell began (or its oldest
event was recorded, if earlier), and up to ``hold_bytes``. The worker then does its work between
the application's bursts instead of during them: on the issue-15 benchmark (50 concurrent
LangGraph sessions on two cores, bursts of ~2 s and 5.6 MB), rounds with the worker working
alongside took ~10% longer than with it stopped (interleaved probes, 10 processes each: 124.6
against 111.6 ms; holding the whole burst, 116.7). A spell that outlasts the hold is a sustained
load, not a burst: no quiet moment is coming for the worker to catch up in, so from then on until
the process is idle again, frames go at once. (Held one by one, each for a whole hold, the
worker's backlog was always ``hold_seconds`` long, and the flush after serving, issue 12, took
that much longer.)
Before a batch gets here it may already have waited, not encoded yet, in its handler's queue
(:meth:`workers.forwarding.ForwardingPipeline.pump`), under the same hold. Any other frame (a
flush, a reset, a handler opening) sends everything queued before it at once, so a flush never
waits for a hold.

Each frame belongs to one worker (a generation): when the link starts a new worker, what still
waited for the old one is dropped, since the link resends every frame of the open sessions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO

from workers.busy import BusyMeter

logger = logging.getLogger("tracker.link")


#: While holding, how often the writer looks at the process's load again.
HOLD_CHECK_SECONDS = 0.02


class Outbox:
    """A bounded FIFO of frames and the thread that writes them to the current worker's pipe."""

    def __init__(
        self,
        limit_bytes: int,
        on_broken: Callable[[], None],
        *,
        hold_seconds: float = 0.0,
        hold_bytes: int | None = None,
        meter: BusyMeter | None = None,
    ) -> None:
        """Hold up to ``limit_bytes`` of frames; ``on_broken`` is called (from the writer thread)
        when the current pipe fails, so the link can start a new worker.

        ``hold_seconds``: how long after the start of the busy spell (or its ``hold_since``, if
        earlier) a frame may wait while the process is busy (0: never), as long as such frames
        add up to less than ``hold_bytes`` (default: half of ``limit_bytes``).
        """
        self.limit_bytes = limit_bytes
        self.hold_seconds = hold_seconds
        self.hold_bytes = limit_bytes // 2 if hold_bytes is None else hold_bytes
        self._meter = meter if meter is not None else BusyMeter()
        self._on_broken = on_broken
        self._ready = threading.Condition(threading.Lock())
        self._frames: deque[tuple[bytes, float | None]] = deque()  # (frame, held since)
        self._bytes = 0
        self._releases = 0  # frames queued that may not wait: everything before them goes
        self._draining = False  # finish(): nothing waits any more
        self._stream: IO[bytes] | None = None
        self._generation = 0
        self._writing = False  # a frame was taken and is being written
        self._thread: threading.Thread | None = None  # None once it ended (after a finish)

    def open(self, stream: IO[bytes]) -> None:
        """Write to ``stream`` from now on (what still waited for the previous one is dropped)."""
        with self._ready:
            self._generation += 1
            self._stream = stream
            self._forget()
            self._draining = False
            self._ready.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._write_frames, name="tracker-writer", daemon=True
                )
                self._thread.start()

    def put(
        self,
        frame: bytes,
        *,
        deadline: float | None = None,
        urgent: bool = False,
        hold_since: float | None = None,
    ) -> bool:
        """Queue ``frame`` for the current pipe; False when there is none (or it broke), or when
        the outbox stayed full until ``deadline`` (a ``time.monotonic()`` value).

        ``urgent``: goes before every frame still waiting (one being written is finished first).
        ``hold_since``: a batch of events, recorded since then (a ``time.monotonic()`` value),
        which may wait while the process is busy, until ``hold_seconds`` after the busy spell
        began (or after ``hold_since``, if earlier); a frame without one (anything but events)
        sends what is queued before it at once.
        """
        with self._ready:
            generation = self._generation
            while self._bytes >= self.limit_bytes and not urgent:
                if self._stream is None or self._generation != generation:
                    return False
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    return False
                self._ready.wait(timeout)
            if self._stream is None or self._generation != generation:
                return False
            entry = (frame, hold_since)
            if urgent:
                self._frames.appendleft(entry)
            else:
                self._frames.append(entry)
            if hold_since is None:
                self._releases += 1
            self._bytes += len(frame)
            self._ready.notify_all()
        return True

    def finish(self, deadline: float) -> bool:
        """Wait until every queued frame is written (True), or ``deadline`` passed (False);
        then write nothing more to the current pipe, and let the writer thread end (the next
        :meth:`open` starts one again)."""
        with self._ready:
            self._draining = True
            self._ready.notify_all()
            while (self._frames or self._writing) and self._stream is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                self._ready.wait(timeout)
            written = not self._frames and not self._writing
            self._generation += 1
            self._stream = None
            self._forget()
            self._ready.notify_all()
            return written

    def _forget(self) -> None:
        """Drop every queued frame (the worker they were for is gone); holds the lock."""
        self._frames.clear()
        self._bytes = 0
        self._releases = 0

    def _hold_for(self) -> float:
        """Seconds the head frame may still wait (0: write it now); holds the lock.

        The hold counts from the start of the busy spell (or from the head frame's oldest
        event, if that is earlier): once a spell outlasts it, every frame goes at once until
        the process is idle again.
        """
        since = self._frames[0][1]
        if since is None or self._releases or self._draining or self.hold_seconds <= 0:
            return 0.0
        if self._bytes >= self.hold_bytes or not self._meter.busy():
            return 0.0
        spell = self._meter.spell_started
        started = since if spell is None else min(since, spell)
        left = started + self.hold_seconds - time.monotonic()
        if left <= 0:
            return 0.0
        return min(left, HOLD_CHECK_SECONDS)

    @property
    def pending_bytes(self) -> int:
        """Bytes of frames waiting for the pipe."""
        return self._bytes

    def _write_frames(self) -> None:
        self._meter.count_as_own()
        while True:
            with self._ready:
                while True:
                    if not self._frames:
                        if self._stream is None:  # finished (or broken): nothing more to write
                            self._thread = None
                            return
                        self._ready.wait()
                        continue
                    wait = self._hold_for()
                    if wait <= 0:
                        break
                    self._ready.wait(wait)
                frame, since = self._frames.popleft()
                if since is None:
                    self._releases -= 1
                self._bytes -= len(frame)
                stream, generation = self._stream, self._generation
                self._writing = True
                self._ready.notify_all()  # room for a waiting sender
            broken = False
            try:
                if stream is not None:
                    stream.write(frame)
                    stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                broken = True
            with self._ready:
                self._writing = False
                current = generation == self._generation
                if broken and current:  # the worker is gone: the link resends to the next one
                    self._stream = None
                    self._forget()
                self._ready.notify_all()
            if broken and current:
                try:
                    self._on_broken()
                except Exception:  # pragma: no cover - the link's own callback
                    logger.exception("tracker: handling a broken pipe to the worker failed")
