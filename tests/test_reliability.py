"""Backend faults, overflow and crash recovery: real SDKs offline behind a fault-injecting wrapper.

Every test checks the archive the SDK wrote: what the tracker promised is what is in there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tracker import (
    ClearMLCallbackHandler,
    CometCallbackHandler,
    TrackerCallbackHandler,
    sinks,
    testing,
)
from tracker.archive import read_clearml_archive, read_comet_archive
from tracker.testing import wrap_sinks
from workers.breaker import CircuitBreaker, RetryPolicy
from workers.event import Kind
from workers.queue import EventQueue
from workers.testing import FaultySink

ROOT = Path(__file__).resolve().parent.parent


def faulty(holder: list[FaultySink], **faults: Any) -> Any:
    """A :func:`tracker.testing.wrap_sinks` wrapper that keeps each wrapper for the test."""

    def wrap(sink: Any) -> FaultySink:
        holder.append(FaultySink(sink, **faults))
        return holder[-1]

    return wrap


def quick_breaker(handler: Any, cooldown: float = 0.2, deadline: float = 30.0) -> None:
    """Short cool-downs and pauses so that a test's outage takes a second, not a minute."""
    for sink in handler._pipeline.sinks:
        sink.breaker = CircuitBreaker(cooldown=cooldown, max_cooldown=cooldown * 4)
        sink.retry = RetryPolicy(attempts=3, base=0.01, cap=0.05, deadline=deadline)


def clearml_texts(handler: Any) -> list[str]:
    """The texts of the on_text records in the ClearML archive's console log, in order."""
    lines = read_clearml_archive(handler.archive_path).text_lines()
    return [line.split("'text': '")[1].split("'")[0] for line in lines if "'text': '" in line]


def comet_texts(handler: Any) -> list[str]:
    """The logged texts in the Comet archive, in order."""
    return [text for text, _ in read_comet_archive(handler.archive_path).texts()]


@pytest.mark.parametrize("backend", ["clearml", "comet"])
def test_outage_spools_then_replays_in_order_exactly_once(offline_dir: Path, backend: str):
    wrappers: list[FaultySink] = []
    cls = ClearMLCallbackHandler if backend == "clearml" else CometCallbackHandler
    with wrap_sinks(faulty(wrappers)):
        handler = cls(stream_logs=True, offline_dir=offline_dir, batch_size=20)
    quick_breaker(handler)
    assert handler.flush_tracker(timeout=60).ok  # opened and healthy
    wrappers[0].down = True
    for i in range(300):
        handler.on_text(f"t{i:04d}")
    deadline = time.monotonic() + 30
    while handler.stats()["processed"] < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = handler.stats()
    assert stats["in_spool"] == stats["spooled"] > 0 and stats["backend_down"] == [backend]
    # The breaker stops the hammering: 15 batches, but only the first one's retries and the
    # cool-down probes reached the backend.
    assert wrappers[0].calls_while_down < 15
    down_flush = handler.flush_tracker(timeout=30)
    assert not down_flush.ok and "wait in the spool" in down_flush.errors[-1]
    assert down_flush.seconds < 5, down_flush  # "returns at once": one probe, no waiting
    spool_dir = offline_dir / "spool" / backend
    files = list(spool_dir.glob("spool.sqlite3*"))
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700

    wrappers[0].down = False
    for i in range(300, 320):
        handler.on_text(f"t{i:04d}")
    result = handler.flush_tracker(finish=True, timeout=60)
    assert result.ok, result
    stats = handler.stats()
    assert stats["in_spool"] == 0 and stats["replayed"] == stats["spooled"]
    assert stats["enqueued"] == stats["processed"] == 320 and stats["dropped"] == 0
    texts = clearml_texts(handler) if backend == "clearml" else comet_texts(handler)
    assert texts == [f"t{i:04d}" for i in range(320)]  # all, in order, none twice
    assert not list(spool_dir.glob("*.spool"))


