"""Target 6, memory: RSS under overload (slow sinks), and over a million events without a flush.

Both our handlers, all features on, SDKs offline in their default child processes, with a
modest ``queue_size`` (``Sizes.memory_queue``) so that a full queue is a bound worth checking.
Each sink is wrapped in a :class:`~benchmarks.load.ControlledSink` (via the handlers' private
``_wrap_sink=``) that can pause or throttle its writes. A sampler thread reads the RSS of this
process and of each sink process tree (psutil) every 0.5 s.

1. Bytes per queued event: with both sinks paused, enqueue ``queue_size`` events (capacity.py's
   mix) to both handlers; the RSS growth (after ``gc`` + ``malloc_trim``) divided by the events
   queued; and again under ``tracemalloc`` (Python allocations only). The queue's bound is
   ``queue_size`` x the larger of the two x 2 handlers.
2. Overload: the sinks throttled to ``SINK_RATE`` events/s, producers at 10x that for
   ``Sizes.memory_seconds``; then the throttle is lifted and both handlers flushed.
3. A million events (``Sizes.memory_events``) to both handlers with no flush, producers waiting
   whenever a queue is half full (so nothing is dropped and every event reaches the session
   tables); then one flush.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import Sizes, Table, log, met
from benchmarks.load import (
    MB,
    Mix,
    RssSampler,
    Wrappers,
    controlled,
    fmt_mb,
    settle,
    trim,
    wait_until,
)
from benchmarks.subjects import our_handlers

SINK_RATE = 500.0  # events/s each throttled sink writes
PRODUCER_FACTOR = 10  # producers offer this many times the sinks' rate
TICK = 0.01  # the paced producer's period, seconds
OVERHEAD_ALLOWED = 64 * MB
NEAR_BASELINE = 32 * MB  # "back near the baseline": at most this much above it
TARGET_RSS = 200 * MB
FLUSH_TIMEOUT = 300.0
FINISH_TIMEOUT = 240.0


def _flush_all(handlers: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Flush every handler (one after the other; their pipelines drain concurrently anyway)."""
    return {name: h.flush_tracker(timeout=timeout) for name, h in handlers.items()}


def _set(handlers: dict[str, Any], *, paused: bool = False, rate: float | None = None) -> None:
    for handler in handlers.values():
        wrapper = controlled(handler)
        wrapper.paused = paused
        wrapper.rate = rate


def bytes_per_event(handlers: dict[str, Any], n: int, sampler: RssSampler) -> dict[str, float]:
    """RSS and tracemalloc growth per queued event, with the sinks paused."""
    everyone = list(handlers.values())
    _set(handlers, paused=True)
    trim()
    before = settle(1.0, sampler)
    Mix().emit(everyone, n)
    trim()
    after = settle(1.0, sampler)
    depth = {name: h.stats()["queue_depth"] for name, h in handlers.items()}
    dropped = sum(h.stats()["dropped"] for h in everyone)
    _set(handlers)
    _flush_all(handlers, FLUSH_TIMEOUT)

    _set(handlers, paused=True)
    trim()
    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    Mix().emit(everyone, n)
    gc.collect()
    traced_after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    _set(handlers)
    _flush_all(handlers, FLUSH_TIMEOUT)
    trim()
    events = 2 * n
    return {
        "events": events,
        "rss_delta": after - before,
        "rss_per_event": (after - before) / events,
        "traced_delta": traced_after - traced_before,
        "traced_per_event": (traced_after - traced_before) / events,
        "queue_depth_paused": depth,
        "dropped": dropped,
    }


