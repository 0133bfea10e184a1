"""Target 5, flush: ``aflush_tracker`` with nothing queued, after a backlog, and ``finish=True``.

Both our handlers, all features on, their pipelines in the tracker worker (the default: one
``python -m workers.worker`` per application process), each sink wrapped there in a
:class:`~benchmarks.load.ControlledSink` that notes when the flush barrier reached the sink and
times the real sink's own ``flush`` (the session tables and the SDK's flush). What a flush costs
beyond that is the tracker's share: the barrier through this process's queue, the background
thread, the pipe, the worker's queue and pipeline, and the result's way back to the caller's loop.

1. Empty queue: ``aflush_tracker()`` repeatedly on each handler in turn, then both at once.
2. Backlog: enqueue N events (capacity.py's mix, to both handlers), then flush both at once;
   "processed" is when the flush barrier reached the sink in the worker (so every earlier event
   was written), "flush returned" is when ``aflush_tracker`` returns; both from the first
   enqueue, on ``time.monotonic()`` (one clock for both processes on Linux).
3. ``finish=True`` on both at once, on fresh handlers holding a small backlog, and again on
   handlers right after N queued events.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Sizes, Summary, Table, fmt_ns, log, met
from benchmarks.load import FlushTiming, LoadControl, Mix
from benchmarks.subjects import our_handlers

TARGET_EMPTY_S = 0.005
TARGET_BACKLOG_EXTRA_S = 0.050
TARGET_FINISH_S = 3.0
FLUSH_TIMEOUT = 300.0
#: The sink each handler of a phase serves (the wrapper's flush file is named after it).
SINK = {"ClearML": "clearml", "Comet": "comet"}


def _s(seconds: float) -> str:
    return fmt_ns(seconds * 1e9)


def _start(folder: Path) -> tuple[dict[str, Any], LoadControl]:
    """Fresh handlers (ClearML and Comet, all features), started, their sinks wrapped."""
    control = LoadControl(folder / "control")
    clearml, comet = our_handlers(folder, all_features=True, queue_size=100_000, control=control)
    return {"ClearML": clearml, "Comet": comet}, control


def _new_flush(control: LoadControl, name: str, seen: int) -> FlushTiming | None:
    """The sink's flush after the first ``seen`` ones, if the wrapper noted one."""
    flushes = control.flushes(SINK[name])
    return flushes[-1] if len(flushes) > seen else None


async def _flush(handler: Any, *, finish: bool = False) -> tuple[Any, float]:
    """``aflush_tracker`` and its wall time, in seconds."""
    started = time.monotonic()
    result = await handler.aflush_tracker(finish=finish, timeout=FLUSH_TIMEOUT)
    return result, time.monotonic() - started


async def empty_flushes(handlers: dict[str, Any], control: LoadControl, n: int) -> dict[str, Any]:
    """``n`` flushes of an empty queue per handler, taking turns; then ``n`` of both at once."""
    totals: dict[str, list[float]] = {name: [] for name in handlers}
    sinks: dict[str, list[float]] = {name: [] for name in handlers}
    both: list[float] = []
    errors: list[str] = []
    names = list(handlers)
    for i in range(n):
        for name in names[i % 2 :] + names[: i % 2]:  # a different one first each round
            seen = len(control.flushes(SINK[name]))
            result, seconds = await _flush(handlers[name])
            timing = _new_flush(control, name, seen)
            totals[name].append(seconds)
            sinks[name].append(timing.seconds if timing is not None else float("nan"))
            if not result.ok:
                errors.append(f"{name}: {result}")
        started = time.monotonic()
        await asyncio.gather(*(_flush(h) for h in handlers.values()))
        both.append(time.monotonic() - started)
    return {"total": totals, "sink": sinks, "both": both, "errors": errors}