def test_one_call_in_three_fails_retries_deliver_everything_once(offline_dir: Path):
    wrappers: list[FaultySink] = []
    with wrap_sinks(faulty(wrappers, fail_every=3)):
        handler = CometCallbackHandler(stream_logs=True, offline_dir=offline_dir, batch_size=5)
    quick_breaker(handler)
    for i in range(100):
        handler.on_text(f"x{i}")
        if i % 5 == 4:
            time.sleep(0.01)  # several batches, so that several writes fail
    result = handler.flush_tracker(finish=True, timeout=60)
    assert result.ok, result
    assert wrappers[0].writes >= 21  # 20+ batches, every third write failed and was retried
    assert handler.stats()["spooled"] == 0  # retries were enough: the breaker never opened
    assert comet_texts(handler) == [f"x{i}" for i in range(100)]


def test_slow_backend_does_not_slow_the_caller(offline_dir: Path):
    wrappers: list[FaultySink] = []
    with wrap_sinks(faulty(wrappers)):
        handler = ClearMLCallbackHandler(stream_logs=True, offline_dir=offline_dir, batch_size=10)
    assert handler.flush_tracker(timeout=60).ok
    wrappers[0].delay = 1.0  # one second per call
    for i in range(50):
        handler.on_text(f"s{i}")
    # The callbacks returned long before the sink could take the first batch.
    assert handler.stats()["pending"] > 40
    result = handler.flush_tracker(finish=True, timeout=60)
    assert result.ok and clearml_texts(handler) == [f"s{i}" for i in range(50)]


def test_hung_backend_call_hits_its_deadline_then_is_spooled(offline_dir: Path):
    wrappers: list[FaultySink] = []
    with wrap_sinks(faulty(wrappers)):
        handler = CometCallbackHandler(stream_logs=True, offline_dir=offline_dir)
    quick_breaker(handler, deadline=0.2)
    assert handler.flush_tracker(timeout=60).ok
    wrappers[0].hang = True
    for i in range(10):
        handler.on_text(f"h{i}")
    hung = handler.flush_tracker(timeout=30)
    assert not hung.timed_out and not hung.ok  # the deadline cut the hung calls, not the flush
    assert handler.stats()["in_spool"] == 10
    wrappers[0].hang = False
    result = handler.flush_tracker(finish=True, timeout=60)
    assert result.ok, result
    assert comet_texts(handler) == [f"h{i}" for i in range(10)]


def test_without_a_spool_an_outage_loses_events_and_says_so(offline_dir: Path):
    wrappers: list[FaultySink] = []
    with wrap_sinks(faulty(wrappers)):
        handler = ClearMLCallbackHandler(stream_logs=True, offline_dir=offline_dir, spool=False)
    quick_breaker(handler)
    assert handler.flush_tracker(timeout=60).ok
    wrappers[0].down = True
    for i in range(10):
        handler.on_text(f"l{i}")
    lost = handler.flush_tracker(timeout=30)
    assert not lost.ok and any("10 events were lost" in e for e in lost.errors), lost
    wrappers[0].down = False
    time.sleep(1.0)  # the breaker's cool-down: until its next probe, refused events go nowhere
    handler.on_text("after")
    assert handler.flush_tracker(finish=True, timeout=60).ok
    assert clearml_texts(handler) == ["after"]
    assert handler.stats()["lost"] == 10 and not (offline_dir / "spool").exists()


# -- overflow ---------------------------------------------------------------------------------


def _fill(queue: EventQueue, n: int) -> None:
    for i in range(n):
        queue.put(Kind.TEXT, None, None, {}, f"e{i}")


def test_overflow_drop_newest_and_drop_oldest_keep_exact_counts():
    newest = EventQueue(10, overflow="drop_newest")
    _fill(newest, 25)
    assert [e.data[0] for e in newest.take(100)] == [f"e{i}" for i in range(10)]
    oldest = EventQueue(10, overflow="drop_oldest")
    _fill(oldest, 25)
    assert [e.data[0] for e in oldest.take(100)] == [f"e{i}" for i in range(15, 25)]
    for queue in (newest, oldest):
        assert queue.enqueued == 25 and queue.dropped == 15


