"""Flushes whose cost does not grow with the session (issue 12): bounded and rotated session
tables, Comet text samples shared per batch, the enrichment budget, and the demo's flush —
checked in the real offline archives."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pandas as pd
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from tracker import CometCallbackHandler, TrackerCallbackHandler, sinks
from tracker.archive import read_clearml_archive, read_comet_archive
from tracker.inspect_archive import summarize
from workers.session import SessionStore
from workers.sinks.comet_samples import RECORDS_KEY
from workers.table_report import bounded, ordered_columns

ROOT = Path(__file__).resolve().parent.parent
ANSWER = "Paris is the capital of France. It sits on the Seine and has many museums."
RUNS_PER_CHAIN = 4  # sequence, prompt, chat model, parser
EVENTS_PER_CHAIN = 2 * RUNS_PER_CHAIN


def chain(answers: int) -> Any:
    """prompt | chat model | parser, answering ``answers`` times."""
    messages = iter([AIMessage(content=f"{ANSWER} ({i})") for i in range(answers)])
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    return prompt | GenericFakeChatModel(messages=messages) | StrOutputParser()


async def serve(handler: Any, chains: int) -> None:
    """``chains`` concurrent invocations through ``handler``."""
    runnable = chain(chains)
    await asyncio.gather(
        *(runnable.ainvoke({"q": f"q{i}"}, config={"callbacks": [handler]}) for i in range(chains))
    )


def whole(parts: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """A table's parts (rotations and flushes) as one."""
    return pd.concat([frame for _, frame in parts], ignore_index=True)


def test_rotated_and_bounded_tables_read_back_whole(offline_dir: Path):
    chains = 60
    handler = TrackerCallbackHandler(
        [
            sinks.clearml(task_name="rotate", offline_dir=offline_dir),
            sinks.comet(name="rotate", offline_dir=offline_dir),
            sinks.jsonl(offline_dir),
        ],
        offline_dir=offline_dir,
        table_rows=40,
        rotate_events=150,
        batch_size=64,
    )
    asyncio.run(serve(handler, chains))
    result = handler.flush_tracker(name="final", finish=True, timeout=120)
    assert result.ok, result
    stats = handler.stats()
    assert stats["enqueued"] == stats["processed"] == chains * EVENTS_PER_CHAIN
    assert stats["rotations"] >= 2, stats  # the tables went out while serving
    paths = handler.archive_paths

    clearml = read_clearml_archive(paths["clearml"])
    runs = whole(clearml.table_parts("Runs"))
    assert len(runs) == runs["run_id"].nunique() == chains * RUNS_PER_CHAIN  # each run once
    assert set(runs["status"]) == {"ok"}
    series = [s for s, _ in clearml.table_parts("Runs")]
    assert series[-1] == "final" and any(s.startswith("part ") for s in series)
    assert len(whole(clearml.table_parts("Action Records"))) == chains * EVENTS_PER_CHAIN
    # Each report shows at most table_rows rows; the longer tables are artifacts, named.
    assert all(len(frame) <= 40 for frame in clearml.tables().values())
    artifacts = {a["key"]: a for a in clearml.artifacts()}
    assert artifacts and all(a["content"] for a in artifacts.values())
    notes = [line for line in clearml.text_lines() if "the full table is the artifact" in line]
    assert len(notes) == len(artifacts)

    comet = read_comet_archive(paths["comet"])
    runs = whole(comet.table_parts("langchain-runs"))
    assert len(runs) == runs["run_id"].nunique() == chains * RUNS_PER_CHAIN
    assert len(comet.action_records()) == chains * EVENTS_PER_CHAIN
    assert all(len(frame) <= 40 for frame in comet.tables().values())
    session = whole(comet.table_parts("langchain-llm-session"))
    assert len(session) == chains and session["text"].str.startswith(ANSWER).all()

    for path in paths.values():
        assert f"{chains * RUNS_PER_CHAIN} runs" in summarize(path)


