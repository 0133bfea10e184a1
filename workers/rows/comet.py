"""Records → what langchain_community's CometCallbackHandler logs, with its defects fixed.

Per record: action rows (same keys and order as the seed), the texts it streams with their
metadata, the (start, end) row pairs of the session table, and the metric summaries of LLM ends.
Chain inputs and outputs that are not strings are logged as JSON (the seed warns and drops them);
the session table pairs prompts with generations by run id (the seed pairs them by row position,
which mixes up concurrent runs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workers.counters import Counters, source_or_replayed
from workers.event import RUN_ERRORS, Kind
from workers.json_text import json_text
from workers.records import Record, generation_outputs
from workers.rows.clearml import empty_row, error_row, fallback_row, remember_name
from workers.rows.pairing import PromptBook, RunNames
from workers.rows.summary import describe
from workers.sanitize import flatten, to_jsonable

logger = logging.getLogger("tracker.rows.comet")


@dataclass
class CometOutput:
    """Everything one record makes the Comet sink log."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    texts: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)


# For tool, text and agent records the seed hands log_text its row and then adds the value to
# it; Comet serializes the metadata later, so the seed's archives carry the whole row. So do ours.


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json_text(value)


class CometRows:
    """Builds the seed's rows, texts and summaries, replaying its counters."""

    def __init__(self, custom_metrics: Callable[..., dict[str, Any]] | None = None) -> None:
        """``custom_metrics(generation, prompt_idx, gen_idx) -> dict``, as the seed takes."""
        self.counters = Counters()
        self.prompts = PromptBook()
        self.names = RunNames()
        self.custom_metrics = custom_metrics

    def reset(self) -> None:
        """The seed's ``reset_callback_meta``."""
        self.counters.reset()

    def build(self, record: Record) -> CometOutput:
        """What ``record`` makes the seed log (and the session pairs it completes).

        Never raises: a record whose fields lack what its kind needs (a ``redact=`` hook edited
        them) still gives one row, with what it has and a ``row_error``.
        """
        meta = source_or_replayed(record, self.counters)
        try:
            out = self._build(record, meta)
        except Exception as exc:
            return CometOutput(rows=[fallback_row(record, meta, exc)])
        if not out.rows:  # every event leaves a row, even one with no prompts or generations
            out.rows.append(empty_row(record, meta))
        return out

    def _build(self, record: Record, meta: dict[str, int]) -> CometOutput:
        kind, f = record.kind, record.fields
        step = meta["step"]
        out = CometOutput()
        remember_name(self.names, record)
        if record.degraded:
            out.rows.append({"action": kind.value, **meta, **f})
            return out
        if kind in (Kind.LLM_START, Kind.CHAT_MODEL_START):
            base = {"action": "on_llm_start", **flatten(f["serialized"]), **meta}
            starts = [{**base, "prompts": p} for p in f["prompts"]]
            self.prompts.add(record.run_id, starts)
            out.rows.extend(starts)
            out.texts.extend((p, base, step) for p in f["prompts"])
        elif kind is Kind.LLM_NEW_TOKEN:
            out.rows.append({"action": "on_llm_new_token", "token": f["token"], **meta})
        elif kind is Kind.LLM_END:
            self._llm_end(record, meta, out)
        elif kind in (Kind.CHAIN_START, Kind.CHAIN_END):
            start = kind is Kind.CHAIN_START
            base = {"action": kind.value}
            if start:
                base.update(flatten(f["serialized"]))
            base.update(meta)
            values = f["inputs"] if start else f["outputs"]
            for key, value in values.items():
                out.texts.append((_text(value), base, step))
                out.rows.append({**base, key: value})
        elif kind is Kind.TOOL_START:
            row = {"action": "on_tool_start", **flatten(f["serialized"]), **meta}
            row["input_str"] = f["input_str"]
            out.rows.append(row)
            out.texts.append((f["input_str"], row, step))
        elif kind is Kind.TOOL_END:
            row = {"action": "on_tool_end", **meta, "output": f["output"]}
            out.rows.append(row)
            out.texts.append((f["output"], row, step))
        elif kind is Kind.TEXT:
            row = {"action": "on_text", **meta, "text": f["text"]}
            out.rows.append(row)
            out.texts.append((f["text"], row, step))
        elif kind is Kind.AGENT_FINISH:
            values = f["return_values"]
            output = values["output"] if "output" in values else values
            row = {"action": "on_agent_finish", "log": f["log"], **meta, "output": output}
            out.rows.append(row)
            out.texts.append((_text(output), row, step))
        elif kind is Kind.AGENT_ACTION:
            tool_input = _text(f["tool_input"])
            row = {"action": "on_agent_action", "log": f["log"], "tool": f["tool"], **meta}
            row["tool_input"] = tool_input
            out.rows.append(row)
            out.texts.append((tool_input, row, step))
        elif kind in RUN_ERRORS:
            if kind is Kind.LLM_ERROR:
                self.prompts.pop(record.run_id)
            # The seed only counts errors; a row says what failed, where and how.
            out.rows.append({**error_row(record, self.names), **meta})
        else:  # retriever, retry, custom events: the seed ignores them; logged, not counted
            fields = {k: v for k, v in f.items() if k != "serialized"}
            out.rows.append({"action": kind.value, **flatten(fields), **meta})
        return out

    def _llm_end(self, record: Record, meta: dict[str, int], out: CometOutput) -> None:
        f = record.fields
        step = meta["step"]
        base = {"action": "on_llm_end", **flatten(f["llm_output"]), **meta}
        started = self.prompts.pop(record.run_id)
        starts = started[0] if started else []
        complexity = record.complexity or []
        originals = _original_generations(record)
        precomputed = record.custom
        complexity_rows: list[dict[str, Any]] = []
        custom_rows: list[dict[str, Any]] = []
        index = 0
        for prompt_idx, gens in enumerate(generation_outputs(f)):
            for gen_idx, gen in enumerate(gens):
                row = {**base, **flatten(gen)}
                if index < len(complexity) and complexity[index]:
                    complexity_rows.append(complexity[index])
                    row.update(complexity[index])
                index += 1
                if precomputed is not None:
                    custom = precomputed[index - 1] if index - 1 < len(precomputed) else {}
                else:
                    custom = self._custom(originals, prompt_idx, gen_idx)
                if custom:
                    custom_rows.append(custom)
                    row.update(custom)
                out.texts.append((gen.get("text", ""), base, step))
                out.rows.append(row)
                start = starts[prompt_idx] if prompt_idx < len(starts) else None
                out.pairs.append({"start": start, "end": row})
        for metrics in (complexity_rows, custom_rows):
            if metrics:
                out.metrics.extend((key, value, step) for key, value in describe(metrics).items())

    def custom_for(self, record: Record) -> list[dict[str, Any]]:
        """The custom metrics of every generation of an LLM end (needs the original objects)."""
        originals = _original_generations(record)
        return [
            self._custom(originals, p, g)
            for p, gens in enumerate(record.fields.get("generations", []))
            for g in range(len(gens))
        ]

    def _custom(self, originals: Any, prompt_idx: int, gen_idx: int) -> dict[str, Any]:
        if self.custom_metrics is None:
            return {}
        try:
            generation = originals[prompt_idx][gen_idx]
            return to_jsonable(dict(self.custom_metrics(generation, prompt_idx, gen_idx)))
        except Exception:
            logger.warning(
                "tracker: custom_metrics raised; this generation has none", exc_info=True
            )
            return {}


