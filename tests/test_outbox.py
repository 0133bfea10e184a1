"""The frames between the application and its tracker worker wait as bytes, not as live events.

- :class:`workers.outbox.Outbox` on a real pipe: order, the byte limit, urgent frames, a new
  worker's pipe, a broken one.
- A real worker that stops reading (SIGSTOP): the callbacks' objects are let go as soon as they
  are encoded, not held in the queue until the worker reads again; everything still arrives.
- An application whose worker never reads again still exits within its deadlines.
- Batches wait while the process is busy, until a flush (or the hold's end) sends them: first
  as the live events in the handler's queue, not encoded yet; past a count of those, encoded,
  as bytes in the outbox; and once the busy spell is as old as the hold, encoded and sent, and
  from then on sent as they come until the process is idle again.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManager
from langchain_core.runnables import RunnableLambda

from tracker import TrackerCallbackHandler, sinks
from tracker.testing import always_busy, hold_while_busy
from workers.busy import BusyMeter
from workers.link import current_link
from workers.outbox import Outbox

ROOT = Path(__file__).resolve().parent.parent


def _read_all(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += os.read(fd, size - len(data))
    return data


def _close(read: int, stream: Any) -> None:
    """The reader's end first: a writer still waiting in the pipe fails instead of hanging."""
    os.close(read)
    with contextlib.suppress(OSError):
        stream.close()


@contextlib.contextmanager
def _piped(outbox: Outbox, *, blocking_reads: bool = True) -> Iterator[int]:
    """A real pipe, its write end opened in ``outbox``; yields the read end."""
    read, write = os.pipe()
    os.set_blocking(read, blocking_reads)
    stream = os.fdopen(write, "wb")
    outbox.open(stream)
    try:
        yield read
    finally:
        _close(read, stream)


def test_frames_arrive_in_order_and_urgent_ones_first() -> None:
    outbox = Outbox(1 << 20, lambda: None)
    assert not outbox.put(b"early"), "a frame was taken before there was a pipe"
    with _piped(outbox) as read:
        big = b"a" * (1 << 17)  # more than the pipe holds: the writer waits in it
        assert outbox.put(big)
        deadline = time.monotonic() + 5
        while outbox.pending_bytes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert outbox.put(b"1") and outbox.put(b"2")
        assert outbox.put(b"!", urgent=True)
        assert _read_all(read, len(big) + 3) == big + b"!12"
        assert outbox.finish(time.monotonic() + 5)


def test_a_full_outbox_holds_the_sender_back_until_the_pipe_drains() -> None:
    outbox = Outbox(256 * 1024, lambda: None)
    with _piped(outbox) as read:
        frame = b"x" * (64 * 1024)
        # The pipe (64 KB here, possibly more) and then the outbox fill; a put must then wait.
        accepted = 0
        while outbox.put(frame, deadline=time.monotonic() + 0.3):
            accepted += 1
            assert accepted < 200, "the outbox never filled: no bound"
        assert outbox.pending_bytes >= 256 * 1024 - len(frame)
        reader = threading.Thread(target=_read_all, args=(read, (accepted + 1) * len(frame)))
        reader.start()
        assert outbox.put(frame, deadline=time.monotonic() + 10), "room came, the put did not"
        reader.join(10)
        assert not reader.is_alive(), "frames were lost on the way"
        assert outbox.finish(time.monotonic() + 5)


def test_a_broken_pipe_is_reported_and_a_new_one_gets_only_new_frames() -> None:
    broken = threading.Event()
    outbox = Outbox(1 << 20, broken.set)
    read, write = os.pipe()
    stream = os.fdopen(write, "wb")
    outbox.open(stream)
    os.close(read)  # the worker is gone
    outbox.put(b"lost")
    assert broken.wait(5), "a write into a closed pipe was not reported"
    assert not outbox.put(b"refused"), "a frame was taken for a pipe that broke"
    with contextlib.suppress(OSError):  # what the failed write left in the buffer
        stream.close()

    read, write = os.pipe()
    stream = os.fdopen(write, "wb")
    outbox.open(stream)
    try:
        assert outbox.put(b"fresh")
        assert outbox.finish(time.monotonic() + 5)
        stream.close()
        assert os.read(read, 100) == b"fresh"
    finally:
        os.close(read)


class Marker:
    """A chain output that only the tracker's queue keeps alive once the chain returned."""


