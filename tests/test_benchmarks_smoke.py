"""Smoke test of the benchmark harness (``make bench``): a tiny run writes every table.

Benchmarks measure, they do not test: nothing here looks at a time or a ratio, only at whether
the harness ran its phases and wrote RESULTS.md where it was told to. The phases are split over
runs (targets 1-3, flush and memory, the LangGraph agents, parent CPU with the short script and
the Redis stream) so that a failure names its part.

They run under ``make test-slow``: each run starts many processes that import LangChain and both
SDKs (183 s of a 643 s test run here), which took ``make test`` past its ten minutes.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _quick_run(out: Path, phases: list[str], timeout: float) -> str:
    """``python -m benchmarks.run --quick --only … --out OUT``; its RESULTS.md text."""
    only = [arg for phase in phases for arg in ("--only", phase)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", *only, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out.read_text(encoding="utf-8")


def _assert_in(text: str, needles: list[str]) -> None:
    """Every needle (a heading, a table header, a row's start) is in the results."""
    for needle in needles:
        assert needle in text, needle


def _summary(text: str) -> str:
    """The results' summary table."""
    return text.split("## Summary", 1)[1].split("\n## ", 1)[0]


def test_quick_run_writes_every_table(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    default = ROOT / "benchmarks" / "RESULTS.md"
    before = default.stat().st_mtime_ns if default.exists() else None

    text = _quick_run(out, ["hotpath", "pipeline", "seeds", "serving"], timeout=240)

    # The header: date, machine, the exact command.
    _assert_in(text, ["- Date: ", "`nproc` = ", "CPU: ", "Python 3.", "- Command: `", "--quick"])
    # One section per target, each with its table.
    _assert_in(
        text,
        [
            "## 1. Hot path",
            "## 2. Chain overhead",
            "## 3. Pipeline capacity",
            "## 4. Complexity metrics",
            "## Summary",
        ],
    )
    _assert_in(
        text,
        [
            "| variant | callback | median | p99 | mean | ratio vs deque floor (median) | target |",
            "| mode | variant | median | p99 | mean | ratio vs no-op handlers (median) |",
            "| backend | events |",
            "| worker processes | texts/s (median of rounds) |",
            "| flush after serving: aflush_tracker(finish=True) | flush before (git c23df4b) | "
            "flush ≤ 5 s? | enrichments skipped: this flush / since start |",
        ],
    )
    _assert_in(
        text,
        [
            "| ours: ClearML | on_llm_end |",
            "| ours: Comet | on_llm_new_token |",
            "| ours: Comet | on_chain_start |",
            "| seed: ClearML (stream_logs) | on_llm_end |",
            "| seed: Comet (stream_logs + complexity) | on_llm_end |",
            "| OpenTelemetry BatchSpanProcessor |",
            "| deque(maxlen=N).append (floor) |",
            "| async | ours: ClearML + Comet (all features) |",
            "| sync | 2 no-op sync run_inline handlers |",
            "| async | no handler |",
            "| sync | seed: Comet (defaults) |",
            "| ours: ClearMLCallbackHandler (seed class, all features), information | 600 |",
            "| ours: CometCallbackHandler (seed class, all features), information | 600 |",
            "| ours: TrackerCallbackHandler([clearml(stream_logs=True)]) defaults | 600 |",
            "| ours: TrackerCallbackHandler([comet()]) defaults | 600 |",
            "| ours, one TrackerCallbackHandler (its defaults), both sinks, tracker worker | ",
            "| ours, both seed classes, tracker worker | ",
        ],
    )
    # The OpenTelemetry peer row is measured whenever its SDK can be imported here.
    otel = next(
        line for line in text.splitlines() if "| OpenTelemetry BatchSpanProcessor |" in line
    )
    if importlib.util.find_spec("opentelemetry.sdk.trace") is not None:
        assert "not installed" not in otel, otel
    # Every summary line says yes or no: each target was measured, none failed to run.
    assert "**error**" not in text
    summary = _summary(text)
    assert summary.count("| 1. Hot path |") == 6
    assert summary.count("| 2. Chain overhead |") == 2
    assert summary.count("| 3. Pipeline capacity |") == 2
    assert (
        "| 3. Pipeline capacity | ClearML ≥ 20,000 events/s (TrackerCallbackHandler defaults) |"
        in summary
    )
    assert (
        "| 3. Pipeline capacity | Comet ≥ 20,000 events/s (TrackerCallbackHandler defaults) |"
        in summary
    )
    assert "| 3. Serving | flush after serving ≤ 5 s (one TrackerCallbackHandler, its " in summary
    assert summary.count("| 3. Serving |") == 4
    # --out was honoured: the checked-in results were left alone.
    after = default.stat().st_mtime_ns if default.exists() else None
    assert after == before


def test_quick_flush_and_memory_phases(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"

    text = _quick_run(out, ["flush", "memory"], timeout=300)

    _assert_in(
        text,
        [
            "## 5. Flush: aflush_tracker empty, after a backlog, and finish=True",
            "## 6. Memory (a): producers 10x faster than the sinks for ",
            "## 6. Memory (b): 20,000 events without a flush",
        ],
    )
    _assert_in(
        text,
        [
            "| measurement | backend | samples | all processed after | flush returned after |",
            "| measurement | value | target | met? |",
            "| measurement | value | target | met? | before (git c23df4b) |",
        ],
    )
    _assert_in(
        text,
        [
            "| empty queue | ClearML | 5 |",
            "| empty queue | Comet | 5 |",
            "| empty queue, both at once | both | 5 |",
            "| 1,000 queued, then flush (both) | ClearML | 1 |",
            "| 1,000 queued, then flush (both) | Comet | 1 |",
            "| finish=True, 50 queued | both at once | 1 |",
            "| finish=True right after 1,000 queued | Comet | 1 |",
            "| bytes per queued event: RSS / tracemalloc | ",
            "| the queues' bound | ",
            "| parent RSS peak during the overload | ",
            "| enqueued = processed + dropped after the flush | ClearML: ",
            "| parent RSS after the flush | ",
            "| tracker worker RSS (with its descendants) | baseline ",
            "| tracker worker RSS: start / peak over the events / peak during the flush | ",
            "| events | 20,000 to each handler in ",
            "| every tracker process together (parent + worker + metric processes): start / peak ",
            "| then one flush (flush_tracker(), one handler after the other) | ",
            "| then the finish (flush_tracker(finish=True), one after the other) | ClearML ",
        ],
    )
    # A flush that failed or timed out shows as **error** (flush table) or a failed phase.
    assert "**error**" not in text
    summary = _summary(text)
    assert summary.count("| 5. Flush |") == 5
    assert summary.count("| 6. Memory (a) |") == 3
    assert summary.count("| 6. Memory (b) |") == 3
    assert summary.count("events and the flush ≤ 300 MB |") == 3


def test_quick_agents_phase(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"

    text = _quick_run(out, ["agents"], timeout=180)

    assert "## 15. LangGraph agents: 5 concurrent ReAct-agent sessions per round, " in text
    assert (
        "| mode | variant | round wall: median (mean) | vs no handler (median rounds) | "
        "vs no handler (mean rounds) | vs no-op: median rounds |"
    ) in text
    for mode in ("ainvoke", "astream_events"):
        for row in (
            f"| {mode} | no handler |",
            f"| {mode} | no-op run_inline handler |",
            f"| {mode} | TrackerCallbackHandler: ClearML + Comet + JSON lines |",
            f"| {mode} | TrackerCallbackHandler as above, held up to 10 s while busy "
            "(TRACKER_HOLD_WHILE_BUSY_SECONDS=10), information |",
            f"| {mode} | ClearMLCallbackHandler + CometCallbackHandler (seed classes), "
            "information |",
        ):
            assert row in text, row
    # Every process ran and finished: no error row, no lost events, no failed finish.
    assert "**error**" not in text
    section = text.split("## 15. LangGraph agents", 1)[1]
    for problem in ("finish failed", ": dropped [", " counted."):  # the table's own notes
        assert problem not in section, problem
    # The processes waiting for their turn are stopped: none of them ran on another's clock.
    for mode in ("ainvoke", "astream_events"):
        assert f"(`{mode}`; max 0 ms)" in section, section
    summary = _summary(text)
    assert summary.count("| 15. LangGraph agents |") == 2
    # The short bursts: every variant ran, and nothing was lost.
    bursts = text.split("## 15b. LangGraph agents, short bursts", 1)[1].split("\n## ", 1)[0]
    for row in ("| no handler |", "| TrackerCallbackHandler: ClearML + Comet + JSON lines |"):
        assert row in bursts, row
    assert "**error**" not in bursts


def test_quick_parent_cpu_short_script_and_stream_phases(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"

    text = _quick_run(out, ["parent_cpu", "short_script", "stream"], timeout=900)

    _assert_in(
        text,
        [
            "## 7. Parent CPU per event: ",
            "## 8. Short script: ",
            "## 13a. Application CPU per event, Redis stream vs local pipe: ",
            "## 13b. Stream throughput, 1 vs 2 tracker workers: ",
            "## 13c. Serving with the Redis transport: ",
        ],
    )
    _assert_in(
        text,
        [
            "| no-op run_inline handler (baseline) | ",
            "| ours: one TrackerCallbackHandler, ClearML + Comet sinks, all features | ",
            "| ClearML | ",
            "| Comet | ",
            "| TrackerCallbackHandler([jsonl]), default: local pipe to its tracker worker | ",
            "| TrackerCallbackHandler([jsonl], transport=redis://…): XADD to the stream | ",
            "| --drain (exit when the group has nothing left) | 2 | ",
            "| TrackerCallbackHandler, transport=redis; 2 tracker workers (nice 10), JSON lines | ",
        ],
    )
    assert "**error**" not in text
    summary = _summary(text)
    assert summary.count("| 7. Parent CPU per event |") == 1
    assert summary.count("| 8. Short script |") == 2
    # The stream workers wrote every pre-filled event once, and exited once they had.
    assert summary.count("| 13b. Stream throughput, 1 vs 2 tracker workers |") == 2
    stream_rows = [line for line in summary.splitlines() if "| 13b. Stream throughput" in line]
    assert all(line.endswith("| yes |") for line in stream_rows), stream_rows
