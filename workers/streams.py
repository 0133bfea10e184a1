"""Streamed tokens aggregated per run: one field on the run's end record instead of a record
per token (``stream_tokens="aggregate"``).

A chat model streaming 500 tokens otherwise logs 500 records; most backends want the text and the
count, which the end record now carries as ``fields["streamed"]``: ``{"tokens": n, "text": …}``.
"""

from __future__ import annotations

from collections import OrderedDict
from uuid import UUID

from workers.event import Event, Kind
from workers.records import PRECONVERTED, Record, token_of
from workers.sanitize import MAX_TEXT, clip, safe_str

#: Runs streaming at once whose tokens are held; past it the oldest is attached to nothing
#: (its count and text are dropped, counted in ``orphaned``) so memory stays bounded.
MAX_OPEN_STREAMS = 10_000


class TokenStreams:
    """Holds each run's streamed tokens until its ``on_llm_end`` / ``on_llm_error``."""

    def __init__(self) -> None:
        """No stream open."""
        self._open: OrderedDict[UUID | None, list[str]] = OrderedDict()
        self._chars: dict[UUID | None, int] = {}
        self.absorbed = 0
        self.orphaned = 0

    def absorb(self, event: Event) -> bool:
        """Keep a token event's text for its run; False for any other event."""
        if event.kind is not Kind.LLM_NEW_TOKEN or event.extra is PRECONVERTED:
            return False
        run = event.run_id
        tokens = self._open.get(run)
        if tokens is None:
            if len(self._open) >= MAX_OPEN_STREAMS:
                oldest, held = self._open.popitem(last=False)
                self.orphaned += len(held)
                self._chars.pop(oldest, None)
            tokens = self._open[run] = []
            self._chars[run] = 0
        text = safe_str(token_of(event))
        if self._chars[run] < MAX_TEXT:  # the count goes on, the text is clipped
            tokens.append(text)
            self._chars[run] += len(text)
        else:
            tokens.append("")
        self.absorbed += 1
        return True

    def attach(self, record: Record) -> None:
        """Put the run's held tokens on its end (or error) record."""
        if record.kind not in (Kind.LLM_END, Kind.LLM_ERROR):
            return
        run = record.run_id
        tokens = self._open.pop(run, None)
        self._chars.pop(run, None)
        if tokens is not None:
            record.fields["streamed"] = {"tokens": len(tokens), "text": clip("".join(tokens))}
