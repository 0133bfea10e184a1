"""Backends that are down, met by the real SDKs online (issue 11's regression tests).

The ClearML and Comet SDKs run ONLINE, with their default settings, against servers this test
starts on 127.0.0.1 (``tests/loopback.py``): a port that refuses connections, a server that
accepts and never answers, and an HTTP server answering every request with 500. Every Python
process involved may reach the loopback only (``tests/netguard``).

Each scenario is a fresh program (``python -c``) so that its whole exit can be timed, and killed
with its process group past a hard deadline. The programs of the selected scenarios run at the
same time (a few at once), started by one module fixture; each test waits for its own.

What issue 11 asks, per backend and server:

1. 300 ``on_text`` events, ``flush_tracker(finish=True, timeout=10)``, then the script returns:
   the process exits within 10 + 10 + 5 s (+ start-up slack) of the flush call; the
   FlushResult is not ok and an error names the backend and a cause; the events are spooled
   (or counted lost, with a reason), never reported written with nothing stored; after exit the
   spool holds the 300 events; no tracker worker outlives the program.
2. Comet answering HTTP 500, flush timeout 150: the error does not blame "ended by another
   experiment".
3. Two ``aflush_tracker(finish=True, timeout=15)`` at once on one handler (silent server): both
   resolve, and the program exits.

Set ``BACKENDS_DOWN_REPORT=<path>`` to get every run's measurements as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.loopback import (
    Http500Server,
    SilentServer,
    guarded_env,
    netlog_entries,
    refused_port,
)

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 300
FLUSH_TIMEOUT = 10.0
DRAIN_SECONDS = 10.0  # TRACKER_EXIT_DRAIN_SECONDS' default (unset in the programs)
GRACE_SECONDS = 5.0  # workers.link.EXIT_GRACE_SECONDS
STARTUP_SLACK = 10.0  # the SDKs' imports, a loaded 2-core machine
HARD_DEADLINE = 90.0  # a program still running then is killed, with its process group
CONCURRENT_FINISH_TIMEOUT = 15.0
HTTP500_FLUSH_TIMEOUT = 150.0
PARALLEL_RUNS = 4
WORKER_MARK = "workers.worker"

# Words that say why a backend failed; an error line must hold one besides the backend's name.
CAUSE = re.compile(
    r"refused|connect|timed? ?out|timeout|no answer|not answer|unreachable|\b500\b|internal "
    r"server error|login|http|socket|network|hang|hung|still open|not open|did not open|"
    r"opening|stopped|alive|status",
    re.IGNORECASE,
)

# The program under test. argv: backend, offline_dir, mode ("finish" or "two_finishes"),
# flush timeout. Lines starting with "@@" are JSON for the test; the rest is the SDKs' output.
PROGRAM = r"""
import asyncio, atexit, dataclasses, json, sys, time

def emit(tag, **values):
    line = json.dumps({"tag": tag, "t": time.time(), **values}, default=str)
    print("@@" + line, flush=True)

def as_dict(result):
    data = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    data["ok"] = result.ok
    return data

emit("start")
import tracker

backend, offline_dir, mode, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
if backend == "clearml":
    handler = tracker.ClearMLCallbackHandler(
        task_name="backends-down", offline=False, offline_dir=offline_dir
    )
else:
    handler = tracker.CometCallbackHandler(offline=False, offline_dir=offline_dir)
try:
    from workers.link import current_link
    worker_pid = current_link().worker_pid
except Exception as exc:
    worker_pid = repr(exc)
emit("built", worker_pid=worker_pid)
for i in range(300):
    handler.on_text(f"e{i}")

if mode == "finish":
    emit("flush_start")
    result = handler.flush_tracker(finish=True, timeout=timeout)
    emit("flush_result", index=0, result=as_dict(result), stats=handler.stats())
else:
    async def one(index):
        result = await handler.aflush_tracker(finish=True, timeout=timeout)
        emit("flush_result", index=index, result=as_dict(result), stats=handler.stats())

    async def both():
        emit("flush_start")
        await asyncio.gather(one(0), one(1))

    asyncio.run(both())

