"""Test helpers for code that uses the tracker (and for the tracker's own tests).

- :func:`wrap_sinks`: handlers built inside the block run their sinks in this process, each
  wrapped (for example in a :class:`FaultySink`), so a test can hold the wrapper and flip its
  faults while the handler runs.
- :func:`faulty`: a sink description whose sink the tracker worker builds inside a
  :class:`FaultySink`, to test the worker itself under faults.
- :func:`hold_while_busy`: another hold for this process's tracker (what
  ``TRACKER_HOLD_WHILE_BUSY_SECONDS`` sets when the worker starts), within a block.
- :func:`always_busy`: this process counts as busy, and its threads as leaving the GIL no room,
  within a block, whatever CPU the machine leaves it, so a test of the holds does not fail when
  a loaded machine descheduled it for a moment (an idle moment ends a busy spell, a moment of
  room has events encoded).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from workers.link import WorkerLink, current_link
from workers.sinks.base import Sink
from workers.testing import FaultySink, faulty

__all__ = [
    "FaultySink",
    "always_busy",
    "current_wrapper",
    "faulty",
    "hold_while_busy",
    "wrap_sinks",
]

SinkWrapper = Callable[[Sink], Sink]

_state = threading.local()


@contextlib.contextmanager
def wrap_sinks(wrap: SinkWrapper) -> Iterator[None]:
    """Within the block (this thread), new handlers run in-process with ``wrap(sink)``."""
    previous = getattr(_state, "wrap", None)
    _state.wrap = wrap
    try:
        yield
    finally:
        _state.wrap = previous


def current_wrapper() -> SinkWrapper | None:
    """The wrapper of the innermost :func:`wrap_sinks` block in this thread, if any."""
    wrap: SinkWrapper | None = getattr(_state, "wrap", None)
    return wrap


def _link() -> WorkerLink:
    link = current_link()
    if link is None:
        raise RuntimeError("no tracker worker yet: build a TrackerCallbackHandler first")
    return link


@contextlib.contextmanager
def hold_while_busy(seconds: float) -> Iterator[None]:
    """Within the block, this process's events wait at most ``seconds`` while it is busy.

    Applies to the tracker worker link of the handlers built so far (build one first).
    """
    link = _link()
    previous = link.hold_seconds
    link.set_hold(seconds)
    try:
        yield
    finally:
        link.set_hold(previous)


@contextlib.contextmanager
def always_busy() -> Iterator[None]:
    """Within the block, this process counts as busy, its threads as leaving the GIL no room
    (one busy spell, from the block's start).

    Applies to the tracker worker link of the handlers built so far (build one first).
    """
    link = _link()
    previous = link.set_busy_share(0.0, 0.0)
    try:
        yield
    finally:
        link.set_busy_share(*previous)
