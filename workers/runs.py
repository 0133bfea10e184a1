"""The run tree: one row per LangChain run, built from the records in queue order.

The seeds log flat records; LangChain's callbacks also say how runs nest (``run_id``,
``parent_run_id``), when each started and ended, how it ended, and what an LLM call cost in
tokens. A :class:`RunTable` replays the records into that table; each sink writes it at a flush
(ClearML ``report_table("Runs", series=<flush name>)``, Comet ``langchain-runs.csv``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from workers.event import RUN_ERRORS, Kind
from workers.options import DEFAULT_SESSION_KEYS
from workers.records import Record, generation_outputs
from workers.session import SessionTable

#: The table's columns, in order.
RUN_COLUMNS = (
    "run_id",
    "parent_run_id",
    "name",
    "run_type",
    "start_time",
    "end_time",
    "latency_s",
    "status",
    "error",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "ttft_s",
    "tokens_per_s",
    "chunks",
    "node",
    "graph_step",
    "output",
    "tags",
    "metadata",
)
#: Characters of a run's output kept in the runs table (LLM and tool runs).
OUTPUT_CHARS = 1_000
#: The figures of each LLM run the sinks also log as scalars over time.
LLM_RUN_FIGURES = (
    "latency_s",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "ttft_s",
    "tokens_per_s",
    "chunks",
)


def run_columns(session_keys: tuple[str, ...] = DEFAULT_SESSION_KEYS) -> list[str]:
    """The runs table's columns: :data:`RUN_COLUMNS`, then one per session key."""
    return [*RUN_COLUMNS, *(key for key in session_keys if key not in RUN_COLUMNS)]


