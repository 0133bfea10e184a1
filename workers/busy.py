"""Whether this process is busy right now: its CPU time over the last moment of wall time.

While the application computes, the handlers' events wait, first not encoded (in
:mod:`workers.forwarding`), then as bytes in :mod:`workers.outbox`: neither the encoding nor the
tracker worker takes CPU, caches and scheduler time from it in the middle of a burst.
"""

from __future__ import annotations

import time

#: Share of one core this process must have used, over :data:`WINDOW_SECONDS`, to be busy.
BUSY_SHARE = 0.5
WINDOW_SECONDS = 0.05


class BusyMeter:
    """Samples ``time.process_time()`` (every thread of the process) against the wall clock."""

    def __init__(self, share: float = BUSY_SHARE, window: float = WINDOW_SECONDS) -> None:
        """Busy when the process used ``share`` of a core over the last ``window`` seconds."""
        self.share = share
        self.window = window
        self._since = (time.monotonic(), time.process_time())
        self._busy = False

    def busy(self) -> bool:
        """The verdict of the last full window (a new window starts when one is over).

        After a pause of more than two windows between calls, the old sample says nothing of
        the last moment: a new window starts, and the process counts as busy until it ends.
        """
        now, cpu = time.monotonic(), time.process_time()
        wall = now - self._since[0]
        if self.window > 0 and wall > 2 * self.window:
            self._busy = True
            self._since = (now, cpu)
        elif wall >= self.window:
            self._busy = (cpu - self._since[1]) >= self.share * wall
            self._since = (now, cpu)
        return self._busy
