"""Many applications, one tracker (issue 13): records through a real Redis stream to a pool of
``tracker worker`` processes, checked in the archives the workers wrote."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from tests.redis_server import RedisServer
from tracker.archive import read_clearml_archive, read_comet_archive

ROOT = Path(__file__).resolve().parent.parent
EVENTS_PER_CHAIN = 8  # sequence, prompt, chat model, parser: start and end each
RUNS_PER_CHAIN = 4

# An application: CHAINS concurrent chains (prompt | chat model | parser), then a flush.
APP = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from tracker import TrackerCallbackHandler, sinks

    url, out, chains, waves, pause = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
    chains, waves = int(chains), int(waves)
    handler = TrackerCallbackHandler(
        [sinks.jsonl(out)], transport=url, offline_dir=out, batch_size=64
    )
    # a list iterator: next() from concurrent executor threads (a generator would refuse)
    answers = iter([AIMessage(content=f"answer {i}") for i in range(chains * waves)])
    prompt = ChatPromptTemplate.from_messages([("human", "{q}")])
    chain = prompt | GenericFakeChatModel(messages=answers) | StrOutputParser()
    slowest = 0.0

    async def one(i):
        global slowest
        started = time.perf_counter()
        await chain.ainvoke({"q": f"q{i}"}, config={"callbacks": [handler]})
        slowest = max(slowest, time.perf_counter() - started)

    async def main():
        for wave in range(waves):
            await asyncio.gather(*(one(wave * chains + i) for i in range(chains)))
            await asyncio.sleep(pause)
        return await handler.aflush_tracker(finish=True, timeout=120)

    result = asyncio.run(main())
    print(json.dumps({"streamed": result.streamed, "spooled": result.spooled,
                      "errors": result.errors, "slowest": slowest, "stats": handler.stats()}))
    """
)