# atexit runs after the tracker's exit drain (a threading atexit hook): the counts it left.
atexit.register(lambda: emit("after_drain", stats=handler.stats()))
emit("return")
"""


@dataclass(frozen=True)
class Scenario:
    """One program to run: a backend, the server it meets, and what the script does."""

    key: str
    backend: str
    server: str  # "refused", "silent" or "http500"
    mode: str = "finish"
    flush_timeout: float = FLUSH_TIMEOUT
    hard_deadline: float = HARD_DEADLINE
    sdk_config: str | None = None  # a clearml.conf for this run only (CLEARML_CONFIG_FILE)


# ClearML's default HTTP retries (api.http.retries: 240 tries, backoff up to 120 s) keep a login
# against a refused port going for hours; no environment variable changes them, only a
# configuration file. The "fastfail" run gives the SDK one retry, to tell the tracker's part from
# the SDK's: with it the SDK raises at once and the tracker reports it.
CLEARML_FAST_FAIL = """
api { http { retries {
    total: 1, connect: 1, read: 1, redirect: 1, status: 1, backoff_factor: 0.1, backoff_max: 1.0
} } }
"""

EXIT_SCENARIOS = [
    Scenario(f"{backend}-{server}", backend, server)
    for backend in ("clearml", "comet")
    for server in ("refused", "silent", "http500")
] + [Scenario("clearml-refused-fastfail", "clearml", "refused", sdk_config=CLEARML_FAST_FAIL)]
COMET_500_LONG = Scenario(
    "comet-http500-long",
    "comet",
    "http500",
    flush_timeout=HTTP500_FLUSH_TIMEOUT,
    hard_deadline=HTTP500_FLUSH_TIMEOUT + DRAIN_SECONDS + GRACE_SECONDS + 3 * STARTUP_SLACK,
)
TWO_FINISHES = [
    Scenario(
        f"{backend}-silent-two-finishes",
        backend,
        "silent",
        mode="two_finishes",
        flush_timeout=CONCURRENT_FINISH_TIMEOUT,
    )
    for backend in ("clearml", "comet")
]
SCENARIOS = {s.key: s for s in [*EXIT_SCENARIOS, COMET_500_LONG, *TWO_FINISHES]}
# The longest first, so that the whole module takes about as long as its slowest program.
LAUNCH_ORDER = [COMET_500_LONG.key, *(s.key for s in TWO_FINISHES)]


@dataclass
class Servers:
    """The loopback stand-ins, as URLs."""

    refused: str
    silent: SilentServer
    http500: Http500Server

    def url(self, kind: str) -> str:
        """The base URL of the server ``kind``."""
        if kind == "refused":
            return self.refused
        return self.silent.url if kind == "silent" else self.http500.url


@dataclass
class Run:
    """What one program did, as measured from outside and reported by it."""

    scenario: Scenario
    tmp: Path
    returncode: int | None = None
    killed: bool = False
    launched_at: float = 0.0
    exited_at: float = 0.0
    lines: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""
    stdout_other: str = ""
    leftovers: list[dict[str, Any]] = field(default_factory=list)
    spool: dict[str, Any] = field(default_factory=dict)
    netlog: list[str] = field(default_factory=list)

    def tagged(self, tag: str) -> list[dict[str, Any]]:
        """The program's reports with ``tag``."""
        return [line for line in self.lines if line.get("tag") == tag]

    def first(self, tag: str) -> dict[str, Any] | None:
        """The program's first report with ``tag``."""
        found = self.tagged(tag)
        return found[0] if found else None

    @property
    def flush_started(self) -> float | None:
        """Wall-clock time of the flush call."""
        line = self.first("flush_start")
        return line["t"] if line else None

    @property
    def exit_seconds(self) -> float | None:
        """Seconds from the flush call to the process's exit (None if it never got there)."""
        started = self.flush_started
        return None if started is None else self.exited_at - started

    @property
    def results(self) -> list[dict[str, Any]]:
        """The FlushResults (as dicts, with ``ok``), in the order they resolved."""
        return [line["result"] for line in self.tagged("flush_result")]

    def describe(self) -> str:
        """Everything a failure message needs to say what happened."""
        exit_s = self.exit_seconds
        when = f"{exit_s:.1f}s after the flush call" if exit_s is not None else "n/a"
        parts = [
            f"scenario {self.scenario.key}: returncode={self.returncode} killed={self.killed} "
            f"exit {when} ({self.exited_at - self.launched_at:.1f}s after launch)",
        ]
        for line in self.tagged("flush_result"):
            parts.append(f"flush result {line['index']}: {json.dumps(line['result'])}")
            parts.append(f"stats after that flush: {_short_stats(line['stats'])}")
        after = self.first("after_drain")
        parts.append(
            f"stats after the exit drain: {_short_stats(after['stats']) if after else 'never'}"
        )
        parts.append(f"spool: {self.spool}")
        if self.leftovers:
            parts.append(f"leftover processes: {self.leftovers}")
        if self.netlog:
            parts.append(f"non-loopback network attempts refused: {self.netlog[:5]}")
        tail = "\n".join(
            line for line in self.stderr.splitlines() if "urllib3.connectionpool" not in line
        )[-2500:]
        parts.append(f"stderr (urllib3 retry lines left out), tail:\n{tail}")
        return "\n".join(parts)

    def summary(self) -> dict[str, Any]:
        """The measurements, for BACKENDS_DOWN_REPORT."""
        after = self.first("after_drain")
        return {
            "scenario": self.scenario.key,
            "returncode": self.returncode,
            "killed": self.killed,
            "exit_seconds_after_flush_call": self.exit_seconds,
            "seconds_since_launch": self.exited_at - self.launched_at,
            "flush_results": [
                {**line["result"], "resolved_after_s": line["t"] - (self.flush_started or 0)}
                for line in self.tagged("flush_result")
            ],
            "stats_after_flush": [
                _short_stats(line["stats"]) for line in self.tagged("flush_result")
            ],
            "stats_after_drain": _short_stats(after["stats"]) if after else None,
            "spool": self.spool,
            "leftovers": self.leftovers,
            "netlog": self.netlog,
        }


