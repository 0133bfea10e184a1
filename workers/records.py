"""Event → Record: the callback payload converted to JSON-safe fields, once, in the workers.

Each sink then shapes a Record into its own rows (``workers/rows``). Conversion never raises: a
payload that cannot be read becomes a ``repr`` and the Record is marked ``degraded``.
"""

from __future__ import annotations

import itertools
import json as _json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from uuid import UUID

from workers.event import Event, Kind
from workers.sanitize import (
    MAX_ITEMS,
    MAX_TEXT,
    Budget,
    Memo,
    encodable,
    safe_repr,
    safe_str,
    to_jsonable,
)
from workers.tracebacks import MESSAGE_LIMIT, TRACEBACK_LIMIT, CapturedError, format_error

logger = logging.getLogger("tracker.records")

# Kind(value) goes through Enum's lookup machinery (~1 µs); the worker decodes every record.
KIND_BY_VALUE: dict[Any, Kind] = {kind.value: kind for kind in Kind}

#: ``Event.extra`` of an event whose record was converted before it reached the pipeline (in
#: the application's process, see workers.snapshot): ``data`` holds that record.
PRECONVERTED: dict[str, Any] = {}


@dataclass(slots=True)
class Record:
    """One converted callback: what sinks log, and what a ``redact=`` hook may edit.

    ``fields`` holds JSON-safe values only (dict, list, str, int, float, bool, None), by kind:

    - ``on_llm_start``: ``serialized`` (the model's dumpd dict, or None), ``prompts`` (list of
      str). ``on_chat_model_start``: the same, ``prompts`` being each message batch as text, plus
      ``messages`` (per batch, a list of ``{"role", "content", "name"?, "tool_calls"?, …}``).
    - ``on_llm_new_token``: ``token`` (str).
    - ``on_llm_end``: ``llm_output`` (dict: token_usage, model_name, …), ``generations`` (per
      prompt, a list of dicts, each with ``text`` (str) and what the Generation dumps).
    - ``on_llm_error`` / ``on_chain_error`` / ``on_tool_error`` / ``on_retriever_error``:
      ``error_type``, ``error``, ``traceback`` (str: the frames from the failing run down to
      the raise, as they were at the callback; :mod:`workers.tracebacks`).
    - ``on_chain_start``: ``serialized``, ``inputs`` (dict; a non-dict input is under
      ``"input"``). ``on_chain_end``: ``outputs`` (dict; a non-dict output under ``"output"``).
    - ``on_tool_start``: ``serialized``, ``input_str`` (str), ``inputs`` (the tool's dict input,
      or None). ``on_tool_end``: ``output`` (str). ``on_text``: ``text`` (str).
    - ``on_agent_action``: ``tool`` (str), ``tool_input`` (any), ``log`` (str).
      ``on_agent_finish``: ``return_values`` (dict), ``log`` (str).
    - ``on_retriever_start``: ``serialized``, ``query`` (str). ``on_retriever_end``:
      ``documents`` (list of ``{"page_content": str, "metadata": dict}``).
    - ``on_retry``: ``attempt``, ``error`` (str or None). ``on_custom_event``: ``event_name``
      (str), ``data`` (any).
    - A ``degraded`` record (its payload could not be read): ``payload`` (a repr) and
      ``conversion_error``, whatever its kind.

    ``name``, ``tags`` and ``metadata`` are the callback's (JSON-safe). A hook that deletes a
    field the kind needs still gets its record logged (the rows fall back to what is there).

    ``event`` keeps the original references for user hooks that want the real objects (Comet's
    ``custom_metrics`` takes a Generation); sinks never log them, and they do not leave the
    process. ``complexity`` holds the text metrics per generation (LLM ends) once the analyzer
    ran, and ``pages`` the ClearML-style dependency/entity HTML pages per generation, ``custom``
    the user's custom metrics per generation when they were computed before the record left
    the process, ``sentences`` the Comet-style sentence renders per generation (style → HTML),
    ``counters`` the seed counters as of this event when they were counted at the source
    (:data:`COUNTERS_KEY`; a broker transport, where no worker sees every event).
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
    sentences: list[dict[str, str | None] | None] | None = None
    counters: dict[str, int] | None = None

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
            self.sentences,
            self.counters,
        )

    @classmethod
    def from_wire(cls, wire: tuple[Any, ...]) -> Record:
        """The record :meth:`to_wire` described (without its original payloads)."""
        kind, seq, time, run, parent, fields, name, tags, metadata, degraded, *analysis = wire
        event = Event(
            KIND_BY_VALUE[kind],
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
        if self.kind is not Kind.LLM_END or self.degraded:
            return []
        generations = self.fields.get("generations")
        if not isinstance(generations, list):  # a redact hook may have removed or replaced it
            return []
        return [
            text if isinstance(text := gen.get("text", ""), str) else str(text)
            for gens in generations
            if isinstance(gens, list)
            for gen in gens
            if isinstance(gen, dict)
        ]


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    """``getattr`` that survives a hostile ``__getattr__`` or property (any exception)."""
    try:
        return getattr(obj, name, default)
    except Exception:
        return default


def _items(value: Any, strict: bool = False) -> list[Any]:
    """A payload list as a bounded list: None is empty, a lone value is a list of one.

    ``strict``: a lone value is a payload of the wrong shape (the record is then degraded).
    """
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(itertools.islice(value, MAX_ITEMS))
    if strict:
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return [value]


def _message(msg: Any, budget: Budget) -> dict[str, Any]:
    """A chat message as role, content, name and tool calls (JSON-safe)."""
    role = _attr(msg, "type", None)
    out: dict[str, Any] = {
        "role": safe_str(role, 200) if role is not None else type(msg).__name__,
        "content": to_jsonable(_attr(msg, "content", msg), budget=budget),
    }
    for attr in ("name", "tool_calls", "tool_call_id"):
        value = _attr(msg, attr)
        try:
            present = bool(value)
        except Exception:  # a hostile __bool__ / __len__
            present = True
        if present:
            out[attr] = to_jsonable(value, budget=budget)
    return out


def _buffer_string(messages: list[Any], budget: Budget) -> str:
    """What LangChain's manager hands an ``on_llm_start``-only handler for chat messages."""
    try:
        from langchain_core.messages import get_buffer_string

        return budget.text(encodable(get_buffer_string(messages)))
    except Exception:
        return safe_str(messages, budget=budget)


