"""Event → Record: the callback payload converted to JSON-safe fields, once, in the workers.

Each sink then shapes a Record into its own rows (``workers/rows``). Conversion never raises: a
payload that cannot be read becomes a ``repr`` and the Record is marked ``degraded``.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from workers.event import Event, Kind
from workers.sanitize import safe_repr, safe_str, to_jsonable

logger = logging.getLogger("tracker.records")


@dataclass(slots=True)
class Record:
    """One converted callback.

    ``fields`` depends on ``kind`` (see :func:`convert`); ``event`` keeps the original references
    for user hooks that want the real objects (Comet's ``custom_metrics`` takes a Generation).
    ``complexity`` holds the text metrics per generation (LLM ends) once the analyzer ran, and
    ``pages`` the ClearML-style dependency/entity HTML pages per generation, ``custom`` the
    user's custom metrics per generation when they were computed before the record left
    the process.
    """

    event: Event
    fields: dict[str, Any]
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    degraded: bool = False
    complexity: list[dict[str, Any]] | None = None
    pages: list[tuple[str, str] | None] | None = None
    custom: list[dict[str, Any]] | None = None

    def to_wire(self) -> tuple[Any, ...]:
        """Plain data for another process: no original payloads, run ids as ints.

        Tuples of builtins pickle several times faster than the dataclass, the Event named
        tuple, the Kind enum and UUIDs would (measured in benchmarks/RESULTS.md).
        """
        event = self.event
        return (
            event.kind.value,
            event.seq,
            event.time,
            event.run_id.int if event.run_id is not None else None,
            event.parent_run_id.int if event.parent_run_id is not None else None,
            self.fields,
            self.name,
            self.tags,
            self.metadata,
            self.degraded,
            self.complexity,
            self.pages,
            self.custom,
        )

    @classmethod
    def from_wire(cls, wire: tuple[Any, ...]) -> Record:
        """The record :meth:`to_wire` described (without its original payloads)."""
        kind, seq, time, run, parent, fields, name, tags, metadata, degraded, *analysis = wire
        event = Event(
            Kind(kind),
            seq,
            time,
            UUID(int=run) if run is not None else None,
            UUID(int=parent) if parent is not None else None,
            (),
            {},
        )
        return cls(event, fields, name, tags, metadata, degraded, *analysis)

    @property
    def kind(self) -> Kind:
        """The callback this record came from."""
        return self.event.kind

    @property
    def run_id(self) -> UUID | None:
        """LangChain's id of the run the callback belongs to."""
        return self.event.run_id

    def generation_texts(self) -> list[str]:
        """All generation texts of an LLM end, flattened in (prompt, generation) order."""
        if self.kind is not Kind.LLM_END:
            return []
        return [gen.get("text", "") for gens in self.fields["generations"] for gen in gens]


def _message(msg: Any) -> dict[str, Any]:
    """A chat message as role, content, name and tool calls (JSON-safe)."""
    out: dict[str, Any] = {
        "role": getattr(msg, "type", type(msg).__name__),
        "content": to_jsonable(getattr(msg, "content", msg)),
    }
    for attr in ("name", "tool_calls", "tool_call_id"):
        value = getattr(msg, attr, None)
        if value:
            out[attr] = to_jsonable(value)
    return out


def _buffer_string(messages: list[Any]) -> str:
    """What LangChain's manager hands an ``on_llm_start``-only handler for chat messages."""
    try:
        from langchain_core.messages import get_buffer_string

        return get_buffer_string(messages)
    except Exception:
        return safe_str(messages)


def _error(err: Any) -> dict[str, Any]:
    tb = ""
    if isinstance(err, BaseException):
        try:
            tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        except Exception:
            tb = ""
    return {
        "error_type": type(err).__name__,
        "error": safe_str(err, 10_000),
        "traceback": safe_str(tb, 20_000),
    }


def _generation(gen: Any) -> dict[str, Any]:
    try:
        dumped = gen.model_dump()
    except Exception:
        dumped = {"text": safe_str(getattr(gen, "text", gen))}
    out = to_jsonable(dumped)
    out.setdefault("text", safe_str(getattr(gen, "text", "")))
    return out


def _keyed(value: Any, key: str) -> dict[str, Any]:
    """Chain inputs/outputs as a dict: LCEL passes strings, messages, prompt values…"""
    converted = to_jsonable(value)
    if isinstance(value, Mapping) and isinstance(converted, dict):
        return converted
    return {key: converted}


def _fields(event: Event) -> dict[str, Any]:
    kind, data, extra = event.kind, event.data, event.extra
    if kind is Kind.LLM_START:
        serialized, prompts = data
        return {"serialized": to_jsonable(serialized), "prompts": [safe_str(p) for p in prompts]}
    if kind is Kind.CHAT_MODEL_START:
        serialized, batches = data
        return {
            "serialized": to_jsonable(serialized),
            "prompts": [_buffer_string(list(msgs)) for msgs in batches],
            "messages": [[_message(m) for m in msgs] for msgs in batches],
        }
    if kind is Kind.LLM_NEW_TOKEN:
        return {"token": safe_str(data[0])}
    if kind is Kind.LLM_END:
        response = data[0]
        return {
            "llm_output": to_jsonable(getattr(response, "llm_output", None) or {}),
            "generations": [
                [_generation(g) for g in gens] for gens in getattr(response, "generations", [])
            ],
        }
    if kind in (Kind.LLM_ERROR, Kind.CHAIN_ERROR, Kind.TOOL_ERROR, Kind.RETRIEVER_ERROR):
        return _error(data[0])
    if kind is Kind.CHAIN_START:
        serialized, inputs = data
        return {"serialized": to_jsonable(serialized), "inputs": _keyed(inputs, "input")}
    if kind is Kind.CHAIN_END:
        return {"outputs": _keyed(data[0], "output")}
    if kind is Kind.TOOL_START:
        serialized, input_str = data
        return {
            "serialized": to_jsonable(serialized),
            "input_str": safe_str(input_str),
            "inputs": to_jsonable(extra.get("inputs")),
        }
    if kind is Kind.TOOL_END:
        return {"output": safe_str(data[0])}
    if kind is Kind.TEXT:
        return {"text": safe_str(data[0])}
    if kind is Kind.AGENT_ACTION:
        action = data[0]
        return {
            "tool": safe_str(getattr(action, "tool", "")),
            "tool_input": to_jsonable(getattr(action, "tool_input", None)),
            "log": safe_str(getattr(action, "log", "")),
        }
    if kind is Kind.AGENT_FINISH:
        finish = data[0]
        return {
            "return_values": to_jsonable(getattr(finish, "return_values", None) or {}),
            "log": safe_str(getattr(finish, "log", "")),
        }
    if kind is Kind.RETRIEVER_START:
        serialized, query = data
        return {"serialized": to_jsonable(serialized), "query": safe_str(query)}
    if kind is Kind.RETRIEVER_END:
        return {
            "documents": [
                {
                    "page_content": safe_str(getattr(d, "page_content", d)),
                    "metadata": to_jsonable(getattr(d, "metadata", {})),
                }
                for d in data[0]
            ]
        }
    if kind is Kind.RETRY:
        state = data[0]
        outcome = getattr(state, "outcome", None)
        return {
            "attempt": to_jsonable(getattr(state, "attempt_number", None)),
            "error": safe_repr(outcome.exception())
            if outcome is not None and outcome.failed
            else None,
        }
    if kind is Kind.CUSTOM_EVENT:
        name, payload = data
        return {"event_name": safe_str(name), "data": to_jsonable(payload)}
    return {"data": to_jsonable(data)}


def convert(event: Event) -> Record:
    """Convert one event; a payload that cannot be read gives a degraded record, never an error."""
    extra = event.extra
    try:
        fields = _fields(event)
        degraded = False
    except Exception as exc:
        logger.debug("could not convert %s payload", event.kind.value, exc_info=True)
        fields = {"payload": safe_repr(event.data, 10_000), "conversion_error": safe_repr(exc)}
        degraded = True
    name = extra.get("name")
    tags = extra.get("tags") or []
    metadata = extra.get("metadata") or {}
    return Record(
        event=event,
        fields=fields,
        name=safe_str(name, 500) if name is not None else None,
        tags=[safe_str(t, 500) for t in tags] if isinstance(tags, list) else [],
        metadata=to_jsonable(metadata) if isinstance(metadata, dict) else {},
        degraded=degraded,
    )
