"""Whether this process is busy right now: its CPU time over the last moment of wall time.

While the application computes, the handlers' events wait, first not encoded (in
:mod:`workers.forwarding`), then as bytes in :mod:`workers.outbox`: neither the encoding nor the
tracker worker takes CPU, caches and scheduler time from it in the middle of a burst.

Busy is not always saturated. An event loop that often waits (for LangChain's thread pool, for
I/O) leaves the GIL free for moments, and encoding then costs it little; one that never waits
loses to the encoding whatever the encoding takes. So the meter also tells whether the
application's threads (every thread but the tracker's own) used nearly a whole core
(:attr:`BusyMeter.saturated`): only then do events wait not encoded.
"""

from __future__ import annotations

import threading
import time

#: Share of one core this process must have used, over :data:`WINDOW_SECONDS`, to be busy.
BUSY_SHARE = 0.5
WINDOW_SECONDS = 0.05
#: Share of one core the application's threads must have used, over the same window, to leave
#: the GIL no room: 50 concurrent LangGraph sessions used ~1.0 through ``ainvoke`` and ~0.8
#: through ``astream_events`` (whose loop waits for the chat model's thread).
SATURATED_SHARE = 0.9


def _thread_clock() -> int | None:
    """The calling thread's CPU clock (None where the platform has none)."""
    try:
        return time.pthread_getcpuclockid(threading.get_ident())
    except (AttributeError, OSError):
        return None


class BusyMeter:
    """Samples ``time.process_time()`` (every thread of the process) against the wall clock.

    It also tells when the current busy spell began (:attr:`spell_started`): a hold that counts
    from there ends for the whole spell at once, so a load sustained past it runs with the
    worker beside it and no lag, instead of each batch waiting out a hold of its own. The link's
    threads share one meter (thread-safe), so that the spell is timed by the one that looks
    most often (the forwarding thread, every poll).
    """

    def __init__(
        self,
        share: float = BUSY_SHARE,
        window: float = WINDOW_SECONDS,
        saturation: float = SATURATED_SHARE,
    ) -> None:
        """Busy when the process used ``share`` of a core over the last ``window`` seconds;
        saturated when the application's threads used ``saturation`` of one."""
        self.share = share
        self.saturation = saturation
        self.window = window
        self._own: list[int] = []  # CPU clocks of the tracker's threads (count_as_own)
        self._since = (time.monotonic(), time.process_time(), 0.0)
        self._busy = False
        #: Whether the application's threads left the GIL no room over the last window (as
        #: :meth:`busy`, it starts true: no window has said otherwise yet).
        self.saturated = True
        self._lock = threading.Lock()
        #: ``time.monotonic()`` when the current busy spell began; None while idle.
        self.spell_started: float | None = None

    def count_as_own(self) -> None:
        """The calling thread is the tracker's: its CPU is not the application's."""
        clock = _thread_clock()
        if clock is not None:
            with self._lock:
                self._own.append(clock)

    def set_share(self, share: float, saturation: float) -> tuple[float, float]:
        """Judge by ``share`` and ``saturation`` from now on: a new window and a new busy spell
        start now (busy and saturated until the window ends, as after a pause); returns the
        previous pair."""
        with self._lock:
            previous = (self.share, self.saturation)
            self.share, self.saturation = share, saturation
            now = time.monotonic()
            self._since = (now, time.process_time(), self._own_cpu())
            self._busy = self.saturated = True
            self.spell_started = now
            return previous

    def _own_cpu(self) -> float:
        """CPU seconds of the tracker's threads (a thread that ended is forgotten)."""
        total = 0.0
        for clock in list(self._own):
            try:
                total += time.clock_gettime(clock)
            except OSError:  # it ended: its clock went with it
                self._own.remove(clock)
        return total

    def busy(self) -> bool:
        """The verdict of the last full window (a new window starts when one is over).

        After a pause of more than two windows between calls, the old sample says nothing of
        the last moment: a new window starts, and the process counts as busy until it ends.
        The spell goes on through such a pause only if the process was busy on average over
        it; otherwise a new one starts now.
        """
        with self._lock:
            return self._look()

    def _look(self) -> bool:
        now, cpu = time.monotonic(), time.process_time()
        start, start_cpu, start_own = self._since
        wall = now - start
        if self.window > 0 and wall > 2 * self.window:
            if (cpu - start_cpu) < self.share * wall or self.spell_started is None:
                self.spell_started = now
            self._busy = self.saturated = True
            self._since = (now, cpu, self._own_cpu())
        elif wall >= self.window:
            own = self._own_cpu()
            self._busy = (cpu - start_cpu) >= self.share * wall
            # (The clocks are read one after the other: an idle application can come out a
            # little below zero, hence the test of a zero share on its own.)
            self.saturated = (
                self.saturation <= 0
                or (cpu - start_cpu) - (own - start_own) >= self.saturation * wall
            )
            if not self._busy:
                self.spell_started = None
            elif self.spell_started is None:
                self.spell_started = start
            self._since = (now, cpu, own)
        return self._busy