def _error(err: Any, at_callback: Any, budget: Budget) -> dict[str, Any]:
    if type(err) is CapturedError:  # read at the callback, clipped there
        return {
            "error_type": err.type_name,
            "error": budget.text(err.message, len(err.message)),
            "traceback": budget.text(err.traceback, len(err.traceback)),
        }
    tb = ""
    if isinstance(err, BaseException):
        if not isinstance(at_callback, TracebackType):
            at_callback = err.__traceback__
        try:
            tb = format_error(err, at_callback)
        except Exception:
            tb = ""
    return {
        "error_type": type(err).__name__,
        "error": safe_str(err, MESSAGE_LIMIT, budget),
        "traceback": safe_str(tb, TRACEBACK_LIMIT, budget),
    }


def _usage(gen: Any, budget: Budget) -> dict[str, Any] | None:
    """A chat generation's token usage (``message.usage_metadata``), if it has one."""
    usage = _attr(_attr(gen, "message"), "usage_metadata")
    if not usage:
        return None
    converted = to_jsonable(usage, budget=budget)
    return converted if isinstance(converted, dict) else None


def _tool_calls(gen: Any, budget: Budget) -> list[dict[str, Any]] | None:
    """A chat generation's tool calls (``message.tool_calls``: name, args, id), if any."""
    calls = _attr(_attr(gen, "message"), "tool_calls")
    if not calls:
        return None
    out = []
    for call in _items(calls):
        converted = to_jsonable(call, budget=budget)
        if isinstance(converted, dict):
            out.append({key: converted.get(key) for key in ("name", "args", "id")})
    return out or None


