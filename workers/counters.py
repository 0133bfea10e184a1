"""The seeds' callback counters (step, starts, llm_ends, …), replayed in queue order.

The seeds bump shared counters inside each callback, so concurrent runs race on them. Here they
are advanced by the single consumer in the order events were enqueued, and each row gets the
snapshot the seed would have logged at that point.
"""

from __future__ import annotations

from typing import Any

from workers.event import Kind

COUNTER_NAMES: tuple[str, ...] = (
    "step",
    "starts",
    "ends",
    "errors",
    "text_ctr",
    "chain_starts",
    "chain_ends",
    "llm_starts",
    "llm_ends",
    "llm_streams",
    "tool_starts",
    "tool_ends",
    "agent_ends",
)

# What each seed callback increments (langchain_community's BaseMetadataCallbackHandler users).
# A chat model start reaches the seeds as on_llm_start, so it counts as one. The seeds do not
# implement retriever, retry or custom-event callbacks: those count nothing, as there.
INCREMENTS: dict[Kind, tuple[str, ...]] = {
    Kind.LLM_START: ("step", "llm_starts", "starts"),
    Kind.CHAT_MODEL_START: ("step", "llm_starts", "starts"),
    Kind.LLM_NEW_TOKEN: ("step", "llm_streams"),
    Kind.LLM_END: ("step", "llm_ends", "ends"),
    Kind.LLM_ERROR: ("step", "errors"),
    Kind.CHAIN_START: ("step", "chain_starts", "starts"),
    Kind.CHAIN_END: ("step", "chain_ends", "ends"),
    Kind.CHAIN_ERROR: ("step", "errors"),
    Kind.TOOL_START: ("step", "tool_starts", "starts"),
    Kind.TOOL_END: ("step", "tool_ends", "ends"),
    Kind.TOOL_ERROR: ("step", "errors"),
    Kind.TEXT: ("step", "text_ctr"),
    Kind.AGENT_ACTION: ("step", "tool_starts", "starts"),
    Kind.AGENT_FINISH: ("step", "agent_ends", "ends"),
}


class Counters:
    """The thirteen seed counters; only the consumer thread writes them."""

    def __init__(self) -> None:
        """All counters at zero."""
        self.values: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)

    def advance(self, kind: Kind) -> dict[str, int]:
        """Apply one callback and return the snapshot the seed would log with it."""
        values = self.values
        for name in INCREMENTS.get(kind, ()):
            values[name] += 1
        return dict(values)

    def snapshot(self) -> dict[str, int]:
        """A copy of the current values (what ``get_custom_callback_meta`` returns)."""
        return dict(self.values)

    def reset(self) -> None:
        """Back to zero, as the seeds' ``reset_callback_meta``."""
        for name in self.values:
            self.values[name] = 0


def source_or_replayed(record: Any, counters: Counters) -> dict[str, int]:
    """The counters a record's rows carry: those counted at its source when it has them (a
    broker transport, where no worker sees every event), else ``counters`` replayed here.

    Either way ``counters`` ends as of this record, so the handler's attributes read right.
    """
    counted = record.counters
    if counted is None:
        return counters.advance(record.kind)
    counters.values.update(counted)
    return dict(counted)