def _original_generations(record: Record) -> Any:
    data = record.event.data
    return getattr(data[0], "generations", []) if data else []


def session_layout(pairs: Iterable[dict[str, Any]]) -> tuple[list[str], Callable[..., Any]]:
    """:func:`session_table`'s columns and row flattening, for pairs read a chunk at a time.

    ``pd.merge`` puts the start columns first, then the end columns, and suffixes only the
    names both sides have.
    """
    starts: dict[str, None] = {}
    ends: dict[str, None] = {}
    for pair in pairs:
        starts.update(dict.fromkeys(pair["start"] or {}))
        ends.update(dict.fromkeys(pair["end"]))
    both = starts.keys() & ends.keys()
    start_names = {k: f"{k}_llm_start" if k in both else k for k in starts}
    end_names = {k: f"{k}_llm_end" if k in both else k for k in ends}

    def flat(pair: dict[str, Any]) -> dict[str, Any]:
        row = {start_names[k]: v for k, v in (pair["start"] or {}).items()}
        row.update((end_names[k], v) for k, v in pair["end"].items())
        return row

    return [*start_names.values(), *end_names.values()], flat


def session_table(pairs: list[dict[str, Any]]) -> pd.DataFrame:
    """ "langchain-llm-session.csv": start rows merged with end rows, the seed's suffixes."""
    if not pairs:
        return pd.DataFrame()
    starts = pd.DataFrame([p["start"] or {} for p in pairs])
    ends = pd.DataFrame([p["end"] for p in pairs])
    return pd.merge(
        starts, ends, left_index=True, right_index=True, suffixes=("_llm_start", "_llm_end")
    )