_STAT_KEYS = (
    "enqueued",
    "processed",
    "dropped",
    "pending",
    "queue_depth",
    "spooled",
    "in_spool",
    "lost",
    "backend_down",
    "sink_errors",
    "closed",
    "worker_restarts",
)


def _short_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats.get(key) for key in _STAT_KEYS}


# -- running the programs ------------------------------------------------------------------


def _program_env(scenario: Scenario, servers: Servers, tmp: Path, mark: str) -> dict[str, str]:
    """A clean environment: no inherited ClearML/Comet/tracker settings, then the scenario's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLEARML_", "COMET_", "TRAINS_")) and k != "TRACKER_EXIT_DRAIN_SECONDS"
    }
    home = tmp / "home"  # no ~/clearml.conf or ~/.comet.config of the machine's
    home.mkdir()
    env.update(
        PYTHONPATH=str(ROOT),
        HOME=str(home),
        CLEARML_CACHE_DIR=str(tmp / "clearml-cache"),
        COMET_ERROR_TRACKING_ENABLE="false",
        PYTHONUNBUFFERED="1",
        TRACKER_TEST_RUN=mark,  # inherited by the worker and whatever it starts
    )
    url = servers.url(scenario.server)
    if scenario.backend == "clearml":
        env.update(
            CLEARML_API_HOST=url,
            CLEARML_WEB_HOST=url,
            CLEARML_FILES_HOST=url,
            CLEARML_API_ACCESS_KEY="dummy-access-key",
            CLEARML_API_SECRET_KEY="dummy-secret-key",
        )
        if scenario.sdk_config is not None:
            config = tmp / "clearml.conf"
            config.write_text(scenario.sdk_config, encoding="utf-8")
            env["CLEARML_CONFIG_FILE"] = str(config)
    else:
        env.update(COMET_API_KEY="dummy-api-key", COMET_URL_OVERRIDE=f"{url}/clientlib/")
    return guarded_env(env, tmp / "netlog")


def _ours(mark: str, child_pid: int, worker_pid: Any) -> list[psutil.Process]:
    """Live processes of this run: our mark in their environment, or the tracker worker's
    command line with the program (or init) as parent."""
    found = []
    for proc in psutil.process_iter(["pid", "ppid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            worker_like = WORKER_MARK in cmdline and (
                proc.pid == worker_pid or proc.info["ppid"] == child_pid
            )
            marked = False
            with contextlib.suppress(psutil.Error):
                marked = proc.environ().get("TRACKER_TEST_RUN") == mark
            if marked or worker_like:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _describe_process(proc: psutil.Process) -> dict[str, Any]:
    try:
        return {
            "pid": proc.pid,
            "ppid": proc.ppid(),
            "cmdline": " ".join(proc.cmdline())[:200],
            "status": proc.status(),
        }
    except psutil.Error as exc:
        return {"pid": proc.pid, "error": repr(exc)}


def _read_spool(offline_dir: Path, backend: str) -> dict[str, Any]:
    """What the spool directories of ``backend`` hold, without replaying anything."""
    from workers.spool import Spool, SpoolError

    root = offline_dir / "spool"
    report: dict[str, Any] = {"directories": {}, "texts": []}
    if not root.is_dir():
        return report
    for directory in sorted(root.glob(f"{backend}*")):
        try:
            spool = Spool(directory)
        except SpoolError as exc:  # still locked: a process of the run holds it
            report["directories"][directory.name] = f"unreadable: {exc}"
            continue
        try:
            batches = spool.batches()
        finally:
            spool.close()
        texts = [wire[5].get("text") for batch in batches for wire in batch]
        report["directories"][directory.name] = {
            "batches": len(batches),
            "events": sum(len(batch) for batch in batches),
        }
        report["texts"].extend(texts)
    return report


def _spool_summary(texts: list[Any]) -> dict[str, Any]:
    expected = [f"e{i}" for i in range(EVENTS)]
    counts = Counter(texts)
    return {
        "events": len(texts),
        "distinct": len(counts),
        "missing": len(set(expected) - set(counts)),
        "duplicated": sum(1 for c in counts.values() if c > 1),
        "in_order": texts == expected,
    }


def _pump(stream: Any, sink: list[str]) -> None:
    for raw in iter(stream.readline, b""):
        sink.append(raw.decode("utf-8", "replace"))
    stream.close()


def run_program(scenario: Scenario, servers: Servers, tmp: Path) -> Run:
    """Run ``scenario``'s program to its end (or its hard deadline) and measure it."""
    mark = uuid.uuid4().hex
    offline_dir = tmp / "offline"
    env = _program_env(scenario, servers, tmp, mark)
    run = Run(scenario, tmp)
    argv = [
        sys.executable,
        "-c",
        PROGRAM,
        scenario.backend,
        str(offline_dir),
        scenario.mode,
        str(scenario.flush_timeout),
    ]
    run.launched_at = time.time()
    child = subprocess.Popen(
        argv,
        cwd=tmp,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the worker joins it, a kill takes both
    )
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=_pump, args=(child.stdout, out), daemon=True),
        threading.Thread(target=_pump, args=(child.stderr, err), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        run.returncode = child.wait(scenario.hard_deadline)
    except subprocess.TimeoutExpired:
        run.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        run.returncode = child.wait()
    run.exited_at = time.time()
    # An orphaned worker keeps the stderr pipe open: do not wait for it.
    for reader in readers:
        reader.join(2.0)
    for text in out:
        if text.startswith("@@"):
            with contextlib.suppress(ValueError):
                run.lines.append(json.loads(text[2:]))
        else:
            run.stdout_other += text
    run.stderr = "".join(err)
    built = run.first("built")
    worker_pid = built["worker_pid"] if built else None
    leftovers = _ours(mark, child.pid, worker_pid)
    run.leftovers = [_describe_process(p) for p in leftovers]
    if leftovers:  # still alive a moment later? then it is no race with its own exit
        time.sleep(3.0)
        for entry, proc in zip(run.leftovers, leftovers, strict=True):
            entry["alive_3s_later"] = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        psutil.wait_procs(leftovers, timeout=5)
    spool = _read_spool(offline_dir, scenario.backend)
    run.spool = {"directories": spool["directories"], **_spool_summary(spool["texts"])}
    run.netlog = netlog_entries(tmp / "netlog")
    return run


class Runs:
    """The programs of the selected scenarios, started together, a few at a time."""

    def __init__(self, keys: list[str], servers: Servers, tmp_root: Path) -> None:
        """Start every scenario in ``keys`` (at most PARALLEL_RUNS at once)."""
        self._pool = ThreadPoolExecutor(PARALLEL_RUNS, thread_name_prefix="backends-down")
        self._futures: dict[str, Future[Run]] = {}
        for key in keys:
            tmp = tmp_root / key
            tmp.mkdir()
            self._futures[key] = self._pool.submit(run_program, SCENARIOS[key], servers, tmp)

    def get(self, key: str) -> Run:
        """The run of ``key``, once its program is over."""
        return self._futures[key].result()

    def close(self) -> list[Run]:
        """Wait for every program; return the runs."""
        self._pool.shutdown(wait=True)
        return [future.result() for future in self._futures.values() if future.exception() is None]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """A refused port, a silent server and an HTTP 500 server, all on 127.0.0.1."""
    with SilentServer() as silent, Http500Server() as http500:
        yield Servers(f"http://127.0.0.1:{refused_port()}", silent, http500)


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runs]:
    """Start the programs of every scenario a selected test of this module needs."""
    wanted = {
        item.callspec.params["scenario"]
        for item in request.session.items
        if item.module is request.module
        and hasattr(item, "callspec")
        and "scenario" in item.callspec.params
    }
    keys = [k for k in LAUNCH_ORDER if k in wanted] + sorted(wanted - set(LAUNCH_ORDER))
    started = Runs(keys, servers, tmp_path_factory.mktemp("backends-down"))
    yield started
    finished = started.close()
    report = os.environ.get("BACKENDS_DOWN_REPORT")
    if report:
        Path(report).write_text(
            json.dumps([run.summary() for run in finished], indent=2, default=str),
            encoding="utf-8",
        )