async def backlog_flush(
    handlers: dict[str, Any], control: LoadControl, mix: Mix, n: int, *, finish: bool = False
) -> dict[str, dict[str, Any]]:
    """Enqueue ``n`` events to both handlers, flush both at once; time the two milestones."""
    before = {name: h.stats() for name, h in handlers.items()}
    seen = {name: len(control.flushes(SINK[name])) for name in handlers}
    started = time.monotonic()
    mix.emit(list(handlers.values()), n)
    enqueued = time.monotonic() - started
    returned: dict[str, float] = {}
    results: dict[str, Any] = {}

    async def flush(name: str) -> None:
        results[name] = await handlers[name].aflush_tracker(finish=finish, timeout=FLUSH_TIMEOUT)
        returned[name] = time.monotonic() - started

    await asyncio.gather(*(flush(name) for name in handlers))
    out: dict[str, dict[str, Any]] = {}
    for name, handler in handlers.items():
        timing = _new_flush(control, name, seen[name])
        # The barrier reached the sink once every earlier event was written: all processed.
        done_at = timing.reached - started if timing is not None else float("nan")
        sink = timing.seconds if timing is not None else float("nan")
        after = handler.stats()
        out[name] = {
            "events": n,
            "enqueue_s": enqueued,
            "processed_s": done_at,
            "returned_s": returned[name],
            "extra_s": returned[name] - done_at,
            "sink_flush_s": sink,
            "tracker_s": returned[name] - done_at - sink,
            "dropped": after["dropped"] - before[name]["dropped"],
            "written": after["processed"] - before[name]["processed"],
            "ok": bool(results[name].ok),
            "result": repr(results[name]),
        }
    return out


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def _measure(sizes: Sizes, handlers: dict[str, Any], control: LoadControl) -> dict[str, Any]:
    """Everything but starting the handlers (that blocks; it happens outside the loop)."""
    raw: dict[str, Any] = {}
    log(f"flush: {sizes.flush_empty} empty flushes per handler")
    raw["empty"] = await empty_flushes(handlers, control, sizes.flush_empty)
    log(f"flush: finish=True on both with {sizes.finish_backlog} events queued")
    raw["finish_small"] = await backlog_flush(
        handlers, control, Mix(), sizes.finish_backlog, finish=True
    )
    return raw


async def _measure_backlog(
    sizes: Sizes, handlers: dict[str, Any], control: LoadControl
) -> dict[str, Any]:
    raw: dict[str, Any] = {"rounds": []}
    mix = Mix()
    for i in range(sizes.flush_rounds):
        log(f"flush: round {i + 1}/{sizes.flush_rounds}, {sizes.flush_events} events, then flush")
        raw["rounds"].append(await backlog_flush(handlers, control, mix, sizes.flush_events))
        await asyncio.sleep(1.0)  # let Comet's offline streamer (in the worker) catch up a bit
    log(f"flush: finish=True on both right after {sizes.flush_events} events")
    raw["finish_backlog"] = await backlog_flush(
        handlers, control, mix, sizes.flush_events, finish=True
    )
    return raw


def run(sizes: Sizes, tmp: Path) -> Table:
    """Measure the flushes on two pairs of handlers (the first pair is finished halfway).

    Each pair has a worker of its own: finishing both handlers of pair 1 stops the first worker
    (the last handler of a process gone), and pair 2 starts a new one.
    """
    log("flush: starting handlers (pair 1)")
    handlers_a, control_a = _start(tmp / "offline-1")
    raw = asyncio.run(_measure(sizes, handlers_a, control_a))
    log("flush: starting handlers (pair 2)")
    handlers_b, control_b = _start(tmp / "offline-2")
    raw.update(asyncio.run(_measure_backlog(sizes, handlers_b, control_b)))
    return _table(sizes, raw)


