"""Whether this process is busy right now: its CPU time over the last moment of wall time.

While the application computes, the handlers' events wait, first not encoded (in
:mod:`workers.forwarding`), then as bytes in :mod:`workers.outbox`: neither the encoding nor the
tracker worker takes CPU, caches and scheduler time from it in the middle of a burst.
"""

from __future__ import annotations

import threading
import time

#: Share of one core this process must have used, over :data:`WINDOW_SECONDS`, to be busy.
BUSY_SHARE = 0.5
WINDOW_SECONDS = 0.05


class BusyMeter:
    """Samples ``time.process_time()`` (every thread of the process) against the wall clock.

    It also tells when the current busy spell began (:attr:`spell_started`): a hold that counts
    from there ends for the whole spell at once, so a load sustained past it runs with the
    worker beside it and no lag, instead of each batch waiting out a hold of its own. The link's
    threads share one meter (thread-safe), so that the spell is timed by the one that looks
    most often (the forwarding thread, every poll).
    """

    def __init__(self, share: float = BUSY_SHARE, window: float = WINDOW_SECONDS) -> None:
        """Busy when the process used ``share`` of a core over the last ``window`` seconds."""
        self.share = share
        self.window = window
        self._since = (time.monotonic(), time.process_time())
        self._busy = False
        self._lock = threading.Lock()
        #: ``time.monotonic()`` when the current busy spell began; None while idle.
        self.spell_started: float | None = None

    def set_share(self, share: float) -> float:
        """Judge by ``share`` from now on: a new window and a new busy spell start now (busy
        until the window ends, as after a pause); returns the previous share."""
        with self._lock:
            previous, self.share = self.share, share
            now = time.monotonic()
            self._since = (now, time.process_time())
            self._busy = True
            self.spell_started = now
            return previous

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
        start, start_cpu = self._since
        wall = now - start
        if self.window > 0 and wall > 2 * self.window:
            if (cpu - start_cpu) < self.share * wall or self.spell_started is None:
                self.spell_started = now
            self._busy = True
            self._since = (now, cpu)
        elif wall >= self.window:
            self._busy = (cpu - start_cpu) >= self.share * wall
            if not self._busy:
                self.spell_started = None
            elif self.spell_started is None:
                self.spell_started = start
            self._since = (now, cpu)
        return self._busy
