"""Beyond the seeds: the run tree, LLM scalars, errors, one handler for several backends,
sampling by trace, and the CLI — checked in the real offline archives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from tests.oracle import drive_workload, seed_comet
from tracker import (
    ClearMLCallbackHandler,
    CometCallbackHandler,
    TrackerCallbackHandler,
    sinks,
)
from tracker.archive import read_clearml_archive, read_comet_archive
from tracker.inspect_archive import summarize
from tracker.testing import wrap_sinks
from workers.sampling import keeps
from workers.testing import FaultySink

ROOT = Path(__file__).resolve().parent.parent
USAGE = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}


def chat_chain(answers: int) -> Any:
    """prompt | a chat model reporting token usage | parser."""
    messages = iter(
        [AIMessage(content=f"answer {i}", usage_metadata=USAGE) for i in range(answers)]
    )
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    return prompt | GenericFakeChatModel(messages=messages) | StrOutputParser()


def failing(_: Any) -> str:
    """A chain step that fails."""
    raise ValueError("the step broke")


def drive(handlers: list[Any], answers: int = 3) -> None:
    """``answers`` chat chains that succeed, and one that fails in a step of its own."""
    chain = chat_chain(answers)
    for i in range(answers):
        chain.invoke({"q": f"question {i}"}, config={"callbacks": handlers})
    with pytest.raises(ValueError):
        (RunnableLambda(lambda x: x) | RunnableLambda(failing)).invoke(
            "x", config={"callbacks": handlers}
        )


def check_runs(runs: Any) -> None:
    """The run table of :func:`drive` with 3 answers: tree, types, status, latency, tokens."""
    rows = runs.to_dict("records")
    by_id = {r["run_id"]: r for r in rows}
    roots = [
        r
        for r in rows
        if r["parent_run_id"] in (None, "None") or r["parent_run_id"] != r["parent_run_id"]
    ]
    assert len(roots) == 4  # 3 chat chains and the failing one
    chat = [r for r in rows if r["run_type"] == "chat_model"]
    assert len(chat) == 3
    for row in chat:
        assert by_id[row["parent_run_id"]]["run_type"] == "chain"  # nested under its sequence
        assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (11, 7, 18)
        assert row["status"] == "ok" and float(row["latency_s"]) >= 0
    errors = [r for r in rows if r["status"] == "error"]
    assert errors and all("ValueError: the step broke" in r["error"] for r in errors)
    assert {r["run_type"] for r in rows} == {"chain", "chat_model"}


def test_runs_table_and_llm_scalars_in_both_archives(offline_dir: Path):
    clearml = ClearMLCallbackHandler(task_name="runs", offline_dir=offline_dir)
    comet = CometCallbackHandler(name="runs", offline_dir=offline_dir)
    drive([clearml, comet])
    assert clearml.flush_tracker(name="s1", finish=True, timeout=120).ok
    assert comet.flush_tracker(finish=True, timeout=120).ok

    clearml_archive = read_clearml_archive(clearml.archive_path)
    check_runs(clearml_archive.tables()[("Runs", "s1")])
    scalars = Counter(s["series"] for s in clearml_archive.scalars() if s["title"] == "LLM runs")
    assert scalars["latency_s"] == 3 and scalars["total_tokens"] == 3

    health = {s["series"] for s in clearml_archive.scalars() if s["title"] == "Tracker health"}
    assert {"queue_depth", "dropped", "delay_s", "in_spool"} <= health  # sampled at the flush

    comet_archive = read_comet_archive(comet.archive_path)
    check_runs(comet_archive.tables()["langchain-runs.csv"])
    names = Counter(str(m.get("metricName", m.get("name"))) for m in comet_archive.metrics())
    assert names["llm_run_latency_s"] == 3 and names["llm_run_total_tokens"] == 3, names
    assert names["tracker_processed"] >= 1 and names["tracker_delay_s"] >= 1, names


def test_one_handler_feeds_clearml_comet_and_jsonl_from_one_queue(offline_dir: Path):
    handler = TrackerCallbackHandler(
        [
            sinks.clearml(task_name="multi", stream_logs=True, offline_dir=offline_dir),
            sinks.comet(name="multi", offline_dir=offline_dir),
            sinks.jsonl(offline_dir),
        ],
        offline_dir=offline_dir,
    )
    drive([handler])
    result = handler.flush_tracker(name="m", finish=True, timeout=120)
    assert result.ok, result
    stats = handler.stats()
    per_chain = 8  # chain, prompt, chat model and parser runs: start and end each
    assert stats["enqueued"] == stats["processed"] == 3 * per_chain + 6  # queued once, not 3x
    paths = handler.archive_paths
    assert set(paths) == {"clearml", "comet", "jsonl"}
    check_runs(read_clearml_archive(paths["clearml"]).tables()[("Runs", "m")])
    check_runs(read_comet_archive(paths["comet"]).tables()["langchain-runs.csv"])
    lines = [json.loads(line) for line in paths["jsonl"].read_text().splitlines()]
    records = [line for line in lines if line["type"] == "record"]
    assert len(records) == stats["enqueued"]
    chat_starts = [r for r in records if r["kind"] == "on_chat_model_start"]
    roles = [m["role"] for m in chat_starts[0]["fields"]["messages"][0]]
    assert roles == ["system", "human"]  # chat messages with their roles, not flattened
    errors = [r for r in records if r["kind"] == "on_chain_error"]
    assert errors and "Traceback" in errors[0]["fields"]["traceback"]
    assert "failing" in errors[0]["fields"]["traceback"]  # the frame that raised
    runs = next(line for line in lines if line["type"] == "runs")["runs"]
    assert len(runs) == len({r["run_id"] for r in records if r["run_id"]})


def test_sampling_keeps_or_drops_whole_traces(offline_dir: Path):
    handler = TrackerCallbackHandler(
        [sinks.jsonl(offline_dir)], offline_dir=offline_dir, sample_rate=0.5
    )
    chain = chat_chain(40)
    for i in range(40):
        chain.invoke({"q": f"q{i}"}, config={"callbacks": [handler]})
    result = handler.flush_tracker(finish=True, timeout=60)
    assert result.ok
    lines = [json.loads(x) for x in handler.archive_paths["jsonl"].read_text().splitlines()]
    records = [x for x in lines if x["type"] == "record"]
    parent: dict[str, str | None] = {}
    for r in records:
        if r["kind"].endswith("_start"):
            parent[r["run_id"]] = r["parent_run_id"]

    def root(run: str) -> str:
        while parent.get(run):
            run = parent[run]  # type: ignore[assignment]
        return run

    per_trace: dict[str, int] = defaultdict(int)
    for r in records:
        per_trace[root(r["run_id"])] += 1
    assert 5 <= len(per_trace) <= 35  # about half of 40, and not all or none
    assert set(per_trace.values()) == {8}  # every kept trace is whole
    from uuid import UUID

    assert all(keeps(UUID(run), 0.5) for run in per_trace)  # the same decision anywhere
    stats = handler.stats()
    assert stats["sampled_out"] == (40 - len(per_trace)) * 8
    assert stats["enqueued"] == stats["processed"] == 320


def test_cli_inspect_reads_ours_the_seeds_and_jsonl(offline_dir: Path, tmp_path: Path):
    handler = TrackerCallbackHandler(
        [
            sinks.clearml(task_name="inspect", offline_dir=offline_dir),
            sinks.comet(name="inspect", offline_dir=offline_dir),
            sinks.jsonl(offline_dir),
        ],
        offline_dir=offline_dir,
    )
    drive([handler])
    assert handler.flush_tracker(name="i", finish=True, timeout=120).ok
    paths = handler.archive_paths
    with seed_comet(tmp_path) as run:
        drive_workload(run.handler)
        run.handler.flush_tracker(finish=True)
        seed_archive = run.archive_path()

    clearml = summarize(paths["clearml"])
    assert "ClearML offline session" in clearml and "15 runs" in clearml
    assert "errors: 2" in clearml and "on_llm_start" in clearml  # the seed rows name it so
    assert "Runs / i: 15 rows" in clearml and "LLM runs/latency_s: 3 points" in clearml
    comet = summarize(paths["comet"])
    assert "Comet offline experiment" in comet and "15 runs" in comet
    assert "langchain-runs.csv" in comet and "llm_run_total_tokens: 3 points" in comet
    seed = summarize(seed_archive)
    assert "Comet offline experiment" in seed and "on_llm_start" in seed
    jsonl = summarize(paths["jsonl"])
    assert "JSON-lines session" in jsonl and "15 runs" in jsonl and "tokens: 54 total" in jsonl

    cli = subprocess.run(
        [sys.executable, "-m", "tracker", "inspect", str(paths["clearml"]), str(paths["jsonl"])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert cli.returncode == 0, cli.stderr
    assert "ClearML offline session" in cli.stdout and "JSON-lines session" in cli.stdout
    helped = subprocess.run(
        [sys.executable, "-m", "tracker", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert all(word in helped.stdout for word in ("demo", "inspect", "replay"))


def test_cli_replay_sends_a_spool_to_its_backend(offline_dir: Path):
    wrappers: list[FaultySink] = []

    def down(sink: Any) -> FaultySink:
        wrappers.append(FaultySink(sink, down=True))
        return wrappers[0]

    with wrap_sinks(down):
        handler = CometCallbackHandler(stream_logs=True, offline_dir=offline_dir)
    for i in range(30):
        handler.on_text(f"r{i:02d}")
    stranded = handler.flush_tracker(finish=True, timeout=60)
    assert not stranded.ok and handler.stats()["in_spool"] == 30
    spool = offline_dir / "spool" / "comet"
    cli = subprocess.run(
        [sys.executable, "-m", "tracker", "replay", str(spool), "--offline-dir", str(offline_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "30 events replayed" in cli.stdout
    archive = Path(cli.stdout.split("archive: ")[1].split()[0])
    texts = [t for t, _ in read_comet_archive(archive).texts()]
    assert texts == [f"r{i:02d}" for i in range(30)]
    assert not list(spool.glob("*.spool"))


@pytest.mark.parametrize("mode", ["aggregate", "each"])
def test_streamed_tokens_aggregate_per_run_or_log_each(offline_dir: Path, mode: str):
    from tracker.demo import ScriptedChatModel

    handler = TrackerCallbackHandler(
        [sinks.jsonl(offline_dir), sinks.comet(name="tokens", offline_dir=offline_dir)],
        offline_dir=offline_dir,
        stream_tokens=mode,
    )
    model = ScriptedChatModel(answers=["one two three four five six"], tokens=6)
    chunks = list(model.stream("hi", config={"callbacks": [handler]}))
    assert len(chunks) >= 6
    assert handler.flush_tracker(finish=True, timeout=120).ok
    lines = [json.loads(x) for x in handler.archive_paths["jsonl"].read_text().splitlines()]
    records = [x for x in lines if x["type"] == "record"]
    tokens = [r for r in records if r["kind"] == "on_llm_new_token"]
    end = next(r for r in records if r["kind"] == "on_llm_end")
    stats = handler.stats()
    if mode == "aggregate":
        assert tokens == [] and stats["tokens_aggregated"] == len(chunks)
        assert end["fields"]["streamed"]["tokens"] == len(chunks)
        assert end["fields"]["streamed"]["text"].split() == "one two three four five six".split()
    else:
        assert len(tokens) == len(chunks) and "streamed" not in end["fields"]
    assert stats["enqueued"] == stats["processed"]  # held tokens count as processed
    comet_rows = json.loads(
        read_comet_archive(handler.archive_paths["comet"]).assets()[
            "langchain-action_records.json"
        ][0]
    )
    streamed = sum(1 for row in comet_rows if row["action"] == "on_llm_new_token")
    assert streamed == (0 if mode == "aggregate" else len(chunks))


def test_runs_take_tokens_from_llm_output_token_usage(offline_dir: Path):
    handler = TrackerCallbackHandler([sinks.jsonl(offline_dir)], offline_dir=offline_dir)
    drive_workload(handler)  # a completion LLM whose LLMResult carries llm_output.token_usage
    assert handler.flush_tracker(finish=True, timeout=60).ok
    lines = [json.loads(x) for x in handler.archive_paths["jsonl"].read_text().splitlines()]
    runs = next(x for x in lines if x["type"] == "runs")["runs"]
    llm = [r for r in runs if r["run_type"] == "llm" and r["status"] == "ok"]
    assert [(r["prompt_tokens"], r["completion_tokens"], r["total_tokens"]) for r in llm] == [
        (21, 64, 85)
    ]