def test_a_stopped_worker_does_not_keep_the_callbacks_objects_alive(offline_dir: Path) -> None:
    handler = TrackerCallbackHandler([sinks.jsonl(offline_dir)], offline_dir=offline_dir)
    assert handler.flush_tracker(timeout=60).ok
    link = current_link()
    assert link is not None and link.worker_pid is not None
    pid = link.worker_pid
    echo = RunnableLambda(lambda text: text, name="echo")
    marked: list[weakref.ref[Marker]] = []

    def mark(_: str) -> Marker:
        marker = Marker()
        marked.append(weakref.ref(marker))
        return marker

    os.kill(pid, signal.SIGSTOP)
    try:
        # 2 MB of events: far more than the pipe holds, well under the outbox's limit.
        for i in range(20):
            echo.invoke(f"{i:04d}" + "x" * 50_000, config={"callbacks": [handler]})
        RunnableLambda(mark, name="mark").invoke("m", config={"callbacks": [handler]})
        deadline = time.monotonic() + 10
        while marked[0]() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
            gc.collect()
        assert marked[0]() is None, "the event waits in the queue, alive, for the worker to read"
    finally:
        os.kill(pid, signal.SIGCONT)
    result = handler.flush_tracker(finish=True, timeout=120)
    assert result.ok, result
    stats = handler.stats()
    assert stats["enqueued"] == stats["processed"] == 42 and stats["dropped"] == 0, stats
    lines = [json.loads(line) for line in handler.archive_paths["jsonl"].read_text().splitlines()]
    records = [r for r in lines if r.get("type") == "record"]
    starts = [r["name"] for r in records if r["kind"] == "on_chain_start"]
    assert starts == ["echo"] * 20 + ["mark"]  # in order, each once
    assert "Marker object" in json.dumps(records[-1]["fields"])  # converted here, logged there


