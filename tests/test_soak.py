"""Long outage under load (``make test-slow``): the chains do not notice, the workers idle, and
every event reaches the archives once the backends are back."""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest
from langchain_core.language_models import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate

from tracker import ClearMLCallbackHandler, CometCallbackHandler
from tracker.archive import read_clearml_archive, read_comet_archive
from tracker.testing import wrap_sinks
from workers.testing import FaultySink

OUTAGE_SECONDS = float(os.environ.get("TRACKER_SOAK_OUTAGE", "30"))
HEALTHY_SECONDS = float(os.environ.get("TRACKER_SOAK_HEALTHY", "10"))
CHAINS_PER_SECOND = 100


def _worker_cpu(process: psutil.Process) -> float:
    """CPU seconds of the tracker's own work: its loop thread, the anyio worker threads it runs
    SDK and spool calls in, and its child processes (sinks, metrics). Not the chains' threads:
    LangChain runs a sync-only LLM's ``_call`` in the loop's default executor."""
    ours = {
        t.native_id
        for t in threading.enumerate()
        if t.name.startswith(("tracker", "AnyIO worker thread"))
    }
    threads = sum(t.user_time + t.system_time for t in process.threads() if t.id in ours)
    children = 0.0
    for child in process.children(recursive=True):
        try:
            times = child.cpu_times()
            children += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return threads + children


@pytest.mark.slow
async def test_thirty_second_outage_under_load(offline_dir: Path):
    wrappers: list[FaultySink] = []

    def wrap(sink: Any) -> FaultySink:
        wrappers.append(FaultySink(sink))
        return wrappers[-1]

    common = {"stream_logs": True, "offline_dir": offline_dir}
    with wrap_sinks(wrap):
        clearml = ClearMLCallbackHandler(task_name="soak", **common)
        comet = CometCallbackHandler(name="soak", **common)
    handlers = [clearml, comet]
    for handler in handlers:
        assert (await handler.aflush_tracker(timeout=120)).ok
    chain = PromptTemplate.from_template("{q}") | FakeListLLM(responses=["ok"]) | StrOutputParser()
    config = {"callbacks": handlers}
    process = psutil.Process()
    latencies: dict[str, list[float]] = {"before": [], "outage": [], "after": []}
    sent: list[str] = []
    phase = "before"

    async def one(i: int) -> None:
        started = time.perf_counter()
        await chain.ainvoke({"q": f"q{i:06d}"}, config)
        latencies[phase].append(time.perf_counter() - started)

    async def load(seconds: float) -> None:
        tasks = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            i = len(sent)
            sent.append(f"q{i:06d}")
            tasks.append(asyncio.ensure_future(one(i)))
            await asyncio.sleep(1 / CHAINS_PER_SECOND)
        await asyncio.gather(*tasks)

    cpu_start, wall_start = _worker_cpu(process), time.monotonic()
    await load(HEALTHY_SECONDS)
    cpu_up = (_worker_cpu(process) - cpu_start) / (time.monotonic() - wall_start)
    phase = "outage"
    for wrapper in wrappers:
        wrapper.down = True
    cpu_start, wall_start = _worker_cpu(process), time.monotonic()
    await load(OUTAGE_SECONDS)
    cpu_down = _worker_cpu(process) - cpu_start
    wall_down = time.monotonic() - wall_start
    calls_down = [w.calls_while_down for w in wrappers]
    for wrapper in wrappers:
        wrapper.down = False
    phase = "after"
    await load(HEALTHY_SECONDS)
    results = [await h.aflush_tracker(finish=True, timeout=300) for h in handlers]

    healthy = statistics.median(latencies["before"] + latencies["after"])
    outage = statistics.median(latencies["outage"])
    phases = {k: f"{statistics.median(v) * 1e3:.3f}" for k, v in latencies.items()}
    report = (
        f"chains {len(sent)}; median latency ms by phase {phases}; healthy "
        f"{healthy * 1e3:.3f} ms, outage "
        f"{outage * 1e3:.3f} ms ({outage / healthy:.3f}x); tracker CPU while down "
        f"{cpu_down:.2f}s over {wall_down:.1f}s ({100 * cpu_down / wall_down:.1f}% of a core; "
        f"{100 * cpu_up:.1f}% before the outage, same load); "
        f"backend calls while down {calls_down}; stats {[h.stats() for h in handlers]}"
    )
    logging.getLogger("tracker.tests").warning("%s", report)  # shown by pytest -rA / on failure
    assert all(r.ok for r in results), results
    # Every question is in both archives exactly once.
    clearml_lines = read_clearml_archive(clearml.archive_path).text_lines()
    clearml_q = Counter(  # the LLM start row holds the prompt, the question itself
        line.split("'prompts': '")[1][:7]
        for line in clearml_lines
        if "'action': 'on_llm_start'" in line and "'prompts': '" in line
    )
    comet_q = Counter(  # the LLM start's text is the prompt, the question itself
        text
        for text, meta in read_comet_archive(comet.archive_path).texts()
        if isinstance(meta, dict) and meta.get("action") == "on_llm_start"
    )
    for name, logged in (("clearml", clearml_q), ("comet", comet_q)):
        twice = sorted(q for q, n in logged.items() if n > 1)
        assert set(logged) == set(sent), (name, report)
        assert not twice, (name, twice[:20], len(twice), report)
    assert all(h.stats()["spooled"] > 0 for h in handlers), report
    assert outage / healthy <= 1.05, report
    assert cpu_down / wall_down < 0.10, report
