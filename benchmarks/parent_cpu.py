"""Parent CPU per callback event while serving, and a short script's finish time.

Two phases of :mod:`benchmarks.run`, each variant in a fresh child process of its own:

- ``parent_cpu``: N concurrent async chains streaming tokens (``tracker.demo``'s chain, whose
  chat model has a native ``_astream``, so no thread-pool hop per token) on one loop. Measured
  over the serving window only (handlers built, a warm-up chain ran and was drained; the window
  ends when the last chain returned): the application process's own CPU time
  (``time.process_time()``: all its threads, not its children) divided by the number of callback
  events, minus the same figure for a no-op ``run_inline`` handler. Variants: no handler, the
  no-op handler, one ``TrackerCallbackHandler`` feeding a ClearML and a Comet sink with every
  feature, and both seed classes with the same features. Children's CPU is reported separately.
- ``short_script``: a fresh process runs 5 chains through one seed handler with complexity
  metrics and then calls ``flush_tracker(finish=True)``; next to it, another fresh process times
  the backend's bare SDK (offline ``Task.init`` + one report + ``close()``; ``OfflineExperiment``
  + one log + ``end()``) with the settings the sinks use.

Standalone: ``python -m benchmarks.parent_cpu [--chains N] [--tokens T] [--rounds R]
[--script-rounds R] [--only parent_cpu|short_script]`` prints the tables (children write their
logs and archives under a temporary folder, removed unless ``--keep``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import Table, log, rotated

ROOT = Path(__file__).resolve().parent.parent
TARGET_US = 5.0  # parent CPU per event over the no-op handler, one TrackerCallbackHandler
CHILD_TIMEOUT = 900

# (key, row name); the key is what the child process builds.
VARIANTS: list[tuple[str, str]] = [
    ("none", "no handler"),
    ("noop", "no-op run_inline handler (baseline)"),
    ("multi", "ours: one TrackerCallbackHandler, ClearML + Comet sinks, all features"),
    ("seeds", "ours: ClearMLCallbackHandler + CometCallbackHandler, all features"),
]
BACKENDS = (("clearml", "ClearML"), ("comet", "Comet"))


@dataclass(frozen=True)
class PhaseSizes:
    """Chains x tokens per serving run, its rounds; the short script's chains and rounds."""

    chains: int
    tokens: int
    rounds: int
    script_chains: int = 5
    script_rounds: int = 2

    @classmethod
    def named(cls, name: str) -> PhaseSizes:
        """``quick`` (smoke size) or ``full`` (what ``make bench`` runs)."""
        if name == "quick":
            return cls(chains=20, tokens=10, rounds=3, script_rounds=1)
        return cls(chains=500, tokens=50, rounds=3, script_rounds=3)


# -- child: serving ------------------------------------------------------------------------------


def _counting_noop() -> Any:
    """A ``run_inline`` sync handler whose every callback only counts."""
    from langchain_core.callbacks import BaseCallbackHandler

    class CountingNoop(BaseCallbackHandler):
        run_inline = True
        events = 0

        def _count(self, *args: Any, **kwargs: Any) -> None:
            self.events += 1

        # Every callback a chain can send (on_chat_model_start too: the base class raises
        # NotImplementedError there, and LangChain then retries with on_llm_start).
        on_llm_start = on_chat_model_start = on_llm_new_token = on_llm_end = on_llm_error = _count
        on_chain_start = on_chain_end = on_chain_error = _count
        on_tool_start = on_tool_end = on_tool_error = _count
        on_retriever_start = on_retriever_end = on_retriever_error = _count
        on_text = on_retry = on_agent_action = on_agent_finish = on_custom_event = _count

    return CountingNoop()