def app(url: str, out: Path, chains: int, waves: int = 1, pause: float = 0.0) -> Any:
    """Start an application process (it prints its flush result as JSON)."""
    process = subprocess.Popen(
        [sys.executable, "-c", APP, url, str(out), str(chains), str(waves), str(pause)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _STARTED.append(process)
    return process


def finished(process: Any, timeout: float = 180) -> dict[str, Any]:
    """An application's flush result, once it exited 0."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


_STARTED: list[Any] = []


@pytest.fixture(autouse=True)
def _no_process_left() -> Any:
    """A failing test leaves no worker or application running (they would retry for ever)."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait(10)


def worker(url: str, out: Path, name: str, *sinks: str, **options: Any) -> Any:
    """Start ``tracker worker`` (its sessions end on SIGTERM)."""
    args = [sys.executable, "-m", "tracker", "worker", "--from", url, "--consumer", name]
    for sink in sinks or ("jsonl",):
        args += ["--sink", sink]
    args += ["--offline-dir", str(out)]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", *([str(value)] if value != "" else [])]
    process = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _STARTED.append(process)
    return process


def stop(process: Any) -> str:
    """SIGTERM a worker; its report once it exited 0."""
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, out + err[-3000:]
    return out


def wait_until_read(url: str, timeout: float = 60) -> None:
    """Until the group has delivered every entry (its lag is 0)."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        groups = client.xinfo_groups("langchain")
        # Redis 6.2 has no "lag": nothing after the last delivered entry means all delivered.
        if groups and not any(
            client.xrange("langchain", min=b"(" + g["last-delivered-id"], count=1) for g in groups
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"the workers did not read the stream: {client.xinfo_groups('langchain')}")


def records(out: Path) -> list[dict[str, Any]]:
    """Every record line of the workers' JSON-lines archives."""
    lines = [json.loads(line) for path in out.glob("langchain-*.jsonl") for line in path.open()]
    return [line for line in lines if line["type"] == "record"]


def runs(out: Path) -> pd.DataFrame:
    """Every runs line of the workers' JSON-lines archives."""
    lines = [json.loads(line) for path in out.glob("langchain-*.jsonl") for line in path.open()]
    return pd.DataFrame([run for line in lines if line["type"] == "runs" for run in line["runs"]])


def check_each_event_once(out: Path, chains: int) -> None:
    """Each event in the archives exactly once; each run whole (its start and end together)."""
    seen = Counter((r["run_id"], r["kind"]) for r in records(out))
    assert sum(seen.values()) == chains * EVENTS_PER_CHAIN, len(seen)
    assert set(seen.values()) == {1}, [k for k, n in seen.items() if n > 1][:5]
    table = runs(out)
    assert len(table) == table["run_id"].nunique() == chains * RUNS_PER_CHAIN
    assert set(table["status"]) == {"ok"} and table["start_time"].notna().all()


@pytest.fixture
def server(tmp_path: Path) -> Any:
    """A real redis-server on a free loopback port."""
    with RedisServer(tmp_path / "redis") as running:
        yield running


def test_four_applications_two_workers_every_event_once(server: RedisServer, tmp_path: Path):
    out = tmp_path / "archives"
    workers = [worker(server.url, out, name, "jsonl", "comet") for name in ("w1", "w2")]
    apps = [app(server.url, tmp_path / f"app{i}", 200) for i in range(4)]
    results = [finished(process) for process in apps]
    assert all(r["streamed"] == 200 * EVENTS_PER_CHAIN and not r["errors"] for r in results)
    wait_until_read(server.url)
    reports = [stop(process) for process in workers]
    check_each_event_once(out, 4 * 200)
    assert all("0 duplicates" in report for report in reports), reports
    # Both workers took part, and Comet's archives hold every run once too.
    by_worker = Counter(path.name.split("-")[1] for path in out.glob("langchain-*.jsonl"))
    assert set(by_worker) == {"w1", "w2"}, by_worker
    comet_runs = pd.concat(
        [
            frame
            for p in out.glob("*.zip")
            for _, frame in read_comet_archive(p).table_parts("langchain-runs")
        ]
    )
    assert len(comet_runs) == comet_runs["run_id"].nunique() == 4 * 200 * RUNS_PER_CHAIN
    # What every group acknowledged is trimmed; nothing else is.
    assert redis.Redis.from_url(server.url).xlen("langchain") == 0


def test_a_killed_worker_s_pending_batches_are_taken_by_another(
    server: RedisServer, tmp_path: Path
):
    out = tmp_path / "archives"
    doomed = worker(server.url, out, "doomed", claim_idle=2)
    survivor = worker(server.url, out, "survivor", claim_idle=2)
    client = redis.Redis.from_url(server.url)
    producer = app(server.url, tmp_path / "app", 50, waves=8, pause=0.3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the doomed worker holds entries in its open session
        try:
            consumers = {c["name"]: c for c in client.xinfo_consumers("langchain", "tracker")}
        except redis.ResponseError:  # the workers have not created the group yet
            consumers = {}
        if consumers.get(b"doomed", {}).get("pending", 0) >= 2:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the doomed worker never took an entry")
    doomed.kill()  # SIGKILL: its open session (and archive) dies with it
    doomed.communicate()
    assert finished(producer)["streamed"] == 8 * 50 * EVENTS_PER_CHAIN
    deadline = time.monotonic() + 60
    while client.xpending("langchain", "tracker")["consumers"] and any(
        c["name"] == b"doomed" for c in client.xpending("langchain", "tracker")["consumers"]
    ):
        assert time.monotonic() < deadline, "nobody took the killed worker's entries"
        time.sleep(0.2)
    wait_until_read(server.url)
    report = stop(survivor)
    assert "claimed from silent workers" in report and " 0 claimed" not in report, report
    # The killed worker's session never finished: no archive of it (only a .partial file).
    assert not list(out.glob("langchain-doomed-*.jsonl"))
    check_each_event_once(out, 8 * 50)


def test_redis_down_for_ten_seconds_the_applications_spool_and_replay(
    server: RedisServer, tmp_path: Path
):
    out = tmp_path / "archives"
    consumer = worker(server.url, out, "w")
    producer = app(server.url, tmp_path / "app", 40, waves=30, pause=0.5)
    time.sleep(3)
    server.stop()
    time.sleep(10)
    server.start()  # same port, same data (append-only file)
    result = finished(producer)
    total = 40 * 30
    assert result["streamed"] == total * EVENTS_PER_CHAIN, result
    assert (
        result["stats"]["spooled"] > 0 and result["stats"]["replayed"] == result["stats"]["spooled"]
    )
    assert result["spooled"] == 0 and not result["errors"], result
    assert result["slowest"] < 2.0, result  # no chain waited for Redis
    wait_until_read(server.url)
    stop(consumer)
    check_each_event_once(out, total)


def test_two_workers_build_the_tables_one_worker_and_the_pipe_build(tmp_path: Path):
    """Self-contained records: whichever worker gets which batch, the same runs table and
    session tables (ClearML) as one worker, and as the local pipe transport."""
    chains = 24
    script = textwrap.dedent(
        """
        import sys
        from langchain_core.language_models import FakeListLLM
        from langchain_core.prompts import PromptTemplate
        from tracker import TrackerCallbackHandler, sinks
        url, out, chains = sys.argv[1], sys.argv[2], int(sys.argv[3])
        options = {"transport": url, "batch_size": 8} if url != "pipe" else {}
        handler = TrackerCallbackHandler(
            [sinks.clearml(task_name="pipe", offline_dir=out)], offline_dir=out, **options
        )
        chain = PromptTemplate.from_template("Q {x}") | FakeListLLM(
            responses=[f"answer {i}" for i in range(chains)]
        )
        for i in range(chains):
            chain.invoke({"x": i}, config={"callbacks": [handler]})
        assert handler.flush_tracker(finish=True, timeout=120).ok
        """
    )

    def tables(out: Path) -> dict[str, pd.DataFrame]:
        parts: dict[str, list[pd.DataFrame]] = {"Runs": [], "Session Analysis": []}
        for path in out.glob("*.zip"):
            archive = read_clearml_archive(path)
            for title in parts:
                parts[title].extend(frame for _, frame in archive.table_parts(title))
        runs = pd.concat(parts["Runs"])[["name", "run_type", "status"]]
        session = pd.concat(parts["Session Analysis"])[
            ["prompt_step", "prompts", "output_step", "output"]
        ]
        return {
            "runs": runs.sort_values(list(runs.columns)).reset_index(drop=True),
            "session": session.sort_values("prompt_step").reset_index(drop=True),
        }

    results: dict[str, dict[str, pd.DataFrame]] = {}
    for label, count in (("pipe", 0), ("one worker", 1), ("two workers", 2)):
        out = tmp_path / label.replace(" ", "-")
        if count == 0:
            done = subprocess.run(
                [sys.executable, "-c", script, "pipe", str(out), str(chains)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, done.stderr[-3000:]
        else:
            with RedisServer(tmp_path / f"redis-{count}") as server:
                workers = [worker(server.url, out, f"w{i}", "clearml") for i in range(count)]
                done = subprocess.run(
                    [sys.executable, "-c", script, server.url, str(out), str(chains)],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=180,
                )
                assert done.returncode == 0, done.stderr[-3000:]
                wait_until_read(server.url)
                for process in workers:
                    stop(process)
            assert len(list(out.glob("*.zip"))) == count  # each worker wrote a part
        results[label] = tables(out)
    for label in ("one worker", "two workers"):
        for name in ("runs", "session"):
            pd.testing.assert_frame_equal(
                results[label][name], results["pipe"][name], check_dtype=False
            )
    assert len(results["pipe"]["session"]) == chains
    assert list(results["two workers"]["session"]["prompt_step"]) == list(
        results["pipe"]["session"]["prompt_step"]
    )


def test_a_silent_redis_never_slows_the_chains_and_the_flush_says_where_events_are(
    tmp_path: Path,
):
    """Redis that accepts and never answers: the chains run at their pace, the batches go to
    the spool, and the flush names the transport and the cause."""
    from langchain_core.language_models import FakeListLLM
    from langchain_core.prompts import PromptTemplate

    from tests.loopback import SilentServer
    from tracker import TrackerCallbackHandler, sinks

    with SilentServer() as silent:
        url = f"redis://127.0.0.1:{silent.port}/0"
        handler = TrackerCallbackHandler(
            [sinks.jsonl(tmp_path)], transport=url, offline_dir=tmp_path, batch_size=16
        )
        chain = PromptTemplate.from_template("Q {x}") | FakeListLLM(responses=["a"] * 100)
        started = time.perf_counter()
        for i in range(100):
            chain.invoke({"x": i}, config={"callbacks": [handler]})
        assert time.perf_counter() - started < 2.0  # the callbacks never wait for Redis
        result = handler.flush_tracker(finish=True, timeout=60)
    assert not result.ok and result.streamed == 0 and result.spooled == 100 * 6, result
    assert f"redis {url}" in result.errors[0] and "Timeout" in result.errors[0], result.errors
    assert handler.stats()["in_spool"] == 100 * 6


def test_what_the_redact_hook_withheld_is_not_counted_streamed(server: RedisServer, tmp_path: Path):
    """The hook's withheld records stay out of the stream and out of ``streamed``: every event
    is counted once (``processed`` = streamed + withheld)."""
    import uuid

    from tracker import TrackerCallbackHandler, sinks

    handler = TrackerCallbackHandler(
        [sinks.jsonl(tmp_path)],
        transport=server.url,
        offline_dir=tmp_path,
        redact=lambda record: None if "secret" in record.fields.get("text", "") else record,
    )
    for i in range(10):
        handler.on_text(f"secret {i}" if i % 3 == 0 else f"x{i}", run_id=uuid.uuid4())
    result = handler.flush_tracker(finish=True, timeout=60)
    stats = handler.stats()
    assert result.ok and result.streamed == 6 and stats["streamed"] == 6, (result, stats)
    assert (stats["enqueued"], stats["processed"], stats["pending"]) == (10, 10, 0), stats
    entries = redis.Redis.from_url(server.url).xrange("langchain")
    assert sum(int(fields[b"n"]) for _, fields in entries) == 6, entries


def test_the_seed_classes_use_the_stream_from_the_environment(server: RedisServer, tmp_path: Path):
    """TRACKER_TRANSPORT: an unchanged script with a seed class ships to the stream (no
    flush call: the exit drain does it), and a worker writes its archive."""
    script = textwrap.dedent(
        """
        import sys
        from langchain_core.language_models import FakeListLLM
        from langchain_core.prompts import PromptTemplate
        from tracker import CometCallbackHandler
        handler = CometCallbackHandler(offline_dir=sys.argv[1])
        chain = PromptTemplate.from_template("Q {x}") | FakeListLLM(responses=["a"] * 10)
        for i in range(10):
            chain.invoke({"x": i}, config={"callbacks": [handler]})
        """
    )
    env = {**os.environ, "TRACKER_TRANSPORT": server.url}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "app")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list((tmp_path / "app").glob("*.zip"))  # no SDK ran in the application
    client = redis.Redis.from_url(server.url)
    assert sum(int(f[b"n"]) for _, f in client.xrange("langchain")) == 10 * 6
    out = tmp_path / "archives"
    command = ["worker", "--from", server.url, "--sink", "comet", "--offline-dir", str(out)]
    drained = subprocess.run(
        [sys.executable, "-m", "tracker", *command, "--drain", "--max-seconds", "120"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert drained.returncode == 0, drained.stdout + drained.stderr[-3000:]
    (archive,) = out.glob("*.zip")
    comet = read_comet_archive(archive)
    assert len(comet.action_records()) == 10 * 6
    steps = [row["step"] for row in comet.action_records()]
    assert steps == list(range(1, 10 * 6 + 1))  # the seed counters, counted at the source


def test_a_forked_child_ships_its_own_events(server: RedisServer, tmp_path: Path):
    """A handler built before fork() (gunicorn --preload): each process ships its own."""
    script = textwrap.dedent(
        """
        import os, sys
        from langchain_core.language_models import FakeListLLM
        from langchain_core.prompts import PromptTemplate
        from tracker import TrackerCallbackHandler, sinks
        handler = TrackerCallbackHandler(
            [sinks.jsonl(sys.argv[2])], transport=sys.argv[1], offline_dir=sys.argv[2]
        )
        chain = PromptTemplate.from_template("Q {x}") | FakeListLLM(responses=["a"] * 5)
        child = os.fork()
        for i in range(5):
            chain.invoke({"x": i}, config={"callbacks": [handler]})
        result = handler.flush_tracker(finish=True, timeout=60)
        assert result.streamed == 5 * 6 and result.ok, result
        if child:
            _, status = os.waitpid(child, 0)
            assert status == 0, status
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, server.url, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    entries = redis.Redis.from_url(server.url).xrange("langchain")
    assert sum(int(f[b"n"]) for _, f in entries) == 2 * 5 * 6
    assert (
        len({f[b"producer"] for _, f in entries}) == 2 and len({f[b"pid"] for _, f in entries}) == 2
    )


def test_two_draining_workers_both_finish(server: RedisServer, tmp_path: Path):
    """``--drain`` with two workers: each writes its share and exits (neither waits for the
    other's open session), and every event is written once."""
    assert finished(app(server.url, tmp_path / "app", 150))["streamed"] == 150 * EVENTS_PER_CHAIN
    out = tmp_path / "archives"
    started = time.monotonic()
    draining = [worker(server.url, out, f"d{i}", drain="", session_seconds=300) for i in (1, 2)]
    for process in draining:
        report, err = process.communicate(timeout=120)
        assert process.returncode == 0, report + err[-3000:]
    assert time.monotonic() - started < 60
    check_each_event_once(out, 150)


@pytest.mark.parametrize("batch_size", [5, 12])
def test_an_entry_holds_whole_traces_never_a_part_of_one(
    server: RedisServer, tmp_path: Path, batch_size: int
):
    """Consumers take entries, not traces: a trace cut between two entries reaches two workers,
    and each writes half a run (a ``running`` row and a nameless one). 8-event traces, entries
    of 5 (a trace larger than an entry goes whole, alone) and of 12 (one trace fits, two do
    not)."""
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from tracker import TrackerCallbackHandler, sinks
    from workers.snapshot import decode

    chains = 30
    handler = TrackerCallbackHandler(
        [sinks.jsonl(tmp_path)], transport=server.url, offline_dir=tmp_path, batch_size=batch_size
    )
    answers = iter([AIMessage(content=f"answer {i}") for i in range(chains)])
    chain = (
        ChatPromptTemplate.from_messages([("human", "{q}")])
        | GenericFakeChatModel(messages=answers)
        | StrOutputParser()
    )

    async def main() -> Any:
        await asyncio.gather(
            *(chain.ainvoke({"q": i}, config={"callbacks": [handler]}) for i in range(chains))
        )
        return await handler.aflush_tracker(finish=True, timeout=60)

    assert asyncio.run(main()).streamed == chains * EVENTS_PER_CHAIN
    root_of: dict[Any, Any] = {}
    entries_of: dict[Any, set[int]] = {}
    for number, (_, fields) in enumerate(redis.Redis.from_url(server.url).xrange("langchain")):
        events = decode(fields[b"b"])
        roots = set()
        for event in events:
            parent = event.parent_run_id
            root = root_of.setdefault(event.run_id, root_of.get(parent, parent or event.run_id))
            roots.add(root)
            entries_of.setdefault(root, set()).add(number)
        assert len(events) <= batch_size or len(roots) == 1, (len(events), len(roots))
    assert len(entries_of) == chains
    assert all(len(numbers) == 1 for numbers in entries_of.values()), entries_of


def test_only_a_trace_past_the_entry_limit_is_cut():
    """pack(): whole groups up to ``size`` events, a larger group alone, and one past
    ``limit`` cut into entries of ``limit`` (counted)."""
    from workers.traces import pack

    def groups(*sizes: int) -> list[list[int]]:
        counter = iter(range(10_000))
        return [[next(counter) for _ in range(size)] for size in sizes]

    entries, cut = pack(groups(3, 3, 1, 7, 2, 25, 1), size=8, limit=10)  # type: ignore[arg-type]
    assert [len(entry) for entry in entries] == [7, 7, 2, 10, 10, 5, 1]
    assert cut == 1
    assert [event for entry in entries for event in entry] == list(range(42))  # order kept


class _FailsOnce:
    """The worker's real Redis client, whose next call of ``method`` fails as if Redis went
    away."""

    def __init__(self, client: Any, method: str) -> None:
        self._client = client
        self._method = method
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name != self._method or self.failed:
            return call

        def fail(*args: Any, **kwargs: Any) -> Any:
            self.failed = True
            raise redis.ConnectionError(f"injected: Redis went away at {name.upper()}")

        return fail


def test_entries_whose_taking_failed_are_taken_at_the_next_read(
    server: RedisServer, tmp_path: Path
):
    from tracker import sinks
    from workers.options import PipelineOptions
    from workers.stream_worker import StreamWorker

    result = finished(app(server.url, tmp_path / "app", 5))
    assert result["streamed"] == 5 * EVENTS_PER_CHAIN, result
    out = tmp_path / "archives"
    options = PipelineOptions(spool=None, transport=None)
    consumer = StreamWorker(
        server.url, "langchain", lambda n: [sinks.jsonl(out, session=f"langchain-{n}")], options
    )
    consumer._ensure_group()
    faulty = consumer._redis = _FailsOnce(consumer._redis, "mget")
    assert consumer._read() == 0 and faulty.failed  # delivered, then the taking failed
    taken = 0
    for _ in range(3):  # the group will not deliver them again: they are taken from memory
        taken += consumer._read()
    assert taken > 0 and consumer.stats.events == 5 * EVENTS_PER_CHAIN, consumer.stats
    consumer.run(drain=True, deadline=time.monotonic() + 60)
    check_each_event_once(out, 5)


def test_an_entry_already_written_whose_ack_failed_is_acked_later_and_counted_once(
    server: RedisServer, tmp_path: Path
):
    """An entry whose batch a finished session wrote (an application's resend) only needs its
    ack; when that ack fails, the worker tries the ack again, and takes nothing twice."""
    from tracker import sinks
    from workers.options import PipelineOptions
    from workers.stream_worker import StreamWorker

    options = PipelineOptions(spool=None, transport=None)
    consumer = StreamWorker(
        server.url, "langchain", lambda n: [sinks.jsonl(tmp_path, session=f"s-{n}")], options
    )
    consumer._ensure_group()
    client = redis.Redis.from_url(server.url)
    client.xadd("langchain", {"id": "batch-7", "b": b"never read"})
    client.set(consumer._done_key("batch-7"), 1)  # written by a session that finished
    faulty = consumer._redis = _FailsOnce(consumer._redis, "xack")

    assert consumer._read() == 1 and faulty.failed
    assert client.xpending("langchain", "tracker")["pending"] == 1  # the ack failed
    for _ in range(2):
        consumer._read()  # nothing new to read: the ack is tried again
    assert client.xpending("langchain", "tracker")["pending"] == 0
    stats = consumer.stats
    assert (stats.entries, stats.duplicates, stats.events) == (1, 1, 0), stats
