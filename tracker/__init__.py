"""langchain-tracker: LangChain runs into ClearML or Comet, off the caller's path.

``from tracker import ClearMLCallbackHandler, CometCallbackHandler`` replaces the
langchain_community handlers of the same names: same parameters and logged data, but callbacks
only enqueue events and background workers do the rest.
"""

from tracker.clearml import ClearMLCallbackHandler
from tracker.comet import CometCallbackHandler
from workers.flush import FlushResult

__all__ = ["ClearMLCallbackHandler", "CometCallbackHandler", "FlushResult"]