def test_exit_is_bounded_when_the_worker_never_reads_again(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from langchain_core.runnables import RunnableLambda
        from tracker import TrackerCallbackHandler, sinks
        from workers.link import current_link

        handler = TrackerCallbackHandler([sinks.jsonl({str(tmp_path)!r})])
        handler.flush_tracker(timeout=60)
        pid = current_link().worker_pid
        print(pid, flush=True)
        os.kill(pid, signal.SIGSTOP)
        echo = RunnableLambda(lambda text: text)
        for i in range(40):
            echo.invoke("x" * 50_000, config={{"callbacks": [handler]}})
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TRACKER_EXIT_DRAIN_SECONDS": "1"},
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    pid = int(done.stdout.split()[0])
    # The drain (1 s) and the grace (5 s), plus the start-up; never the worker's whim.
    assert took < 25, took
    assert "stopped reading its pipe: killed" in done.stderr, done.stderr[-2000:]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the stopped worker outlived the application")


def _readable(fd: int, size: int, timeout: float) -> bytes:
    """What arrives on a non-blocking ``fd`` within ``timeout`` seconds (up to ``size``)."""
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < size and time.monotonic() < deadline:
        try:
            got += os.read(fd, size - len(got))
        except BlockingIOError:
            time.sleep(0.01)
    return got


def _end_spell(meter: BusyMeter) -> None:
    """An idle look ends the busy spell; the next look starts a new one."""
    meter.share = float("inf")
    assert not meter.busy() and meter.spell_started is None
    meter.share = 0.0


def test_a_busy_process_holds_batches_until_a_flush_or_the_hold_ends() -> None:
    meter = BusyMeter(share=0.0, window=0.0)  # busy at every look, until its share says not
    outbox = Outbox(1 << 20, lambda: None, hold_seconds=30, meter=meter)
    with _piped(outbox, blocking_reads=False) as read:
        assert outbox.put(b"e1", hold_since=time.monotonic())
        assert _readable(read, 1, 0.3) == b"", "a batch went out while the process was busy"
        assert outbox.put(b"F")  # a flush: it and everything before it go at once
        assert _readable(read, 3, 5) == b"e1F"
        # The hold counts from the start of the busy spell.
        _end_spell(meter)
        outbox.hold_seconds = 0.3
        started = time.monotonic()
        assert outbox.put(b"e2", hold_since=time.monotonic())
        assert _readable(read, 2, 5) == b"e2"
        assert time.monotonic() - started >= 0.25, "the hold ended early"
        # A spell longer than the hold is a sustained load: from then on, batches go at once.
        started = time.monotonic()
        assert outbox.put(b"e3", hold_since=time.monotonic())
        assert _readable(read, 2, 5) == b"e3"
        assert time.monotonic() - started < 0.2, "a sustained load's batch waited a hold again"
        # An idle moment ends the spell: the next batch waits again.
        _end_spell(meter)
        started = time.monotonic()
        assert outbox.put(b"e4", hold_since=time.monotonic())
        assert _readable(read, 2, 5) == b"e4"
        assert time.monotonic() - started >= 0.25, "a new spell's batch was not held"
        _end_spell(meter)
        outbox.hold_seconds = 30
        outbox.hold_bytes = 4  # a held backlog past its bytes goes too
        assert outbox.put(b"e5", hold_since=time.monotonic()) and outbox.put(
            b"e6", hold_since=time.monotonic()
        )
        assert _readable(read, 2, 5) == b"e5", "the held bytes outgrew their bound"
        assert _readable(read, 1, 0.3) == b"", "a batch within the bound went at once"
        assert outbox.finish(time.monotonic() + 5), "finish waited for the hold"
        assert _readable(read, 2, 1) == b"e6"


def test_an_idle_process_sends_batches_at_once() -> None:
    never_busy = BusyMeter(share=float("inf"), window=0.0)
    outbox = Outbox(1 << 20, lambda: None, hold_seconds=30, meter=never_busy)
    with _piped(outbox, blocking_reads=False) as read:
        assert outbox.put(b"e1", hold_since=time.monotonic())
        assert _readable(read, 2, 2) == b"e1"


@contextlib.contextmanager
def _busy() -> Iterator[None]:
    """The application computing: a thread spending a core's worth of CPU."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.2)  # a full window of the busy meter
        yield
    finally:
        stop.set()
        spinner.join()


_ECHO = RunnableLambda(lambda text: text, name="echo")


def test_a_handler_in_a_busy_process_sends_at_its_flush(offline_dir: Path) -> None:
    handler = TrackerCallbackHandler([sinks.jsonl(offline_dir)], offline_dir=offline_dir)
    assert handler.flush_tracker(timeout=60).ok
    # Busy, and saturated (always_busy): a real spinner descheduled for a moment on a loaded
    # machine leaves the GIL room, and the events are then rightly encoded (not held live).
    with always_busy():
        for i in range(10):
            _ECHO.invoke(str(i), config={"callbacks": [handler]})
        time.sleep(0.8)
        stats = handler.stats()
        assert stats["processed"] == 0, "the worker got events in the middle of a burst"
        # Not even encoded: they wait as the callbacks recorded them, in this process's queue.
        assert stats["queue_depth"] == 20, stats
        started = time.monotonic()
        result = handler.flush_tracker(timeout=60)
        took = time.monotonic() - started
    assert result.ok and result.written == 20, result
    assert took < 1.0, f"the flush waited for the hold to end ({took:.2f}s)"
    assert handler.flush_tracker(finish=True, timeout=60).ok


def test_a_burst_past_a_count_of_live_events_is_encoded_as_it_comes(offline_dir: Path) -> None:
    # At most queue_size // 3 = 133 events wait live; the rest as bytes. Busy and saturated
    # (always_busy): with a real spinner, a moment of room on a loaded machine has events
    # encoded early, and the rest may stay under the count, live.
    handler = TrackerCallbackHandler(
        [sinks.jsonl(offline_dir)], offline_dir=offline_dir, batch_size=50, queue_size=400
    )
    assert handler.flush_tracker(timeout=60).ok
    with always_busy():
        # 180 events, slowly: under the 200 that may be on their way to the worker (half the
        # queue; held bytes count), so none waits here for that reason.
        for i in range(90):
            _ECHO.invoke(str(i), config={"callbacks": [handler]})
            time.sleep(0.003)
        time.sleep(0.2)
        stats = handler.stats()
        assert stats["processed"] == 0, "the worker got events in the middle of a burst"
        # A burst past the count is a long one: from then on its events are encoded as they
        # come (none stays live), and the bytes wait in the outbox.
        assert stats["queue_depth"] == 0, f"a long burst kept its events live: {stats}"
        result = handler.flush_tracker(timeout=60)
    assert result.ok and result.written == 180 and result.dropped == 0, result
    time.sleep(0.3)  # an idle moment ends the long spell: the next burst is held again
    with always_busy():  # saturated too (see test_a_handler_in_a_busy_process_sends_at_its_flush)
        for i in range(10):
            _ECHO.invoke(str(i), config={"callbacks": [handler]})
        time.sleep(0.2)
        stats = handler.stats()
        assert stats["queue_depth"] == 20, f"a new burst was not held: {stats}"
        result = handler.flush_tracker(timeout=60)
    assert result.ok and result.written == 20, result
    assert handler.flush_tracker(finish=True, timeout=60).ok


def test_holding_never_fills_a_small_queue(offline_dir: Path) -> None:
    # A queue smaller than a batch: what waits live stays well inside it, so nothing is dropped.
    handler = TrackerCallbackHandler(
        [sinks.jsonl(offline_dir)], offline_dir=offline_dir, queue_size=40
    )
    assert handler.flush_tracker(timeout=60).ok
    with _busy():
        for i in range(60):  # 120 events, three times the queue, slowly
            _ECHO.invoke(str(i), config={"callbacks": [handler]})
            time.sleep(0.01)
        result = handler.flush_tracker(timeout=60)
    assert result.ok and result.written == 120 and result.dropped == 0, result
    assert handler.flush_tracker(finish=True, timeout=60).ok


def test_a_waiting_error_keeps_no_frame_of_its_traceback_alive(offline_dir: Path) -> None:
    # An exception kept in an event would keep its traceback, each frame of it and their
    # locals: a LangGraph tool error's event kept ~320 objects for the collector to walk.
    handler = TrackerCallbackHandler([sinks.jsonl(offline_dir)], offline_dir=offline_dir)
    assert handler.flush_tracker(timeout=60).ok
    marked: list[weakref.ref[Marker]] = []

    def fail_with_a_local(text: str) -> str:
        state = Marker()  # only this frame holds it
        marked.append(weakref.ref(state))
        raise ValueError(f"no answer for {text}")

    failing = RunnableLambda(fail_with_a_local, name="failing")
    with hold_while_busy(30), always_busy():
        try:
            failing.invoke("q", config={"callbacks": [handler]})
        except ValueError:
            pass
        gc.collect()
        stats = handler.stats()
        assert stats["queue_depth"] == 2, f"the events did not wait live: {stats}"
        assert marked[0]() is None, "the waiting error event keeps its frames' locals alive"
        result = handler.flush_tracker(timeout=60)
    assert result.ok and result.written == 2, result
    assert handler.flush_tracker(finish=True, timeout=60).ok
    lines = [json.loads(line) for line in handler.archive_paths["jsonl"].read_text().splitlines()]
    (error,) = [r for r in lines if r.get("kind") == "on_chain_error"]
    fields = error["fields"]
    assert fields["error_type"] == "ValueError" and fields["error"] == "no answer for q"
    # Read at the callback: the frames from the failing run down to the raise.
    assert (
        'in fail_with_a_local\n    raise ValueError(f"no answer for {text}")' in fields["traceback"]
    ), fields["traceback"]
    assert fields["traceback"].endswith("ValueError: no answer for q\n")


def test_a_waiting_event_keeps_none_of_the_keyword_arguments_its_record_does_not_use(
    offline_dir: Path,
) -> None:
    # LangChain passes each callback a keyword dict of its own (invocation parameters, a
    # streamed token's chunk, whatever a caller adds): a waiting event that kept it would keep
    # all of that for the collector to walk. The queue keeps name, tags, metadata and inputs.
    handler = TrackerCallbackHandler([sinks.jsonl(offline_dir)], offline_dir=offline_dir)
    assert handler.flush_tracker(timeout=60).ok
    manager = CallbackManager.configure(
        inheritable_callbacks=[handler],
        inheritable_tags=["agent"],
        inheritable_metadata={"thread_id": "t-1"},
    )
    with hold_while_busy(30), always_busy():
        run = manager.on_chain_start({"name": "planner"}, {"question": "q"}, name="planner")
        note = Marker()
        noted = weakref.ref(note)
        run.on_text("a note", note=note)  # LangChain hands ``note`` to the handler's kwargs
        del note
        run.on_chain_end({"answer": "a"})
        gc.collect()
        stats = handler.stats()
        assert stats["queue_depth"] == 3, f"the events did not wait live: {stats}"
        assert noted() is None, "a waiting event keeps LangChain's keyword arguments alive"
        result = handler.flush_tracker(timeout=60)
    assert result.ok and result.written == 3, result
    assert handler.flush_tracker(finish=True, timeout=60).ok
    lines = [json.loads(line) for line in handler.archive_paths["jsonl"].read_text().splitlines()]
    by_kind = {line["kind"]: line for line in lines if "kind" in line}
    start, text = by_kind["on_chain_start"], by_kind["on_text"]
    assert start["name"] == "planner" and start["tags"] == ["agent"], start
    assert start["metadata"]["thread_id"] == "t-1", start
    assert start["fields"]["inputs"] == {"question": "q"}, start
    assert text["fields"]["text"] == "a note", text
    assert by_kind["on_chain_end"]["fields"]["outputs"] == {"answer": "a"}


def test_events_as_old_as_the_hold_go_while_the_process_stays_busy(offline_dir: Path) -> None:
    handler = TrackerCallbackHandler([sinks.jsonl(offline_dir)], offline_dir=offline_dir)
    assert handler.flush_tracker(timeout=60).ok

    def sent_within(seconds: float, total: int) -> float:
        started = time.monotonic()
        while handler.stats()["processed"] < total and time.monotonic() < started + seconds:
            time.sleep(0.02)
        stats = handler.stats()
        assert stats["processed"] == total, f"a load longer than the hold kept its events: {stats}"
        return time.monotonic() - started

    # Busy throughout (always_busy): on a loaded machine a real spinner may be descheduled for
    # a moment, and an idle moment rightly ends the spell (the next batch is held again).
    with hold_while_busy(2.0), always_busy():
        for i in range(10):
            _ECHO.invoke(str(i), config={"callbacks": [handler]})
        sent_within(5, 20)
        # The spell outlasted the hold: a sustained load. What it records from now on goes at
        # once, not after a hold of its own (the worker's backlog would always be a hold long).
        for i in range(10):
            _ECHO.invoke(str(i), config={"callbacks": [handler]})
        took = sent_within(5, 40)
    assert took < 1.0, f"a sustained load's events waited {took:.2f}s, a hold of their own"
    assert handler.flush_tracker(finish=True, timeout=60).ok


def test_a_longer_hold_keeps_megabytes_of_a_burst_from_the_worker(
    offline_dir: Path,
) -> None:
    # A hold of 10 s (TRACKER_HOLD_WHILE_BUSY_SECONDS=10): a burst past the live count (a third
    # of the queue at most: 3,333 events here) and over 6 MB of bytes runs without the worker
    # beside it. Busy and saturated throughout (always_busy): with a real spinner, a moment
    # of room on a loaded machine has some events encoded early, and the rest may then stay
    # under the count, live (seen in a parallel run).
    handler = TrackerCallbackHandler(
        [sinks.jsonl(offline_dir)], offline_dir=offline_dir, queue_size=10_000
    )
    assert handler.flush_tracker(timeout=60).ok
    runs = 2_100
    with hold_while_busy(10), always_busy():
        started = time.monotonic()
        for i in range(runs):  # distinct texts (a run's output is its input: pickled once)
            _ECHO.invoke(f"{i:05d}" + "x" * 3_000, config={"callbacks": [handler]})
        time.sleep(max(0.0, started + 2.5 - time.monotonic()))
        stats = handler.stats()
        held = current_link().outbox_bytes
        assert stats["processed"] == 0, f"the worker worked in the middle of the burst: {stats}"
        # All encoded (past the live count), and waiting as bytes.
        assert stats["queue_depth"] == 0, stats
        assert held > 6_000_000, f"the burst was smaller than meant: {held} bytes held"
    # After the burst, everything arrives without a flush.
    deadline = time.monotonic() + 30
    while handler.stats()["processed"] < 2 * runs and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = handler.stats()
    assert stats["processed"] == 2 * runs and stats["dropped"] == 0, stats
    assert handler.flush_tracker(finish=True, timeout=60).ok


def test_the_busy_meter_tells_computing_from_waiting() -> None:
    meter = BusyMeter(share=0.5, window=0.05, saturation=0.5)
    time.sleep(0.2)
    assert meter.busy(), "after a pause the verdict waits for a fresh window, counted busy"
    time.sleep(0.06)  # a window of waiting
    assert not meter.busy() and not meter.saturated
    until = time.monotonic() + 0.06
    while time.monotonic() < until:  # a window of computing
        sum(range(1000))
    assert meter.busy() and meter.saturated


def test_the_busy_meter_does_not_count_the_trackers_own_threads_as_the_applications() -> None:
    # The tracker's thread computing (encoding) while the application waits: the process is
    # busy, but the application leaves the GIL room, so encoding now costs it little.
    meter = BusyMeter(share=0.5, window=0.05, saturation=0.5)
    stop = threading.Event()
    verdicts: list[tuple[bool, bool]] = []

    def tracker_thread() -> None:
        meter.count_as_own()
        time.sleep(0.12)  # past the first window, which counts as busy and saturated
        while not stop.is_set():
            until = time.monotonic() + 0.06
            while time.monotonic() < until:  # a window of the tracker computing
                sum(range(1000))
            verdicts.append((meter.busy(), meter.saturated))

    thread = threading.Thread(target=tracker_thread)
    thread.start()
    time.sleep(0.5)  # the application waits
    stop.set()
    thread.join()
    assert any(busy for busy, _ in verdicts), verdicts
    assert not any(saturated for _, saturated in verdicts[1:]), verdicts