def overload(handlers: dict[str, Any], seconds: float, sampler: RssSampler) -> dict[str, Any]:
    """Producers at 10x the throttled sinks' rate for ``seconds``; then lift it and flush."""
    everyone = list(handlers.values())
    before = {name: h.stats() for name, h in handlers.items()}
    producer_rate = SINK_RATE * PRODUCER_FACTOR
    _set(handlers, rate=SINK_RATE)
    mix = Mix()
    sampler.mark("overload")
    started = time.perf_counter()
    sent = 0
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            break
        due = int(elapsed * producer_rate) - sent
        if due > 0:
            mix.emit(everyone, due)
            sent += due
        time.sleep(TICK)
    produced_s = time.perf_counter() - started
    sampler.mark("overload-end")
    during = {name: h.stats() for name, h in handlers.items()}
    _set(handlers)
    flush_started = time.perf_counter()
    results = _flush_all(handlers, FLUSH_TIMEOUT)
    flush_s = time.perf_counter() - flush_started
    sampler.mark("overload-flushed")
    after = {name: h.stats() for name, h in handlers.items()}
    return {
        "sent": sent,
        "seconds": produced_s,
        "producer_rate": sent / produced_s,
        "sink_rate": SINK_RATE,
        "processed_during": {n: during[n]["processed"] - before[n]["processed"] for n in handlers},
        "dropped_during": {n: during[n]["dropped"] - before[n]["dropped"] for n in handlers},
        "flush_s": flush_s,
        "flush_ok": {n: bool(r.ok) for n, r in results.items()},
        "flush": {n: repr(r) for n, r in results.items()},
        "stats": after,
        "balanced": {
            n: after[n]["enqueued"] == after[n]["processed"] + after[n]["dropped"] for n in handlers
        },
    }


