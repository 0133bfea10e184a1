"""Target 6, memory: RSS under overload (slow sinks), and over a million events without a flush.

Both our handlers, all features on, SDKs offline, their pipelines in the tracker worker (the
default: one ``python -m workers.worker`` per application process), with a modest
``queue_size`` (``Sizes.memory_queue``) so that a full queue is a bound worth checking. Each
sink is wrapped, in the worker, in a :class:`~benchmarks.load.ControlledSink` that can pause or
throttle its writes (driven through files by :class:`~benchmarks.load.LoadControl`). A sampler
thread reads, every 0.25 s (psutil), the RSS of this process ("parent"), of the tracker worker,
and of the worker's descendants (the metric processes it may start).

Where an event can be held: this process's queue (``queue_size`` per handler), the frames this
process keeps to resend the open session to a new worker if the worker dies (encoded, up to 64 MB
per handler, released at a flush only for sinks that store as they go: offline, at finish), the
pipe, and the worker's queue (``queue_size`` per handler) and pipeline.

1. Bytes per event, sinks paused: (A) ``queue_size`` events (capacity.py's mix) to both
   handlers: they all move on to the worker; the parent keeps their frames. (B) as many again:
   the worker's queues are full, so they stay in the parent's queues. RSS growth (after ``gc`` +
   ``malloc_trim`` in the parent) per event of each kind, and (B) again under ``tracemalloc``
   (Python allocations only). The parent's bound: ``queue_size`` x the larger of the two x 2
   handlers, plus the resend buffer's growth (its exact size is read from the handlers).
2. Overload: the sinks throttled to ``SINK_RATE`` events/s, producers at 10x that for
   ``Sizes.memory_seconds``; then the throttle is lifted and both handlers flushed.
3. A million events (``Sizes.memory_events``) to both handlers with no flush, producers waiting
   whenever a handler's backlog (its queue here plus its queue in the worker) is half of
   ``queue_size`` (so nothing is dropped and every event reaches the session tables); then one
   flush. Peaks cover the events and the flush (issue 12: ≤ 300 MB for every tracker process,
   the flush included); the finish that follows is sampled too, as information.

The handlers are the seed classes (``ClearMLCallbackHandler``, ``CometCallbackHandler``): their
session tables are written at flushes only (no rotation), so the million-row flush is where the
bounded tables (``PipelineOptions.table_rows``: the first rows reported, the whole table written
in chunks to a gzip file) must hold the worker's memory down.
"""

from __future__ import annotations

import gc
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import Sizes, Table, log, met
from benchmarks.load import (
    MB,
    LoadControl,
    Mix,
    RssSampler,
    fmt_mb,
    settle_all,
    trim,
    wait_until,
    worker_pid,
)
from benchmarks.subjects import our_handlers
from workers.forwarding import RESEND_LIMIT_BYTES

SINK_RATE = 500.0  # events/s each throttled sink writes
PRODUCER_FACTOR = 10  # producers offer this many times the sinks' rate
TICK = 0.01  # the paced producer's period, seconds
OVERHEAD_ALLOWED = 64 * MB
NEAR_BASELINE = 32 * MB  # "back near the baseline": at most this much above it
TARGET_RSS = 300 * MB  # issue 12: per tracker process, over the million events and the flush
SAMPLE_INTERVAL = 0.25  # seconds between RSS readings (a bounded flush may take a few seconds)
#: Memory (b) as measured before issue 12 (benchmarks/RESULTS.md of git c23df4b, 2026-11-30;
#: the parent's second figure: the same phase after the resend buffer went to 16 MB, git da7df76).
BEFORE_MILLION = {
    "parent": "231.1 MB (134.3 MB after the resend-buffer change)",
    "worker": "2554.8 MB (339.4 MB over the events, 2554.8 MB during the flush)",
    "largest helper": "0.0 MB (no metric process started)",
    "all": "not measured (parent 231.1 MB + worker 2554.8 MB at their peaks)",
    "flush": "33.8 s (ClearML 18.7 s, Comet 15.1 s)",
    "finish": "ClearML 3.2 s, Comet 117.1 s",
    "events": "261.0 s for all to be processed (3,831/s)",
}
FLUSH_TIMEOUT = 300.0
FINISH_TIMEOUT = 240.0
SETTLE_TIMEOUT = 20.0


