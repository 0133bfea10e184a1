"""langchain-tracker: LangChain runs into ClearML or Comet, off the caller's path.

``from tracker import ClearMLCallbackHandler, CometCallbackHandler`` replaces the
langchain_community handlers of the same names: same parameters and logged data, but callbacks
only enqueue events and background workers do the rest. ``TrackerCallbackHandler`` feeds
several backends (``tracker.sinks``: ClearML, Comet, JSON lines) from one queue.
"""

from tracker import sinks
from tracker.clearml import ClearMLCallbackHandler
from tracker.comet import CometCallbackHandler
from tracker.multi import TrackerCallbackHandler
from workers.flush import FlushResult

__all__ = [
    "ClearMLCallbackHandler",
    "CometCallbackHandler",
    "FlushResult",
    "TrackerCallbackHandler",
    "sinks",
]
