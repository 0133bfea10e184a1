"""One handler's pipeline: queue → records → analysis → sinks, on the runtime loop.

The consumer wakes when ``batch_size`` events are queued, when a flush arrives, or every
``flush_interval`` seconds; it takes batches in FIFO order, converts them, has the text metrics
computed in worker processes, and hands each batch to every sink (sinks run concurrently, each in
order). Flush and reset requests travel through the same queue, so they apply exactly between the
events enqueued before and after them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from workers.event import Event, Kind
from workers.flush import FlushRequest, FlushResult
from workers.queue import DEFAULT_QUEUE_SIZE, EventQueue
from workers.records import Record, convert
from workers.runtime import Runtime, get_runtime
from workers.sinks.base import Sink

logger = logging.getLogger("tracker.pipeline")

DEFAULT_BATCH_SIZE = 512
DEFAULT_FLUSH_INTERVAL = 0.5
OPEN_TIMEOUT = 60.0


class Pipeline:
    """The background half of a handler: owns its queue, drives its sinks."""

    def __init__(
        self,
        sinks: list[Sink],
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        metric_processes: int = 2,
        runtime: Runtime | None = None,
    ) -> None:
        """Create the queue and start consuming it on the runtime loop."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be > 0 seconds, got {flush_interval!r}")
        self.sinks = sinks
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.queue = EventQueue(queue_size, wake_at=batch_size, wake=self.wake)
        self.opened = threading.Event()
        self.open_errors: dict[str, str] = {}
        self.closed = False
        self.sink_errors = 0
        self.degraded = 0
        self.metrics_skipped = 0
        self._live: list[Sink] = []
        self._write_errors: list[str] = []  # since the last flush, reported in its result
        self._metric_processes = metric_processes
        self._analyzer: Any = None
        self._pages_off = False
        self._wake_event: anyio.Event | None = None
        self._since_flush = (0, 0)  # (delivered, dropped) at the last flush
        for sink in sinks:
            sink.render_sentences = self.render_sentences
        self._runtime = runtime or get_runtime()
        self._task = self._runtime.spawn(self._run)
        self._runtime.register(self)

    # -- caller side -------------------------------------------------------------------------

    def wake(self) -> None:
        """Ask the consumer to take a batch now (thread-safe, non-blocking)."""
        self._runtime.call_soon(self._set_wake)

    def _set_wake(self) -> None:
        if self._wake_event is not None:
            self._wake_event.set()

    def submit(self, request: FlushRequest) -> None:
        """Put a flush barrier in the queue."""
        if self.closed:
            request.done.set_result(FlushResult(errors=["the tracker was already finished"]))
            return
        self.queue.put_control(Kind.FLUSH, (request,))
        self.wake()

    def reset_counters(self) -> None:
        """Queue a ``reset_callback_meta``: it applies after the events already queued."""
        self.queue.put_control(Kind.RESET, ())
        self.wake()

    def flush(self, request: FlushRequest, timeout: float | None) -> FlushResult:
        """Block until ``request`` came out of every sink, or ``timeout`` seconds passed."""
        if self._runtime.in_runtime_thread():
            raise RuntimeError(
                "flush_tracker() was called from the tracker's own worker loop, where it would "
                "wait for itself; use 'await handler.aflush_tracker(...)' there instead"
            )
        started = time.monotonic()
        self.submit(request)
        try:
            result = request.done.result(timeout)
        except concurrent.futures.TimeoutError:
            result = self._timed_out()
        result.seconds = time.monotonic() - started
        return result

    async def aflush(self, request: FlushRequest, timeout: float | None) -> FlushResult:
        """Await ``request`` without blocking the caller's loop; same result as :meth:`flush`."""
        started = time.monotonic()
        self.submit(request)
        waiter = asyncio.wrap_future(request.done)
        try:
            # shield: cancelling or timing out the caller must not cancel the flush itself.
            result = await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            result = self._timed_out()
        result.seconds = time.monotonic() - started
        return result

    def _timed_out(self) -> FlushResult:
        queue = self.queue
        delivered, dropped = self._since_flush
        return FlushResult(
            written=queue.delivered - delivered,
            dropped=queue.dropped - dropped,
            pending=max(0, queue.enqueued - queue.delivered - queue.dropped),
            timed_out=True,
        )

    def drain_at_exit(self, timeout: float) -> None:
        """Interpreter exit: deliver what is queued and finish the sinks, within ``timeout``."""
        if self.closed:
            return
        result = self.flush(FlushRequest(finish=True), timeout)
        if result.timed_out:
            logger.warning(
                "tracker: %d events were still queued when the exit drain timed out after %.1fs",
                result.pending,
                timeout,
            )

    def stats(self) -> dict[str, Any]:
        """Counters of the pipeline (exact; ``pending`` counts events not yet delivered)."""
        queue = self.queue
        enqueued, delivered, dropped = queue.enqueued, queue.delivered, queue.dropped
        return {
            "enqueued": enqueued,
            "processed": delivered,
            "dropped": dropped,
            "pending": max(0, enqueued - delivered - dropped),
            "queue_depth": queue.depth,
            "queue_size": queue.maxsize,
            "degraded": self.degraded,
            "sink_errors": self.sink_errors,
            "metrics_skipped": self.metrics_skipped,
            "closed": self.closed,
        }

    # -- consumer side (runtime loop) --------------------------------------------------------

    async def _run(self) -> None:
        await self._open_sinks()
        while not self.closed:
            self._wake_event = anyio.Event()
            if self.queue.depth == 0:
                with anyio.move_on_after(self.flush_interval):
                    await self._wake_event.wait()
            while not self.closed:
                batch = self.queue.take(self.batch_size)
                if not batch:
                    break
                try:
                    await self._process(batch)
                except Exception:  # a bug here must not stop the pipeline for good
                    logger.exception("tracker: a batch of %d events failed", len(batch))
        self._runtime.unregister(self)

    async def _open_sinks(self) -> None:
        for sink in self.sinks:
            try:
                with anyio.fail_after(OPEN_TIMEOUT):
                    await sink.open()
                self._live.append(sink)
            except Exception as exc:
                self.open_errors[sink.name] = f"{type(exc).__name__}: {exc}"
                logger.error("tracker: could not open the %s sink: %s", sink.name, exc)
        self.opened.set()

    async def _process(self, batch: list[Event]) -> None:
        records: list[Record] = []
        for event in batch:
            if event.kind.is_control:
                if records:
                    await self._deliver(records)
                    records = []
                await self._control(event)
            else:
                records.append(convert(event))
        if records:
            await self._deliver(records)

    async def _deliver(self, records: list[Record]) -> None:
        self.degraded += sum(1 for r in records if r.degraded)
        await self._analyze(records)
        errors = await self._each_sink(lambda sink: sink.write(records))
        if errors and len(self._write_errors) < 20:
            self._write_errors.extend(f"{e} ({len(records)} events)" for e in errors)
        self.queue.delivered += len(records)

    async def _each_sink(self, step: Callable[[Sink], Awaitable[None]]) -> list[str]:
        errors: list[str] = []

        async def guarded(sink: Sink) -> None:
            try:
                await step(sink)
            except Exception as exc:
                self.sink_errors += 1
                errors.append(f"{sink.name}: {type(exc).__name__}: {exc}")
                logger.error("tracker: the %s sink failed: %s", sink.name, exc, exc_info=True)

        async with anyio.create_task_group() as group:
            for sink in self._live:
                group.start_soon(guarded, sink)
        return errors

    async def _control(self, event: Event) -> None:
        if event.kind is Kind.RESET:
            await self._each_sink(lambda sink: sink.reset_counters())
            return
        request: FlushRequest = event.data[0]
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
        result = FlushResult(
            written=queue.delivered - delivered,
            dropped=queue.dropped - dropped,
            errors=errors,
            archives=[s.archive_path for s in self._live if s.archive_path is not None],
        )
        self._since_flush = (queue.delivered, queue.dropped)
        if request.finish and not request.reset:  # Comet's reset opens a new experiment
            self.closed = True
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
        if not (complexity or pages):
            return
        ends = [r for r in records if r.kind is Kind.LLM_END and not r.degraded]
        texts = [text for r in ends for text in r.generation_texts()]
        if not texts:
            return
        from workers import metrics

        analyzer = self._metrics()
        if complexity:
            try:
                _spread(ends, await analyzer.complexity(texts), "complexity")
            except Exception as exc:
                self.metrics_skipped += len(texts)
                logger.error("tracker: complexity metrics failed, logging without them: %s", exc)
        if pages:
            try:
                _spread(ends, await analyzer.render_pages(texts), "pages")
            except metrics.ModelMissingError as exc:
                self._pages_off = True
                logger.error("tracker: visualizations are off: %s", exc)
            except Exception as exc:
                self.metrics_skipped += len(texts)
                logger.error("tracker: visualizations failed, logging without them: %s", exc)

    def _metrics(self) -> Any:
        """The metric worker processes' façade, created on first use."""
        if self._analyzer is None:
            from workers.metrics import Analyzer

            self._analyzer = Analyzer(processes=self._metric_processes)
        return self._analyzer

    async def render_sentences(self, texts: list[str], styles: list[str]) -> list[dict[str, Any]]:
        """Comet-style sentence renders in the worker processes (for a sink's flush)."""
        result: list[dict[str, Any]] = await self._metrics().render_sentences(texts, styles)
        return result


def _spread(records: list[Record], values: list[Any], attr: str) -> None:
    """Hand each record its slice of the per-text results (texts were flattened in order)."""
    index = 0
    for record in records:
        count = len(record.generation_texts())
        setattr(record, attr, values[index : index + count])
        index += count