def test_overflow_drop_oldest_never_drops_a_flush_barrier():
    queue = EventQueue(2, overflow="drop_oldest")
    queue.put_control(Kind.FLUSH, ())
    _fill(queue, 4)
    taken = queue.take(10)
    assert taken[0].kind is Kind.FLUSH and [e.data[0] for e in taken[1:]] == ["e3"]
    assert queue.dropped == 3


def test_overflow_policy_is_validated():
    with pytest.raises(ValueError, match="overflow must be one of"):
        EventQueue(10, overflow="spill-everywhere")


def test_overflow_block_waits_for_room_and_loses_nothing(offline_dir: Path):
    wrappers: list[FaultySink] = []
    with wrap_sinks(faulty(wrappers, delay=0.05)):
        handler = CometCallbackHandler(
            stream_logs=True,
            offline_dir=offline_dir,
            queue_size=20,
            batch_size=10,
            overflow="block",
            block_timeout=30,
        )
    for i in range(200):  # 10x the queue, into a slow sink: producers must wait
        handler.on_text(f"b{i}")
    result = handler.flush_tracker(finish=True, timeout=60)
    stats = handler.stats()
    assert result.ok and stats["dropped"] == 0 and stats["processed"] == 200
    assert comet_texts(handler) == [f"b{i}" for i in range(200)]


