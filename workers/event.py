"""The event record: what the hot path builds for each LangChain callback.

An :class:`Event` holds references, not copies: converting payloads (LLMResult, messages,
documents, arbitrary chain inputs) into loggable rows is the workers' job, off the caller's path.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple
from uuid import UUID


class Kind(str, Enum):
    """What happened: one member per LangChain callback, plus the queue's control records."""

    LLM_START = "on_llm_start"
    CHAT_MODEL_START = "on_chat_model_start"
    LLM_NEW_TOKEN = "on_llm_new_token"
    LLM_END = "on_llm_end"
    LLM_ERROR = "on_llm_error"
    CHAIN_START = "on_chain_start"
    CHAIN_END = "on_chain_end"
    CHAIN_ERROR = "on_chain_error"
    TOOL_START = "on_tool_start"
    TOOL_END = "on_tool_end"
    TOOL_ERROR = "on_tool_error"
    TEXT = "on_text"
    AGENT_ACTION = "on_agent_action"
    AGENT_FINISH = "on_agent_finish"
    RETRIEVER_START = "on_retriever_start"
    RETRIEVER_END = "on_retriever_end"
    RETRIEVER_ERROR = "on_retriever_error"
    RETRY = "on_retry"
    CUSTOM_EVENT = "on_custom_event"
    # Control records travel in the same queue so that they are ordered with the data.
    FLUSH = "flush"
    RESET = "reset"

    @property
    def is_control(self) -> bool:
        """True for records that steer the pipeline rather than describe a run."""
        return self in _CONTROL


_CONTROL = frozenset({Kind.FLUSH, Kind.RESET})
#: The callbacks that end a run with an error.
RUN_ERRORS = frozenset({Kind.LLM_ERROR, Kind.CHAIN_ERROR, Kind.TOOL_ERROR, Kind.RETRIEVER_ERROR})
#: The callbacks that start a run, and those that end one (with an error or not).
RUN_STARTS = frozenset(
    {Kind.CHAIN_START, Kind.LLM_START, Kind.CHAT_MODEL_START, Kind.TOOL_START, Kind.RETRIEVER_START}
)
RUN_ENDS = frozenset(
    {
        Kind.CHAIN_END,
        Kind.CHAIN_ERROR,
        Kind.LLM_END,
        Kind.LLM_ERROR,
        Kind.TOOL_END,
        Kind.TOOL_ERROR,
        Kind.RETRIEVER_END,
        Kind.RETRIEVER_ERROR,
    }
)


class Event(NamedTuple):
    """One callback, as recorded on the hot path.

    ``data`` is the callback's positional payload (a tuple, by reference) and ``extra`` its keyword
    arguments (tags, metadata, name, invocation params…, by reference).
    """

    kind: Kind
    seq: int
    time: float
    run_id: UUID | None
    parent_run_id: UUID | None
    data: tuple[Any, ...]
    extra: dict[str, Any]