def generation_outputs(fields: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """An LLM end's generations, each with its tool calls as its ``text`` when it has none.

    A tool-calling turn's text is empty: its output is the decision, the calls' name, args
    and id (as JSON), in the seed-shaped tables and the runs table alike.
    """
    calls = fields.get("tool_calls") or []
    out = []
    for p, gens in enumerate(fields.get("generations") or []):
        row = []
        for g, gen in enumerate(gens if isinstance(gens, list) else []):
            found = calls[p][g] if p < len(calls) and g < len(calls[p] or []) else None
            if isinstance(gen, dict) and not gen.get("text") and found:
                gen = {**gen, "text": _json.dumps(found, default=str)}
            row.append(gen)
        out.append(row)
    return out


def _generation(gen: Any, budget: Budget) -> dict[str, Any]:
    dump = getattr(type(gen), "model_dump", None)
    dumped: Any = None
    if callable(dump):
        try:
            dumped = dump(gen)
        except Exception:
            dumped = None
    if dumped is None:
        dumped = {"text": _attr(gen, "text", gen)}
    out = to_jsonable(dumped, budget=budget)
    if not isinstance(out, dict):
        out = {"text": out}
    text = out.get("text")
    if not isinstance(text, str):  # the metrics and session tables need text
        out["text"] = safe_str(text if text is not None else _attr(gen, "text", ""), budget=budget)
    return out


def _dict(value: Any, key: str, budget: Budget) -> dict[str, Any]:
    """``value`` as a JSON-safe dict: a non-mapping (or an unreadable one) is put under ``key``."""
    converted = to_jsonable(value, budget=budget)
    if isinstance(converted, dict) and isinstance(value, Mapping):
        return converted
    return {key: converted}


def token_of(event: Event) -> Any:
    """A token event's token: in ``extra`` as the hot path records it, or in ``data``."""
    if event.data:
        return event.data[0]
    extra = event.extra
    return extra.get("token", "") if type(extra) is dict else ""


def _fields(event: Event, budget: Budget) -> dict[str, Any]:
    kind, data, extra = event.kind, event.data, event.extra
    if kind is Kind.LLM_NEW_TOKEN:  # most events of a streaming app: first, and no closures
        return {"token": safe_str(token_of(event), MAX_TEXT, budget)}

    def text(value: Any) -> str:
        return safe_str(value, budget=budget)

    def json(value: Any) -> Any:
        return to_jsonable(value, budget=budget)

    if kind is Kind.LLM_START:
        serialized, prompts = data
        return {"serialized": json(serialized), "prompts": [text(p) for p in _items(prompts)]}
    if kind is Kind.CHAT_MODEL_START:
        serialized, batches = data
        batches = [_items(msgs) for msgs in _items(batches, strict=True)]
        return {
            "serialized": json(serialized),
            "prompts": [_buffer_string(msgs, budget) for msgs in batches],
            "messages": [[_message(m, budget) for m in msgs] for msgs in batches],
        }
    if kind is Kind.LLM_END:
        response = data[0]
        llm_output = _attr(response, "llm_output")
        generations = [_items(gens) for gens in _items(_attr(response, "generations"))]
        return {
            "llm_output": _dict(llm_output, "llm_output", budget) if llm_output else {},
            "generations": [[_generation(g, budget) for g in gens] for gens in generations],
            # Apart from the generations, whose rows stay the seeds': ChatGeneration declares
            # ``message: BaseMessage``, so its dump drops an AIMessage's usage_metadata.
            "usage": [[_usage(g, budget) for g in gens] for gens in generations],
            # An AIMessage's tool calls are dropped by the same dump: the model's decision.
            "tool_calls": [[_tool_calls(g, budget) for g in gens] for gens in generations],
        }
    if kind in (Kind.LLM_ERROR, Kind.CHAIN_ERROR, Kind.TOOL_ERROR, Kind.RETRIEVER_ERROR):
        return _error(data[0], data[1] if len(data) > 1 else None, budget)
    if kind is Kind.CHAIN_START:
        serialized, inputs = data
        return {"serialized": json(serialized), "inputs": _dict(inputs, "input", budget)}
    if kind is Kind.CHAIN_END:
        return {"outputs": _dict(data[0], "output", budget)}
    if kind is Kind.TOOL_START:
        serialized, input_str = data
        return {
            "serialized": json(serialized),
            "input_str": text(input_str),
            "inputs": json(extra.get("inputs")),
        }
    if kind is Kind.TOOL_END:
        return {"output": text(data[0])}
    if kind is Kind.TEXT:
        return {"text": text(data[0])}
    if kind is Kind.AGENT_ACTION:
        action = data[0]
        return {
            "tool": text(_attr(action, "tool", "")),
            "tool_input": json(_attr(action, "tool_input")),
            "log": text(_attr(action, "log", "")),
        }
    if kind is Kind.AGENT_FINISH:
        finish = data[0]
        values = _attr(finish, "return_values")
        return {
            "return_values": _dict(values, "output", budget) if values is not None else {},
            "log": text(_attr(finish, "log", "")),
        }
    if kind is Kind.RETRIEVER_START:
        serialized, query = data
        return {"serialized": json(serialized), "query": text(query)}
    if kind is Kind.RETRIEVER_END:
        return {
            "documents": [
                {
                    "page_content": text(_attr(d, "page_content", d)),
                    "metadata": json(_attr(d, "metadata", {})),
                }
                for d in _items(data[0])
            ]
        }
    if kind is Kind.RETRY:
        state = data[0]
        outcome = _attr(state, "outcome")
        error = None
        if outcome is not None and _attr(outcome, "failed", False):
            try:
                error = safe_repr(outcome.exception(), budget=budget)
            except Exception as exc:
                error = safe_repr(exc, budget=budget)
        return {"attempt": json(_attr(state, "attempt_number")), "error": error}
    if kind is Kind.CUSTOM_EVENT:
        name, payload = data
        return {"event_name": text(name), "data": json(payload)}
    return {"data": json(data)}


#: The event keyword argument carrying the seed counters counted at the source.
COUNTERS_KEY = "tracker_counters"


def preconverted(record: Record) -> Event:
    """An event carrying its already converted ``record`` (:func:`convert` returns it)."""
    event = record.event
    return Event(
        event.kind,
        event.seq,
        event.time,
        event.run_id,
        event.parent_run_id,
        (record,),
        PRECONVERTED,
    )


def convert(event: Event, memo: Memo | None = None) -> Record:
    """Convert one event; a payload that cannot be read gives a degraded record, never an error.

    Every part is guarded: a hostile payload degrades only the part it is in (a field, the
    name, the tags or the metadata), and one :class:`~workers.sanitize.Budget` bounds the size
    of the whole record. ``memo``: one per batch, for records nobody changes in place (see
    :class:`~workers.sanitize.Budget`).
    """
    if event.extra is PRECONVERTED:
        record: Record = event.data[0]
        return record
    budget = Budget(memo=memo)
    try:
        fields = _fields(event, budget)
        degraded = False
    except Exception as exc:
        logger.debug("could not convert %s payload", event.kind.value, exc_info=True)
        fields = {
            "payload": safe_repr(event.data, 10_000, budget),
            "conversion_error": safe_repr(exc),
        }
        degraded = True
    extra = event.extra if type(event.extra) is dict else {}
    counters = extra.get(COUNTERS_KEY)
    name = extra.get("name")
    tags = extra.get("tags")
    metadata = extra.get("metadata")
    try:
        return Record(
            event,
            fields,
            safe_str(name, 500, budget) if name is not None else None,
            [safe_str(t, 500, budget) for t in _items(tags)]
            if type(tags) in (list, tuple) and tags
            else [],
            _dict(metadata, "metadata", budget) if type(metadata) is dict and metadata else {},
            degraded,
            counters=counters if type(counters) is dict else None,
        )
    except Exception:  # pragma: no cover - each part is guarded; the event must not be lost
        logger.debug("could not convert the name/tags/metadata of %s", event.kind, exc_info=True)
        return Record(event, fields, degraded=degraded)
