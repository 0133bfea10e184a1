"""Pairing LLM ends with the prompts of their start, by run id, in bounded memory."""

from __future__ import annotations

from typing import Any
from uuid import UUID

MAX_OPEN_RUNS = 100_000


class PromptBook:
    """What each open LLM run started with, until its end (or error) arrives.

    Bounded: past ``limit`` open runs the oldest is forgotten (a run that never ended), so a
    stream of failed or dropped ends cannot grow it without bound.
    """

    def __init__(self, limit: int = MAX_OPEN_RUNS) -> None:
        """An empty book holding at most ``limit`` open runs."""
        self._open: dict[UUID | None, Any] = {}
        self._limit = limit

    def add(self, run_id: UUID | None, *start: Any) -> None:
        """Remember what run ``run_id`` started with."""
        if run_id is None:
            return
        if len(self._open) >= self._limit:
            self._open.pop(next(iter(self._open)))
        self._open[run_id] = start

    def pop(self, run_id: UUID | None) -> Any:
        """What ``run_id`` started with (forgetting it), or None if unknown."""
        return self._open.pop(run_id, None)


class RunNames(PromptBook):
    """Each open run's name, from its start, for the rows of its error (whose callback carries
    no name): the same bounded book, keyed by run id."""

    def name(self, run_id: UUID | None) -> str | None:
        """The run's name (forgetting it), or None if unknown."""
        held = self.pop(run_id)
        return held[0] if held else None
