"""Tail sampling (issue 14, item 1): every failed or slow trace is kept whole, about
``sample_rate`` of the others, each whole; the counts in ``stats()`` add up."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListLLM
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableLambda

from tracker import TrackerCallbackHandler, sinks
from tracker.archive import read_comet_archive

TRACES = 600
SLOW = 1.0  # seconds a slow trace sleeps; kept from 0.6 s on (quick ones take milliseconds)
WAVE = 25  # traces at once
EVENTS_PER_TRACE = 10  # sequence, two steps, prompt, llm: start and end each


def trace_kind(i: int) -> str:
    """1% of the traces fail, 1% are slow, the rest are quick."""
    return "error" if i % 100 == 7 else "slow" if i % 100 == 42 else "quick"


async def step(inputs: dict[str, Any]) -> dict[str, Any]:
    kind = trace_kind(inputs["i"])
    if kind == "slow":
        await asyncio.sleep(SLOW)
    return {"x": inputs["i"], "kind": kind}


def prompt_or_fail(inputs: dict[str, Any]) -> str:
    if inputs["kind"] == "error":
        raise ValueError(f"trace {inputs['x']} broke")
    return f"Q {inputs['x']}"


async def serve(handler: Any) -> None:
    chain = (
        RunnableLambda(step)
        | RunnableLambda(prompt_or_fail)
        | PromptTemplate.from_template("{q}")
        | FakeListLLM(responses=["a"] * TRACES)
    )

    async def one(i: int) -> None:
        try:
            await chain.ainvoke({"i": i}, config={"callbacks": [handler], "metadata": {"i": i}})
        except ValueError:
            pass

    # 25 at a time: a quick trace stays quick, well under the threshold, even beside the
    # encoding of a held burst (a wave of 100 took 0.7 s there on a slow day).
    for wave in range(0, TRACES, WAVE):
        await asyncio.gather(*(one(i) for i in range(wave, wave + WAVE)))


def test_failed_and_slow_traces_are_all_kept_whole_and_the_rest_sampled(offline_dir: Path):
    handler = TrackerCallbackHandler(
        [sinks.jsonl(offline_dir), sinks.comet(name="tail", offline_dir=offline_dir)],
        offline_dir=offline_dir,
        sample_rate=0.1,
        keep_errors=True,
        keep_slower_than=0.6,
    )
    asyncio.run(serve(handler))
    assert handler.flush_tracker(finish=True, timeout=120).ok
    stats = handler.stats()
    traces = stats["traces"]
    kept = traces["kept_error"] + traces["kept_slow"] + traces["kept_sampled"]
    assert kept + traces["sampled_out"] == TRACES and traces["held"] == 0, traces
    assert (traces["kept_error"], traces["kept_slow"]) == (6, 6), traces
    assert 25 <= traces["kept_sampled"] <= 100, traces  # ~10% of 588
    assert stats["enqueued"] == stats["processed"] and stats["dropped"] == 0, stats

    lines = [json.loads(line) for line in handler.archive_paths["jsonl"].open()]
    records = [line for line in lines if line["type"] == "record"]
    parent = {r["run_id"]: r["parent_run_id"] for r in records if r["kind"].endswith("_start")}
    number = {r["run_id"]: r["metadata"]["i"] for r in records if r["kind"] == "on_chain_start"}

    def root(run: str) -> str:
        while parent.get(run):
            run = parent[run]
        return run

    by_trace: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for record in records:  # grouped by the run tree, each trace named by its chain's input
        by_trace[number[root(record["run_id"])]].append(record)
    assert len(by_trace) == kept
    for i, records in by_trace.items():  # each kept trace whole
        assert len(records) == (6 if trace_kind(i) == "error" else EVENTS_PER_TRACE), i
    kinds = Counter(trace_kind(i) for i in by_trace)
    assert kinds["error"] == 6 and kinds["slow"] == 6
    assert stats["sampled_out"] == traces["sampled_out"] * EVENTS_PER_TRACE
    # Every sink sees only kept traces: the runs table too.
    runs = read_comet_archive(handler.archive_paths["comet"]).tables()["langchain-runs.csv"]
    roots = runs[runs["parent_run_id"].isna()]
    assert len(roots) == kept


@pytest.mark.parametrize("policy", ["keep", "drop"])
def test_open_traces_past_the_buffer_follow_the_policy(offline_dir: Path, policy: str):
    handler = TrackerCallbackHandler(
        [sinks.jsonl(offline_dir)],
        offline_dir=offline_dir,
        sample_rate=0.0,
        keep_errors=True,
        trace_buffer=10,
        open_traces=policy,
    )
    root, child = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start({"name": "root"}, {"q": 1}, run_id=root)
    handler.on_tool_start({"name": "tool"}, "x", run_id=child, parent_run_id=root)
    for i in range(12):  # one open trace (its root never ends) grows past the buffer
        handler.on_text(f"t{i}", run_id=child, parent_run_id=root)
    assert handler.flush_tracker(finish=True, timeout=60).ok
    traces = handler.stats()["traces"]
    lines = [json.loads(line) for line in handler.archive_paths["jsonl"].open()]
    records = [line for line in lines if line["type"] == "record"]
    if policy == "keep":
        assert traces["kept_open"] >= 1 and len(records) == 14, (traces, len(records))
    else:
        assert traces["dropped_open"] >= 1 and len(records) < 14, (traces, len(records))