def _ids(scenarios: list[Scenario]) -> list[Any]:
    return [pytest.param(s.key, id=s.key) for s in scenarios]


# -- 1. a finish against a dead backend, then the script returns -----------------------------


@pytest.mark.parametrize("scenario", _ids(EXIT_SCENARIOS))
def test_exits_within_the_drain_deadline(runs: Runs, scenario: str) -> None:
    """The program exits within flush timeout + drain + grace (+ start-up) of the flush call."""
    run = runs.get(scenario)
    bound = FLUSH_TIMEOUT + DRAIN_SECONDS + GRACE_SECONDS + STARTUP_SLACK
    assert not run.killed, (
        f"the program was still running {run.scenario.hard_deadline:.0f}s after launch and was "
        f"killed: the exit drain did not bound the exit\n{run.describe()}"
    )
    assert run.exit_seconds is not None, f"the program never reached the flush\n{run.describe()}"
    assert run.exit_seconds <= bound, (
        f"the program exited {run.exit_seconds:.1f}s after the flush call, over the "
        f"{bound:.0f}s bound (flush {FLUSH_TIMEOUT:.0f} + drain {DRAIN_SECONDS:.0f} + grace "
        f"{GRACE_SECONDS:.0f} + start-up {STARTUP_SLACK:.0f})\n{run.describe()}"
    )
    assert run.returncode == 0, f"the program failed\n{run.describe()}"


