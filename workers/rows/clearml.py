"""Records → the rows langchain_community's ClearMLCallbackHandler logs, with its defects fixed.

Same keys in the same order (the seed streams ``str(row)``), same counters. Where the seed breaks,
these rows still come out: chain inputs and outputs of any shape, ``serialized=None`` (LCEL),
agent finishes without ``output``. The Session Analysis pairs each prompt with its outputs by
run id (the seed builds its prompt side from LLM-end rows and loses the prompts).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pandas as pd

from workers.counters import Counters, source_or_replayed
from workers.event import RUN_ENDS, RUN_ERRORS, RUN_STARTS, Kind
from workers.metrics import COMPLEXITY_METRICS
from workers.records import Record, generation_outputs
from workers.rows.pairing import PromptBook, RunNames
from workers.sanitize import flatten
from workers.table_report import ordered_columns

logger = logging.getLogger("tracker.rows.clearml")

TOKEN_COLUMNS = (
    "token_usage_total_tokens",
    "token_usage_prompt_tokens",
    "token_usage_completion_tokens",
)


class ClearMLRows:
    """Builds the seed's action records and session rows, replaying its counters."""

    def __init__(self) -> None:
        """Fresh counters and no pending prompts."""
        self.counters = Counters()
        self.prompts = PromptBook()
        self.names = RunNames()

    def reset(self) -> None:
        """The seed's ``reset_callback_meta``."""
        self.counters.reset()

    def rows(self, record: Record) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The action rows for ``record`` and the Session Analysis rows it completes.

        Never raises: a record whose fields lack what its kind needs (a ``redact=`` hook edited
        them) still gives one row, with what it has and a ``row_error``.
        """
        meta = source_or_replayed(record, self.counters)
        try:
            rows, session = self._rows(record, meta)
        except Exception as exc:
            return [fallback_row(record, meta, exc)], []
        # Every event leaves a row, even one with no prompts, generations or inputs.
        return rows or [empty_row(record, meta)], session

    def _rows(
        self, record: Record, meta: dict[str, int]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        kind, f = record.kind, record.fields
        remember_name(self.names, record)
        if record.degraded:
            return [{"action": kind.value, **f, **meta}], []
        if kind in (Kind.LLM_START, Kind.CHAT_MODEL_START):
            base = {"action": "on_llm_start", **flatten(f["serialized"]), **meta}
            self.prompts.add(record.run_id, meta["step"], f["prompts"], base.get("name"))
            return [{**base, "prompts": p} for p in f["prompts"]], []
        if kind is Kind.LLM_NEW_TOKEN:
            return [{"action": "on_llm_new_token", "token": f["token"], **meta}], []
        if kind is Kind.LLM_END:
            return self._llm_end(record, meta)
        if kind is Kind.CHAIN_START:
            return self._chain_start(f, meta), []
        if kind is Kind.CHAIN_END:
            outputs = f["outputs"]
            if isinstance(outputs, dict) and ("output" in outputs or "text" in outputs):
                outputs = outputs.get("output", outputs.get("text"))
            return [{"action": "on_chain_end", "outputs": outputs, **meta}], []
        if kind is Kind.TOOL_START:
            row = {"action": "on_tool_start", "input_str": f["input_str"]}
            return [{**row, **flatten(f["serialized"]), **meta}], []
        if kind is Kind.TOOL_END:
            return [{"action": "on_tool_end", "output": f["output"], **meta}], []
        if kind is Kind.TEXT:
            return [{"action": "on_text", "text": f["text"], **meta}], []
        if kind is Kind.AGENT_FINISH:
            values = f["return_values"]
            output = values["output"] if "output" in values else values
            return [{"action": "on_agent_finish", "output": output, "log": f["log"], **meta}], []
        if kind is Kind.AGENT_ACTION:
            row = {"action": "on_agent_action", "tool": f["tool"], "tool_input": f["tool_input"]}
            return [{**row, "log": f["log"], **meta}], []
        if kind in RUN_ERRORS:
            if kind is Kind.LLM_ERROR:
                self.prompts.pop(record.run_id)
            # The seed only counts errors; a row says what failed, where and how.
            return [{**error_row(record, self.names), **meta}], []
        # Callbacks the seed ignores (retriever, retry, custom events): logged, not counted.
        return [{"action": kind.value, **flatten(_scalarish(f)), **meta}], []

    def _llm_end(
        self, record: Record, meta: dict[str, int]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        f = record.fields
        base = {"action": "on_llm_end", **flatten(f["llm_output"]), **meta}
        started = self.prompts.pop(record.run_id)
        complexity = record.complexity or []
        rows: list[dict[str, Any]] = []
        session: list[dict[str, Any]] = []
        index = 0
        for prompt_idx, gens in enumerate(generation_outputs(f)):
            for gen in gens:
                row = {**base, **flatten(gen)}
                if index < len(complexity):
                    row.update(complexity[index])
                index += 1
                rows.append(row)
                session.append(_session_row(row, started, prompt_idx))
        return rows, session

    @staticmethod
    def _chain_start(f: dict[str, Any], meta: dict[str, int]) -> list[dict[str, Any]]:
        base = {"action": "on_chain_start", **flatten(f["serialized"]), **meta}
        inputs = f["inputs"]
        chain_input = inputs.get("input", inputs.get("human_input"))
        if isinstance(chain_input, str):
            return [{**base, "input": chain_input}]
        if isinstance(chain_input, list):
            return [
                {**base, **item} if isinstance(item, dict) else {**base, "input": item}
                for item in chain_input
            ]
        if "input" in inputs or "human_input" in inputs:
            return [{**base, "input": chain_input}]
        # The seed raises "Unexpected data format provided!" here (clearml issue #1126).
        return [{**base, **flatten(inputs, "inputs")}]


def fallback_row(record: Record, meta: dict[str, int], exc: Exception) -> dict[str, Any]:
    """The one row of a record the normal path could not shape (shared with the Comet rows)."""
    logger.debug("tracker: %s record could not be shaped", record.kind.value, exc_info=True)
    fields = record.fields if isinstance(record.fields, dict) else {"fields": record.fields}
    try:
        flat = flatten(fields)
    except Exception:
        flat = {}
    return {"action": record.kind.value, **flat, "row_error": f"{type(exc).__name__}", **meta}


def remember_name(names: RunNames, record: Record) -> None:
    """Note a starting run's name (shared with the Comet rows), for the row of its error."""
    if record.kind in RUN_STARTS and record.run_id is not None:
        serialized = record.fields.get("serialized") if isinstance(record.fields, dict) else None
        named = serialized.get("name") if isinstance(serialized, dict) else None
        names.add(record.run_id, record.name or named)
    elif record.kind in RUN_ENDS and record.kind not in RUN_ERRORS:
        names.pop(record.run_id)