def test_a_rotation_part_fits_table_rows_and_is_written_once(offline_dir: Path):
    """A part lands on ``rotate_events`` exactly, whatever the batch size: with ``table_rows``
    the same (as the defaults are, 10,000), no part is a long table that goes out a second
    time in full (an artifact, a gzip asset)."""
    chains = 60
    handler = TrackerCallbackHandler(
        [
            sinks.clearml(task_name="parts", offline_dir=offline_dir),
            sinks.comet(name="parts", offline_dir=offline_dir),
        ],
        offline_dir=offline_dir,
        table_rows=100,
        rotate_events=100,
        batch_size=64,  # 100 is no multiple of it: a batch would cross each part's end
    )
    asyncio.run(serve(handler, chains))
    result = handler.flush_tracker(finish=True, timeout=120)
    assert result.ok, result
    events = chains * EVENTS_PER_CHAIN
    assert handler.stats()["rotations"] == events // 100, handler.stats()
    paths = handler.archive_paths

    clearml = read_clearml_archive(paths["clearml"])
    parts = clearml.table_parts("Action Records")
    sizes = [len(frame) for series, frame in parts if series.startswith("part ")]
    assert sizes == [100] * (events // 100), sizes
    assert len(whole(parts)) == events
    assert clearml.artifacts() == []

    comet = read_comet_archive(paths["comet"])
    assert len(comet.action_records()) == events
    assert not [name for name in comet.assets() if name.endswith(".gz")], comet.assets()


def test_comet_shared_samples_split_back_into_the_seed_classes_texts(offline_dir: Path):
    def drive(handler: Any) -> None:
        runnable = chain(5)
        for i in range(5):
            runnable.invoke({"q": f"q{i}"}, config={"callbacks": [handler]})

    seed_class = CometCallbackHandler(name="seed", offline_dir=offline_dir)
    drive(seed_class)
    assert seed_class.flush_tracker(finish=True, timeout=120).ok
    ours = TrackerCallbackHandler(
        [sinks.comet(name="shared", offline_dir=offline_dir)], offline_dir=offline_dir
    )
    drive(ours)
    assert ours.flush_tracker(finish=True, timeout=120).ok

    theirs = read_comet_archive(seed_class.archive_path)
    shared = read_comet_archive(ours.archive_paths["comet"])
    assert len(theirs.samples()) == len(theirs.texts()) == 5 * 8  # one sample per text
    assert len(shared.samples()) < len(shared.texts())  # several records per sample
    # The records are one JSON text: comet_ml's offline writer encodes a nested list of them
    # in pure Python, a tenth of the worker's CPU (benchmarks/analysis.md, issue 15).
    assert all(isinstance(meta[RECORDS_KEY], str) for _, meta in shared.samples())

    def comparable(texts: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        # A fake model's repr holds an object address, and a message its run's id: both differ
        # from one run to the next.
        return [
            (
                re.sub(r"lc_run--[0-9a-f-]+", "<id>", text),
                {k: v for k, v in meta.items() if k != "repr"},
            )
            for text, meta in texts
        ]

    assert comparable(shared.texts()) == comparable(theirs.texts())  # same texts and metadata


def test_enrichment_budget_skips_late_visualizations_and_counts_them(offline_dir: Path):
    def handler(budget: float | None, name: str) -> TrackerCallbackHandler:
        return TrackerCallbackHandler(
            [
                sinks.clearml(task_name=name, visualize=True, offline_dir=offline_dir),
                sinks.comet(
                    name=name,
                    complexity_metrics=True,
                    visualizations=["dep"],
                    offline_dir=offline_dir,
                ),
            ],
            offline_dir=offline_dir,
            enrichment_budget=budget,
        )

    late = handler(0.0, "late")  # every event is later than a budget of 0 s
    asyncio.run(serve(late, 3))
    result = late.flush_tracker(finish=True, timeout=120)
    assert result.ok and result.skipped == {"visualizations": 3, "complexity": 3}, result
    assert late.stats()["enrichments_skipped"] == {"visualizations": 3, "complexity": 3}
    assert read_clearml_archive(late.archive_paths["clearml"]).media() == []
    comet = read_comet_archive(late.archive_paths["comet"])
    assert not [name for name in comet.assets() if name.startswith("langchain-viz-")]
    assert not [m for m in comet.metrics() if "flesch" in str(m.get("metricName"))]

    always = handler(None, "always")
    asyncio.run(serve(always, 3))
    result = always.flush_tracker(finish=True, timeout=120)
    assert result.ok and result.skipped == {}, result
    assert len(read_clearml_archive(always.archive_paths["clearml"]).media()) == 2 * 3
    comet = read_comet_archive(always.archive_paths["comet"])
    viz = sorted(name for name in comet.assets() if name.startswith("langchain-viz-"))
    assert viz == [f"langchain-viz-dep-{i}.html" for i in range(3)]  # the seed's names


def test_tables_rotate_by_time(offline_dir: Path):
    handler = TrackerCallbackHandler(
        [sinks.jsonl(offline_dir)],
        offline_dir=offline_dir,
        rotate_events=None,
        rotate_seconds=0.3,
        flush_interval=0.05,
    )
    asyncio.run(serve(handler, 2))
    deadline = time.monotonic() + 10
    while handler.stats()["rotations"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert handler.stats()["rotations"] == 1  # nothing new since: no empty rotations
    assert handler.flush_tracker(finish=True, timeout=60).ok
    lines = [json.loads(line) for line in handler.archive_paths["jsonl"].read_text().splitlines()]
    kinds = [(line["type"], line.get("name")) for line in lines if line["type"] != "record"]
    assert kinds.index(("runs", "part 1")) < kinds.index(("flush", None))
    assert f"{2 * RUNS_PER_CHAIN} runs" in summarize(handler.archive_paths["jsonl"])


def test_a_long_table_is_written_in_chunks_in_bounded_memory(tmp_path: Path):
    store = SessionStore(memory_rows=2_000)
    table = store.table("actions")
    rows = 200_000
    for start in range(0, rows, 2_000):
        table.extend(
            [
                {"action": "on_text", "step": i, "text": f"text {i}"}
                for i in range(start, start + 2_000)
            ]
        )
    tracemalloc.start()
    report = bounded(
        table, 10_000, pd.DataFrame, tmp_path / "full.csv.gz", lambda t: (ordered_columns(t), None)
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # A DataFrame of all 200,000 rows alone takes ~70 MB here; chunks take a few.
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert report.rows == rows and len(report.shown) == 10_000 and report.truncated
    assert report.full is not None
    full = pd.read_csv(io.BytesIO(gzip.decompress(report.full.read_bytes())))
    assert list(full.columns) == ["action", "step", "text"] and list(full["step"]) == list(
        range(rows)
    )
    store.close()


def test_demo_prints_its_configuration_and_flush_time(tmp_path: Path):
    out = tmp_path / "demo"
    where = ("--offline-dir", str(out))
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "demo", "--chains", "20", "--tokens", "5", *where],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    config = [line for line in done.stdout.splitlines() if line.startswith("config: ")]
    assert config and "TrackerCallbackHandler" in config[0]
    assert "the flush after serving took" in done.stdout
    assert len(list(out.glob("*.zip"))) == 2
    # It ends with the HTML report of what it logged.
    assert f"report (open it in a browser): {(out / 'report.html').resolve()}" in done.stdout
    assert "Run tree of trace" in (out / "report.html").read_text(encoding="utf-8")