@pytest.mark.parametrize("scenario", _ids(EXIT_SCENARIOS))
def test_flush_result_names_the_backend_and_a_cause(runs: Runs, scenario: str) -> None:
    """The finish is not ok, and one of its errors names the backend and why it failed."""
    run = runs.get(scenario)
    backend = run.scenario.backend
    assert run.results, f"the flush never returned\n{run.describe()}"
    result = run.results[0]
    assert not result["ok"], f"a flush against a dead {backend} reported ok\n{run.describe()}"
    assert result["errors"], (
        f"the FlushResult against a dead {backend} carries no error at all (timed_out="
        f"{result['timed_out']}, pending={result['pending']}): the caller is not told that "
        f"{backend} is down, nor why\n{run.describe()}"
    )
    named = [e for e in result["errors"] if backend in e.lower()]
    assert named, f"no error names {backend!r}: {result['errors']}\n{run.describe()}"
    assert any(CAUSE.search(e.lower().replace(backend, "")) for e in named), (
        f"the errors naming {backend} give no cause: {named}\n{run.describe()}"
    )


@pytest.mark.parametrize("scenario", _ids(EXIT_SCENARIOS))
def test_events_are_stored_or_counted_lost(runs: Runs, scenario: str) -> None:
    """After the finish, stats() shows the events spooled, or lost with a reason; a result
    never says all 300 were written while nothing was stored."""
    run = runs.get(scenario)
    assert run.tagged("flush_result"), f"the flush never returned\n{run.describe()}"
    line = run.tagged("flush_result")[0]
    result, stats = line["result"], line["stats"]
    assert not (result["written"] >= EVENTS and run.spool["events"] == 0), (
        f"the FlushResult says {result['written']} events were written to a dead backend, "
        f"and the spool holds none\n{run.describe()}"
    )
    kept = (stats.get("spooled") or 0) + (stats.get("in_spool") or 0)
    lost = stats.get("lost") or 0
    if lost:
        assert any("lost" in e for e in result["errors"]), (
            f"{lost} events lost without a reason in the result\n{run.describe()}"
        )
    assert kept > 0 or lost > 0, (
        f"after the finish returned, stats() shows nothing spooled and nothing lost "
        f"(spooled={stats.get('spooled')}, in_spool={stats.get('in_spool')}, lost={lost}, "
        f"pending={stats.get('pending')}): the events' fate is unknown to the caller\n"
        f"{run.describe()}"
    )