def million(
    handlers: dict[str, Any], n: int, queue_size: int, sampler: RssSampler
) -> dict[str, Any]:
    """``n`` events to both handlers, no flush; wait until processed; then flush once."""
    everyone = list(handlers.values())
    before = {name: h.stats() for name, h in handlers.items()}
    chunk = min(1_000, max(1, queue_size // 4))
    high_water = queue_size // 2
    mix = Mix()
    sampler.mark("million")
    started = time.perf_counter()
    sent = 0
    report_every = max(1, n // 10)
    while sent < n:
        while max(h.stats()["queue_depth"] for h in everyone) > high_water:
            time.sleep(0.002)
        step = min(chunk, n - sent)
        mix.emit(everyone, step)
        sent += step
        if sent % report_every < step:
            log(f"memory: {sent:,} of {n:,} events, parent RSS {fmt_mb(sampler.take().parent)}")
    enqueued_s = time.perf_counter() - started
    wait_until(
        lambda: all(
            h.stats()["processed"] + h.stats()["dropped"]
            >= before[name]["processed"] + before[name]["dropped"] + n
            for name, h in handlers.items()
        ),
        timeout=FLUSH_TIMEOUT,
        poll=0.05,
    )
    processed_s = time.perf_counter() - started
    sampler.mark("million-processed")
    flush_started = time.perf_counter()
    results = _flush_all(handlers, FLUSH_TIMEOUT)
    flush_s = time.perf_counter() - flush_started
    sampler.mark("million-flushed")
    after = {name: h.stats() for name, h in handlers.items()}
    return {
        "events": n,
        "enqueued_s": enqueued_s,
        "processed_s": processed_s,
        "flush_s": flush_s,
        "flush_ok": {name: bool(r.ok) for name, r in results.items()},
        "flush": {name: repr(r) for name, r in results.items()},
        "dropped": {name: after[name]["dropped"] - before[name]["dropped"] for name in handlers},
        "processed": {
            name: after[name]["processed"] - before[name]["processed"] for name in handlers
        },
    }


def _finish(handlers: dict[str, Any], pids: dict[str, int | None]) -> dict[str, str]:
    """Finish both handlers; stop a sink process still running afterwards (ours, by pid)."""
    done: dict[str, str] = {}
    for name, handler in handlers.items():
        log(f"memory: finishing {name}")
        started = time.perf_counter()
        result = handler.flush_tracker(finish=True, timeout=FINISH_TIMEOUT)
        done[name] = f"{time.perf_counter() - started:.1f} s, ok={result.ok}"
        if not result.ok:
            done[name] += f" ({result})"
    for name, pid in pids.items():
        if pid is None:
            continue
        try:
            process = psutil.Process(pid)
            process.wait(timeout=10)
        except psutil.NoSuchProcess:
            continue
        except psutil.TimeoutExpired:
            process.kill()
            done[name] += "; its sink process was still running and was killed"
    return done


def run(sizes: Sizes, tmp: Path) -> list[Table]:
    """Both parts on one pair of handlers; returns the overload table and the million table."""
    log(f"memory: starting handlers (queue_size={sizes.memory_queue:,})")
    wrappers = Wrappers()
    clearml, comet = our_handlers(
        tmp / "offline",
        all_features=True,
        queue_size=sizes.memory_queue,
        wrap_sink=wrappers.wrap,
    )
    handlers = {"ClearML": clearml, "Comet": comet}
    pids = {name: controlled(h).pid for name, h in handlers.items()}
    raw: dict[str, Any] = {"queue_size": sizes.memory_queue, "pids": pids}
    with RssSampler(pids) as sampler:
        trim()
        sampler.mark("baseline")
        baseline = settle(2.0, sampler)
        children_base = {name: settle(0.0, sampler, name) for name in sampler.children}
        raw["baseline"] = baseline
        raw["children_baseline"] = children_base
        log(f"memory: baseline RSS {fmt_mb(baseline)}; bytes per queued event")
        raw["per_event"] = per = bytes_per_event(handlers, sizes.memory_queue, sampler)
        log(
            f"memory: {per['rss_per_event']:.0f} B/event (RSS), "
            f"{per['traced_per_event']:.0f} B/event (tracemalloc)"
        )
        log(f"memory: overload for {sizes.memory_seconds:.0f} s")
        raw["overload"] = overload(handlers, sizes.memory_seconds, sampler)
        trim_ok = True
        raw["overload_after"] = settle(2.0, sampler)
        trim_ok = trim()
        raw["overload_after_trim"] = settle(1.0, sampler)
        raw["trim"] = trim_ok
        raw["overload_peak"] = sampler.peak(sampler.between("overload", "overload-end"))
        raw["overload_flush_peak"] = sampler.peak(
            sampler.between("overload-end", "overload-flushed")
        )
        raw["overload_children_peak"] = {
            name: sampler.peak(sampler.between("overload", "overload-flushed"), name)
            for name in sampler.children
        }
        log(f"memory: {sizes.memory_events:,} events without a flush")
        trim()
        raw["million_baseline"] = settle(1.0, sampler)
        raw["million"] = million(handlers, sizes.memory_events, sizes.memory_queue, sampler)
        events = sampler.between("million", "million-processed")
        flush = sampler.between("million-processed", "million-flushed")
        raw["million_peak"] = sampler.peak(events)
        raw["million_flush_peak"] = sampler.peak(flush)
        raw["million_children_peak"] = {name: sampler.peak(events, name) for name in pids}
        raw["million_children_flush_peak"] = {name: sampler.peak(flush, name) for name in pids}
        raw["million_after"] = settle(2.0, sampler)
        trim()
        raw["million_after_trim"] = settle(1.0, sampler)
        raw["million_children_after"] = {
            name: settle(0.0, sampler, name) for name in sampler.children
        }
    raw["finish"] = _finish(handlers, pids)
    return [_overload_table(sizes, raw), _million_table(sizes, raw)]


def _bound(raw: dict[str, Any]) -> tuple[float, float]:
    """(bytes per queued event used, the queues' bound in bytes) — both handlers' queues."""
    per = raw["per_event"]
    per_event = max(per["rss_per_event"], per["traced_per_event"])
    return per_event, raw["queue_size"] * per_event * 2


def _overload_table(sizes: Sizes, raw: dict[str, Any]) -> Table:
    o = raw["overload"]
    per_event, bound = _bound(raw)
    baseline = raw["baseline"]
    peak = raw["overload_peak"]
    growth = peak - baseline
    table = Table(
        id="memory-overload",
        title=f"6. Memory (a): producers 10x faster than the sinks for {o['seconds']:.0f} s",
        target="RSS ≤ the queues' bound + 64 MB; enqueued == processed + dropped after the "
        "flush; RSS back near the baseline after the flush",
        columns=["measurement", "value", "target", "met?"],
        raw=raw,
    )
    ok_rss = growth <= bound + OVERHEAD_ALLOWED
    check = "RSS growth ≤ queues' bound + 64 MB"
    table.verdicts[check] = ok_rss
    table.measured[check] = (
        f"+{fmt_mb(growth)} (peak {fmt_mb(peak)}); bound {fmt_mb(bound)} "
        f"= 2 x {sizes.memory_queue:,} x {per_event:.0f} B"
    )
    balanced = all(o["balanced"].values())
    check = "enqueued == processed + dropped after the flush"
    table.verdicts[check] = balanced
    table.measured[check] = "; ".join(
        f"{n}: {s['enqueued']:,} = {s['processed']:,} + {s['dropped']:,}"
        for n, s in o["stats"].items()
    )
    after = raw["overload_after"]
    ok_after = after - baseline <= NEAR_BASELINE
    check = "RSS back near the baseline after the flush (≤ +32 MB)"
    table.verdicts[check] = ok_after
    table.measured[check] = (
        f"+{fmt_mb(after - baseline)} ({fmt_mb(after)}; after gc + malloc_trim "
        f"+{fmt_mb(raw['overload_after_trim'] - baseline)})"
    )
    per = raw["per_event"]
    table.add("parent RSS baseline (handlers started, idle)", fmt_mb(baseline), "—", "—")
    table.add(
        "bytes per queued event: RSS / tracemalloc",
        f"{per['rss_per_event']:.0f} B / {per['traced_per_event']:.0f} B "
        f"({per['events']:,} events queued with the sinks paused)",
        "—",
        "—",
    )
    table.add(
        "the queues' bound",
        f"{fmt_mb(bound)} = 2 handlers x queue_size {sizes.memory_queue:,} x {per_event:.0f} B",
        "—",
        "—",
    )
    table.add(
        "load",
        f"producers {o['producer_rate']:,.0f} events/s per handler for {o['seconds']:.1f} s, "
        f"sinks throttled to {o['sink_rate']:,.0f}/s; processed "
        + ", ".join(f"{n} {v:,}" for n, v in o["processed_during"].items())
        + "; dropped "
        + ", ".join(f"{n} {v:,}" for n, v in o["dropped_during"].items()),
        "10x",
        "—",
    )
    table.add(
        "parent RSS peak during the overload",
        f"{fmt_mb(peak)} (+{fmt_mb(growth)})",
        f"≤ +{fmt_mb(bound + OVERHEAD_ALLOWED)}",
        met(ok_rss),
    )
    table.add(
        "parent RSS peak during the flush",
        f"{fmt_mb(raw['overload_flush_peak'])} (flush took {o['flush_s']:.1f} s)",
        "—",
        "—",
    )
    table.add(
        "enqueued = processed + dropped after the flush",
        "; ".join(
            f"{n}: {s['enqueued']:,} = {s['processed']:,} + {s['dropped']:,}"
            for n, s in o["stats"].items()
        ),
        "exact",
        met(balanced),
    )
    table.add(
        "parent RSS after the flush",
        f"{fmt_mb(after)} (+{fmt_mb(after - baseline)}); after gc + malloc_trim "
        f"{fmt_mb(raw['overload_after_trim'])}",
        "≤ baseline + 32 MB",
        met(ok_after),
    )
    for name, peak_child in raw["overload_children_peak"].items():
        table.add(
            f"{name} sink process RSS (with its children)",
            f"baseline {fmt_mb(raw['children_baseline'].get(name, 0))}, peak {fmt_mb(peak_child)}",
            "—",
            "—",
        )
    table.notes += [
        "Both handlers attached, all features on, SDKs offline in their default child processes, "
        f"queue_size={sizes.memory_queue:,} each; capacity.py's event mix sent to both handlers "
        f"by a paced producer (every {TICK * 1e3:.0f} ms).",
        "The sinks are slowed by a wrapper passed as _wrap_sink= (benchmarks/load.py): each "
        "write sleeps len(batch) / rate first; the throttle is lifted before the flush. Events "
        "beyond the bound are dropped by the queue (drop-newest) and counted.",
        "Bytes per queued event: both sinks paused (the pipeline holds one converted batch of "
        "≤ 512 in its stuck write, the rest stays queued as raw events), queue_size events "
        "enqueued to each handler; RSS growth after gc + malloc_trim, and tracemalloc's traced "
        "growth in a second run. The bound uses the larger of the two.",
        "'After the flush' is the median of 2 s of readings once both flushes returned; "
        "'after gc + malloc_trim' shows what was only kept by the allocator.",
        f"Flush results: {o['flush']}.",
    ]
    return table


def _million_table(sizes: Sizes, raw: dict[str, Any]) -> Table:
    m = raw["million"]
    n = m["events"]
    peak = raw["million_peak"]
    table = Table(
        id="memory-million",
        title=f"6. Memory (b): {n:,} events without a flush",
        target="RSS ≤ 200 MB (this process, and each sink process)",
        columns=["measurement", "value", "target", "met?"],
        raw={},
    )
    ok_parent = peak <= TARGET_RSS
    check = f"parent RSS peak over {n:,} events ≤ 200 MB"
    table.verdicts[check] = ok_parent
    table.measured[check] = (
        f"{fmt_mb(peak)} (start {fmt_mb(raw['million_baseline'])}, "
        f"+{fmt_mb(peak - raw['million_baseline'])})"
    )
    table.add(
        "parent RSS: start / peak over the events",
        f"{fmt_mb(raw['million_baseline'])} / {fmt_mb(peak)}",
        "≤ 200 MB",
        met(ok_parent),
    )
    for name, child_peak in raw["million_children_peak"].items():
        ok = child_peak <= TARGET_RSS
        check = f"{name} sink process RSS peak over {n:,} events ≤ 200 MB"
        table.verdicts[check] = ok
        table.measured[check] = (
            f"{fmt_mb(child_peak)} (idle {fmt_mb(raw['children_baseline'].get(name, 0))}; "
            f"during the flush {fmt_mb(raw['million_children_flush_peak'][name])})"
        )
        table.add(
            f"{name} sink process RSS: idle / peak over the events",
            f"{fmt_mb(raw['children_baseline'].get(name, 0))} / {fmt_mb(child_peak)}",
            "≤ 200 MB",
            met(ok),
        )
    table.add(
        "events",
        f"{n:,} to each handler in {m['enqueued_s']:.1f} s, all processed after "
        f"{m['processed_s']:.1f} s ({n / m['processed_s']:,.0f}/s); dropped "
        + ", ".join(f"{k} {v:,}" for k, v in m["dropped"].items()),
        "—",
        "—",
    )
    table.add(
        "then one flush",
        f"{m['flush_s']:.1f} s; parent RSS peak {fmt_mb(raw['million_flush_peak'])}; sink "
        "processes' peaks "
        + ", ".join(f"{k} {fmt_mb(v)}" for k, v in raw["million_children_flush_peak"].items()),
        "—",
        "—",
    )
    table.add(
        "parent RSS after the flush",
        f"{fmt_mb(raw['million_after'])}; after gc + malloc_trim "
        f"{fmt_mb(raw['million_after_trim'])}; sink processes "
        + ", ".join(f"{k} {fmt_mb(v)}" for k, v in raw["million_children_after"].items()),
        "—",
        "—",
    )
    table.notes += [
        f"Same handlers as (a), after it (queue_size={sizes.memory_queue:,}). The producer "
        "waits whenever a queue is more than half full, so events go at the pipelines' pace and "
        "every one of them reaches the session tables (rows past 5,000 per table spill to a "
        "file in the sink process, workers/session.py); no flush until all were processed.",
        "Sink process RSS includes its descendants (metric worker processes, if started); "
        "sampled every 0.5 s with psutil.",
        f"Flush results: {m['flush']}.",
        "Finish at the end of the phase (flush_tracker(finish=True), one after the other): "
        + "; ".join(f"{k} {v}" for k, v in raw["finish"].items())
        + ".",
    ]
    return table