_START_TYPES = {
    Kind.CHAIN_START: "chain",
    Kind.LLM_START: "llm",
    Kind.CHAT_MODEL_START: "chat_model",
    Kind.TOOL_START: "tool",
    Kind.RETRIEVER_START: "retriever",
}
_ENDS = frozenset({Kind.CHAIN_END, Kind.LLM_END, Kind.TOOL_END, Kind.RETRIEVER_END})
#: Runs still open after this many newer runs started are reported and forgotten (a run whose
#: end never came must not hold memory for ever).
MAX_OPEN_RUNS = 10_000


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def token_usage(fields: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    """(prompt, completion, total) tokens of an LLM end, if the model reported them.

    Chat models put ``usage_metadata`` on each generated message; completion models (and older
    chat integrations) put ``token_usage`` in ``llm_output``.
    """
    prompt = completion = total = None
    for gens in fields.get("usage") or []:
        for usage in gens if isinstance(gens, list) else []:
            if isinstance(usage, dict):
                prompt = (prompt or 0) + (_int(usage.get("input_tokens")) or 0)
                completion = (completion or 0) + (_int(usage.get("output_tokens")) or 0)
                total = (total or 0) + (_int(usage.get("total_tokens")) or 0)
    if total is not None:
        return prompt, completion, total
    llm_output = fields.get("llm_output")
    usage = llm_output.get("token_usage") if isinstance(llm_output, dict) else None
    if isinstance(usage, dict):
        return (
            _int(usage.get("prompt_tokens")),
            _int(usage.get("completion_tokens")),
            _int(usage.get("total_tokens")),
        )
    return None, None, None


class RunTable:
    """Runs seen since the last report: finished ones, and the ones still running.

    Finished rows go to ``done``, a :class:`~workers.session.SessionTable`: they spill to disk
    like the session tables (a million runs between flushes stay on disk).
    """

    def __init__(self, done: SessionTable) -> None:
        """An empty table whose finished rows go to ``done``."""
        # OrderedDict: evicting the oldest open run is O(1) (a dict's next(iter()) is not, once
        # many entries were popped from its front).
        self._open: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._streams: OrderedDict[str, list[Any]] = OrderedDict()  # run: [first, last, count]
        self._done = done

    def observe(
        self, record: Record, session_keys: tuple[str, ...] = DEFAULT_SESSION_KEYS
    ) -> dict[str, Any] | None:
        """Update the table with one record (in queue order); returns the row it finished."""
        kind = record.kind
        run = record.run_id
        if run is None:
            return None
        key = str(run)
        if kind is Kind.LLM_NEW_TOKEN:  # a token of its own (stream_tokens="each")
            if isinstance(record.fields, dict) and record.fields.get("token"):
                self._token(key, record.event.time)  # not LangChain's closing empty chunk
            return None
        if kind in _START_TYPES:
            parent = record.event.parent_run_id
            metadata = record.metadata if isinstance(record.metadata, dict) else {}
            self._open[key] = {
                "run_id": key,
                "parent_run_id": str(parent) if parent is not None else None,
                "name": record.name or _serialized_name(record.fields),
                "run_type": _START_TYPES[kind],
                "start_time": record.event.time,
                "end_time": None,
                "latency_s": None,
                "status": "running",
                "error": None,
                "prompt_tokens": None,
                "completion_tokens": None,
                "total_tokens": None,
                "ttft_s": None,
                "tokens_per_s": None,
                "chunks": None,
                # LangGraph marks each node's run (and the runs inside it) in its metadata.
                "node": _scalar(metadata.get("langgraph_node")),
                "graph_step": _scalar(metadata.get("langgraph_step")),
                "output": None,
                "tags": list(record.tags) or None,
                "metadata": metadata or None,
                **{k: _scalar(metadata.get(k)) for k in session_keys if k not in RUN_COLUMNS},
            }
            if len(self._open) > MAX_OPEN_RUNS:
                self._done.extend([self._open.popitem(last=False)[1]])
            return None
        if kind not in _ENDS and kind not in RUN_ERRORS:
            return None
        row = self._open.pop(key, None)
        if row is None:  # started before the table was last taken, or never announced
            row = dict.fromkeys(RUN_COLUMNS)
            row["run_id"] = key
            parent = record.event.parent_run_id
            row["parent_run_id"] = str(parent) if parent is not None else None
        end = record.event.time
        row["end_time"] = end
        if row["start_time"] is not None:
            row["latency_s"] = round(end - row["start_time"], 6)
        if kind in RUN_ERRORS:
            row["status"] = "error"
            fields = record.fields
            row["error"] = f"{fields.get('error_type', 'Error')}: {fields.get('error')}"
        else:
            row["status"] = "ok"
        if kind is Kind.LLM_END:
            row["prompt_tokens"], row["completion_tokens"], row["total_tokens"] = token_usage(
                record.fields
            )
            outputs = [g.get("text") for gens in generation_outputs(record.fields) for g in gens]
            row["output"] = _clip(outputs[0]) if outputs else None
        elif kind is Kind.TOOL_END:
            row["output"] = _clip(record.fields.get("output"))
        if kind in (Kind.LLM_END, Kind.LLM_ERROR):
            self._streaming(row, key, record)
        self._done.extend([row])
        return row

    def _token(self, key: str, when: float) -> None:
        stream = self._streams.get(key)
        if stream is None:
            if len(self._streams) >= MAX_OPEN_RUNS:
                self._streams.popitem(last=False)
            self._streams[key] = [when, when, 1]
        else:
            stream[1] = when
            stream[2] += 1

    def _streaming(self, row: dict[str, Any], key: str, record: Record) -> None:
        """Time to first token, tokens per second after it, and the chunk count of a run that
        streamed: from its own token records, or from the figures its end record carries
        (``stream_tokens="aggregate"``)."""
        held = self._streams.pop(key, None)
        streamed = record.fields.get("streamed") if isinstance(record.fields, dict) else None
        if held is None and isinstance(streamed, dict) and streamed.get("first_token_time"):
            held = [streamed["first_token_time"], streamed["last_token_time"], streamed["chunks"]]
        if held is None:
            return
        first, last, count = held
        row["chunks"] = count
        if row["start_time"] is not None:
            row["ttft_s"] = round(first - row["start_time"], 6)
        if count > 1 and last > first:
            row["tokens_per_s"] = round((count - 1) / (last - first), 3)

    def report(self, *, open_runs: bool = True) -> SessionTable:
        """The rows to report now: the finished runs, then (``open_runs``) the open ones.

        Open runs stay open (their copies say ``running``); call :meth:`reported` once the
        rows are written. A rotation leaves open runs out: they are reported once ended.
        """
        if open_runs and self._open:
            self._done.extend([dict(row) for row in self._open.values()])
        return self._done

    def reported(self) -> None:
        """Forget the rows :meth:`report` gave (the open runs are kept)."""
        self._done.clear()

    def reset(self) -> None:
        """Forget everything (a new backend session)."""
        self._open.clear()
        self._streams.clear()
        self._done.clear()


def _clip(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= OUTPUT_CHARS else text[: OUTPUT_CHARS - 1] + "…"


def _scalar(value: Any) -> Any:
    """A session key's value as a table cell (str, number or None)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _serialized_name(fields: dict[str, Any]) -> str | None:
    serialized = fields.get("serialized")
    if not isinstance(serialized, dict):
        return None
    name = serialized.get("name")
    if isinstance(name, str):
        return name
    ids = serialized.get("id")
    return ids[-1] if isinstance(ids, list) and ids and isinstance(ids[-1], str) else None