@pytest.mark.parametrize("scenario", _ids(EXIT_SCENARIOS))
def test_spool_holds_every_event_after_exit(runs: Runs, scenario: str) -> None:
    """After the exit, the backend's spool holds the 300 events, once each."""
    run = runs.get(scenario)
    spool = run.spool
    assert spool["events"] == EVENTS and spool["missing"] == 0 and spool["duplicated"] == 0, (
        f"the spool of {run.scenario.backend} holds {spool['events']} events "
        f"({spool['missing']} of e0..e{EVENTS - 1} missing, {spool['duplicated']} duplicated), "
        f"expected each of the {EVENTS} once\n{run.describe()}"
    )


@pytest.mark.parametrize("scenario", _ids(EXIT_SCENARIOS))
def test_no_tracker_process_outlives_the_program(runs: Runs, scenario: str) -> None:
    """No tracker worker (or anything else of the run) is alive once the program exited."""
    run = runs.get(scenario)
    assert not run.leftovers, (
        f"processes of the run outlived the program: {run.leftovers}\n{run.describe()}"
    )


# -- 2. Comet answering 500: the error says so, not "ended by another experiment" ------------


@pytest.mark.parametrize("scenario", _ids([COMET_500_LONG]))
def test_comet_http500_error_does_not_blame_another_experiment(runs: Runs, scenario: str) -> None:
    """With time to fail, Comet's 500s are reported as such, not as a second experiment."""
    run = runs.get(scenario)
    assert not run.killed, f"the program had to be killed\n{run.describe()}"
    assert run.results, f"the flush never returned\n{run.describe()}"
    result = run.results[0]
    assert not result["ok"] and result["errors"], (
        f"a flush against Comet answering 500 reported no error\n{run.describe()}"
    )
    blamed = [e for e in result["errors"] if "ended by another experiment" in e]
    assert not blamed, (
        f"the error blames another experiment in the process, but the cause is the server's "
        f"HTTP 500: {blamed}\n{run.describe()}"
    )
    assert any("comet" in e.lower() for e in result["errors"]), run.describe()


# -- 3. two finishes at once on one handler ---------------------------------------------------


@pytest.mark.parametrize("scenario", _ids(TWO_FINISHES))
def test_two_concurrent_finishes_both_resolve(runs: Runs, scenario: str) -> None:
    """Two ``aflush_tracker(finish=True, timeout=15)`` gathered: both return, the program
    exits within the drain deadline."""
    run = runs.get(scenario)
    timeout = run.scenario.flush_timeout
    assert not run.killed, (
        f"the program hung and was killed after {run.scenario.hard_deadline:.0f}s\n{run.describe()}"
    )
    results = run.tagged("flush_result")
    assert sorted(line["index"] for line in results) == [0, 1], (
        f"only {len(results)} of the two finishes resolved\n{run.describe()}"
    )
    started = run.flush_started
    assert started is not None
    for line in results:
        waited = line["t"] - started
        assert waited <= timeout + GRACE_SECONDS, (
            f"finish {line['index']} resolved after {waited:.1f}s, past its {timeout:.0f}s "
            f"timeout\n{run.describe()}"
        )
    bound = timeout + DRAIN_SECONDS + GRACE_SECONDS + STARTUP_SLACK
    assert run.exit_seconds is not None and run.exit_seconds <= bound, (
        f"the program exited {run.exit_seconds}s after the flush calls, over {bound:.0f}s\n"
        f"{run.describe()}"
    )
    assert not run.leftovers, f"processes outlived the program\n{run.describe()}"