def error_row(record: Record, names: RunNames) -> dict[str, Any]:
    """An error's row (shared with the Comet rows): type, message, the failing run's name and
    id, and the traceback (the seeds only count errors)."""
    f = record.fields
    return {
        "action": record.kind.value,
        "error_type": f["error_type"],
        "error": f["error"],
        "name": record.name or names.name(record.run_id),
        "run_id": str(record.run_id) if record.run_id is not None else None,
        "traceback": f.get("traceback"),
    }


def empty_row(record: Record, meta: dict[str, int]) -> dict[str, Any]:
    """The row of an event that carried nothing to list (no prompts, generations, inputs)."""
    action = "on_llm_start" if record.kind is Kind.CHAT_MODEL_START else record.kind.value
    return {"action": action, **meta}


def _scalarish(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k != "serialized"}


def _session_row(
    row: dict[str, Any], started: tuple[int, list[str], str | None] | None, prompt_idx: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if started is not None:
        step, prompts, name = started
        out["prompt_step"] = step
        out["prompts"] = prompts[prompt_idx] if prompt_idx < len(prompts) else None
        out["name"] = name
    out["output_step"] = row["step"]
    out["output"] = row.get("text")
    for key, value in row.items():
        if key in TOKEN_COLUMNS or key in _METRIC_KEYS:
            out[key] = value
    return out


_METRIC_KEYS = frozenset(COMPLEXITY_METRICS)


PROMPT_SIDE = ("prompt_step", "prompts", "name")


def session_columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """:func:`session_analysis`'s columns for rows read a chunk at a time (its full copy)."""
    present = ordered_columns(rows, non_null=True)
    prompt_side = [c for c in PROMPT_SIDE if c in present]
    return prompt_side + [c for c in present if c not in prompt_side]


def session_analysis(rows: pd.DataFrame) -> pd.DataFrame:
    """The "Session Analysis" table: prompt side and output side, as the seed lays it out.

    Columns missing from every row are dropped (the seed drops a column missing from *any* row,
    which loses e.g. the token counts as soon as one model reports none).
    """
    if rows.empty:
        return rows
    prompt_side = [c for c in PROMPT_SIDE if c in rows]
    output_side = [c for c in rows.columns if c not in prompt_side]
    return pd.concat(
        [rows[prompt_side].dropna(axis=1, how="all"), rows[output_side].dropna(axis=1, how="all")],
        axis=1,
    )
