"""One handler's pipeline: queue → records → analysis → sinks, on the runtime loop.

The consumer wakes when ``batch_size`` events are queued, when a flush arrives, or every
``flush_interval`` seconds; it takes batches in FIFO order, converts them, has the text metrics
computed in worker processes, and hands each batch to every sink (sinks run concurrently, each in
order). Flush and reset requests travel through the same queue, so they apply exactly between the
events enqueued before and after them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from workers.breaker import RetryPolicy
from workers.enrichment import EnrichmentBudget
from workers.event import Event, Kind
from workers.flush import FlushRequest, FlushResult, FlushWaiting
from workers.options import PipelineOptions
from workers.queue import DropWarner, EventQueue
from workers.records import Record, convert
from workers.redact import RedactHook, Redactor
from workers.resilient import ResilientSink, SpoolPendingError
from workers.runtime import Runtime, get_runtime, restart_in_forked_children
from workers.sampling import TraceSampler
from workers.sanitize import Memo
from workers.sinks.base import Sink
from workers.spool import Spool, adopt_spools, open_spool
from workers.streams import TokenStreams
from workers.tail_sampling import TailSampler

logger = logging.getLogger("tracker.pipeline")

#: A backend still opening after this long counts as down in ``stats()["backend_down"]``.
OPEN_SLOW_SECONDS = 5.0
HEALTH_INTERVAL = 10.0  # seconds between samples of the tracker's own health (and at flushes)


class Pipeline(FlushWaiting):
    """The background half of a handler: owns its queue, drives its sinks."""

    def __init__(
        self,
        sinks: list[Sink],
        options: PipelineOptions,
        *,
        redact: RedactHook | None = None,
        retry: RetryPolicy | None = None,
        local_metrics: bool = False,
        runtime: Runtime | None = None,
    ) -> None:
        """Create the queue and start consuming it on the runtime loop.

        Each sink is wrapped in a :class:`~workers.resilient.ResilientSink` (retries, breaker)
        spooling below ``options.spool`` (one directory per sink) when it is set. ``redact``:
        the user hook run on each converted record after the default secret scrubber
        (:mod:`workers.redact`). ``local_metrics``: compute text metrics in threads of this
        process, never in processes of its own (the application's process must not start
        any: they would re-import its ``__main__``).
        """
        self.options = options
        spool = options.spool
        overflow = options.overflow
        batch_size = options.batch_size
        flush_interval = options.flush_interval
        sample_rate = options.sample_rate
        stream_tokens = options.stream_tokens
        metric_processes = options.metric_processes
        self._local_metrics = local_metrics
        self.abandoned = False
        self.spill_recovered = 0  # events an earlier process spilled, delivered here
        self._kept_at_flush: dict[str, tuple[int, int]] = {}  # per sink (in_spool, lost)
        self._spill_root = spool if overflow == "spill" else None
        self._spill_spool: Spool | None = None
        self._unspilled = 0  # spilled events delivered (or dropped) so far, in spill order
        self.sinks: list[ResilientSink] = [_resilient(sink, spool, retry) for sink in sinks]
        for sink in self.sinks:
            sink.opening()  # from now on: _run opens them (and stats() says so from the start)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.queue = EventQueue.for_options(options, self.wake)
        self.opened = threading.Event()
        self.open_errors: dict[str, str] = {}
        self.closed = False
        self.sink_errors = 0
        self.degraded = 0
        self.metrics_skipped = 0
        self._redactor = Redactor(redact)
        # With tail sampling the rate applies when a trace ends, not when it starts.
        self._sampler = TraceSampler(1.0 if options.tail_sampling else sample_rate)
        self._tail = (
            TailSampler(
                sample_rate,
                keep_errors=options.keep_errors,
                keep_slower_than=options.keep_slower_than,
                buffer=options.trace_buffer,
                open_traces=options.open_traces,
            )
            if options.tail_sampling
            else None
        )
        self._streams = TokenStreams() if stream_tokens == "aggregate" else None
        self._live: list[ResilientSink] = []
        self._write_errors: list[str] = []  # since the last flush, reported in its result
        self._metric_processes = metric_processes
        self._analyzer: Any = None
        self._pages_off = False
        self._wake_event: anyio.Event | None = None
        self._since_flush = (0, 0)  # (delivered, dropped) at the last flush
        self._drops = DropWarner(self.queue, logger)
        self._health_step = 0
        self._health_at = time.monotonic()
        self._delay = 0.0  # seconds from the oldest event of the last batch to its delivery
        self._enrichment = EnrichmentBudget(options.enrichment_budget)
        self._ready_at: float | None = None  # wall clock when the sinks had opened
        self.rotations = 0
        self._rotation_mark = (0, time.monotonic())  # (delivered, when) at the last table write
        for sink in self.sinks:
            sink.table_rows = options.table_rows
            sink.session_keys = options.session_keys
        self._runtime = runtime or get_runtime()
        self._task = self._runtime.spawn(self._run)
        self._runtime.register(self)
        _PIPELINES.add(self)

    def _restart_in_forked_child(self) -> None:
        """After ``fork()``: a fresh queue, sinks and runtime for the child; the parent's stay.

        A server that builds its handlers before forking workers (gunicorn ``--preload``) gets
        one working pipeline per worker, each with its own backend session and spool.
        """
        if self.closed:
            return
        self.queue.reset_after_fork()
        self.sinks = [sink.fresh() for sink in self.sinks]
        for sink in self.sinks:
            sink.table_rows = self.options.table_rows
            sink.session_keys = self.options.session_keys
        self._enrichment = EnrichmentBudget(self.options.enrichment_budget)
        self._ready_at = None
        self.rotations = 0
        self._rotation_mark = (0, time.monotonic())
        self._live = []
        self.opened = threading.Event()
        self.open_errors = {}
        self.sink_errors = self.degraded = self.metrics_skipped = 0
        self._write_errors = []
        self._analyzer = None
        self._pages_off = False
        self._wake_event = None
        self._since_flush = (0, 0)
        self._drops = DropWarner(self.queue, logger)
        self._spill_spool, self._unspilled = None, 0  # the child opens its own
        self._runtime = get_runtime()  # the parent's loop thread does not exist here
        self._task = self._runtime.spawn(self._run)
        self._runtime.register(self)

    # -- caller side -------------------------------------------------------------------------

    def wake(self) -> None:
        """Ask the consumer to take a batch now (thread-safe, non-blocking)."""
        self._runtime.call_soon(self._set_wake)

    def _set_wake(self) -> None:
        if self._wake_event is not None:
            self._wake_event.set()

    def _refuse_blocking_flush(self) -> None:
        if self._runtime.in_runtime_thread():
            raise RuntimeError(
                "flush_tracker() was called from the tracker's own worker loop, where it would "
                "wait for itself; use 'await handler.aflush_tracker(...)' there instead"
            )

    def abandon(self) -> None:
        """The exit deadline passed: no more backend calls; what is left goes to the spools.

        Thread-safe. Queued events go to the spools from a task of their own, even while the
        consumer is stuck in a backend call; the consumer, once free, finishes the sessions at
        the finish barrier the application sent.
        """
        self.abandoned = True
        for sink in self.sinks:
            sink.force_spool = True
            self._runtime.call_soon(sink.stop_waiting)
        self._runtime.spawn(self._spool_queued)
        self.wake()

    async def _spool_queued(self) -> None:
        """Abandoned: spool queued events up to the next barrier, until the pipeline closes."""
        while not self.closed:
            events = self.queue.take(self.batch_size)
            barrier = next((i for i, e in enumerate(events) if e.kind.is_control), None)
            if barrier is not None:  # barriers are the consumer's; what follows comes after
                self.queue.push_front(events[barrier:])
                events = events[:barrier]
            if events:
                kept = [event for event in events if self._sampler.keep(event)]
                records = self._redactor.apply([convert(event) for event in kept])
                for sink in self.sinks:
                    sink.spool_now(records)  # on this thread: no other task spools meanwhile
                self.queue.delivered += len(events)
            else:
                await anyio.sleep(0.02)

    def stats(self) -> dict[str, Any]:
        """Counters of the pipeline (exact; ``pending`` counts events not yet delivered)."""
        now = time.monotonic()
        queue = self.queue
        enqueued, delivered, dropped = queue.enqueued, queue.delivered, queue.dropped
        return {
            "enqueued": enqueued,
            "processed": delivered,
            "dropped": dropped,
            "pending": max(0, enqueued - delivered - dropped),
            "queue_depth": queue.depth,
            "queue_size": queue.limit,
            "spilled": queue.spilled,
            "degraded": self.degraded,
            "sink_errors": self.sink_errors,
            "metrics_skipped": self.metrics_skipped,
            "enrichments_skipped": self._enrichment.total(),
            "rotations": self.rotations,
            "redacted_dropped": self._redactor.dropped,
            "sampled_out": self._sampler.dropped
            + (self._tail.dropped_records if self._tail is not None else 0),
            "traces": self._tail.stats() if self._tail is not None else {},
            "spill_recovered": self.spill_recovered,
            "tokens_aggregated": self._streams.absorbed if self._streams is not None else 0,
            "redact_errors": self._redactor.errors,
            "spooled": sum(s.spooled for s in self.sinks),
            "replayed": sum(s.replayed for s in self.sinks),
            "in_spool": sum(s.in_spool for s in self.sinks),
            "lost": sum(s.lost for s in self.sinks),
            "backend_down": [
                s.name
                for s in self.sinks
                if s.breaker.is_open
                or (s.opening_since is not None and now - s.opening_since >= OPEN_SLOW_SECONDS)
            ],
            "opening": [s.name for s in self.sinks if s.opening_since is not None],
            "unopened": [s.name for s in self.sinks if not s.opened],  # never reached a backend
            "closed": self.closed,
        }

    # -- consumer side (runtime loop) --------------------------------------------------------

    async def _run(self) -> None:
        self._live = list(self.sinks)
        async with anyio.create_task_group() as group:
            # Sinks open in the background: an SDK that never answers its login must not hold
            # batches and flushes back (they go to the spool until it opens, and say why).
            for sink in self.sinks:
                sink.opening()  # a batch taken before the open task runs waits for it
            group.start_soon(self._open_sinks)
            if self.options.spool is not None:
                try:
                    await self._recover_spills(self.options.spool)
                except Exception:
                    logger.exception("tracker: replaying an earlier process's spill failed")
            if self._spill_root is not None:
                self._spill_spool = await anyio.to_thread.run_sync(
                    open_spool, self._spill_root, "overflow"
                )
                self._spill_lock = anyio.Lock()
                group.start_soon(self._spill_loop)
            await self._consume()
            group.cancel_scope.cancel()
        if self._spill_spool is not None:
            self._spill_spool.close()
        self._runtime.unregister(self)

    async def _consume(self) -> None:
        while not self.closed:
            self._wake_event = anyio.Event()
            if self.queue.depth == 0:
                with anyio.move_on_after(self.flush_interval):
                    await self._wake_event.wait()
                if self.queue.depth == 0:  # quiet: a dead backend may be back, replay its spool
                    await self._each_sink(lambda sink: sink.maintain())
            while not self.closed:
                self._drops.check()
                batch = self.queue.take(self._take_size())
                if not batch:
                    break
                try:
                    await self._process(batch)
                except Exception:  # a bug here must not stop the pipeline for good
                    logger.exception("tracker: a batch of %d events failed", len(batch))
                if self._rotation_due():
                    await self._rotate()
            if self._rotation_due():  # rotate_seconds also passes while the queue is quiet
                await self._rotate()
            if time.monotonic() - self._health_at >= HEALTH_INTERVAL and not self.closed:
                await self._health()
            if self._spill_spool is not None and not self.closed:
                try:
                    await self._unspill()
                except Exception:
                    logger.exception("tracker: replaying spilled events failed")

    # -- overflow="spill" ----------------------------------------------------------------------

    async def _spill_loop(self) -> None:
        """Move spilled events to disk as fast as they can be converted (not delivered)."""
        while True:
            if not await self._spill_to_disk():
                await anyio.sleep(0.02)

    async def _spill_to_disk(self) -> bool:
        # Taking from the spill and appending to the spool is one step for _unspill, which must
        # not see both empty while a slice is on its way to the disk.
        async with self._spill_lock:
            events = self.queue.take_spill(self.batch_size)
            if not events:
                return False
            records = self._redactor.apply([convert(event) for event in events])
            batch = [record.to_wire() for record in records]
            # One frame per taken slice, even if the redact hook withheld all of it, so frames
            # count events exactly (see _unspill).
            spool = self._spill_spool
            assert spool is not None  # opened in _run before the spill loop starts
            await anyio.to_thread.run_sync(spool.append, [len(events), batch], len(events))
            return True

    async def _unspill(self, through: int | None = None) -> None:
        """Deliver spilled events in order, after what was queued before them.

        ``through``: stop once that many spilled events were delivered (a flush barrier's
        count), else go on until the spill is empty and the queue takes events again.
        """
        spool = self._spill_spool
        assert spool is not None
        while not self.closed and (through is None or self._unspilled < through):
            if through is None and self.queue.depth:
                return  # older events (and barriers) first
            item = await anyio.to_thread.run_sync(spool.peek)
            if item is None:
                if await self._spill_to_disk():
                    continue
                async with self._spill_lock:  # no slice in flight to the disk either
                    caught_up = not spool.pending_batches and not self.queue.spill
                    if caught_up and through is None:
                        self.queue.resume()
                if caught_up:
                    return
                continue
            position, (taken, batch) = item
            await self._deliver([Record.from_wire(wire) for wire in batch], redacted=True)
            self.queue.delivered += taken - len(batch)  # withheld by the redact hook
            self._unspilled += taken
            await anyio.to_thread.run_sync(spool.commit, position, taken)

    # -- rotation ------------------------------------------------------------------------------

    def _rotation_due(self) -> bool:
        """True when ``rotate_events`` events or ``rotate_seconds`` passed since the last write
        of the session tables (a rotation or a flush), with something new to write."""
        options = self.options
        if self.closed or (options.rotate_events is None and options.rotate_seconds is None):
            return False
        delivered, since = self._rotation_mark
        new = self.queue.delivered - delivered
        if new <= 0:
            return False
        if options.rotate_events is not None and new >= options.rotate_events:
            return True
        return (
            options.rotate_seconds is not None
            and time.monotonic() - since >= options.rotate_seconds
        )

    def _take_size(self) -> int:
        """A batch, but no more than the next rotation's part still takes: a part of exactly
        ``rotate_events`` rows fits the default ``table_rows`` (the same 10,000), where a batch
        past it would make every part a long table, written a second time in full (issue 15)."""
        rotate_events = self.options.rotate_events
        if rotate_events is None:
            return self.batch_size
        left = rotate_events - (self.queue.delivered - self._rotation_mark[0])
        return max(1, min(self.batch_size, left))

    async def _rotate(self) -> None:
        """Every sink writes its session tables so far as the next part."""
        self.rotations += 1
        self._rotation_mark = (self.queue.delivered, time.monotonic())
        label = f"part {self.rotations}"
        errors = await self._each_sink(lambda sink: sink.rotate(label))
        if errors and len(self._write_errors) < 20:
            self._write_errors.extend(f"rotation {label}: {e}" for e in errors)

    async def _health(self) -> None:
        """A sample of the tracker's own health to every sink (scalars over time)."""
        queue = self.queue
        self._health_step += 1
        self._health_at = time.monotonic()
        values = {
            "queue_depth": float(queue.depth),
            "enqueued": float(queue.enqueued),
            "processed": float(queue.delivered),
            "dropped": float(queue.dropped),
            "spill": float(queue.spilled - self._unspilled),
            "delay_s": round(self._delay, 6),
        }
        step = self._health_step
        await self._each_sink(lambda sink: sink.log_health(values, step))

    async def _warm_analyzer(self) -> None:
        """Start the metric processes and load textstat's dictionaries (and spaCy) there."""
        complexity = any(s.needs_complexity for s in self.sinks)
        spacy = any(s.needs_pages or s.needs_sentences for s in self.sinks)
        if not (complexity or spacy):
            return
        analyzer = self._metrics()
        try:
            if self._local_metrics:
                await analyzer.warm_here(spacy_model=spacy)
            else:  # starts the metric processes, where textstat and spaCy live
                await analyzer.warm_up(spacy_model=spacy)
        except Exception as exc:  # the first real batch says it again, where it counts
            logger.debug("tracker: warming the text metrics failed: %s", exc)

    async def _open_sinks(self) -> None:
        async def open_one(sink: ResilientSink) -> None:
            try:
                await sink.open()
            except Exception as exc:  # no spool to fall back on: this sink is out
                self._live.remove(sink)
                self.open_errors[sink.name] = f"{type(exc).__name__}: {exc}"
                logger.error("tracker: could not open the %s sink: %s", sink.name, exc)

        async with anyio.create_task_group() as group:
            for sink in self.sinks:
                group.start_soon(open_one, sink)
        self._ready_at = time.time()
        self.opened.set()
        # After the sessions opened, not beside them: spaCy's start would slow their login.
        await self._warm_analyzer()

    async def _process(self, batch: list[Event]) -> None:
        records: list[Record] = []
        released: list[Record] = []  # tail sampling: kept traces, counted when taken
        # The batch's records share what their events share (a graph state in each run of a
        # node), converted once; not where the user's hook may change a record in place.
        memo: Memo | None = {} if self._redactor.hook is None else None
        for index, event in enumerate(batch):
            if event.kind.is_control:
                if records:
                    await self._deliver(records)
                    records = []
                if released:
                    await self._deliver(released, counted=False)
                    released = []
                # finished: what came after the barrier is refused (counted before the
                # barrier's result goes out), as later puts are
                await self._control(event, batch[index + 1 :])
                if self.closed:
                    return
            elif not self._sampler.keep(event):  # not in a sampled trace: processed, left out
                self.queue.delivered += 1
            elif self._streams is not None and self._streams.absorb(event):
                self.queue.delivered += 1  # held for its run's end
            else:
                record = convert(event, memo)
                if self._streams is not None:
                    self._streams.attach(record)
                if self._tail is None:
                    records.append(record)
                else:  # held until its trace is decided: processed now, delivered then
                    self.queue.delivered += 1
                    released.extend(self._tail.take(record))
        if records:
            await self._deliver(records)
        if released:
            await self._deliver(released, counted=False)

    def _refuse(self, events: list[Event]) -> None:
        late = self.queue.discard(events)
        for event in events:
            if event.kind is Kind.FLUSH and not event.data[0].done.done():
                event.data[0].done.set_result(
                    FlushResult(errors=["the tracker was already finished"])
                )
        if late:
            logger.warning(
                "tracker: %d events arrived after flush_tracker(finish=True) and were dropped",
                late,
            )

    async def _recover_spills(self, root: os.PathLike[str]) -> None:
        """Deliver what earlier processes spilled (``overflow="spill"``) and never replayed.

        Whatever this handler's own settings: a spill is events a process accepted. They come
        before this process's events, oldest first, counted in ``stats()["spill_recovered"]``.
        """
        for spool in await anyio.to_thread.run_sync(adopt_spools, root, "overflow"):
            try:
                while (item := await anyio.to_thread.run_sync(spool.peek)) is not None:
                    position, (taken, batch) = item
                    records = [Record.from_wire(wire) for wire in batch]
                    await self._deliver(records, redacted=True, counted=False)
                    self.spill_recovered += len(records)
                    await anyio.to_thread.run_sync(spool.commit, position, taken)
            finally:
                spool.close()
            if self.spill_recovered:
                logger.warning(
                    "tracker: %d events an earlier process spilled to %s were delivered",
                    self.spill_recovered,
                    spool.directory,
                )

    async def _deliver(
        self, records: list[Record], redacted: bool = False, counted: bool = True
    ) -> None:
        self.degraded += sum(1 for r in records if r.degraded)
        # all count as processed, also those the redact hook drops (not an earlier process's)
        converted = len(records) if counted else 0
        if not redacted:  # secrets out before analysis, sinks and spool
            records = self._redactor.apply(records)
        if records:
            await self._analyze(records)
            errors = await self._each_sink(lambda sink: sink.write(records))
            self._delay = time.time() - records[0].event.time
            if errors and len(self._write_errors) < 20:
                self._write_errors.extend(f"{e} ({len(records)} events)" for e in errors)
        self.queue.delivered += converted

    async def _each_sink(self, step: Callable[[Sink], Awaitable[None]]) -> list[str]:
        errors: list[str] = []

        async def guarded(sink: Sink) -> None:
            try:
                await step(sink)
            except Exception as exc:
                self.sink_errors += 1
                errors.append(f"{sink.name}: {type(exc).__name__}: {exc}")
                if isinstance(exc, SpoolPendingError):  # already explained: no traceback
                    logger.error("tracker: the %s sink did not deliver: %s", sink.name, exc)
                else:
                    logger.error("tracker: the %s sink failed: %s", sink.name, exc, exc_info=True)

        async with anyio.create_task_group() as group:
            for sink in self._live:
                group.start_soon(guarded, sink)
        return errors

    async def _control(self, event: Event, rest: list[Event]) -> None:
        if self._spill_spool is not None:  # events spilled before the barrier come first
            await self._unspill(through=event.extra.get("spilled", 0))
        if event.kind is Kind.RESET:
            await self._each_sink(lambda sink: sink.reset_counters())
            return
        request: FlushRequest = event.data[0]
        if request.finish and self._tail is not None:  # open traces: the policy decides
            opened = self._tail.release_all()
            if opened:
                await self._deliver(opened, counted=False)
        await self._health()
        try:
            errors = await self._each_sink(lambda sink: sink.flush(request))
            errors = [
                *(f"{n}: {e}" for n, e in self.open_errors.items()),
                *self._write_errors,
                *errors,
            ]
            self._write_errors = []
        except Exception as exc:  # pragma: no cover - _each_sink guards every sink
            errors = [repr(exc)]
        queue = self.queue
        delivered, dropped = self._since_flush
        # Per sink: events that went into its spool since the last flush and are still there
        # (replayed ones were written after all), and events it lost; the worst sink counts.
        kept = {s.name: (s.in_spool, s.lost) for s in self.sinks}
        before = self._kept_at_flush
        spooled = max(
            (max(0, n - before.get(k, (0, 0))[0]) for k, (n, _) in kept.items()), default=0
        )
        lost = max((n - before.get(k, (0, 0))[1] for k, (_, n) in kept.items()), default=0)
        written = max(0, queue.delivered - delivered - spooled - lost)
        if request.finish and any(s.flush_failed for s in self._live):
            written = 0  # the session's archive was not written: nothing of it is stored
        result = FlushResult(
            written=written,
            spooled=spooled,
            lost=lost,
            dropped=queue.dropped - dropped,
            errors=errors,
            archives=[s.archive_path for s in self._live if s.archive_path is not None],
            skipped=self._enrichment.since_flush(),
        )
        self._rotation_mark = (queue.delivered, time.monotonic())
        self._since_flush = (queue.delivered, queue.dropped)
        self._kept_at_flush = kept
        if request.finish and not request.reset:  # Comet's reset opens a new experiment
            self.closed = True
            self._refuse(rest)
            late = self.queue.close()
            if late:
                logger.warning(
                    "tracker: %d events arrived after flush_tracker(finish=True) and were dropped",
                    late,
                )
            self._analyzer = None
        if not request.done.done():
            request.done.set_result(result)

    # -- analysis ----------------------------------------------------------------------------

    async def _analyze(self, records: list[Record]) -> None:
        complexity = any(s.needs_complexity for s in self._live)
        pages = not self._pages_off and any(s.needs_pages for s in self._live)
        styles = sorted({style for s in self._live for style in s.needs_sentences})
        if not (complexity or pages or styles):
            return
        ends = [r for r in records if r.kind is Kind.LLM_END and not r.degraded]
        texts = [text for r in ends for text in r.generation_texts()]
        if not texts:
            return
        from workers import metrics

        analyzer = self._metrics()
        if complexity:
            # Late batches lose their expensive enrichments first (counted), so the tracker
            # keeps up with the application instead of carrying a backlog to the flush.
            allowed = self._enrichment.allowance("complexity", self._waited(ends), len(texts))
            started = time.monotonic()
            try:
                if allowed:
                    _spread(ends, await analyzer.complexity(texts[:allowed]), "complexity")
            except Exception as exc:
                self.metrics_skipped += allowed
                logger.error("tracker: complexity metrics failed, logging without them: %s", exc)
            else:
                self._enrichment.measured("complexity", time.monotonic() - started, allowed)
        if self._pages_off or not (pages or styles):
            return
        allowed = self._enrichment.allowance("visualizations", self._waited(ends), len(texts))
        if not allowed:
            return
        started = time.monotonic()
        try:
            if pages:
                _spread(ends, await analyzer.render_pages(texts[:allowed]), "pages")
            if styles:
                renders = await analyzer.render_sentences(texts[:allowed], styles)
                _spread(ends, renders, "sentences")
        except metrics.ModelMissingError as exc:
            self._pages_off = True
            logger.error("tracker: visualizations are off: %s", exc)
        except Exception as exc:
            self.metrics_skipped += allowed
            logger.error("tracker: visualizations failed, logging without them: %s", exc)
        else:
            self._enrichment.measured("visualizations", time.monotonic() - started, allowed)

    def _waited(self, ends: list[Record]) -> float:
        """Seconds the oldest of ``ends`` has waited (waiting for the sessions to open at
        start-up is not falling behind: counted from then)."""
        ready = self._ready_at
        return 0.0 if ready is None else time.time() - max(ends[0].event.time, ready)

    def _metrics(self) -> Any:
        """The metric worker processes' façade, created on first use."""
        if self._analyzer is None:
            from workers.metrics import Analyzer

            self._analyzer = Analyzer(
                processes=self._metric_processes, local_only=self._local_metrics
            )
        return self._analyzer


_PIPELINES: weakref.WeakSet[Pipeline] = weakref.WeakSet()


restart_in_forked_children(_PIPELINES, "pipeline")


def _resilient(
    sink: Sink, spool: str | os.PathLike[str] | None, retry: RetryPolicy | None
) -> ResilientSink:
    """``sink`` with retries, a breaker and (when ``spool`` is a directory) its own spool."""
    if isinstance(sink, ResilientSink):
        return sink
    factory = None
    if spool is not None:
        root, name = spool, sink.name

        def factory() -> Any:
            return open_spool(root, name)

    return ResilientSink(sink, factory, retry)


def _spread(records: list[Record], values: list[Any], attr: str) -> None:
    """Hand each record its slice of the per-text results (texts were flattened in order)."""
    index = 0
    for record in records:
        count = len(record.generation_texts())
        setattr(record, attr, values[index : index + count])
        index += count
