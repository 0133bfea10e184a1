"""Streamed tokens aggregated per run: one field on the run's end record instead of a record
per token (``stream_tokens="aggregate"``).

A chat model streaming 500 tokens otherwise logs 500 records; most backends want the text and the
count, which the end record now carries as ``fields["streamed"]``: ``{"tokens": n, "text": …,
"chunks": c, "first_token_time": t0, "last_token_time": t1}`` (the non-empty chunks, and the
wall-clock times of the first and last of them: the runs table's time to first token and
tokens per second).
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
        # run: [first token's time, last token's time, non-empty chunks]
        self._times: dict[UUID | None, list[float]] = {}
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
                self._times.pop(oldest, None)
            tokens = self._open[run] = []
            self._chars[run] = 0
        text = safe_str(token_of(event))
        if text:  # LangChain ends a stream with an empty chunk: not a token of the answer
            times = self._times.get(run)
            if times is None:
                self._times[run] = [event.time, event.time, 1]
            else:
                times[1] = event.time
                times[2] += 1
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
        first, last, chunks = self._times.pop(run, (None, None, 0))
        if tokens is not None:
            record.fields["streamed"] = {
                "tokens": len(tokens),
                "text": clip("".join(tokens)),
                "chunks": chunks,
                "first_token_time": first,
                "last_token_time": last,
            }
