"""The workers' parts on their own: queue bounds and counters, session spill, exit drain."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from tracker.archive import read_clearml_archive, read_comet_archive
from workers.event import Kind
from workers.json_text import json_text
from workers.queue import EventQueue
from workers.session import SessionStore
from workers.sinks.comet_samples import RECORDS_KEY, shared_samples, split_sample


def test_full_queue_drops_newest_and_counts_exactly():
    queue = EventQueue(maxsize=10, wake_at=5)
    accepted = [queue.put(Kind.TEXT, None, None, {}, i) for i in range(15)]
    assert accepted == [True] * 10 + [False] * 5
    assert (queue.enqueued, queue.dropped, queue.depth) == (15, 5, 10)
    queue.put_control(Kind.FLUSH, ())  # control records are never refused
    assert queue.depth == 11
    batch = queue.take(100)
    assert [e.data[0] for e in batch[:10]] == list(range(10)) and batch[-1].kind is Kind.FLUSH


def test_closed_queue_refuses_and_counts():
    queue = EventQueue(maxsize=10)
    queue.put(Kind.TEXT, None, None, {}, "before")
    assert queue.close() == 1
    assert queue.put(Kind.TEXT, None, None, {}, "after") is False
    assert (queue.enqueued, queue.dropped, queue.depth) == (2, 2, 0)


def test_wake_fires_once_at_threshold_from_many_threads():
    wakes: list[int] = []
    queue = EventQueue(maxsize=100_000, wake_at=1000, wake=lambda: wakes.append(1))

    def produce() -> None:
        for i in range(5000):
            queue.put(Kind.LLM_NEW_TOKEN, None, None, {}, i)

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert queue.enqueued == 20_000 and queue.depth == 20_000 and queue.dropped == 0
    # The crossing wakes the consumer at least once (threads can step over the exact depth),
    # and not once per event: at most one per producing thread that raced to the flag.
    assert 1 <= len(wakes) <= len(threads)


def test_a_waiting_event_adds_no_object_for_the_collector_to_walk():
    # Waiting events are what the application's collector walks at each collection (issue 15):
    # the queue keeps an event's fields flat and its run ids as ints, so neither a tuple of its
    # own nor the run's UUID outlives the callback.
    queue = EventQueue(maxsize=10_000)
    ids = [uuid4().int for _ in range(1000)]
    gc.collect()
    before = len(gc.get_objects())
    for i, run in enumerate(ids):  # a fresh UUID each, as LangChain hands a callback its run's
        queue.put(Kind.TEXT, UUID(int=run), None, {"tags": ["a"], "name": "n"}, f"t{i}")
    gc.collect()
    assert len(gc.get_objects()) - before < 100  # one object an event would be 1,000
    taken = queue.take(10_000)
    assert [(e.run_id, e.data, e.extra) for e in taken] == [
        (UUID(int=run), (f"t{i}",), {"name": "n", "tags": ("a",)}) for i, run in enumerate(ids)
    ]


def test_records_put_from_many_threads_come_out_whole_while_the_oldest_are_dropped():
    # A record is several slots of one deque: producers on four threads append theirs whole,
    # one consumer takes, and drop_oldest removes records from under both.
    queue = EventQueue(maxsize=300, wake_at=64, overflow="drop_oldest")
    per_thread, threads_n = 5000, 4
    taken: list = []
    done = threading.Event()

    def produce(t: int) -> None:
        for i in range(per_thread):
            queue.put(Kind.TEXT, UUID(int=t << 32 | i), None, {"name": f"p{t}"}, (t, i))
            if i % 1000 == 0:
                queue.put_control(Kind.FLUSH, ())

    def consume() -> None:
        while not done.is_set() or queue.depth:
            taken.extend(queue.take(100))

    consumer = threading.Thread(target=consume)
    consumer.start()
    producers = [threading.Thread(target=produce, args=(t,)) for t in range(threads_n)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    done.set()
    consumer.join()
    events = [e for e in taken if e.kind is Kind.TEXT]
    assert len(taken) - len(events) == threads_n * 5  # every flush barrier, none dropped
    for event in events:
        t, i = event.data[0]
        assert event.run_id == UUID(int=t << 32 | i) and event.extra == {"name": f"p{t}"}
    assert queue.dropped > 0 and queue.enqueued == threads_n * per_thread
    assert len(events) + queue.dropped == queue.enqueued
    for t in range(threads_n):  # each producer's surviving events in its order
        order = [e.data[0][1] for e in events if e.data[0][0] == t]
        assert order == sorted(order)


def test_session_rows_spill_to_disk_and_come_back_in_order():
    store = SessionStore(memory_rows=100)
    table = store.table("actions")
    for start in range(0, 1000, 50):
        table.extend([{"i": i, "nan": float("nan")} for i in range(start, start + 50)])
    assert len(table) == 1000 and len(table._rows) < 100  # the rest is on disk
    frame = table.frame()
    assert list(frame["i"]) == list(range(1000)) and frame["nan"].isna().all()
    store.close()


def test_a_session_store_makes_its_folder_only_when_it_spills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    store = SessionStore(memory_rows=10)
    table = store.table("actions")
    table.extend([{"i": i} for i in range(5)])
    assert list(tmp_path.iterdir()) == []  # a sink built and never filled leaves nothing
    table.extend([{"i": i} for i in range(5, 25)])
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("tracker-session-") and folder.stat().st_mode & 0o777 == 0o700
    assert [row["i"] for row in table] == list(range(25))
    store.close()
    assert list(tmp_path.iterdir()) == []
    table.extend([{"i": i} for i in range(30)])  # usable after a close: a new folder
    assert len(table) == 30 and len(list(tmp_path.iterdir())) == 1
    store.close()


def test_a_process_that_never_closed_its_store_leaves_no_empty_folder(tmp_path: Path):
    code = (
        "from workers.session import SessionStore\n"
        "store = SessionStore(memory_rows=2)\n"
        "store.table('a').extend([{'i': 1}] * 3)\n"  # spilled: a folder with a file
        "store.clear()\n"  # the file goes; the folder stays until the store is closed
        "assert store.folder.is_dir()\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_interpreter_exit_drains_and_writes_archives(tmp_path: Path):
    script = textwrap.dedent(
        f"""
        from tracker import ClearMLCallbackHandler, CometCallbackHandler
        out = {str(tmp_path)!r}
        handlers = [
            ClearMLCallbackHandler(task_name="exit", stream_logs=True, offline_dir=out),
            CometCallbackHandler(offline_dir=out),
        ]
        for i in range(300):
            for h in handlers:
                h.on_text(f"line {{i}}")
        # no flush: the exit hook must drain and finish both
        """
    )
    # A fresh program: ClearML's Task.init exports CLEARML_PROC_MASTER_ID / CLEARML_TASK_ID into
    # os.environ, and a child inheriting them would take itself for a sub-process of that task.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env["CLEARML_CACHE_DIR"] = str(tmp_path / "clearml-cache")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    clearml_zip = next(tmp_path.glob("offline-*.zip"))
    comet_zip = next(p for p in tmp_path.glob("*.zip") if not p.name.startswith("offline-"))
    lines = [x for x in read_clearml_archive(clearml_zip).text_lines() if "'on_text'" in x]
    assert len(lines) == 300
    texts = [t for t, _ in read_comet_archive(comet_zip).texts()]
    assert texts == [f"line {i}" for i in range(300)]


class _Route:
    """A user's object nested in a chain's outputs (as LangGraph's ``Send`` is)."""

    def __init__(self) -> None:
        self.node = "tools"
        self.arg = {"query": "q"}

    def __repr__(self) -> str:
        return f"_Route(node={self.node!r})"


def test_a_nested_object_the_worker_may_not_import_crosses_as_its_plain_data():
    import uuid

    from workers import snapshot
    from workers.event import Event, Kind
    from workers.records import convert

    outputs = {"routes": [_Route(), _Route()], "answer": "ok"}
    event = Event(Kind.CHAIN_END, 1, 0.0, uuid.uuid4(), None, (outputs,), {"name": "router"})
    data = snapshot.encode([event])
    assert b"test_workers" not in data  # the user's module is never named to the worker
    (crossed,) = snapshot.decode(data)
    assert convert(crossed).fields == convert(event).fields  # what the app would have made


def test_classes_made_as_the_program_goes_never_cross_and_are_not_all_remembered():
    """Whether a class may cross is remembered per class, within a bound: classes made at run
    time, more than the bound, all go as plain data, and a LangChain message still crosses as
    itself."""
    import uuid

    from langchain_core.messages import AIMessage

    from workers import snapshot, wire
    from workers.event import Event, Kind

    bound = wire._portable_type.cache_info().maxsize
    assert bound is not None
    made = [type(f"Made{i}", (_Route,), {})() for i in range(bound + 50)]
    message = AIMessage(content="hi")
    events = [
        Event(Kind.CHAIN_END, i, 0.0, uuid.uuid4(), None, ({"r": obj, "m": message},), {})
        for i, obj in enumerate(made)
    ]
    data = snapshot.encode(events)
    assert b"test_workers" not in data and b"Made" not in data
    assert wire._portable_type.cache_info().currsize <= bound
    crossed = snapshot.decode(data)
    assert all(type(e.data[0]["m"]) is AIMessage for e in crossed)
    assert crossed[-1].data[0]["r"] != made[-1]  # its plain data, not the object


def test_dataclasses_and_slotted_objects_convert_to_their_fields():
    import dataclasses

    from workers.sanitize import TYPE_KEY, to_jsonable

    @dataclasses.dataclass
    class Command:
        goto: str
        secret: str = dataclasses.field(default="s", repr=False)  # not shown: not logged

    class Slotted:
        __slots__ = ("node", "unset")

        def __init__(self) -> None:
            self.node = "tools"

    class Complete(Slotted):
        __slots__ = ("extra",)

        def __init__(self) -> None:
            self.node, self.unset, self.extra = "tools", None, [Command("end")]

    assert to_jsonable(Command("end")) == {
        TYPE_KEY: f"{__name__}.{Command.__qualname__}",
        "goto": "end",
    }
    converted = to_jsonable(Complete())
    assert converted["node"] == "tools" and converted["extra"][0]["goto"] == "end", converted
    assert isinstance(to_jsonable(Slotted()), str)  # a slot never set: its repr, as before


def test_json_text_writes_what_orjson_refuses_as_json_not_nan():
    # orjson refuses an int past 64 bits and a tuple as a key; the fallback must still write
    # JSON (json.dumps alone would write NaN, and refuse the tuple key).
    value = {"big": 2**70, (1, 2): "pair", "nan": float("nan"), "inf": [float("-inf")], "é": "ü"}
    text = json_text(value)
    assert json.loads(text) == {
        "big": 2**70,
        "(1, 2)": "pair",
        "nan": None,
        "inf": [None],
        "é": "ü",
    }
    assert "NaN" not in text and "Infinity" not in text
    assert json_text({"nan": float("nan"), "n": 1}) == '{"nan":null,"n":1}'  # orjson's path


def test_a_shared_comet_sample_splits_back_from_json_text_and_from_an_older_list():
    texts = [("first", {"action": "on_text", "step": 1}, 1), ("second", {"step": 2}, 2)]
    [(joined, metadata, step)] = list(shared_samples(texts))
    assert isinstance(metadata[RECORDS_KEY], str) and step == 1
    expected = [("first", {"action": "on_text", "step": 1}), ("second", {"step": 2})]
    assert split_sample(joined, metadata) == expected
    # Archives written before the records were JSON text hold them as a list.
    older = {RECORDS_KEY: json.loads(metadata[RECORDS_KEY])}
    assert split_sample(joined, older) == expected
    assert split_sample("plain", {"action": "x"}) == [("plain", {"action": "x"})]