def test_drop_warning_is_logged_once_per_interval(offline_dir: Path, caplog: Any):
    wrappers: list[FaultySink] = []
    with wrap_sinks(faulty(wrappers, delay=0.05)):
        handler = ClearMLCallbackHandler(offline_dir=offline_dir, queue_size=5, batch_size=5)
    with caplog.at_level(logging.WARNING, logger="tracker"):
        for _ in range(20):
            for i in range(50):
                handler.on_text(f"d{i}")
            time.sleep(0.02)
        result = handler.flush_tracker(finish=True, timeout=60)
    stats = handler.stats()
    assert stats["dropped"] > 100
    assert stats["enqueued"] == stats["processed"] + stats["dropped"]  # exact
    assert result.dropped == stats["dropped"]
    warnings = [r for r in caplog.records if "event queue is full" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


# -- the spool on its own ---------------------------------------------------------------------


def test_a_second_process_gets_its_own_spool_directory(tmp_path: Path):
    from workers.spool import open_spool

    first = open_spool(tmp_path, "clearml")
    script = (
        "from workers.spool import open_spool; "
        f"print(open_spool({str(tmp_path)!r}, 'clearml').directory.name)"
    )
    other = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert first.directory.name == "clearml" and other.stdout.strip() == "clearml-1"
    first.close()


# -- crash recovery ---------------------------------------------------------------------------

CRASHING = textwrap.dedent(
    """
    import os, signal, sys, time
    from workers.testing import FaultySink
    from tracker import CometCallbackHandler
    from tracker.testing import wrap_sinks

    wrappers = []
    def wrap(sink):
        wrappers.append(FaultySink(sink, down=True))
        return wrappers[0]

    with wrap_sinks(wrap):
        handler = CometCallbackHandler(stream_logs=True, offline_dir=sys.argv[1], batch_size=25)
    for i in range(500):
        handler.on_text(f"c{i:04d}")
    while handler.stats()["processed"] < 500:
        time.sleep(0.01)
    print(handler.stats()["in_spool"], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no flush, no exit drain: a crash
    """
)


def test_spooled_events_survive_a_sigkill_and_are_replayed_once(offline_dir: Path):
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING, str(offline_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    assert int(crashed.stdout.split()[-1]) == 500  # all of it reached the spool before the kill

    handler = CometCallbackHandler(stream_logs=True, offline_dir=offline_dir)
    handler.on_text("after restart")
    result = handler.flush_tracker(finish=True, timeout=120)
    assert result.ok, result
    texts = comet_texts(handler)
    assert texts == [f"c{i:04d}" for i in range(500)] + ["after restart"]
    assert max(Counter(texts).values()) == 1
    # The new event may queue behind the backlog in the spool while it is replayed (in order).
    assert handler.stats()["replayed"] in (500, 501)


def test_overflow_spill_keeps_every_event_in_order_and_the_caller_fast(offline_dir: Path):
    wrappers: list[FaultySink] = []
    with wrap_sinks(faulty(wrappers, delay=0.05)):
        handler = CometCallbackHandler(
            stream_logs=True,
            offline_dir=offline_dir,
            queue_size=50,
            batch_size=25,
            overflow="spill",
        )
    started = time.perf_counter()
    for i in range(2000):  # 40x the queue into a slow sink
        handler.on_text(f"p{i:04d}")
    enqueue_seconds = time.perf_counter() - started
    spilled = handler.stats()["spilled"]
    middle = handler.flush_tracker(timeout=120)  # a barrier waits for the spilled events too
    assert middle.ok and middle.written == 2000, middle
    for i in range(2000, 2100):
        handler.on_text(f"p{i:04d}")
    result = handler.flush_tracker(finish=True, timeout=120)
    stats = handler.stats()
    assert result.ok, result
    assert spilled > 1000 and stats["dropped"] == 0, stats
    assert stats["enqueued"] == stats["processed"] == 2100, stats
    assert comet_texts(handler) == [f"p{i:04d}" for i in range(2100)]
    assert enqueue_seconds < 2.0  # the producers never waited for the 50 ms writes
    assert not list((offline_dir / "spool" / "overflow").glob("*.spool"))


def test_overflow_spill_needs_a_spool(offline_dir: Path):
    with pytest.raises(ValueError, match="needs a spool"):
        ClearMLCallbackHandler(offline_dir=offline_dir, overflow="spill", spool=False)


# -- faults the tracker worker meets (issue 11, items 3 and 8) --------------------------------


def test_drops_while_the_worker_is_stuck_are_warned_within_the_interval(
    offline_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker is slow: the application's queue fills and drops, and says so once per
    interval (not per event), from the application's side of the pipe."""
    slow = testing.faulty(sinks.jsonl(offline_dir), delay=0.3)
    handler = TrackerCallbackHandler([slow], offline_dir=offline_dir, queue_size=100, batch_size=10)
    with caplog.at_level(logging.WARNING, logger="tracker"):
        for i in range(300):
            handler.on_text(f"d{i}")
        deadline = time.monotonic() + 15
        while "the event queue is full" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    warnings = [r for r in caplog.records if "the event queue is full" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    result = handler.flush_tracker(finish=True, timeout=60)
    assert result.ok and result.dropped > 0, result
    assert result.written + result.dropped == 300, result


async def test_a_second_finish_while_one_runs_resolves(offline_dir: Path) -> None:
    """Two finishes at once (a shutdown hook and an exit path, say): both answer."""
    slow = testing.faulty(sinks.jsonl(offline_dir), delay=0.3)
    handler = TrackerCallbackHandler([slow], offline_dir=offline_dir, batch_size=10)
    for i in range(50):
        handler.on_text(f"f{i}")
    first, second = await asyncio.wait_for(
        asyncio.gather(
            handler.aflush_tracker(finish=True, timeout=30),
            handler.aflush_tracker(finish=True, timeout=30),
        ),
        timeout=60,
    )
    assert first.ok, first
    assert not second.timed_out and second.errors == ["the tracker was already finished"]


async def test_a_sync_flush_inside_a_running_loop_warns(
    offline_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handler = TrackerCallbackHandler([sinks.jsonl(offline_dir)], offline_dir=offline_dir)
    with caplog.at_level(logging.WARNING, logger="tracker"):
        result = handler.flush_tracker(finish=True, timeout=30)
    assert result.ok
    assert "use 'await handler.aflush_tracker(...)'" in caplog.text