def _flush_all(handlers: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Flush every handler (one after the other; their pipelines drain concurrently anyway)."""
    return {name: h.flush_tracker(timeout=timeout) for name, h in handlers.items()}


def _local_depth(handlers: dict[str, Any]) -> int:
    """Events waiting in this process's queues (not yet sent to the worker)."""
    return sum(h._pipeline.queue.depth for h in handlers.values())


def _resend_bytes(handlers: dict[str, Any]) -> int:
    """Bytes of encoded frames this process keeps to resend the open sessions (a worker death)."""
    return sum(getattr(h._pipeline, "_retained_bytes", 0) for h in handlers.values())


def _steady(handlers: dict[str, Any], timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until the background thread stopped moving events (its queues' depth holds still)."""
    last = -1
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        depth = _local_depth(handlers)
        if depth == last:
            return
        last = depth
        time.sleep(0.3)


def _where(handlers: dict[str, Any]) -> dict[str, int]:
    """Where the pending events are: here, in the worker's queues (as last reported)."""
    local = _local_depth(handlers)
    total = sum(h.stats()["queue_depth"] for h in handlers.values())
    return {"here": local, "worker": total - local, "resend_bytes": _resend_bytes(handlers)}


def bytes_per_event(
    handlers: dict[str, Any], control: LoadControl, n: int, sampler: RssSampler
) -> dict[str, Any]:
    """RSS (and tracemalloc) growth per event, sinks paused: sent on to the worker, queued here."""
    everyone = list(handlers.values())
    dropped_before = sum(h.stats()["dropped"] for h in everyone)
    control.set(paused=True)
    trim()
    before = settle_all(1.0, sampler)
    resend0 = _resend_bytes(handlers)
    Mix().emit(everyone, n)  # (A): the worker's queues take them
    _steady(handlers)
    trim()
    after_a = settle_all(1.0, sampler)
    where_a = _where(handlers)
    Mix().emit(everyone, n)  # (B): the worker's queues are full; these stay here
    _steady(handlers)
    trim()
    after_b = settle_all(1.0, sampler)
    where_b = _where(handlers)
    dropped = sum(h.stats()["dropped"] for h in everyone) - dropped_before
    control.set()
    _flush_all(handlers, FLUSH_TIMEOUT)

    # tracemalloc, (B) only: fill the worker's queues first, untraced.
    control.set(paused=True)
    Mix().emit(everyone, n)
    _steady(handlers)
    trim()
    traced_where = _where(handlers)
    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    Mix().emit(everyone, n)
    _steady(handlers)
    gc.collect()
    traced_after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    traced_where_after = _where(handlers)
    control.set()
    _flush_all(handlers, FLUSH_TIMEOUT)
    trim()

    sent_a = 2 * n - where_a["here"]  # events that reached the worker in (A)
    resend_a = where_a["resend_bytes"] - resend0
    here_b = where_b["here"] - where_a["here"]
    resend_b = where_b["resend_bytes"] - where_a["resend_bytes"]
    here_t = traced_where_after["here"] - traced_where["here"]
    resend_t = traced_where_after["resend_bytes"] - traced_where["resend_bytes"]
    return {
        "events": 2 * n,
        "before": before,
        "after_a": after_a,
        "after_b": after_b,
        "where_a": where_a,
        "where_b": where_b,
        "dropped": dropped,
        # (A): sent to the worker; this process keeps their frames.
        "sent_a": sent_a,
        "resend_per_event": resend_a / max(1, sent_a),
        "parent_sent_per_event": (after_a["parent"] - before["parent"]) / max(1, sent_a),
        "worker_per_event": (after_a["worker tree"] - before["worker tree"]) / max(1, sent_a),
        # (B): queued here (frames of the few the worker still took subtracted).
        "queued_b": here_b,
        "rss_per_event": (after_b["parent"] - after_a["parent"] - resend_b) / max(1, here_b),
        "queued_traced": here_t,
        "traced_delta": traced_after - traced_before,
        "traced_per_event": (traced_after - traced_before - resend_t) / max(1, here_t),
    }


def overload(
    handlers: dict[str, Any], control: LoadControl, seconds: float, sampler: RssSampler
) -> dict[str, Any]:
    """Producers at 10x the throttled sinks' rate for ``seconds``; then lift it and flush."""
    everyone = list(handlers.values())
    before = {name: h.stats() for name, h in handlers.items()}
    resend_before = _resend_bytes(handlers)
    producer_rate = SINK_RATE * PRODUCER_FACTOR
    control.set(rate=SINK_RATE)
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
    where = _where(handlers)
    control.set()
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
        "where_at_end": where,
        "resend_growth": _resend_bytes(handlers) - resend_before,
        "resend_after": _resend_bytes(handlers),
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
            now = sampler.take()
            log(
                f"memory: {sent:,} of {n:,} events, parent RSS {fmt_mb(now.parent)}, "
                f"worker {fmt_mb(now.worker)} (+{fmt_mb(now.helpers)} in "
                f"{now.helper_count} metric processes)"
            )
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
    resend = _resend_bytes(handlers)
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
        "resend_bytes": resend,
        "unprotected": {name: after[name]["unprotected"] for name in handlers},
    }


def _finish(handlers: dict[str, Any]) -> dict[str, Any]:
    """Finish both handlers; then the worker should exit (the last handler is gone)."""
    done: dict[str, Any] = {}
    pid = worker_pid()
    total = time.perf_counter()
    for name, handler in handlers.items():
        log(f"memory: finishing {name}")
        started = time.perf_counter()
        result = handler.flush_tracker(finish=True, timeout=FINISH_TIMEOUT)
        done[name] = f"{time.perf_counter() - started:.1f} s, ok={result.ok}"
        if not result.ok:
            done[name] += f" ({result})"
    done["seconds"] = time.perf_counter() - total
    if pid is not None:
        started = time.perf_counter()
        try:
            psutil.Process(pid).wait(timeout=15)
            done["worker"] = f"exited {time.perf_counter() - started:.1f} s after the finish"
        except psutil.NoSuchProcess:
            done["worker"] = "exited with the finish"
        except psutil.TimeoutExpired:
            done["worker"] = "still running 15 s after the finish"
    return done


def _peaks(samples: list[Any], sampler: RssSampler) -> dict[str, int]:
    return {
        who: sampler.peak(samples, who)
        for who in ("parent", "worker", "helpers", "largest helper", "worker tree", "all")
    }


def run(sizes: Sizes, tmp: Path) -> list[Table]:
    """Both parts on one pair of handlers; returns the overload table and the million table."""
    log(f"memory: starting handlers (queue_size={sizes.memory_queue:,})")
    control = LoadControl(tmp / "control")
    clearml, comet = our_handlers(
        tmp / "offline", all_features=True, queue_size=sizes.memory_queue, control=control
    )
    handlers = {"ClearML": clearml, "Comet": comet}
    raw: dict[str, Any] = {"queue_size": sizes.memory_queue, "worker_pid": worker_pid()}
    with RssSampler(SAMPLE_INTERVAL) as sampler:
        trim()
        sampler.mark("baseline")
        raw["baseline"] = baseline = settle_all(2.0, sampler)
        log(
            f"memory: baseline RSS parent {fmt_mb(baseline['parent'])}, worker "
            f"{fmt_mb(baseline['worker'])}; bytes per event"
        )
        raw["per_event"] = per = bytes_per_event(handlers, control, sizes.memory_queue, sampler)
        log(
            f"memory: queued here {per['rss_per_event']:.0f} B/event (RSS), "
            f"{per['traced_per_event']:.0f} B/event (tracemalloc); sent on "
            f"{per['parent_sent_per_event']:.0f} B/event here, "
            f"{per['worker_per_event']:.0f} B/event in the worker"
        )
        trim()
        raw["overload_baseline"] = settle_all(1.0, sampler)
        log(f"memory: overload for {sizes.memory_seconds:.0f} s")
        raw["overload"] = overload(handlers, control, sizes.memory_seconds, sampler)
        raw["overload_after"] = settle_all(2.0, sampler)
        raw["trim"] = trim()
        raw["overload_after_trim"] = settle_all(1.0, sampler)
        raw["overload_peak"] = _peaks(sampler.between("overload", "overload-end"), sampler)
        raw["overload_flush_peak"] = _peaks(
            sampler.between("overload-end", "overload-flushed"), sampler
        )
        raw["overload_all_peak"] = _peaks(sampler.between("overload", "overload-flushed"), sampler)
        log(f"memory: {sizes.memory_events:,} events without a flush")
        trim()
        raw["million_baseline"] = settle_all(1.0, sampler)
        raw["million"] = million(handlers, sizes.memory_events, sizes.memory_queue, sampler)
        raw["million_peak"] = _peaks(sampler.between("million", "million-processed"), sampler)
        raw["million_flush_peak"] = _peaks(
            sampler.between("million-processed", "million-flushed"), sampler
        )
        raw["million_all_peak"] = _peaks(sampler.between("million", "million-flushed"), sampler)
        raw["million_after"] = settle_all(2.0, sampler)
        trim()
        raw["million_after_trim"] = settle_all(1.0, sampler)
        raw["helpers_seen"] = sampler.helpers_seen
        sampler.mark("finish")
        raw["finish"] = _finish(handlers)
        sampler.mark("finished")
        raw["finish_peak"] = _peaks(sampler.between("finish", "finished"), sampler)
    return [_overload_table(sizes, raw), _million_table(sizes, raw)]


def _bound(raw: dict[str, Any]) -> tuple[float, float]:
    """(bytes per event queued here, the parent's bound: both queues + the resend growth)."""
    per = raw["per_event"]
    per_event = max(per["rss_per_event"], per["traced_per_event"])
    return per_event, raw["queue_size"] * per_event * 2 + raw["overload"]["resend_growth"]


def _overload_table(sizes: Sizes, raw: dict[str, Any]) -> Table:
    o = raw["overload"]
    per_event, bound = _bound(raw)
    baseline = raw["overload_baseline"]["parent"]
    peak = raw["overload_peak"]["parent"]
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
        f"parent +{fmt_mb(growth)} (peak {fmt_mb(peak)}); bound {fmt_mb(bound)} "
        f"= 2 x {sizes.memory_queue:,} x {per_event:.0f} B + resend buffer "
        f"+{fmt_mb(o['resend_growth'])}"
    )
    balanced = all(o["balanced"].values())
    check = "enqueued == processed + dropped after the flush"
    table.verdicts[check] = balanced
    table.measured[check] = "; ".join(
        f"{n}: {s['enqueued']:,} = {s['processed']:,} + {s['dropped']:,}"
        for n, s in o["stats"].items()
    )
    after = raw["overload_after"]["parent"]
    ok_after = after - baseline <= NEAR_BASELINE
    check = "RSS back near the baseline after the flush (≤ +32 MB)"
    table.verdicts[check] = ok_after
    table.measured[check] = (
        f"parent +{fmt_mb(after - baseline)} ({fmt_mb(after)}; after gc + malloc_trim "
        f"+{fmt_mb(raw['overload_after_trim']['parent'] - baseline)}; of which the resend "
        f"buffer, kept until finish, +{fmt_mb(o['resend_growth'])})"
    )
    per = raw["per_event"]
    first = raw["baseline"]
    table.add(
        "RSS baseline (handlers started, idle)",
        f"parent {fmt_mb(first['parent'])}, tracker worker {fmt_mb(first['worker'])} "
        f"(+{fmt_mb(first['helpers'])} descendants)",
        "—",
        "—",
    )
    table.add(
        "bytes per queued event: RSS / tracemalloc",
        f"{per['rss_per_event']:.0f} B / {per['traced_per_event']:.0f} B per event queued in "
        f"this process ({per['queued_b']:,} and {per['queued_traced']:,} events held here with "
        "the sinks paused and the worker's queues full)",
        "—",
        "—",
    )
    table.add(
        "bytes per event sent on to the worker",
        f"this process {per['parent_sent_per_event']:.0f} B RSS (the resend buffer holds "
        f"{per['resend_per_event']:.0f} B encoded per event); tracker worker "
        f"{per['worker_per_event']:.0f} B ({per['sent_a']:,} events in the worker's queues, "
        "sinks paused)",
        "—",
        "—",
    )
    table.add(
        "the queues' bound",
        f"{fmt_mb(bound)} = 2 handlers x queue_size {sizes.memory_queue:,} x {per_event:.0f} B "
        f"+ the resend buffer's growth {fmt_mb(o['resend_growth'])} "
        f"(≤ {RESEND_LIMIT_BYTES // 2**20} MB per handler)",
        "—",
        "—",
    )
    where = o["where_at_end"]
    table.add(
        "load",
        f"producers {o['producer_rate']:,.0f} events/s per handler for {o['seconds']:.1f} s, "
        f"sinks throttled to {o['sink_rate']:,.0f}/s; processed "
        + ", ".join(f"{n} {v:,}" for n, v in o["processed_during"].items())
        + "; dropped "
        + ", ".join(f"{n} {v:,}" for n, v in o["dropped_during"].items())
        + f"; at the end {where['here']:,} queued here, {where['worker']:,} in the worker",
        "10x",
        "—",
    )
    table.add(
        "parent RSS peak during the overload",
        f"{fmt_mb(peak)} (+{fmt_mb(growth)} over {fmt_mb(baseline)} just before it)",
        f"≤ +{fmt_mb(bound + OVERHEAD_ALLOWED)}",
        met(ok_rss),
    )
    table.add(
        "parent RSS peak during the flush",
        f"{fmt_mb(raw['overload_flush_peak']['parent'])} (flush took {o['flush_s']:.1f} s)",
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
        f"{fmt_mb(raw['overload_after_trim']['parent'])}; resend buffer "
        f"{fmt_mb(o['resend_after'])} (kept until finish)",
        "≤ baseline + 32 MB",
        met(ok_after),
    )
    both = raw["overload_all_peak"]
    table.add(
        "tracker worker RSS (with its descendants)",
        f"baseline {fmt_mb(raw['overload_baseline']['worker tree'])}, peak over the overload "
        f"and the flush {fmt_mb(both['worker tree'])} (worker {fmt_mb(both['worker'])}, "
        f"descendants {fmt_mb(both['helpers'])}); after the flush "
        f"{fmt_mb(raw['overload_after']['worker tree'])}",
        "—",
        "—",
    )
    table.add(
        "everything (parent + worker + descendants)",
        f"baseline {fmt_mb(raw['overload_baseline']['all'])}, peak {fmt_mb(both['all'])}",
        "—",
        "—",
    )
    table.notes += [
        "Both handlers attached, all features on, SDKs offline, both pipelines in the one "
        f"tracker worker (the default), queue_size={sizes.memory_queue:,} each (a queue of that "
        "size here and one in the worker per handler); capacity.py's event mix sent to both "
        f"handlers by a paced producer (every {TICK * 1e3:.0f} ms).",
        "The sinks are slowed in the worker by a wrapper (benchmarks/load.py ControlledSink, "
        "built by the worker from a SinkSpec, driven through files): each write sleeps "
        "len(batch) / rate first; the throttle is lifted before the flush. Once the worker's "
        "queue is full its reader waits, the pipe fills, this process's background thread "
        "waits, and events beyond this process's queue are dropped (drop-newest) and counted.",
        "Bytes per event, sinks paused: queue_size events to each handler move on to the "
        "worker (this process keeps their encoded frames to resend the open session to a new "
        "worker; offline sessions release them at finish), as many again stay in this "
        "process's queues; RSS growth after gc + malloc_trim per event of each kind (the "
        "frames of the few events the worker still took subtracted), and tracemalloc's "
        "traced growth in a second run. The bound uses the larger of the two.",
        "Baselines and 'after' are medians of 1 to 2 s of readings; this process's 'after the "
        "flush' is compared with its level right before the overload (after part 1). The "
        "worker's allocator is not trimmed (malloc_trim runs in this process only). Sampled "
        f"every {SAMPLE_INTERVAL:g} s with psutil.",
        f"Flush results: {o['flush']}.",
    ]
    return table


def _flush_seconds(flush: dict[str, str]) -> str:
    """Each handler's own flush time, from its FlushResult's repr (``seconds=…``)."""
    parts = []
    for name, text in flush.items():
        found = re.search(r"seconds=([0-9.]+)", text)
        parts.append(f"{name} {float(found.group(1)):.1f} s" if found else f"{name} ?")
    return ", ".join(parts)


def _million_table(sizes: Sizes, raw: dict[str, Any]) -> Table:
    m = raw["million"]
    n = m["events"]
    peaks = raw["million_all_peak"]
    start = raw["million_baseline"]
    limit = f"≤ {TARGET_RSS // MB} MB"
    finish = raw["finish"]
    flush = f"flush {m['flush_s']:.1f} s ({_flush_seconds(m['flush'])}), finish " + (
        f"{finish['seconds']:.1f} s" if "seconds" in finish else "n/a"
    )
    table = Table(
        id="memory-million",
        title=f"6. Memory (b): {n:,} events without a flush",
        target=f"RSS {limit} for every tracker process (this process, the tracker worker and "
        "each of its metric processes), over the events and the flush; the flush and the "
        "finish timed",
        columns=["measurement", "value", "target", "met?", "before (git c23df4b)"],
        raw={},
    )
    checks = (
        ("parent", "parent RSS", "parent"),
        ("worker", "tracker worker RSS", "worker"),
        ("largest helper", "largest metric process RSS", "largest helper"),
    )
    for who, label, key in checks:
        peak = peaks[key]
        ok = peak <= TARGET_RSS
        check = f"{label} peak over {n:,} events and the flush {limit}"
        table.verdicts[check] = ok
        table.measured[check] = (
            f"{fmt_mb(peak)} (start {fmt_mb(start[who])}; over the events "
            f"{fmt_mb(raw['million_peak'][key])}, during the flush "
            f"{fmt_mb(raw['million_flush_peak'][key])}); before: {BEFORE_MILLION[key]}"
        )
        if who == "worker":
            table.measured[check] += f"; {flush} (before: {BEFORE_MILLION['flush']})"
        if who == "largest helper":
            table.measured[check] += f"; {raw['helpers_seen']} metric processes at most"
        table.add(
            f"{label}: start / peak over the events / peak during the flush",
            f"{fmt_mb(start[who])} / {fmt_mb(raw['million_peak'][key])} / "
            f"{fmt_mb(raw['million_flush_peak'][key])}",
            limit,
            met(ok),
            BEFORE_MILLION[key],
        )
    table.add(
        "every tracker process together (parent + worker + metric processes): start / peak "
        "over the events / peak during the flush",
        f"{fmt_mb(start['all'])} / {fmt_mb(raw['million_peak']['all'])} / "
        f"{fmt_mb(raw['million_flush_peak']['all'])}",
        "— (information)",
        "—",
        BEFORE_MILLION["all"],
    )
    table.add(
        "tracker worker with its descendants: start / peak",
        f"{fmt_mb(start['worker tree'])} / {fmt_mb(peaks['worker tree'])} (at most "
        f"{raw['helpers_seen']} metric processes seen at once)",
        "—",
        "—",
        "2554.8 MB (no metric process)",
    )
    table.add(
        "events",
        f"{n:,} to each handler in {m['enqueued_s']:.1f} s, all processed after "
        f"{m['processed_s']:.1f} s ({n / m['processed_s']:,.0f}/s); dropped "
        + ", ".join(f"{k} {v:,}" for k, v in m["dropped"].items()),
        "—",
        "—",
        BEFORE_MILLION["events"],
    )
    table.add(
        "then one flush (flush_tracker(), one handler after the other)",
        f"{m['flush_s']:.1f} s ({_flush_seconds(m['flush'])}); peaks during it: parent "
        f"{fmt_mb(raw['million_flush_peak']['parent'])}, worker "
        f"{fmt_mb(raw['million_flush_peak']['worker'])}, largest metric process "
        f"{fmt_mb(raw['million_flush_peak']['largest helper'])} (all of them "
        f"{fmt_mb(raw['million_flush_peak']['helpers'])})",
        "—",
        "—",
        BEFORE_MILLION["flush"],
    )
    fin = raw.get("finish_peak", {})
    table.add(
        "then the finish (flush_tracker(finish=True), one after the other)",
        "; ".join(f"{k} {v}" for k, v in finish.items() if k in ("ClearML", "Comet"))
        + (f" ({finish['seconds']:.1f} s in all)" if "seconds" in finish else "")
        + f"; peaks during it: parent {fmt_mb(fin.get('parent', 0))}, worker "
        f"{fmt_mb(fin.get('worker', 0))}, largest metric process "
        f"{fmt_mb(fin.get('largest helper', 0))}",
        "— (information)",
        "—",
        BEFORE_MILLION["finish"],
    )
    after = raw["million_after"]
    table.add(
        "parent RSS after the flush",
        f"{fmt_mb(after['parent'])}; after gc + malloc_trim "
        f"{fmt_mb(raw['million_after_trim']['parent'])}; resend buffer "
        f"{fmt_mb(m['resend_bytes'])} (unprotected events: "
        + ", ".join(f"{k} {v:,}" for k, v in m["unprotected"].items())
        + f"); tracker worker {fmt_mb(after['worker'])}, its descendants "
        f"{fmt_mb(after['helpers'])}",
        "—",
        "—",
        "parent 231.1 MB; resend buffer 128.0 MB (64 MB per handler then); worker 536.2 MB",
    )
    table.notes += [
        f"Same handlers as (a), after it (queue_size={sizes.memory_queue:,}). The producer "
        "waits whenever a handler's backlog (its queue here plus its queue in the worker, as "
        "stats() reports it) is more than half of queue_size, so events go at the pipelines' "
        "pace and every one of them reaches the session tables (rows past 5,000 per table "
        "spill to a file in the worker, workers/session.py); no flush until all were "
        "processed.",
        "The handlers are the seed classes (ClearMLCallbackHandler, CometCallbackHandler): no "
        "rotation (their session tables are written at flushes only, the seeds' way), so the "
        "one flush writes tables of a million rows. Past table_rows (default 10,000) a table "
        "is reported with its first rows and written in full, a chunk at a time, to a gzip "
        "file uploaded beside it (workers/table_report.py): that is what bounds the worker "
        "during the flush (before issue 12 it built each table in one DataFrame: 2.55 GB).",
        "Peaks: RSS of each process (psutil, every "
        f"{SAMPLE_INTERVAL:g} s) from the first event until the flush returned; the worker's "
        "metric processes (which run textstat and spaCy since issue 12, never the worker "
        "itself) are its descendants, each checked on its own; 'together' is the sum of the "
        "parent, the worker and its descendants at each reading (the metric processes are "
        "fresh interpreters, anyio's to_process workers, so they share little more than "
        "library pages with the worker).",
        "Before: benchmarks/RESULTS.md of git c23df4b (2026-11-30, the 200 MB target then); "
        "the parent's 134.3 MB is the same phase re-run after the resend buffer went from 64 "
        "to 16 MB per handler (git da7df76).",
        "This process keeps the open sessions' encoded frames (up to "
        f"{RESEND_LIMIT_BYTES // 2**20} MB per handler, "
        "workers/forwarding.py RESEND_LIMIT_BYTES) to rebuild them in a new worker if the "
        "worker dies; offline sessions release them only at finish, so they are part of this "
        "process's RSS here; past the limit the oldest go and their events count as "
        "'unprotected'.",
        "The worker's descendants are the metric processes where it computes textstat and "
        "spaCy (this mix has no on_llm_end, so they mostly idle after loading).",
        f"Flush results: {m['flush']}.",
        "Finish at the end of the phase (flush_tracker(finish=True), one after the other): "
        + "; ".join(f"{k} {v}" for k, v in raw["finish"].items() if k != "seconds")
        + ".",
    ]
    return table
