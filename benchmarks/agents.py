"""Issue 15: concurrent LangGraph ReAct-agent sessions, with and without the tracker.

Phase ``agents`` of :mod:`benchmarks.run` (``run(sizes, tmp)``): rounds of 50 concurrent
sessions of ``tests.langgraph_agent.agent()`` (``create_react_agent``, a tool-calling fake chat
model, tools ``lookup`` and ``fragile``; every third session asks the fragile tool, which raises,
and the session's exception is caught), through ``ainvoke`` and through ``astream_events``.

Variants: no handler, the no-op ``run_inline`` handler (:mod:`benchmarks.parent_cpu`'s), one
``TrackerCallbackHandler`` with a ClearML, a Comet and a JSON-lines sink (the target: ≤ 1.10x
no handler in both modes), and, for information, the seed classes ``ClearMLCallbackHandler`` +
``CometCallbackHandler`` together. All offline. Per mode, each variant runs in a long-lived
process of its own (ClearML allows one Task per process), started and warmed up before any
clock runs; then the processes take turns, one block of timed rounds each per repetition in a
rotating order, every block drained (timed apart) before the next one starts. Adjacent blocks
see the machine at nearly the same speed, which fresh processes minutes apart did not. The
seed classes run in a fresh process per mode (``run``), information only. At the end each
process's ``flush_tracker(finish=True)`` is timed on its own.

Standalone: ``python -m benchmarks.agents [--quick] [--keep]`` prints the table (children write
their logs and archives under a temporary folder, removed unless ``--keep``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import parent_cpu
from benchmarks.common import ROOT, GcWatch, Sizes, Table, fmt_ratio, log, rotated

TARGET = 1.10  # TrackerCallbackHandler's round wall time over no handler's, both modes
CHILD_TIMEOUT = 300  # a child's start, one block (with its drain), or its finish
FINISH_TIMEOUT = 120  # flush_tracker(finish=True) per handler; the seeds take ~20 s together
MODES = ("ainvoke", "astream_events")

#: The short-burst table (information): ``ainvoke`` only, a few rounds per process.
BURST_VARIANTS: list[tuple[str, str]] = [
    ("none", "no handler"),
    ("tracker", "TrackerCallbackHandler: ClearML + Comet + JSON lines"),
    ("nohold", "the same, never held (TRACKER_HOLD_WHILE_BUSY_SECONDS=0)"),
]

#: Variants of TrackerCallbackHandler with another hold (TRACKER_HOLD_WHILE_BUSY_SECONDS).
HOLDS = {"nohold": "0", "hold10": "10"}

# (key, row name, information only): the key is what the child process builds.
VARIANTS: list[tuple[str, str, bool]] = [
    ("none", "no handler", False),
    ("noop", "no-op run_inline handler", False),
    (
        "keep",
        "run_inline handler that only keeps its arguments through the timed rounds (what "
        "deferring the conversion costs), information",
        True,
    ),
    ("tracker", "TrackerCallbackHandler: ClearML + Comet + JSON lines", False),
    (
        "nohold",
        "TrackerCallbackHandler as above, batches never held while busy "
        "(TRACKER_HOLD_WHILE_BUSY_SECONDS=0), information",
        True,
    ),
    (
        "hold10",
        "TrackerCallbackHandler as above, held up to 10 s while busy "
        "(TRACKER_HOLD_WHILE_BUSY_SECONDS=10), information",
        True,
    ),
    ("seeds", "ClearMLCallbackHandler + CometCallbackHandler (seed classes), information", True),
]


@dataclass(frozen=True)
class AgentSizes:
    """Sessions per round, timed rounds per process, repetitions (and those with the seeds)."""

    sessions: int
    rounds: int
    repetitions: int
    seed_repetitions: int
    burst_rounds: int
    burst_repetitions: int

    @classmethod
    def named(cls, name: str) -> AgentSizes:
        """``quick`` (smoke size) or ``full`` (what ``make bench`` runs)."""
        if name == "quick":
            return cls(5, 2, 1, 1, burst_rounds=1, burst_repetitions=1)
        return cls(50, 15, 8, 1, burst_rounds=3, burst_repetitions=4)

    @classmethod
    def of(cls, sizes: Sizes) -> AgentSizes:
        """The sizes that go with :class:`benchmarks.common.Sizes` (quick or full)."""
        return cls.named("quick" if sizes.capacity_events < 30_000 else "full")


# -- child: one (variant, mode) process ------------------------------------------------------------


def _run_counter() -> Any:
    """A ``run_inline`` handler that counts runs (each run starts with exactly one ``*_start``)."""
    from langchain_core.callbacks import BaseCallbackHandler

    class RunCounter(BaseCallbackHandler):
        run_inline = True
        runs = 0

        def _start(self, *args: Any, **kwargs: Any) -> None:
            self.runs += 1

        on_chain_start = on_chat_model_start = on_llm_start = _start
        on_tool_start = on_retriever_start = _start

    return RunCounter()


def _keeping_handler() -> Any:
    """A ``run_inline`` handler that keeps its arguments in a list, and does nothing else.

    The floor of any handler that converts later: LangChain's objects stay alive while its
    events wait (the tracker's: while the process is busy, up to the hold), and the collector
    walks them meanwhile. This one keeps them through the timed rounds (the warm-up's are let
    go before them).
    """
    from langchain_core.callbacks import BaseCallbackHandler

    class KeepingHandler(BaseCallbackHandler):
        run_inline = True

        def __init__(self) -> None:
            self.kept: list[Any] = []

        def _keep(self, *args: Any, **kwargs: Any) -> None:
            # Laid out flat, as the tracker's queue keeps them: no object of its own an event.
            self.kept.extend(args)
            get = kwargs.get
            self.kept.extend((get("name"), get("tags"), get("metadata"), get("inputs")))

        on_llm_start = on_chat_model_start = on_llm_new_token = on_llm_end = on_llm_error = _keep
        on_chain_start = on_chain_end = on_chain_error = _keep
        on_tool_start = on_tool_end = on_tool_error = _keep
        on_retriever_start = on_retriever_end = on_retriever_error = _keep
        on_text = on_retry = on_agent_action = on_agent_finish = on_custom_event = _keep

    return KeepingHandler()


def _handlers(kind: str, out: Path) -> list[Any]:
    """The variant's handlers, offline into ``out`` (nothing reaches a server)."""
    if kind == "none":
        return []
    if kind == "noop":
        return [parent_cpu._counting_noop()]
    if kind == "keep":
        return [_keeping_handler()]
    from tracker import ClearMLCallbackHandler, CometCallbackHandler, TrackerCallbackHandler, sinks

    if kind in ("tracker", *HOLDS):  # the hold: the environment says so (_child_main)
        return [
            TrackerCallbackHandler(
                [
                    sinks.clearml(task_name="agents benchmark", offline=True, offline_dir=out),
                    sinks.comet(name="agents benchmark", offline=True, offline_dir=out),
                    sinks.jsonl(out),
                ],
                offline_dir=out,
            )
        ]
    if kind == "seeds":  # their defaults, offline
        return [
            ClearMLCallbackHandler(task_name="agents benchmark", offline=True, offline_dir=out),
            CometCallbackHandler(name="agents benchmark", offline=True, offline_dir=out),
        ]
    raise ValueError(f"unknown variant {kind!r}")


@dataclass
class _Process:
    """One (variant, mode) process's agent, handlers and what its start measured."""

    kind: str
    mode: str
    sessions: int
    label: str
    graph: Any
    handlers: list[Any]
    ours: list[Any]
    started: dict[str, Any]


async def _start(kind: str, mode: str, sessions: int, label: str, out: Path) -> _Process:
    """Build and start the handlers (tracker worker, Task, Experiment), count a round's events
    and runs with counting handlers, then run a warm-up round with the variant's handlers
    (drained)."""
    from tests.langgraph_agent import agent

    built = time.perf_counter()
    handlers = _handlers(kind, out)
    ours = [h for h in handlers if hasattr(h, "aflush_tracker")]
    for handler in ours:  # started before any clock runs
        await handler.aflush_tracker(timeout=300)
    proc = _Process(kind, mode, sessions, label, agent(), handlers, ours, {})
    start_s = time.perf_counter() - built
    # Events and runs of a round, counted by handlers of their own (the workload is
    # deterministic); then a warm-up round with the variant's handlers, drained.
    counter, runs = parent_cpu._counting_noop(), _run_counter()
    failed = await _one_round(proc, "count", [counter, runs])
    await _one_round(proc, "warmup", handlers)
    await _drain(proc)
    proc.started = {
        "events_per_round": counter.events,
        "runs_per_round": runs.runs,
        "failed_per_round": failed,
        "start_s": start_s,
    }
    return proc


async def _one_round(proc: _Process, tag: str, callbacks: list[Any]) -> int:
    """A round of ``proc.sessions`` concurrent sessions; how many failed."""

    async def session(i: int) -> bool:
        """One session; False when the agent raised (the fragile tool)."""
        question = f"fail {i}" if i % 3 == 0 else f"what is {i}?"
        # A thread id is never reused: MemorySaver keeps a failed session's dangling tool call,
        # and the next call on that thread raises INVALID_CHAT_HISTORY.
        config: Any = {
            "configurable": {"thread_id": f"{proc.label}-{tag}-{i}"},
            "callbacks": callbacks,
        }
        inputs = {"messages": [("human", question)]}
        try:
            if proc.mode == "ainvoke":
                await proc.graph.ainvoke(inputs, config=config)
            else:
                async for _ in proc.graph.astream_events(inputs, config=config, version="v2"):
                    pass
        except Exception:  # the fragile tool's error, raised through the graph
            return False
        return True

    done = await asyncio.gather(*(session(i) for i in range(proc.sessions)))
    return sum(1 for ok in done if not ok)


async def _drain(proc: _Process) -> float:
    """Everything recorded so far written (ours), or let go (the keeping handler); seconds."""
    began = time.perf_counter()
    for handler in proc.ours:
        await handler.aflush_tracker(timeout=300)
    for handler in proc.handlers:
        getattr(handler, "kept", []).clear()
    return time.perf_counter() - began


async def _block(proc: _Process, rounds: int, tag: str) -> dict[str, Any]:
    """``rounds`` timed rounds back to back from a clean heap, then a drain timed apart."""
    enqueued0 = [parent_cpu._stat(h, "enqueued") or 0 for h in proc.ours]
    gc.collect()  # every variant starts its timed rounds from the same clean heap
    walls: list[float] = []
    cpus: list[float] = []
    main_cpus: list[float] = []
    gc_ns: list[float] = []
    full_gcs: list[int] = []
    children0 = parent_cpu._descendants_cpu()
    # min_ms=0: every collection, in any thread (each holds the GIL for its whole length).
    with GcWatch(min_ms=0.0) as watch:
        for r in range(rounds):
            cpu0, main0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
            await _one_round(proc, f"{tag}-round{r}", proc.handlers)
            walls.append(time.perf_counter() - wall0)
            main_cpus.append(time.thread_time() - main0)
            cpus.append(time.process_time() - cpu0)
            pauses = watch.take()
            gc_ns.append(sum(p[1] for p in pauses))
            full_gcs.append(sum(1 for p in pauses if p[0] == 2))
    children_s = parent_cpu._descendants_cpu() - children0
    ours = proc.ours
    enqueued = [
        (parent_cpu._stat(h, "enqueued") or 0) - e0 for h, e0 in zip(ours, enqueued0, strict=True)
    ]
    pending = [parent_cpu._stat(h, "pending") for h in ours]
    return {
        **proc.started,
        "walls": walls,
        "cpus": cpus,
        "main_cpus": main_cpus,
        "gc_ns": gc_ns,
        "full_gcs": full_gcs,
        "children_s": children_s,
        "enqueued": enqueued,
        "pending_at_end": pending,
        "drain_s": await _drain(proc) if ours else None,
    }


async def _finish(proc: _Process) -> dict[str, Any]:
    """``aflush_tracker(finish=True)`` of ours, timed; what was lost, and the worker's life."""
    flushed = time.perf_counter()
    # Under the child's timeout: a finish that hangs comes back as a failed result.
    results = [await h.aflush_tracker(finish=True, timeout=FINISH_TIMEOUT) for h in proc.ours]
    finish_s = time.perf_counter() - flushed
    return {
        "finish_s": finish_s if proc.ours else None,
        "finish_ok": all(r.ok for r in results) if proc.ours else None,
        "finish_errors": [str(r) for r in results if not r.ok],
        "dropped_after_finish": [parent_cpu._stat(h, "dropped") for h in proc.ours],
        # The tracker worker's whole life (start-up, warm-up, rounds, finish): reaped, or not.
        "worker_life_s": parent_cpu._reaped_children_cpu() + parent_cpu._descendants_cpu(),
    }


async def _one_process(
    kind: str, mode: str, sessions: int, rounds: int, label: str, out: Path
) -> dict[str, Any]:
    """``run``: start, one block of ``rounds`` timed rounds, the finish."""
    proc = await _start(kind, mode, sessions, label, out)
    block = await _block(proc, rounds, "block")
    return {**block, **await _finish(proc)}


async def _serve(
    kind: str, mode: str, sessions: int, rounds: int, label: str, out: Path, result: Path
) -> None:
    """``serve``: start, then one block per ``block TAG`` line on stdin (its numbers to
    ``RESULT.TAG``), until ``finish`` (``RESULT.finish``). The parent sends the next command
    only once the last result is there, so the process is idle between its blocks."""
    proc = await _start(kind, mode, sessions, label, out)
    _write(result.with_suffix(".ready"), proc.started)
    for line in sys.stdin:
        command, _, tag = line.strip().partition(" ")
        if command == "block":
            _write(result.with_suffix(f".{tag}"), await _block(proc, rounds, tag))
        elif command == "finish":
            _write(result.with_suffix(".finish"), await _finish(proc))
            return


def _write(path: Path, found: dict[str, Any]) -> None:
    """``found`` as JSON at ``path``, whole or not at all (the parent polls for it)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(found), encoding="utf-8")
    partial.replace(path)


def _child_main(argv: list[str]) -> None:
    """``run|serve KIND MODE SESSIONS ROUNDS LABEL OUT RESULT``: one process's numbers, as
    JSON (``run``: a block and the finish; ``serve``: blocks on command, see :func:`_serve`)."""
    from benchmarks.common import prepare_environment

    how, kind, mode, sessions, rounds, label, out_arg, result_arg = argv
    out, result = Path(out_arg), Path(result_arg)
    if kind in HOLDS:  # before the link reads it, when the handler is built
        from workers.options import HOLD_WHILE_BUSY_ENV

        os.environ[HOLD_WHILE_BUSY_ENV] = HOLDS[kind]
    out.mkdir(parents=True, exist_ok=True)
    prepare_environment(out)  # before anything imports an SDK
    n, k = int(sessions), int(rounds)
    if how == "serve":
        asyncio.run(_serve(kind, mode, n, k, label, out / "offline", result))
        return
    found = asyncio.run(_one_process(kind, mode, n, k, label, out / "offline"))
    _write(result, found)


# -- parent side -----------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1e3:.0f} ms"


def _ratios(values: list[float]) -> str:
    """``1.42x (1.30x … 1.61x)``: the median and the spread of per-repetition ratios."""
    values = [v for v in values if not math.isnan(v)]
    if len(values) <= 1:
        return fmt_ratio(values[0] if values else math.nan)
    return f"{fmt_ratio(_median(values))} ({fmt_ratio(min(values))} … {fmt_ratio(max(values))})"


class _Served:
    """A ``serve`` child: started once, then told to run one block at a time."""

    def __init__(self, key: str, mode: str, sz: AgentSizes, out: Path) -> None:
        """Start the child (it builds, starts and warms up its handlers; see :meth:`ready`)."""
        out.mkdir(parents=True, exist_ok=True)
        self.key, self.out = key, out
        self.result = out / "result"
        self.log_path = out / "child.log"
        self._log = self.log_path.open("w", encoding="utf-8")
        label = f"{key}-{mode}"
        args = ["serve", key, mode, str(sz.sessions), str(sz.rounds), label]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.agents", *args, str(out), str(self.result)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,  # ClearML echoes what it reports
            stderr=self._log,
            text=True,
        )

    def _wait(self, suffix: str, timeout: float) -> dict[str, Any]:
        """The child's result at ``RESULT.suffix``, or ``{"error": …}``."""
        path = self.result.with_suffix(suffix)
        deadline = time.monotonic() + timeout
        while not path.exists():
            code = self.process.poll()
            if code is not None or time.monotonic() > deadline:
                self.close()
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                why = f"exit {code}" if code is not None else f"timeout {timeout:.0f}s"
                log(f"agents: {self.key}: failed ({why}), see {self.log_path}")
                return {"error": f"{why}: " + " / ".join(tail)[-300:]}
            time.sleep(0.02)
        return json.loads(path.read_text(encoding="utf-8"))

    def _family(self) -> list[Any]:
        """The child and its descendants (its tracker worker), as psutil processes."""
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:  # it ended
            return []

    def pause(self) -> None:
        """Stop the child and its worker (SIGSTOP) while another process's block runs: a
        waiting process uses no CPU on another's clock, not even its idle timers."""
        import psutil

        for proc in self._family():
            with contextlib.suppress(psutil.Error):
                proc.suspend()

    def resume(self) -> None:
        """Let the child and its worker run again (SIGCONT)."""
        import psutil

        for proc in self._family():
            with contextlib.suppress(psutil.Error):
                proc.resume()

    def ready(self) -> dict[str, Any]:
        """What the child's start measured, once it is ready for blocks."""
        return self._wait(".ready", CHILD_TIMEOUT)

    def _send(self, line: str) -> bool:
        if self.process.poll() is not None or self.process.stdin is None:
            return False
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except OSError:
            return False
        return True

    def block(self, tag: str) -> dict[str, Any]:
        """One block of timed rounds, then its drain; the child's numbers (it is paused
        again afterwards)."""
        self.resume()
        if not self._send(f"block {tag}"):
            return {"error": "the child had ended"}
        found = self._wait(f".{tag}", CHILD_TIMEOUT)
        self.pause()
        return found

    def finish(self) -> dict[str, Any]:
        """The child's finish, then its exit."""
        self.resume()
        if not self._send("finish"):
            return {"error": "the child had ended"}
        found = self._wait(".finish", CHILD_TIMEOUT)
        self.close()
        return found

    def close(self) -> None:
        """Ends the child (at once if it has not ended within 30 s)."""
        self.resume()
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def _neighbours_cpu(served: list[_Served], busy: _Served) -> float:
    """User+system seconds so far of every served child but ``busy``, with their workers."""
    import psutil

    total = 0.0
    for other in served:
        if other is busy or other.process.poll() is not None:
            continue
        try:
            root = psutil.Process(other.process.pid)
            for proc in (root, *root.children(recursive=True)):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:  # ended in between
            continue
    return total


def run(sizes: Sizes, tmp: Path) -> list[Table]:
    """Per mode, one long-lived process per variant, taking turns: a repetition is one block
    of timed rounds from each, in a rotating order; one table with a mode column."""
    sz = AgentSizes.of(sizes)
    # runs[(mode, key)][repetition] = what that process measured in that repetition's block
    runs: dict[tuple[str, str], dict[int, dict[str, Any]]] = {
        (mode, key): {} for mode in MODES for key, _, _ in VARIANTS
    }
    errors: list[str] = []
    names = {key: name for key, name, _ in VARIANTS}
    for m, mode in enumerate(MODES):
        log(f"agents: {mode}: starting a process per variant")
        served = [
            _Served(key, mode, sz, tmp / f"{key}-{mode}")
            for key, _, _ in VARIANTS
            if key != "seeds"
        ]
        started: dict[str, dict[str, Any]] = {}
        for child in served:
            started[child.key] = child.ready()
            if "error" in started[child.key]:
                errors.append(f"{mode}, {names[child.key]}, start: {started[child.key]['error']}")
        alive = [child for child in served if "error" not in started[child.key]]
        for child in alive:
            child.pause()
        for rep in range(sz.repetitions):
            for child in rotated(alive, rep + m):
                log(f"agents: repetition {rep + 1}/{sz.repetitions}, {mode}: {names[child.key]}")
                before = _neighbours_cpu(alive, child)
                found = child.block(f"rep{rep}")
                if "error" in found:
                    errors.append(
                        f"{mode}, {names[child.key]}, repetition {rep + 1}: {found['error']}"
                    )
                    continue
                found["neighbours_s"] = _neighbours_cpu(alive, child) - before
                runs[(mode, child.key)][rep] = found
                _summarized(found)
        for child in served:
            finished = child.finish() if child in alive else {}
            if "error" in finished:
                errors.append(f"{mode}, {names[child.key]}, finish: {finished['error']}")
                finished = {"finish_ok": False, "finish_errors": [finished["error"]]}
            for found in runs[(mode, child.key)].values():
                found.update({"finish_s": None, "dropped_after_finish": [], "finish_ok": None})
                found.update(finished)
        # The seed classes (information): a process of their own, its finish timed as above.
        for rep in range(sz.seed_repetitions):
            label = f"seeds-{mode}-rep{rep}"
            log(f"agents: {mode}: {names['seeds']}")
            args = ["run", "seeds", mode, str(sz.sessions), str(sz.rounds), label]
            found = parent_cpu._child(
                args, tmp / label, f"agents: {label}", "benchmarks.agents", CHILD_TIMEOUT
            )
            if "error" in found:
                errors.append(f"{mode}, {names['seeds']}: {found['error']}")
                continue
            runs[(mode, "seeds")][rep] = found
            _summarized(found)
    return [_table(sz, runs, errors), _burst_table(sz, _bursts(sz, tmp))]


def _summarized(found: dict[str, Any]) -> None:
    """Adds a block's median and mean round to ``found``, and logs them."""
    found["median_s"] = _median(found["walls"])
    found["mean_s"] = statistics.fmean(found["walls"])
    log(
        f"agents:   median round {_ms(found['median_s'])}, mean "
        f"{_ms(found['mean_s'])}, GC {sum(found['gc_ns']) / 1e6:.0f} ms, "
        + (
            f"drain {found['drain_s']:.1f}s"
            if found.get("drain_s") is not None
            else f"finish {found.get('finish_s') or 0:.1f}s"
        )
    )


def _bursts(sz: AgentSizes, tmp: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """Short bursts (``ainvoke``): each variant in fresh processes, interleaved."""
    runs: dict[str, dict[int, dict[str, Any]]] = {key: {} for key, _ in BURST_VARIANTS}
    for rep in range(sz.burst_repetitions):
        for key, name in rotated(BURST_VARIANTS, rep):
            label = f"{key}-burst-rep{rep}"
            log(f"agents: short bursts, repetition {rep + 1}/{sz.burst_repetitions}: {name}")
            args = ["run", key, "ainvoke", str(sz.sessions), str(sz.burst_rounds), label]
            found = parent_cpu._child(
                args, tmp / label, f"agents: {label}", "benchmarks.agents", CHILD_TIMEOUT
            )
            if "error" in found:
                found = {"error": found["error"]}
            else:
                _summarized(found)
            runs[key][rep] = found
    return runs


def _burst_table(sz: AgentSizes, runs: dict[str, dict[int, dict[str, Any]]]) -> Table:
    from workers.forwarding import LIVE_HOLD_EVENTS  # not at the top: "none" children import none

    table = Table(
        id="agents_bursts",
        title=(
            f"15b. LangGraph agents, short bursts: {sz.sessions} concurrent sessions, "
            f"{sz.burst_rounds} rounds per process, {sz.burst_repetitions} repetitions"
        ),
        target="information: what holding while busy does to a burst shorter than it",
        columns=[
            "variant",
            "round wall: median (mean)",
            "vs no handler (median rounds)",
            "GC / round",
            "tracker worker CPU / round",
            "events: enqueued / dropped",
        ],
    )
    base = runs["none"]
    for key, name in BURST_VARIANTS:
        ok = {r: m for r, m in runs[key].items() if "error" not in m}
        for rep, m in sorted(runs[key].items()):
            if "error" in m:
                table.notes.append(f"{name}, repetition {rep + 1}: {m['error']}")
        if not ok:
            table.add(name, "**error**", *[""] * (len(table.columns) - 2))
            continue
        ms = list(ok.values())
        k = len(ms[0]["walls"])
        vs_none = [
            m["median_s"] / base[r]["median_s"]
            for r, m in ok.items()
            if r in base and "error" not in base[r]
        ]
        enq = [e for m in ms for e in m["enqueued"]]
        dropped = [d or 0 for m in ms for d in m["dropped_after_finish"]]
        table.add(
            name,
            f"{_ms(_median([m['median_s'] for m in ms]))} "
            f"({_ms(_median([m['mean_s'] for m in ms]))})",
            "—" if key == "none" else _ratios(vs_none),
            f"{_median([sum(m['gc_ns']) / k / 1e6 for m in ms]):.1f} ms",
            "—" if key == "none" else _ms(_median([m["children_s"] / k for m in ms])),
            "—" if not enq else f"{_median(enq):,.0f} / {max(dropped):,}",
        )
    table.notes.append(
        "A fresh process per variant and repetition, in a rotating order (`ainvoke`; handlers "
        "started, a warm-up round drained, `gc.collect()`), with one block of "
        f"{sz.burst_rounds} timed rounds instead of {sz.rounds}: about "
        f"0.35 s and 3,900 events, fewer than the {LIVE_HOLD_EVENTS:,} that may wait not "
        "encoded while the process is busy (workers/forwarding.py), so the tracker neither "
        "encodes nor works in the worker during the burst; its finish comes after it "
        "(information: the burst's events are all written, the enqueued and dropped columns). "
        "The verdict of issue 15 is table 15's, where the rounds are longer."
    )
    return table


def _spans(runs: dict[tuple[str, str], dict[int, dict[str, Any]]]) -> str:
    """How long the tracker's timed rounds lasted in a block, and what they recorded, per
    mode (medians over its blocks)."""
    parts = []
    for mode in MODES:
        ms = list(runs[(mode, "tracker")].values())
        if ms:
            span = _median([sum(m["walls"]) for m in ms])
            events = _median([float(max(m["enqueued"], default=0)) for m in ms])
            parts.append(f"{span:.1f} s and recorded {events:,.0f} events (`{mode}`)")
    return " and ".join(parts) or "n/a"


def _neighbours(runs: dict[tuple[str, str], dict[int, dict[str, Any]]]) -> str:
    """The CPU the waiting processes used during a block (median per block, per mode)."""
    parts = []
    for mode in MODES:
        used = [
            m["neighbours_s"]
            for (md, _), by in runs.items()
            if md == mode
            for m in by.values()
            if "neighbours_s" in m
        ]
        if used:
            parts.append(
                f"{_ms(_median(used))} of CPU per block, median (`{mode}`; max {_ms(max(used))})"
            )
    return ", ".join(parts) or "n/a"


def _table(
    sz: AgentSizes, runs: dict[tuple[str, str], dict[int, dict[str, Any]]], errors: list[str]
) -> Table:
    from workers.forwarding import LIVE_HOLD_EVENTS  # not at the top: "none" children import none

    table = Table(
        id="agents",
        title=(
            f"15. LangGraph agents: {sz.sessions} concurrent ReAct-agent sessions per round, "
            f"{sz.rounds} rounds per block, {sz.repetitions} "
            f"repetition{'s' if sz.repetitions != 1 else ''}"
        ),
        target=(
            f"TrackerCallbackHandler with ClearML + Comet + JSON lines ≤ {TARGET:.2f}x no "
            "handler's round wall time, in both modes (ainvoke and astream_events)"
        ),
        columns=[
            "mode",
            "variant",
            "round wall: median (mean)",
            "vs no handler (median rounds)",
            "vs no handler (mean rounds)",
            "vs no-op: median rounds",
            "app CPU / round (main thread)",
            "app CPU / event",
            "GC / round (full GCs per round)",
            "tracker worker CPU / round",
            "drain after a block / finish (information)",
            "events: enqueued / dropped",
            f"≤ {TARGET:.2f}x?",
        ],
    )

    def ratios(mode: str, key: str, base: str, field: str) -> list[float]:
        """Per repetition: this variant's figure over the base variant's in that repetition."""
        mine, theirs = runs[(mode, key)], runs[(mode, base)]
        return [m[field] / theirs[r][field] for r, m in mine.items() if r in theirs]

    for mode in MODES:
        # The workload is deterministic: any process of the mode has the round's counts.
        first = next((m for (md, _), by in runs.items() if md == mode for m in by.values()), None)
        if first is not None:
            table.notes.append(
                f"{mode}: a round is {first['events_per_round']:,} callback events and "
                f"{first['runs_per_round']:,} runs ({first['events_per_round'] / sz.sessions:.1f} "
                f"events and {first['runs_per_round'] / sz.sessions:.1f} runs per session; "
                f"{first['failed_per_round']} of {sz.sessions} sessions fail)."
            )
        for key, name, info in VARIANTS:
            ms = list(runs[(mode, key)].values())
            if not ms:
                table.add(mode, name, "**error**", *[""] * (len(table.columns) - 3))
                continue
            k = len(ms[0]["walls"])
            vs_none = ratios(mode, key, "none", "median_s")
            vs_none_mean = ratios(mode, key, "none", "mean_s")
            vs_noop = ratios(mode, key, "noop", "median_s")
            cpu_round = _median([statistics.fmean(m["cpus"]) for m in ms])
            main_round = _median([statistics.fmean(m["main_cpus"]) for m in ms])
            # Events in the timed rounds: what a handler enqueued (ours; with two handlers each
            # event reaches both and counts once), else the counted events of a round times the
            # rounds (the same deterministic workload).
            events = [max(m["enqueued"], default=0) or m["events_per_round"] * k for m in ms]
            cpu_event = _median([sum(m["cpus"]) / e * 1e6 for m, e in zip(ms, events, strict=True)])
            gc_round = _median([sum(m["gc_ns"]) / k / 1e6 for m in ms])
            full_round = _median([sum(m["full_gcs"]) / k for m in ms])
            worker = _median([m["children_s"] / k for m in ms])
            drains = [m["drain_s"] for m in ms if m.get("drain_s") is not None]
            finish = ms[0].get("finish_s")  # the process's one finish (the seeds': their own)
            verdict = "—"
            if key == "tracker":
                median_ratio = _median(vs_none)
                lost = any(any(m["dropped_after_finish"]) or not m["finish_ok"] for m in ms)
                ok = not math.isnan(median_ratio) and median_ratio <= TARGET and not lost
                verdict = ("yes" if ok else "**no**") + f" ({fmt_ratio(median_ratio)})"
                check = f"{sz.sessions} agent sessions, {mode}: tracker ≤ {TARGET:.2f}x no handler"
                table.verdicts[check] = ok
                table.measured[check] = (
                    f"{_ratios(vs_none)} median rounds, {_ratios(vs_none_mean)} mean rounds; "
                    f"no-op {_ratios(ratios(mode, 'noop', 'none', 'median_s'))}"
                )
            elif info:
                verdict = "information"
            enq = [e for m in ms for e in m["enqueued"]]
            dropped = [d or 0 for m in ms for d in m["dropped_after_finish"]]
            table.add(
                mode,
                name,
                f"{_ms(_median([m['median_s'] for m in ms]))} "
                f"({_ms(_median([m['mean_s'] for m in ms]))})",
                "—" if key == "none" else _ratios(vs_none),
                "—" if key == "none" else _ratios(vs_none_mean),
                "—" if key in ("none", "noop") else _ratios(vs_noop),
                f"{_ms(cpu_round)} ({_ms(main_round)})",
                "n/a" if math.isnan(cpu_event) else f"{cpu_event:.0f} µs",
                f"{gc_round:.1f} ms ({full_round:.2f})",
                "—" if key in ("none", "noop") else _ms(worker),
                (f"{_median(drains):.1f} s / " if drains else "")
                + ("—" if finish is None else f"{finish:.1f} s"),
                "—" if not enq else f"{_median(enq):,.0f} / {max(dropped):,}",
                verdict,
            )
            # A run that lost events, or whose finish failed, says so.
            if any(ms[0]["dropped_after_finish"]):
                table.notes.append(
                    f"{mode}, {name}: dropped {ms[0]['dropped_after_finish']} events."
                )
            if ms[0]["finish_ok"] is False:
                table.notes.append(
                    f"{mode}, {name}: finish failed: {'; '.join(ms[0]['finish_errors'])}"
                )
            for rep, m in sorted(runs[(mode, key)].items()):
                where = f"{mode}, {name}, repetition {rep + 1}"
                expected = m["events_per_round"] * k
                if any(e != expected for e in m["enqueued"]):
                    table.notes.append(
                        f"{where}: enqueued {m['enqueued']} in the timed rounds, "
                        f"{expected:,} counted."
                    )
    table.notes += [
        f"Workload: `tests.langgraph_agent.agent()` (LangGraph `create_react_agent`, a "
        f"tool-calling fake chat model, tools `lookup` and `fragile`, MemorySaver). A round is "
        f"{sz.sessions} sessions at once (`asyncio.gather`); session i asks `fail i` when "
        "i % 3 == 0 (the fragile tool raises; the agent's exception is caught), else "
        "`what is i?` (a tool call, then the answer). Every session has a thread id of its own, "
        "never reused. Modes: `await graph.ainvoke(…)` and "
        "`async for _ in graph.astream_events(…, version='v2')`; the model streams only in the "
        "latter (its tokens are events).",
        "Per mode, one long-lived process per variant (ClearML allows one Task per "
        "process), all started before any clock runs: handlers built and started (tracker "
        "worker, Task, Experiment), one round counted by counting handlers, one warm-up round "
        "with the variant's handlers (then drained). Then the processes take turns: a "
        f"repetition is one block from each, in a rotating order, {sz.repetitions} "
        f"repetitions. A block: `gc.collect()`, {sz.rounds} timed rounds back to back, then "
        "`aflush_tracker()` until everything is written, timed apart (information), before "
        "the next process's block starts: no process's work is on another's clock, and the "
        "blocks compared are minutes closer together than fresh processes were (this "
        "machine's speed drifts by tens of percent over minutes; benchmarks/analysis.md). The "
        "processes not in their turn are stopped (SIGSTOP, with their tracker workers) until "
        "their next block, so nothing of theirs runs on another's clock (the CPU they used "
        "during others' blocks is in a note below). At the end each process's "
        "`aflush_tracker(finish=True)`, timed (information). The seed classes run in a fresh "
        f"process of their own per mode (their {sz.seed_repetitions} repetition), as before: "
        "their ratios compare against another repetition's moment and are information only.",
        "Round wall: the median of a block's rounds, then the median over repetitions (in "
        "brackets: the mean of a block's rounds, which counts the rounds a full collection "
        "stalled). Ratios: per repetition, the variant's block over the no-handler (or no-op) "
        "block of the same repetition and mode, then the median of those per-repetition "
        "ratios (min … max in brackets where there are several); median rounds: of each "
        "block's median round; mean rounds: of each block's mean round. The verdict uses "
        "the median-rounds ratio and also requires no dropped events and a finish that "
        "succeeded.",
        f"The other processes while a block ran: {_neighbours(runs)}.",
        "App CPU: `time.process_time()` of the application process over the timed rounds (all "
        "its threads, the tracker's queue thread included), per round and per event (events: "
        "the handler's `enqueued` in the timed rounds; without one, the counted events); in "
        "brackets `time.thread_time()` of the event loop's thread (LangGraph, LangChain and the "
        "callbacks themselves), the rest being other threads. GC: "
        "every collection's duration in the timed rounds (`gc.callbacks`, any thread). Tracker "
        "worker CPU: the application's live descendants' user+system seconds over the timed "
        "rounds (the worker runs at niceness 10 on the same 2 cores). Events: the handler's "
        "`enqueued` in the timed rounds (median per block) / `dropped` after the finish (max).",
        "Holding: with its defaults the tracker keeps events in the application's process "
        "while that process is busy, up to 5 s into the busy spell "
        f"(`TRACKER_HOLD_WHILE_BUSY_SECONDS`): the first {LIVE_HOLD_EVENTS:,} events of a "
        "busy spell not encoded yet (workers/forwarding.py); past them, encoded as they come, "
        "as bytes (workers/outbox.py, up to 16 MB); a spell that outlasts the hold sends "
        "everything as it comes until the process is idle. So the encoding and the worker's "
        "work come after a burst. In this run the tracker's timed rounds lasted "
        f"{_spans(runs)} in a block (as fast as the machine is that day): rounds past 5 s "
        "have the encoding and the worker beside them (the worker CPU column). The "
        "'never held' row (the same handler with the hold at 0) is what a load sustained past "
        "the hold costs, the worker working alongside the application; the 'held up to 10 s' "
        "row is a longer hold, the price being a longer flush after a long busy spell "
        "(benchmarks/analysis.md, issue 15).",
        "Handlers: `TrackerCallbackHandler([sinks.clearml(task_name=…), sinks.comet(name=…), "
        "sinks.jsonl(dir)], offline_dir=dir)` with its defaults; the seed classes with theirs; "
        "all offline (the benchmark removes API keys and sets offline mode). The keeping "
        "handler appends every callback's arguments to a list (laid out flat, as the "
        "tracker's queue keeps them) and lets them go only after the timed rounds: what any "
        "handler that converts later pays while the events wait (the collector walks what "
        "they keep alive), with no queue, thread or encoding.",
    ]
    table.notes += errors
    table.raw = {
        "runs": {f"{mode}:{key}": v for (mode, key), v in runs.items()},
        "sizes": sz.__dict__,
    }
    return table


# -- command line ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Standalone run of the phase, printing its table (or a child's run, for the parent)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("run", "serve"):
        _child_main(argv)
        return 0
    from benchmarks.common import prepare_environment
    from benchmarks.report import print_standalone

    parser = argparse.ArgumentParser(prog="python -m benchmarks.agents", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the smoke-test sizes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tracker-agents-"))
    prepare_environment(tmp)
    started = time.perf_counter()
    tables = run(Sizes.named("quick" if args.quick else "full"), tmp)
    print_standalone(tables, started, tmp, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