def _table(sizes: Sizes, raw: dict[str, Any]) -> Table:
    table = Table(
        id="flush",
        title="5. Flush: aflush_tracker empty, after a backlog, and finish=True",
        target="empty queue ≤ 5 ms (excluding the backend's own flush); after 10,000 queued "
        "events ≤ their processing time + 50 ms; finish=True on both handlers ≤ 3 s",
        columns=[
            "measurement",
            "backend",
            "samples",
            "all processed after",
            "flush returned after",
            "returned - processed",
            "backend's own flush",
            "tracker's share",
            "target",
            "met?",
        ],
        raw=raw,
    )
    empty = raw["empty"]
    for name in ("ClearML", "Comet"):
        totals, sinks = empty["total"][name], empty["sink"][name]
        shares = [t - s for t, s in zip(totals, sinks, strict=True)]
        total, share = Summary.of(totals), Summary.of(shares)
        ok = share.median <= TARGET_EMPTY_S
        check = f"{name}: empty aflush_tracker ≤ 5 ms (excl. backend flush)"
        table.verdicts[check] = ok
        table.measured[check] = (
            f"tracker {_s(share.median)} median (max {_s(share.max)}); "
            f"backend's own flush {_s(_median(sinks))}; total {_s(total.median)}"
        )
        table.add(
            "empty queue",
            name,
            len(totals),
            "—",
            f"{_s(total.median)} median, max {_s(total.max)}",
            "—",
            f"{_s(_median(sinks))} median, max {_s(max(sinks, default=float('nan')))}",
            f"{_s(share.median)} median, max {_s(share.max)}",
            "≤ 5 ms",
            met(ok),
        )
    both = Summary.of(empty["both"])
    table.add(
        "empty queue, both at once",
        "both",
        both.n,
        "—",
        f"{_s(both.median)} median, max {_s(both.max)}",
        "—",
        "—",
        "—",
        "—",
        "—",
    )
    rounds: list[dict[str, dict[str, Any]]] = raw["rounds"]
    for name in ("ClearML", "Comet"):
        ms = [r[name] for r in rounds]
        extra = _median([m["extra_s"] for m in ms])
        sink = _median([m["sink_flush_s"] for m in ms])
        share = _median([m["tracker_s"] for m in ms])
        ok = extra <= TARGET_BACKLOG_EXTRA_S
        check = f"{name}: flush after {sizes.flush_events:,} events ≤ processing + 50 ms"
        table.verdicts[check] = ok
        table.measured[check] = (
            f"+{_s(extra)} (backend's own flush {_s(sink)}, tracker {_s(share)}); "
            f"processing {_s(_median([m['processed_s'] for m in ms]))}"
        )
        table.add(
            f"{sizes.flush_events:,} queued, then flush (both)",
            name,
            len(ms),
            _s(_median([m["processed_s"] for m in ms])),
            _s(_median([m["returned_s"] for m in ms])),
            f"+{_s(extra)} (max +{_s(max(m['extra_s'] for m in ms))})",
            _s(sink),
            _s(share),
            "≤ + 50 ms",
            met(ok),
        )
    for key, label, judged in (
        ("finish_small", f"finish=True, {sizes.finish_backlog} queued", True),
        ("finish_backlog", f"finish=True right after {sizes.flush_events:,} queued", False),
    ):
        ms = raw[key]
        wall = max(m["returned_s"] for m in ms.values())
        ok = wall <= TARGET_FINISH_S and all(m["ok"] for m in ms.values())
        if judged:
            check = f"finish=True on both, {sizes.finish_backlog} events queued, ≤ 3 s"
            table.verdicts[check] = ok
            table.measured[check] = f"{_s(wall)} ({_parts(ms)})"
        for name, m in ms.items():
            table.add(
                label,
                name,
                1,
                _s(m["processed_s"]),
                _s(m["returned_s"]),
                f"+{_s(m['extra_s'])}",
                _s(m["sink_flush_s"]),
                _s(m["tracker_s"]),
                "—",
                "—" if m["ok"] else "**error**",
            )
        table.add(
            label,
            "both at once",
            1,
            "—",
            _s(wall),
            "—",
            "—",
            "—",
            "≤ 3 s" if judged else "—",
            met(ok) if judged else "—",
        )
    errors = list(empty["errors"])
    for m in [*(r[n] for r in rounds for n in r), *raw["finish_small"].values()]:
        if not m["ok"]:
            errors.append(m["result"])
    for m in raw["finish_backlog"].values():
        if not m["ok"]:
            errors.append(m["result"])
    table.notes += [
        "Both handlers attached, all features on (stream_logs, complexity metrics, "
        "visualizations), SDKs offline; both pipelines in the one tracker worker this process "
        "starts (python -m workers.worker, the default), a new worker for each pair of "
        "handlers; events are capacity.py's mix (on_chain_start, on_llm_new_token, "
        "on_tool_end), sent to both handlers; both flushes awaited at once with "
        "asyncio.gather on the caller's loop.",
        "'Backend's own flush' is the real sink's flush() as timed by a wrapper around it in "
        "the worker (benchmarks/load.py ControlledSink, built by the worker from a SinkSpec; "
        "it reports through a file): building and logging the session tables and the SDK's "
        "flush (ClearML: report_text of the tables when stream_logs is on, then "
        "task.flush(wait_for_uploads=True); Comet: log_table / log_asset_data; with finish, "
        "close + zip or end() + zip). 'Tracker's share' = flush wall time - processing - "
        "that: for an empty queue, the barrier's way to the sink (this process's queue, the "
        "background thread, the pipe, the worker's queue) and the result's way back; after a "
        "backlog, the way back only (the way there overlaps the processing).",
        "Processed / returned are seconds from the first enqueue on time.monotonic() (one "
        "clock for both processes on Linux); 'processed' = the flush barrier reached the sink "
        "in the worker, i.e. every earlier event was written to it (the wrapper notes the "
        "time). The worker reports stats() to this process only every 0.1 s, too coarse for "
        "this.",
        f"Backlog rounds: {sizes.flush_rounds}, 1 s apart; medians shown. The finish rows use "
        "fresh handlers for the small backlog (only the empty flushes ran on them before), and "
        "the rounds' handlers for the N-event finish (Comet's offline streamer then still "
        "holds texts of the earlier rounds: end() writes them first).",
        f"Dropped events: {sum(m['dropped'] for r in rounds for m in r.values())} in the rounds.",
    ]
    table.notes += [f"flush error: {e}" for e in errors[:5]]
    return table


def _parts(ms: dict[str, dict[str, Any]]) -> str:
    return ", ".join(
        f"{name} {_s(m['returned_s'])}, backend's own {_s(m['sink_flush_s'])}"
        for name, m in ms.items()
    )
