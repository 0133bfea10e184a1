"""Concurrency hazards: loops in sequence and at once, thread pools, cancellation, no leftovers.

Tests run under blockbuster: a blocking call on a running event loop (the test's, the tracker's
own) raises ``BlockingError``. Async tests build their handlers in a worker thread
(``asyncio.to_thread``), as examples/fastapi_app.py does, because construction blocks the calling
thread, legitimately but measurably: it looks for server credentials (``clearml_configured`` /
``comet_configured``: ``Path.is_file``, reading ``.comet.config``), resolves ``offline_dir``
(``Path.resolve``: ``lstat`` calls), and when the tracker's loop is not running starts its thread
and waits for it (``start_blocking_portal``), then waits for that loop to accept the pipeline's
task (``BlockingPortal.start_task_soon``). Everything after construction (callbacks,
``aflush_tracker``) must not block, and does not.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from tests.test_handlers import ANSWER, chat_chain, text_chain
from tests.test_shutdown import comet_action_records
from tracker import ClearMLCallbackHandler, CometCallbackHandler
from tracker.archive import read_clearml_archive

ROOT = Path(__file__).resolve().parent.parent
TEXT_CHAIN_EVENTS = 8  # text_chain(): 3 chain start/end pairs, LLM start and end


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    """Fail on any blocking call made on a running event loop while the test runs."""
    with blockbuster_ctx() as detector:
        yield detector


def both(offline_dir: Path, **kwargs: Any) -> tuple[ClearMLCallbackHandler, CometCallbackHandler]:
    """A ClearML and a Comet handler (console records on), offline into ``offline_dir``."""
    return (
        ClearMLCallbackHandler(task_name="concurrency", stream_logs=True, offline_dir=offline_dir),
        CometCallbackHandler(stream_logs=True, offline_dir=offline_dir, **kwargs),
    )


def assert_exact(handler: Any, enqueued: int) -> None:
    """Counters add up, nothing pending, nothing dropped."""
    stats = handler.stats()
    assert stats["enqueued"] == enqueued, stats
    assert stats["enqueued"] == stats["processed"] + stats["dropped"], stats
    assert stats["dropped"] == 0 and stats["pending"] == 0, stats


def clearml_actions(handler: ClearMLCallbackHandler) -> list[str]:
    """The actions of the console records in the ClearML archive."""
    lines = read_clearml_archive(handler.archive_path).text_lines()
    return [line.split("'")[3] for line in lines if line.startswith("{'action': '")]


def comet_actions(handler: CometCallbackHandler) -> list[str]:
    """The actions of the action records in the Comet archive (tokens have no text there)."""
    return [row["action"] for row in comet_action_records(handler.archive_path)]


def test_same_handlers_across_event_loops_in_sequence(offline_dir: Path, blockbuster: BlockBuster):
    clearml, comet = both(offline_dir)
    handlers = [clearml, comet]
    chain = text_chain()

    async def round_(topic: str) -> None:
        answers = await asyncio.gather(
            *(chain.ainvoke({"topic": topic}, config={"callbacks": handlers}) for _ in range(5))
        )
        assert answers == [ANSWER] * 5
        for handler in handlers:  # a flush awaited on this loop, which then ends
            assert (await handler.aflush_tracker(timeout=60)).ok

    for topic in ("one", "two", "three"):
        asyncio.run(round_(topic))

    async def finish() -> list[Any]:
        return [await h.aflush_tracker(finish=True, timeout=60) for h in handlers]

    assert all(r.ok for r in asyncio.run(finish()))
    for handler in handlers:
        assert_exact(handler, 3 * 5 * TEXT_CHAIN_EVENTS)
    assert len(clearml_actions(clearml)) == 3 * 5 * TEXT_CHAIN_EVENTS
    assert len(comet_actions(comet)) == 3 * 5 * TEXT_CHAIN_EVENTS


def test_event_loops_in_threads_at_once(offline_dir: Path, blockbuster: BlockBuster):
    clearml, comet = both(offline_dir)
    handlers = [clearml, comet]
    chain = chat_chain(tokens=10)
    errors: list[BaseException] = []

    async def serve(i: int) -> None:
        async def one(j: int) -> None:
            config = {"callbacks": handlers}
            async for _ in chain.astream({"q": f"thread {i} chain {j}"}, config):
                pass

        await asyncio.gather(*(one(j) for j in range(10)))
        # Each loop flushes (without finish) while the other loops still produce.
        for handler in handlers:
            result = await handler.aflush_tracker(timeout=60)
            assert result.ok, result

    def run(i: int) -> None:
        try:
            asyncio.run(serve(i))
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    results = [h.flush_tracker(finish=True, timeout=60) for h in handlers]
    assert all(r.ok for r in results), results
    enqueued = clearml.stats()["enqueued"]
    # Per streamed chain: prompt and sequence start/end, LLM start/end, 10 tokens + the final.
    assert enqueued == 4 * 10 * (4 + 2 + 11)
    for handler in handlers:
        assert_exact(handler, enqueued)
    assert len(clearml_actions(clearml)) == enqueued
    assert len(comet_actions(comet)) == enqueued


def test_sync_chains_in_a_thread_pool(offline_dir: Path):
    clearml, comet = both(offline_dir)
    handlers = [clearml, comet]
    chain = text_chain()

    def work(i: int) -> str:
        return str(chain.invoke({"topic": f"t{i}"}, config={"callbacks": handlers}))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(work, range(80))) == [ANSWER] * 80
    for handler in handlers:
        assert handler.flush_tracker(finish=True, timeout=60).ok
        assert_exact(handler, 80 * TEXT_CHAIN_EVENTS)
    assert clearml_actions(clearml).count("on_llm_end") == 80
    assert comet_actions(comet).count("on_llm_end") == 80


async def test_chain_cancelled_while_streaming(offline_dir: Path, blockbuster: BlockBuster):
    clearml, comet = await asyncio.to_thread(both, offline_dir)  # blocks: module doc
    handlers = [clearml, comet]
    chain = chat_chain(tokens=10_000)
    tokens = 0

    async def consume() -> None:
        nonlocal tokens
        async for _ in chain.astream({"q": "long answer"}, {"callbacks": handlers}):
            tokens += 1

    task = asyncio.create_task(consume())
    while tokens < 50:
        await asyncio.sleep(0)
    task.cancel()
    cancelled = False
    try:
        await task
    except asyncio.CancelledError:
        cancelled = True
    assert cancelled and 50 <= tokens < 10_000
    del task
    # The handlers keep working for the next chain.
    async for _ in chat_chain(tokens=5).astream({"q": "next"}, {"callbacks": handlers}):
        pass
    results = [await h.aflush_tracker(finish=True, timeout=60) for h in handlers]
    assert all(r.ok for r in results), results
    # LangChain reports the cancelled model's on_llm_error only when the abandoned stream
    # generator is finalized (garbage collection, at the latest the loop's shutdown_asyncgens),
    # which can be after this finish: that one late event is refused and counted as dropped.
    for handler in handlers:
        stats = handler.stats()
        assert stats["enqueued"] == stats["processed"] + stats["dropped"], stats
        assert stats["dropped"] <= 1 and stats["pending"] == 0, stats
    blockbuster.deactivate()  # reading the archives is the test's own blocking I/O
    for handler, actions in ((clearml, clearml_actions(clearml)), (comet, comet_actions(comet))):
        assert len(actions) == handler.stats()["processed"]
        assert actions.count("on_llm_new_token") >= tokens + 5
        assert "on_chain_error" in actions  # the cancellation
        assert actions.count("on_llm_end") == 1  # only the second chain ended


async def test_cancelled_and_timed_out_flushes_still_complete(
    offline_dir: Path, blockbuster: BlockBuster
):
    clearml, comet = await asyncio.to_thread(both, offline_dir)  # blocks: module doc
    handlers = [clearml, comet]
    chain = text_chain()
    for _ in range(3):
        await chain.ainvoke({"topic": "first"}, config={"callbacks": handlers})

    # Right after construction the sinks are still opening (the SDKs start in child
    # processes): these flushes cannot be done yet.
    cancelled = asyncio.create_task(clearml.aflush_tracker(name="cancelled", timeout=60))
    comet_cancelled = asyncio.create_task(comet.aflush_tracker(timeout=60))
    await asyncio.sleep(0.05)
    assert not cancelled.done() and not comet_cancelled.done()
    cancelled.cancel()
    comet_cancelled.cancel()
    for task in (cancelled, comet_cancelled):
        with pytest.raises(asyncio.CancelledError):
            await task

    for _ in range(2):
        await chain.ainvoke({"topic": "second"}, config={"callbacks": handlers})
    tiny = await clearml.aflush_tracker(name="tiny", timeout=0.001)
    assert tiny.timed_out and not tiny.ok
    tiny_comet = await comet.aflush_tracker(timeout=0.001)
    assert tiny_comet.timed_out

    for _ in range(1):
        await chain.ainvoke({"topic": "third"}, config={"callbacks": handlers})
    final = await clearml.aflush_tracker(name="final", finish=True, timeout=60)
    final_comet = await comet.aflush_tracker(finish=True, timeout=60)
    assert final.ok and final_comet.ok, (final, final_comet)
    for handler in handlers:
        assert_exact(handler, 6 * TEXT_CHAIN_EVENTS)

    blockbuster.deactivate()  # reading the archives is the test's own blocking I/O
    # The cancelled and the timed-out flushes ran anyway, each at its place in the queue.
    tables = read_clearml_archive(clearml.archive_path).tables()
    sizes = {name: len(tables[("Action Records", name)]) for name in ("cancelled", "tiny", "final")}
    assert sizes == {
        "cancelled": 3 * TEXT_CHAIN_EVENTS,
        "tiny": 2 * TEXT_CHAIN_EVENTS,
        "final": 1 * TEXT_CHAIN_EVENTS,
    }
    assert len(clearml_actions(clearml)) == 6 * TEXT_CHAIN_EVENTS
    assert len(comet_actions(comet)) == 6 * TEXT_CHAIN_EVENTS


LEFTOVERS_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, threading, time

    import psutil

    from tests.test_handlers import chat_chain
    from tracker import ClearMLCallbackHandler, CometCallbackHandler

    out = sys.argv[1]
    before = {t.ident for t in threading.enumerate()}

    async def main():
        handlers = [
            ClearMLCallbackHandler(task_name="leftovers", complexity_metrics=True,
                                   offline_dir=out),
            CometCallbackHandler(complexity_metrics=True, offline_dir=out),
        ]
        await chat_chain(tokens=5).ainvoke({"q": "hi"}, config={"callbacks": handlers})
        for h in handlers:  # the worker is up and has written: all of ours is running
            await h.aflush_tracker(timeout=60)
        seen = {
            "threads": sorted(t.name for t in threading.enumerate()),
            "children": len(psutil.Process().children(recursive=True)),
        }
        results = [await h.aflush_tracker(finish=True, timeout=60) for h in handlers]
        return seen, [r.ok for r in results]

    seen, ok = asyncio.run(main())
    deadline = time.monotonic() + 15
    while True:
        threads = [t.name for t in threading.enumerate() if t.ident not in before]
        children = []
        for p in psutil.Process().children(recursive=True):
            try:
                children.append(" ".join(p.cmdline()[:4]))
            except psutil.Error:  # exited, or a zombie not reaped yet: still ours
                children.append(f"pid {p.pid} (exiting)")
        if (not threads and not children) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    print(json.dumps({"seen": seen, "ok": ok, "threads": threads, "children": children}))
    """
)


def test_nothing_of_ours_is_left_after_finish(tmp_path: Path):
    """After finish on both handlers: no tracker thread, no anyio worker, no child process.

    In a fresh interpreter, so that no other test's open handler keeps the runtime up.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env["CLEARML_CACHE_DIR"] = str(tmp_path / "clearml-cache")
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", LEFTOVERS_SCRIPT, str(tmp_path / "offline")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] == [True, True], done.stderr[-3000:]
    # While running: the tracker's background thread and its worker program existed.
    assert "tracker-forwarder" in report["seen"]["threads"] and report["seen"]["children"] >= 1
    assert report["threads"] == [] and report["children"] == [], report
