"""Test helpers for code that uses the tracker (and for the tracker's own tests).

- :func:`wrap_sinks`: handlers built inside the block run their sinks in this process, each
  wrapped (for example in a :class:`FaultySink`), so a test can hold the wrapper and flip its
  faults while the handler runs.
- :func:`faulty`: a sink description whose sink the tracker worker builds inside a
  :class:`FaultySink`, to test the worker itself under faults.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from workers.sinks.base import Sink
from workers.testing import FaultySink, faulty

__all__ = ["FaultySink", "current_wrapper", "faulty", "wrap_sinks"]

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
