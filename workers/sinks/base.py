"""The sink protocol: where converted records go (ClearML, Comet, …).

A sink is driven by one pipeline, one call at a time, in queue order. Its methods are coroutines
on the runtime loop; they run their blocking SDK calls in worker threads so that the loop (and
with it every other pipeline) stays responsive.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from workers.counters import Counters
from workers.flush import FlushRequest
from workers.options import DEFAULT_SESSION_KEYS, DEFAULT_TABLE_ROWS
from workers.records import Record


class Sink(ABC):
    """One backend. Subclasses say which analyses they need and implement the four steps."""

    _init_args: tuple[tuple[Any, ...], dict[str, Any]]

    #: Short name used in logs and stats ("clearml", "comet").
    name: str = "sink"
    #: Whether LLM-end records must carry the 16 text complexity metrics.
    needs_complexity: bool = False
    #: Whether LLM-end records must carry ClearML-style dependency/entity HTML pages.
    needs_pages: bool = False
    #: The displaCy styles of Comet-style sentence renders LLM-end records must carry.
    needs_sentences: list[str] = []

    #: The offline archive written by the last finish, if any.
    archive_path: Path | None = None
    #: Set by the pipeline: a session table past this many rows is reported bounded, and
    #: written in full to a compressed file beside the report (workers.table_report).
    table_rows: int = DEFAULT_TABLE_ROWS
    #: Set by the pipeline: the metadata keys that become columns of the runs table.
    session_keys: tuple[str, ...] = DEFAULT_SESSION_KEYS

    def __new__(cls, *args: Any, **kwargs: Any) -> Sink:
        """Remember the constructor's arguments, so :meth:`fresh` can build a twin."""
        sink = super().__new__(cls)
        sink._init_args = (args, kwargs)
        return sink

    def fresh(self) -> Sink:
        """A new, unopened sink configured like this one (for a forked child process).

        Wrappers override it to wrap a fresh inner sink.
        """
        args, kwargs = self._init_args
        return type(self)(*args, **kwargs)

    @property
    @abstractmethod
    def counters(self) -> Counters:
        """The seed counters as replayed by this sink."""

    @abstractmethod
    async def open(self) -> None:
        """Create the backend session (Task, Experiment)."""

    @abstractmethod
    async def write(self, records: list[Record]) -> None:
        """Log a batch of records, in order."""

    @abstractmethod
    async def flush(self, request: FlushRequest) -> None:
        """Write the session tables and assets; on ``request.finish``, close the session."""

    async def rotate(self, label: str) -> None:  # noqa: B027 - sinks without tables: nothing
        """Write the session tables so far as part ``label`` and start them afresh.

        Unlike a flush: no counter reset, no asset, no backend flush; runs still open wait
        for their end. The pipeline calls it every ``rotate_events`` events or
        ``rotate_seconds`` seconds, so that a flush has little left to write.
        """

    async def log_health(self, values: dict[str, float], step: int) -> None:  # noqa: B027
        """Log the tracker's own health (queue depth, dropped, spool size, delay); optional."""

    async def reset_counters(self) -> None:
        """Apply a ``reset_callback_meta`` that was queued by the caller."""
        self.counters.reset()

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release local resources without finishing the backend session (cancelled pipeline)."""