def _handlers(kind: str, out: Path) -> list[Any]:
    """The variant's handlers, offline into ``out``; every feature on for ours."""
    if kind == "none":
        return []
    if kind == "noop":
        return [_counting_noop()]
    from tracker import ClearMLCallbackHandler, CometCallbackHandler, TrackerCallbackHandler, sinks

    clearml_features: dict[str, Any] = {
        "task_name": "parent cpu benchmark",
        "stream_logs": True,
        "complexity_metrics": True,
        "visualize": True,
        "offline": True,
        "offline_dir": out,
    }
    comet_features: dict[str, Any] = {
        "name": "parent cpu benchmark",
        "stream_logs": True,
        "complexity_metrics": True,
        "visualizations": ["dep"],
        "offline": True,
        "offline_dir": out,
    }
    if kind == "multi":
        return [
            TrackerCallbackHandler(
                [sinks.clearml(**clearml_features), sinks.comet(**comet_features)],
                offline_dir=out,
            )
        ]
    if kind == "seeds":
        return [
            ClearMLCallbackHandler(**clearml_features),
            CometCallbackHandler(**comet_features),
        ]
    raise ValueError(f"unknown variant {kind!r}")


def _descendants_cpu() -> float:
    """User+system seconds of this process's live descendants (children, grandchildren…)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended in between
            continue
        total += times.user + times.system
    return total


def _reaped_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _stat(handler: Any, key: str) -> int | None:
    stats = getattr(handler, "stats", None)
    if stats is None:
        return None
    value = stats().get(key)
    return int(value) if isinstance(value, (int, float)) else None


async def _serve(kind: str, chains: int, tokens: int, out: Path) -> dict[str, Any]:
    from tracker.demo import QUESTIONS, build_chain

    built = time.perf_counter()
    handlers = _handlers(kind, out)
    ours = [h for h in handlers if hasattr(h, "aflush_tracker")]
    for handler in ours:  # started (sink processes, Task, Experiment) before the clock runs
        await handler.aflush_tracker(timeout=300)
    chain = build_chain(tokens)

    async def one(i: int, callbacks: list[Any]) -> None:
        question = f"{QUESTIONS[i % len(QUESTIONS)]} (request {i})"
        async for _ in chain.astream({"question": question}, {"callbacks": callbacks}):
            pass

    # Events per chain, counted by a handler of its own (the workload is deterministic), then
    # one warm-up chain through the variant's handlers, drained before the window opens.
    counter = _counting_noop()
    await one(-1, [counter])
    per_chain = counter.events
    await one(-2, handlers)
    for handler in ours:
        await handler.aflush_tracker(timeout=300)
    started_s = time.perf_counter() - built
    counting = [h for h in handlers if hasattr(h, "events")]
    counted0 = [h.events for h in counting]
    enqueued0 = [_stat(h, "enqueued") for h in ours]
    gc.collect()

    children0 = _descendants_cpu()
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    main0 = time.thread_time()
    await asyncio.gather(*(one(i, handlers) for i in range(chains)))
    main1 = time.thread_time()
    cpu1 = time.process_time()
    wall1 = time.perf_counter()
    children1 = _descendants_cpu()

    # Until the handlers' queues are empty: what the parent still spends on the window's events.
    drain_cpu = drain_s = None
    if ours and all(_stat(h, "pending") is not None for h in ours):
        deadline = time.monotonic() + 600
        while any(_stat(h, "pending") for h in ours) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        drain_cpu = time.process_time() - cpu0
        drain_s = time.perf_counter() - wall1

    events = per_chain * chains
    counted = [h.events - c for h, c in zip(counting, counted0, strict=True)]
    enqueued = [
        None if e0 is None or _stat(h, "enqueued") is None else _stat(h, "enqueued") - e0
        for h, e0 in zip(ours, enqueued0, strict=True)
    ]
    dropped = [_stat(h, "dropped") for h in ours]

    flushed = time.perf_counter()
    results = [await h.aflush_tracker(finish=True, timeout=600) for h in ours]
    flush_s = time.perf_counter() - flushed
    # Reaped children (sink and metric processes that ended) plus any still running.
    children_total = _reaped_children_cpu() + _descendants_cpu()
    return {
        "events": events,
        "per_chain": per_chain,
        "counted": counted,
        "enqueued": enqueued,
        "dropped": dropped,
        "wall_s": wall1 - wall0,
        "cpu_s": cpu1 - cpu0,
        "main_cpu_s": main1 - main0,
        "drain_cpu_s": drain_cpu,
        "drain_s": drain_s,
        "children_window_s": children1 - children0,
        "children_total_s": children_total,
        "start_s": started_s,
        "flush_s": flush_s if ours else None,
        "flush_ok": all(r.ok for r in results) if ours else None,
        "flush_errors": [str(r) for r in results if not r.ok],
    }


# -- child: short script and bare SDKs -----------------------------------------------------------


def _script(backend: str, chains: int, out: Path) -> dict[str, Any]:
    """A short script: build one seed handler, run ``chains`` chains, finish."""
    import psutil

    began = time.perf_counter()
    from tracker import ClearMLCallbackHandler, CometCallbackHandler
    from tracker.demo import QUESTIONS, build_chain

    imported = time.perf_counter()
    if backend == "clearml":
        handler: Any = ClearMLCallbackHandler(
            complexity_metrics=True, offline=True, offline_dir=out
        )
    else:
        handler = CometCallbackHandler(complexity_metrics=True, offline=True, offline_dir=out)
    chain = build_chain(50)

    async def main() -> None:
        for i in range(chains):
            await chain.ainvoke(
                {"question": QUESTIONS[i % len(QUESTIONS)]}, {"callbacks": [handler]}
            )

    asyncio.run(main())
    ran = time.perf_counter()
    result = handler.flush_tracker(finish=True, timeout=300)
    flushed = time.perf_counter()
    return {
        "import_s": imported - began,
        "chains_s": ran - imported,
        "flush_s": flushed - ran,
        "flush_ok": result.ok,
        "flush_result": str(result),
        "since_process_start_s": time.time() - psutil.Process().create_time(),
        "archive": str(getattr(handler, "archive_path", None)),
    }


def _bare(backend: str, out: Path) -> dict[str, Any]:
    """The backend's own start, one report and close, offline, with the sinks' settings."""
    began = time.perf_counter()
    if backend == "clearml":
        from clearml import Task

        try:
            from workers.sinks.clearml import FRAMEWORKS_OFF
        except ImportError:  # moved by a rewrite: the same settings, spelled out
            FRAMEWORKS_OFF = dict.fromkeys(
                "catboost fastai gradio hydra joblib lightgbm matplotlib megengine pytorch "
                "scikit tensorboard tensorflow tfdefines xgboost detect_repository".split(),
                False,
            )
        imported = time.perf_counter()
        Task.set_offline(offline_mode=True)
        Task._report_subprocess_enabled = False  # as the sink: thread reporter
        task = Task.init(
            project_name="langchain_callback_demo",
            task_name=None,
            task_type=Task.TaskTypes.inference,
            tags=None,
            output_uri=True,
            auto_connect_frameworks=FRAMEWORKS_OFF,
            auto_connect_arg_parser=False,
            auto_connect_streams=False,
            auto_resource_monitoring=False,
        )
        opened = time.perf_counter()
        task.get_logger().report_text("one report", print_console=False)
        reported = time.perf_counter()
        task.close()
    else:
        os.environ.setdefault("COMET_ERROR_TRACKING_ENABLE", "false")
        import comet_ml

        try:
            from workers.sinks.comet import AUTO_LOGGING_OFF
        except ImportError:  # moved by a rewrite: the same settings, spelled out
            AUTO_LOGGING_OFF = {
                **dict.fromkeys(
                    "log_code log_graph auto_param_logging auto_metric_logging parse_args "
                    "log_env_details log_git_metadata log_git_patch log_env_gpu log_env_cpu "
                    "log_env_host".split(),
                    False,
                ),
                "auto_output_logging": None,
                "display_summary_level": 0,
            }
        imported = time.perf_counter()
        out.mkdir(parents=True, exist_ok=True)
        experiment = comet_ml.OfflineExperiment(
            project_name="comet-langchain-demo", offline_directory=str(out), **AUTO_LOGGING_OFF
        )
        experiment.log_other("Created from", "langchain")
        opened = time.perf_counter()
        experiment.log_metric("one_report", 1.0)
        reported = time.perf_counter()
        experiment.end()
    closed = time.perf_counter()
    return {
        "import_s": imported - began,
        "init_s": opened - imported,
        "report_s": reported - opened,
        "close_s": closed - reported,
    }


# -- parent side ---------------------------------------------------------------------------------


def _child(
    args: list[str],
    out: Path,
    name: str,
    module: str = "benchmarks.parent_cpu",
    timeout: float = CHILD_TIMEOUT,
) -> dict[str, Any]:
    """``python -m MODULE ARGS… OUT RESULT`` in a fresh process; its result (the JSON the child
    wrote to RESULT, or ``{"error": …}`` with the tail of its log)."""
    out.mkdir(parents=True, exist_ok=True)
    result = out / "result.json"
    log_path = out / "child.log"
    command = [sys.executable, "-m", module, *args, str(out), str(result)]
    with log_path.open("w", encoding="utf-8") as log_file:
        try:
            done = subprocess.run(
                command,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,  # ClearML echoes what it reports
                stderr=log_file,
                timeout=timeout,
            )
            code: int | str = done.returncode
        except subprocess.TimeoutExpired:
            code = f"timeout {timeout}s"
    if code != 0 or not result.exists():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        log(f"{name}: failed ({code}), see {log_path}")
        return {"error": f"exit {code}: " + " / ".join(tail)[-300:]}
    return json.loads(result.read_text(encoding="utf-8"))


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _us(seconds: float | None, events: int) -> float:
    return math.nan if seconds is None or not events else seconds / events * 1e6


def _fmt_us(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:+.1f} µs" if signed else f"{value:.1f} µs"


def _spread(values: list[float], signed: bool = False) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return _fmt_us(values[0], signed)
    return f"{_fmt_us(min(values), signed)} … {_fmt_us(max(values), signed)}"


def run_parent_cpu(sizes: PhaseSizes, tmp: Path) -> Table:
    """Every variant in its own process, rounds interleaved; the table against the no-op run."""
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in VARIANTS}
    round_of: dict[str, list[int]] = {key: [] for key, _ in VARIANTS}
    for rnd in range(sizes.rounds):
        for key, name in rotated(VARIANTS, rnd):
            log(f"parent_cpu: round {rnd + 1}/{sizes.rounds}: {name}")
            out = tmp / f"parent-cpu-{key}-{rnd}"
            found = _child(["serve", key, str(sizes.chains), str(sizes.tokens)], out, name)
            if "error" not in found:
                found["cpu_us"] = _us(found["cpu_s"], found["events"])
                log(
                    f"parent_cpu:   {found['cpu_us']:.1f} µs/event over {found['events']:,} "
                    f"events, {found['wall_s']:.1f}s window"
                )
            runs[key].append(found)
            round_of[key].append(rnd)

    def per_round(key: str) -> dict[int, dict[str, Any]]:
        return {r: m for r, m in zip(round_of[key], runs[key], strict=True) if "error" not in m}

    noop = per_round("noop")
    noop_cpu = _median([m["cpu_us"] for m in noop.values()])
    table = Table(
        id="parent_cpu",
        title=(
            f"7. Parent CPU per event: {sizes.chains} concurrent streamed chains x "
            f"{sizes.tokens} tokens, {sizes.rounds} rounds"
        ),
        target=(
            f"one TrackerCallbackHandler with every feature: the application process's CPU "
            f"≤ {TARGET_US:g} µs/event over the no-op run_inline handler's, serving window only"
        ),
        columns=[
            "variant",
            "events",
            "parent CPU / event (median)",
            "rounds (min … max)",
            "Δ vs no-op (median of rounds)",
            "of which main thread",
            "incl. drain (Δ vs no-op)",
            "children CPU: window / total",
            "window wall",
            "finish",
            "target",
        ],
    )
    errors: list[str] = []
    for key, name in VARIANTS:
        good = per_round(key)
        errors += [f"{name}: {m['error']}" for m in runs[key] if "error" in m]
        if not good:
            table.add(name, "**error**", "", "", "", "", "", "", "", "", "")
            continue
        ms = list(good.values())
        events = ms[0]["events"]
        cpu = [m["cpu_us"] for m in ms]
        deltas = [m["cpu_us"] - noop[r]["cpu_us"] for r, m in good.items() if r in noop]
        delta = _median(deltas)
        main_cpu = _median([_us(m["main_cpu_s"], m["events"]) for m in ms])
        drain = _median([_us(m["drain_cpu_s"], m["events"]) for m in ms])
        drain_deltas = [
            _us(m["drain_cpu_s"], m["events"]) - noop[r]["cpu_us"]
            for r, m in good.items()
            if r in noop and m["drain_cpu_s"] is not None
        ]
        child_window = _median([m["children_window_s"] for m in ms])
        child_total = _median([m["children_total_s"] for m in ms])
        flush = [m["flush_s"] for m in ms if m["flush_s"] is not None]
        target = "—"
        if key == "multi":
            ok = not math.isnan(delta) and delta <= TARGET_US
            target = f"≤ {TARGET_US:g} µs: {'met' if ok else '**missed**'}"
            check = f"parent CPU over the no-op handler ≤ {TARGET_US:g} µs/event (one handler)"
            table.verdicts[check] = ok
            table.measured[check] = (
                f"{_fmt_us(delta, True)}/event ({_fmt_us(_median(cpu))} vs no-op "
                f"{_fmt_us(noop_cpu)}), {events:,} events; incl. drain "
                f"{_fmt_us(_median(drain_deltas), True)}/event"
            )
        table.add(
            name,
            f"{events:,}",
            _fmt_us(_median(cpu)),
            _spread(cpu),
            "—" if key == "noop" else _fmt_us(delta, True) + f" ({_spread(deltas, True)})",
            _fmt_us(main_cpu),
            "—"
            if math.isnan(drain)
            else f"{_fmt_us(drain)} (Δ {_fmt_us(_median(drain_deltas), True)})",
            f"{child_window:.1f} s / {child_total:.1f} s",
            f"{_median([m['wall_s'] for m in ms]):.2f} s",
            f"{_median(flush):.1f} s" if flush else "—",
            target,
        )
        # Cross-checks: the events each handler saw in the window, against the count.
        for m in ms:
            seen = [*m["counted"], *(e for e in m["enqueued"] if e is not None)]
            if any(s != m["events"] for s in seen):
                table.notes.append(
                    f"{name}: handlers saw {seen} events in a window of {m['events']:,}."
                )
            if any(m["dropped"]):
                table.notes.append(f"{name}: the queue dropped {m['dropped']} events.")
            if m["flush_ok"] is False:
                table.notes.append(f"{name}: finish failed: {'; '.join(m['flush_errors'])}")
    per_chain = next((m["per_chain"] for ms in runs.values() for m in ms if "error" not in m), 0)
    table.notes += [
        f"Events: {per_chain} callbacks per chain (counted by a handler of its own on a chain "
        "outside the window; every handler's own count in the window is checked against it). "
        "With two handlers each event reaches both; it is still counted once.",
        "Parent CPU: `time.process_time()` of the application process (every thread: the event "
        "loop and the tracker's own threads), not its children; from just before the chains "
        "start until the last one returned, after a warm-up chain and a drain. The delta pairs "
        "each run with the no-op run of the same round.",
        "Main thread: `time.thread_time()` of the event loop's thread (the callbacks themselves "
        "and LangChain); the rest of the parent CPU is other threads. Incl. drain: the parent's "
        "CPU from the window's start until the handlers' queues were empty (`stats()['pending']` "
        "0), the work the window's events still caused in this process after the last chain "
        "(the queue wakes its worker every 512 events or 0.5 s, so part of it falls after the "
        "window; the wait polls every 50 ms, a few ms of CPU).",
        "Children CPU (information): the live descendants' user+system seconds during the "
        "window (sink and metric processes); total: after finish=True, reaped children "
        "(`RUSAGE_CHILDREN`) plus the still-live ones, from their start.",
        "Features: ClearML stream_logs, complexity_metrics, visualize; Comet stream_logs, "
        "complexity_metrics, visualizations=['dep']; offline. Finish: "
        "aflush_tracker(finish=True), outside the window.",
    ]
    table.notes += errors
    table.raw = {"runs": runs, "rounds": round_of, "sizes": sizes.__dict__}
    return table


def run_short_script(sizes: PhaseSizes, tmp: Path) -> Table:
    """Per backend: a short script's finish against the bare SDK's own start and close."""
    jobs = [(kind, backend) for backend, _ in BACKENDS for kind in ("script", "bare")]
    found: dict[tuple[str, str], list[dict[str, Any]]] = {job: [] for job in jobs}
    for rnd in range(sizes.script_rounds):
        for kind, backend in rotated(jobs, rnd):
            log(f"short_script: round {rnd + 1}/{sizes.script_rounds}: {kind} {backend}")
            out = tmp / f"short-{kind}-{backend}-{rnd}"
            args = [kind, backend] + ([str(sizes.script_chains)] if kind == "script" else [])
            result = _child(args, out, f"{kind} {backend}")
            if "error" not in result:
                log(f"short_script:   {json.dumps(result)[:200]}")
            found[(kind, backend)].append(result)
    table = Table(
        id="short_script",
        title=(
            f"8. Short script: {sizes.script_chains} chains with complexity metrics, one seed "
            "handler, then flush_tracker(finish=True)"
        ),
        target="flush_tracker(finish=True) ≤ the backend's own close + 1 s",
        columns=[
            "backend",
            "runs",
            "flush_tracker(finish=True)",
            "bare SDK: import / init / one report / close",
            "target (close + 1 s)",
            "met?",
            "script: import / chains / process start → finished",
        ],
    )
    for backend, label in BACKENDS:
        script = [m for m in found[("script", backend)] if "error" not in m]
        bare = [m for m in found[("bare", backend)] if "error" not in m]
        for m in found[("script", backend)] + found[("bare", backend)]:
            if "error" in m:
                table.notes.append(f"{label}: {m['error']}")
        for m in script:
            if not m["flush_ok"]:
                table.notes.append(f"{label}: finish not ok: {m['flush_result']}")
        if not script or not bare:
            table.add(label, f"{len(script)}/{len(bare)}", "**error**", "", "", "", "")
            continue
        flush = _median([m["flush_s"] for m in script])
        close = _median([m["close_s"] for m in bare])
        ok = flush <= close + 1.0 and all(m["flush_ok"] for m in script)
        check = f"short script finish ≤ close + 1 s ({label})"
        each = ", ".join(f"{m['flush_s']:.2f}" for m in script)
        table.verdicts[check] = ok
        table.measured[check] = f"{flush:.1f} s vs close {close:.1f} s"
        table.add(
            label,
            f"{len(script)} + {len(bare)}",
            f"{flush:.2f} s ({each})",
            " / ".join(
                f"{_median([m[k] for m in bare]):.2f} s"
                for k in ("import_s", "init_s", "report_s", "close_s")
            ),
            f"≤ {close + 1:.2f} s",
            "yes" if ok else "**no**",
            " / ".join(
                f"{_median([m[k] for m in script]):.1f} s"
                for k in ("import_s", "chains_s", "since_process_start_s")
            ),
        )
    table.notes += [
        "Each run is a fresh process: the script builds the seed class (ClearMLCallbackHandler "
        "or CometCallbackHandler, complexity_metrics=True, offline, other parameters default), "
        "awaits the chains one after the other with asyncio.run, then calls "
        "flush_tracker(finish=True) from sync code, as a script's last line would.",
        "Bare SDK, in a process of its own with the sinks' settings: ClearML "
        "`Task.set_offline(True)`, `Task.init(…, auto_connect_frameworks=<all off, "
        "detect_repository off>, auto_connect_streams=False, auto_resource_monitoring=False)`, "
        "one `report_text`, `task.close()` (writes the offline zip); Comet "
        "`OfflineExperiment(…, auto-logging off)` + `log_other`, one `log_metric`, `end()` "
        "(writes the offline zip). The target compares the finish with the close alone.",
        "The chains take tens of ms (ainvoke, no streaming), far less than the handler's "
        "background start (sink process, SDK init, metric workers): the finish waits for that "
        "start as well, as it would at the end of a real short script.",
        "Rounds interleave script and bare runs; medians shown, each script run in brackets.",
    ]
    table.raw = {"runs": {f"{k}:{b}": v for (k, b), v in found.items()}}
    return table


def run(name: str, size: str, tmp: Path) -> list[Table]:
    """A phase of benchmarks.run: ``parent_cpu`` or ``short_script``."""
    sizes = PhaseSizes.named(size)
    if name == "parent_cpu":
        return [run_parent_cpu(sizes, tmp)]
    return [run_short_script(sizes, tmp)]


# -- command line ---------------------------------------------------------------------------------


def _child_main(argv: list[str]) -> None:
    """``serve KIND CHAINS TOKENS OUT RESULT`` | ``script BACKEND CHAINS OUT RESULT`` |
    ``bare BACKEND OUT RESULT``: one measurement, written as JSON to RESULT."""
    from benchmarks.common import prepare_environment

    what, *rest = argv
    out, result = Path(rest[-2]), Path(rest[-1])
    out.mkdir(parents=True, exist_ok=True)
    prepare_environment(out)
    if what == "serve":
        found = asyncio.run(_serve(rest[0], int(rest[1]), int(rest[2]), out / "offline"))
    elif what == "script":
        found = _script(rest[0], int(rest[1]), out / "offline")
    else:
        found = _bare(rest[0], out / "offline")
    result.write_text(json.dumps(found), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Standalone run of both phases (or ``--only`` one), printing their tables."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("serve", "script", "bare"):
        _child_main(argv)
        return 0
    from benchmarks.report import print_standalone

    full = PhaseSizes.named("full")
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parent_cpu", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the smoke-test sizes")
    parser.add_argument("--chains", type=int, help=f"default {full.chains}")
    parser.add_argument("--tokens", type=int, help=f"default {full.tokens}")
    parser.add_argument("--rounds", type=int, help=f"default {full.rounds}")
    parser.add_argument("--script-rounds", type=int, help=f"default {full.script_rounds}")
    parser.add_argument("--only", choices=("parent_cpu", "short_script"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    base = PhaseSizes.named("quick" if args.quick else "full")
    sizes = PhaseSizes(
        chains=args.chains or base.chains,
        tokens=args.tokens or base.tokens,
        rounds=args.rounds or base.rounds,
        script_chains=base.script_chains,
        script_rounds=args.script_rounds or base.script_rounds,
    )
    tmp = Path(tempfile.mkdtemp(prefix="tracker-parent-cpu-"))
    started = time.perf_counter()
    tables = []
    if args.only in (None, "parent_cpu"):
        tables.append(run_parent_cpu(sizes, tmp))
    if args.only in (None, "short_script"):
        tables.append(run_short_script(sizes, tmp))
    print_standalone(tables, started, tmp, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
