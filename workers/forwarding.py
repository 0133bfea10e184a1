"""A handler's pipeline as the application's process sees it: a queue, and a window on the worker.

The handler appends to :attr:`ForwardingPipeline.queue` (the hot path, ``tracker/handler.py``).
The link's background thread calls :meth:`ForwardingPipeline.pump`, which takes batches in
order, encodes them (:mod:`workers.snapshot`) and hands them to the link's outbox
(:mod:`workers.outbox`), whose thread writes them to the tracker worker, where the real
:class:`~workers.pipeline.Pipeline` runs. Flush barriers travel in the same order; the
worker answers each with its :class:`~workers.flush.FlushResult`, and sends its counters as they
change, mirrored here for ``stats()`` and the seed counters. While this process is busy, events
may wait in the queue, not encoded, up to the link's hold (:meth:`ForwardingPipeline._may_wait`).

Resending: every frame of the session that is still open is kept (up to
:data:`RESEND_LIMIT_BYTES`), so that a new worker can rebuild what a dead one was writing. The
frames go once the session is safe: at its finish (offline archives are written then), or at
each flush when every sink has stored what it got by then (a server, a JSON-lines file).
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers import snapshot, wire
from workers.counters import Counters
from workers.enrichment import ENRICHMENTS
from workers.event import Event, Kind
from workers.flush import FlushRequest, FlushResult, FlushWaiting
from workers.link import WorkerLink, attach
from workers.options import PipelineOptions
from workers.plan import PipelinePlan
from workers.queue import DropWarner, EventQueue, event_of, is_whole
from workers.records import Record, convert
from workers.redact import RedactHook, Redactor
from workers.sinks.asset import snapshot_asset
from workers.sinks.spec import SinkSpec
from workers.wire import Op

if TYPE_CHECKING:
    from workers.rows.comet import CometRows

logger = logging.getLogger("tracker.forwarding")

#: Bytes of encoded frames kept per handler for a worker restart (the open session's). This is
#: the application's memory: at 64 MB, two handlers took a process to 231 MB over a million
#: events (benchmarks/RESULTS.md, memory b); past the limit, a death loses the oldest (counted).
RESEND_LIMIT_BYTES = 16 * 1024 * 1024

#: Events that may wait in a handler's queue, not encoded, at the start of a busy spell. Live
#: events are objects the application's collector walks; encoding them takes the GIL from the
#: application's threads. Since a waiting event keeps no object of its own (its fields lie flat in
#: the queue, workers/queue.py) and an error keeps no traceback (workers/tracebacks.py), waiting
#: is the cheaper of the two on a saturated event loop. Interleaved probes, 50 concurrent
#: LangGraph sessions on 2 cores, 15 rounds, against no handler (benchmarks/analysis.md, issue 15):
#:
#: - ``ainvoke`` (~20,000 events): 1.089x with all of them waiting, 1.195x with 4,096 waiting
#:   and the rest encoded as they came; a longer burst (30 rounds, 39,000 events, past a
#:   25,000 hold) 1.169x against 1.188x;
#: - ``astream_events`` (~26,000 events, a loop that often waits for LangChain's thread pool,
#:   where encoding costs it little): 1.097x against 1.063x. Hence the second condition: events
#:   wait only while the application's threads leave the GIL no room (workers/busy.py); with
#:   it, 0.977x against 0.954x for the 4,096 of before, and ``ainvoke`` 1.177x against 1.242x
#:   (one run, noisy: the same pair of builds gave 1.108x and 1.060x without the condition).
#:
#: So a burst within this count is held whole; one that outgrows it is encoded as it comes.
LIVE_HOLD_EVENTS = 32_000

_STATS_DEFAULTS: dict[str, Any] = {
    "processed": 0,
    "dropped": 0,
    "queue_depth": 0,
    "spilled": 0,
    "degraded": 0,
    "sink_errors": 0,
    "metrics_skipped": 0,
    "rotations": 0,
    "redacted_dropped": 0,
    "sampled_out": 0,
    "traces": {},
    "spill_recovered": 0,
    "tokens_aggregated": 0,
    "redact_errors": 0,
    "spooled": 0,
    "replayed": 0,
    "in_spool": 0,
    "lost": 0,
    "backend_down": [],
    "opening": [],
    "unopened": [],
    "closed": False,
}


def _custom_rows(custom: Any) -> CometRows:
    """Comet's custom-metric rows, imported only by a process that has such a hook.

    The application's process needs none of pandas otherwise: a third more objects on its heap
    would make each of its full garbage collections a third longer (issue 15).
    """
    from workers.rows.comet import CometRows

    return CometRows(custom)


class SinkMirror:
    """What the application's process knows of a sink that runs in the worker."""

    def __init__(self, spec: SinkSpec) -> None:
        """Mirror the sink ``spec`` describes (counters and archive as of the last reply)."""
        self.spec = spec
        self.name = spec.name
        self.needs_complexity = spec.needs_complexity
        self.needs_pages = spec.needs_pages
        self.counters = Counters()
        self.archive_path: Any = None
        self.inner = self  # the seed classes read ``sinks[0].inner``

    def update(self, counters: dict[str, int], archive: str | None) -> None:
        """Apply the worker's latest report."""
        self.counters.values.update(counters)
        if archive is not None:
            from pathlib import Path

            self.archive_path = Path(archive)


class ForwardingPipeline(FlushWaiting):
    """The application's half of a handler whose work runs in the tracker worker."""

    def __init__(
        self,
        specs: list[SinkSpec],
        options: PipelineOptions,
        *,
        redact: RedactHook | None = None,
        link: WorkerLink | None = None,
    ) -> None:
        """Create the queue and open the pipeline in the worker (started if needed).

        ``redact``: the user's hook is the user's code, so it runs here, in the background
        thread (after the default scrubber), on events converted here: a cost in this process
        that only a hook brings. Comet's ``custom_metrics`` likewise runs here, on LLM ends.
        """
        self.options = options
        self.plan = PipelinePlan(tuple(spec.portable() for spec in specs), options)
        self.sinks = [SinkMirror(spec) for spec in specs]
        self.queue = EventQueue.for_options(options, self.wake)
        self._redactor = Redactor(redact) if redact is not None else None
        self._drops = DropWarner(self.queue, logger)
        custom = next((s.custom_metrics for s in specs if s.custom_metrics is not None), None)
        self._custom = _custom_rows(custom) if custom is not None else None
        # A flush of a sink that stores as it goes (server, file) makes the session safe.
        self._safe_at_flush = all(_stores_at_flush(spec) for spec in specs)
        self.key = 0
        self._pump_lock = threading.Lock()
        self.closed = False
        # Events in the worker's queue at most: half its queue, so its reader never waits
        # (with "spill" the worker takes everything: it spills to its disk, not our memory).
        self._credit = (
            sys.maxsize
            if options.overflow == "spill"
            else max(options.batch_size, options.queue_size // 2)
        )
        # Events that may wait here, live, while the process is busy (workers.link.hold_seconds):
        # past this many, they are encoded, and wait as bytes in the outbox instead.
        # A third of the queue at most: holding must never fill it (drops, or a blocked caller).
        self._hold_events = min(LIVE_HOLD_EVENTS, options.queue_size // 3)
        self._long_burst = False  # this busy spell outgrew the hold: encode as events come
        self.finish_request: FlushRequest | None = None
        self._reset_state()
        self._link = link if link is not None and link.attach(self) else attach(self)

    def _reset_state(self) -> None:
        self._state: dict[str, Any] = {}
        self.open_errors: dict[str, str] = {}
        self.opened = threading.Event()
        self._requests: dict[int, FlushRequest] = {}
        self._retained: deque[tuple[int, bytes, int]] = deque()  # (seq, frame, events)
        self._retained_bytes = 0
        self._retained_events = 0
        self.unprotected = 0  # events whose frames left the resend buffer before it was safe
        self._seq = itertools.count(1)
        self._spill_sent = 0
        self._sent_events = 0  # to the current worker, as it counts them (from zero)
        self._finish_sent = False
        self._withheld = 0  # records the user's redact hook dropped here
        self._redact_counts = (0, 0)
        self._base = {"processed": 0, "dropped": 0}  # counters of workers that died
        self.worker_restarts = 0
        self._restart_notes: list[str] = []  # for the next flush result
        self._since_flush = (0, 0)

    def restart_in_forked_child(self) -> None:
        """After ``fork()``: an empty queue and a worker of the child's own."""
        if self.closed:
            return
        self.queue.reset_after_fork()
        self.sinks = [SinkMirror(mirror.spec) for mirror in self.sinks]
        self.finish_request = None
        self._reset_state()
        self._link = attach(self)

    # -- caller side -----------------------------------------------------------------------

    def wake(self) -> None:
        """Ask the background thread to take a batch now (from the hot path: one Event.set)."""
        self._link.wake()

    def submit(self, request: FlushRequest) -> None:
        """Put a flush barrier in the queue."""
        if self.closed or self._finish_sent:
            self._after_finish(request)
            return
        self.queue.put_control(Kind.FLUSH, (request,))
        self.wake()

    def submit_finish(self) -> FlushRequest:
        """The exit drain's finish barrier."""
        request = FlushRequest(finish=True)
        self.submit(request)
        return request

    def stats(self) -> dict[str, Any]:
        """Counters: this process's queue, and the worker's pipeline as of its last report."""
        worker = {
            **_STATS_DEFAULTS,
            "enrichments_skipped": dict.fromkeys(ENRICHMENTS, 0),
            **self._state.get("stats", {}),
        }
        queue = self.queue
        enqueued = queue.enqueued
        processed = self._base["processed"] + worker["processed"] + self._withheld
        dropped = queue.dropped + self._base["dropped"] + worker["dropped"]
        redacted, redact_errors = self._redact_counts
        return {
            **worker,
            "enqueued": enqueued,
            "processed": processed,
            "dropped": dropped,
            "pending": max(0, enqueued - processed - dropped),
            "queue_depth": queue.depth + worker["queue_depth"],
            "queue_size": queue.limit,
            "spilled": queue.spilled + worker["spilled"],
            "redacted_dropped": worker["redacted_dropped"] + redacted,
            "redact_errors": worker["redact_errors"] + redact_errors,
            "worker_restarts": self.worker_restarts,
            "unprotected": self.unprotected,
            "closed": self.closed,
        }

    # -- background thread (the link's) ----------------------------------------------------

    def pump(self, *, exiting: bool = False) -> bool:
        """Forward one batch (and the barriers in it) to the worker; False when idle.

        ``exiting``: the worker spools everything now, so its queue's bound does not apply.
        """
        with self._pump_lock:  # the exit path may pump too: frames stay in queue order
            return self._pump(exiting)

    def _pump(self, exiting: bool) -> bool:
        self._drops.check()
        if not exiting and self._in_worker() >= self._credit:
            # The worker has as much of ours as its queue should hold: the rest waits here,
            # where the overflow policy applies, and the worker's reader never waits for one
            # handler's backlog (it serves every handler of the process).
            return False
        if not exiting and self._may_wait():
            return False
        # The records as the puts laid them out: most are encoded with no Event made of them.
        batch = self.queue.take_raw(self.options.batch_size)
        if not batch:
            spilled = self.queue.take_spill(self.options.batch_size)
            if not spilled:
                if self.queue.spilling:
                    self.queue.resume()
                return False
            self._spill_sent += len(spilled)
            self._send_events(spilled)
            return True
        raws: list[tuple[Any, ...]] = []
        for index, raw in enumerate(batch):
            event = event_of(raw) if is_whole(raw) else None
            if event is None or not event.kind.is_control:
                raws.append(raw)
                continue
            if raws:
                self._send_raw(raws)
                raws = []
            self._send_spill_through(event.extra.get("spilled", 0))
            self._send_control(event)
            if self._finish_sent:  # what came after the finish is refused here, and counted
                self._refuse_after_finish([event_of(rest) for rest in batch[index + 1 :]])
                return True
        if raws:
            self._send_raw(raws)
        return True

    def _may_wait(self) -> bool:
        """Whether the queued events may stay as they are a little longer, not encoded yet.

        They may at the start of a burst: while this process is busy and its application's
        threads leave the GIL no room (:attr:`workers.busy.BusyMeter.saturated`; when they do,
        encoding costs them little), nothing but events waits (a flush or a reset goes at once,
        and so does what is before it), the oldest was recorded and the busy spell began less
        than the link's ``hold_seconds`` ago, and fewer than ``_hold_events`` wait. A burst that
        outgrows that is a long one: until the process is idle again, its events are encoded as
        they come, as without a hold (the outbox still holds the bytes).
        Live events are objects the application's garbage collector walks at each collection,
        so keeping them waiting through a long burst costs more than encoding them (measured:
        benchmarks/analysis.md, issue 15).
        """
        link = self._link
        queue = self.queue
        if link.hold_seconds <= 0 or queue.spilling or queue.controls:
            return False
        if not link.busy():  # asked at every poll, so that any idle moment ends a spell
            self._long_burst = False
            return False
        if not link.saturated():  # the application's threads leave the GIL room: encode now
            return False
        oldest = queue.oldest_time()
        if oldest is None or self._long_burst:
            return False
        waited = max(time.time() - oldest, link.spell_seconds())
        if queue.depth >= self._hold_events or waited >= link.hold_seconds:
            self._long_burst = True
            return False
        return True

    def pump_all(self) -> None:
        """Forward everything queued now (the exit path, after the drain deadline)."""
        while self.pump(exiting=True):
            pass

    def _send_spill_through(self, count: int) -> None:
        """Events spilled before a barrier go before it."""
        while self._spill_sent < count:
            spilled = self.queue.take_spill(min(self.options.batch_size, count - self._spill_sent))
            if not spilled:
                return
            self._spill_sent += len(spilled)
            self._send_events(spilled)

    def _in_worker(self) -> int:
        """Events sent to this worker that it has not processed (nor dropped) yet."""
        worker = self._state.get("stats", {})
        return self._sent_events - worker.get("processed", 0) - worker.get("dropped", 0)

    def _send_raw(self, raws: list[tuple[Any, ...]]) -> None:
        """Records taken with ``take_raw`` (none a control record)."""
        if self._redactor is not None:  # the hook gets records converted from events
            self._send_events([event_of(raw) for raw in raws])
            return
        enrich = self._enrich if self._custom is not None else None
        self._ship(snapshot.encode_raw(raws, enrich), len(raws), self._withheld, raws[0][2])

    def _send_events(self, events: list[Event]) -> None:
        withheld = self._withheld
        if self._redactor is not None:
            data = self._redacted(events)
        else:
            data = snapshot.encode(events, self._enrich if self._custom is not None else None)
        self._ship(data, len(events), withheld, events[0].time)

    def _ship(self, data: bytes, count: int, withheld: int, oldest: float) -> None:
        """A batch of ``count`` events encoded as ``data``; ``withheld``: the redact hook's
        count before it was encoded; ``oldest``: when its first event was recorded."""
        # What the worker gets and counts (as dropped, should it fail to decode them or to
        # build the sinks): the redact hook's withheld records stay here, counted processed.
        visible = count - (self._withheld - withheld)
        # The outbox's hold counts from when the oldest of them was recorded.
        since = time.monotonic() - max(0.0, time.time() - oldest)
        self._send(Op.EVENTS, (visible, data), visible, hold_since=since)
        self._sent_events += visible

    def _redacted(self, events: list[Event]) -> bytes:
        """The user's redact hook runs here, on records converted here."""
        redactor = self._redactor
        assert redactor is not None
        records = [convert(event) for event in events]
        if self._custom is not None:
            for record in records:
                if record.kind is Kind.LLM_END:
                    self._enrich(record)
        kept = redactor.apply(records)
        self._withheld += len(records) - len(kept)
        self._redact_counts = (redactor.dropped, redactor.errors)
        return snapshot.encode_records(kept)

    def _enrich(self, record: Record) -> None:
        """Comet's custom metrics, from the original generations (they stay here)."""
        if not record.degraded and self._custom is not None:
            record.custom = self._custom.custom_for(record)

    def _send_control(self, event: Event) -> None:
        if event.kind is Kind.RESET:
            self._send(Op.RESET, None, 0)
            return
        request: FlushRequest = event.data[0]
        options = {k: v for k, v in request.options.items() if k != "custom_metrics"}
        if request.reset and request.options.get("custom_metrics"):
            self._custom = _custom_rows(request.options["custom_metrics"])
        asset = request.langchain_asset
        shipped = FlushRequest(
            name=request.name,
            langchain_asset=snapshot_asset(asset) if asset is not None else None,
            finish=request.finish,
            reset=request.reset,
            options=options,
        )
        self._send(Op.FLUSH, None, 0, request=(request, shipped))
        if request.finish and not request.reset:
            self.finish_request = request  # the one that finishes: later flushes wait for it
            self._finish_sent = True

    def _after_finish(self, request: FlushRequest) -> None:
        """A flush queued behind the finish is answered once the finish is done."""
        finish = self.finish_request

        def answer(_: object) -> None:
            if not request.done.done():
                request.done.set_result(FlushResult(errors=["the tracker was already finished"]))

        if finish is None:
            answer(None)
        else:
            finish.done.add_done_callback(answer)

    def _refuse_after_finish(self, rest: list[Event]) -> None:
        """The session is finished: later events are dropped (counted), later flushes answered."""
        for event in rest:
            if event.kind is Kind.FLUSH:
                self._after_finish(event.data[0])
        late = self.queue.discard(rest) + self.queue.close()
        if late:
            logger.warning(
                "tracker: %d events arrived after flush_tracker(finish=True) and were dropped",
                late,
            )

    def _send(
        self,
        op: Op,
        payload: Any,
        events: int,
        request: tuple[FlushRequest, Any] | None = None,
        hold_since: float | None = None,
    ) -> int:
        seq = next(self._seq)
        if request is not None:
            self._requests[seq] = request[0]
            payload = (seq, request[1])
        data = wire.frame(op, self.key, seq, payload)
        self._retain(seq, data, events)
        # A dead worker: the restart resends the retained frames. Batches of events may wait
        # while this process is busy; anything else sends them at once (workers.outbox).
        self._link.write(data, hold_since=hold_since)
        return seq

    def _retain(self, seq: int, data: bytes, events: int) -> None:
        self._retained.append((seq, data, events))
        self._retained_bytes += len(data)
        self._retained_events += events
        while self._retained_bytes > RESEND_LIMIT_BYTES and len(self._retained) > 1:
            _, old, count = self._retained.popleft()
            self._retained_bytes -= len(old)
            self._retained_events -= count
            self.unprotected += count

    def _release_through(self, seq: int) -> None:
        while self._retained and self._retained[0][0] <= seq:
            _, old, count = self._retained.popleft()
            self._retained_bytes -= len(old)
            self._retained_events -= count

    @property
    def retained_frames(self) -> int:
        """Frames kept for a restart."""
        return len(self._retained)

    def retained(self) -> list[bytes]:
        """The frames a new worker needs, oldest first."""
        return [data for _, data, _ in self._retained]

    def rescuable(self) -> bool:
        """Whether :meth:`rescue_unconfirmed` may spool the resend buffer: there is a spool,
        and as of the worker's last report (or with none) no sink of it had ever opened, so
        nothing reached a backend (the worker reports an open before its first write), and it
        spilled nothing to its overflow spool. What it spooled meanwhile is in the sinks'
        spools, which the rescue does not copy twice."""
        if self.options.spool is None or not self._retained_events:
            return False
        worker = self._state.get("stats")
        if worker is None:
            return True  # it never reported: it never got as far as opening anything
        unopened = set(worker.get("unopened", ()))
        return all(mirror.name in unopened for mirror in self.sinks) and not worker.get("spilled")

    def rescue_unconfirmed(self, deadline: float) -> tuple[int, int, list[Path], str | None]:
        """At exit, the worker killed before it confirmed the finish: the events of the resend
        buffer go to each sink's spool, for the next start (:mod:`workers.rescue`), when
        :meth:`rescuable`. Frames are stored until ``deadline`` (``time.monotonic()``); those
        left are not. Returns the events newly stored, the records the spools took, the
        spools' directories and what stopped it early, if anything.
        """
        root = self.options.spool
        if root is None or not self.rescuable():
            return 0, 0, [], None
        from workers import rescue  # only an exit that lost its worker needs it

        rate = 1.0 if self.options.tail_sampling else self.options.sample_rate
        frames = list(self._retained)
        before = self._sent_events - self._retained_events  # the worker's events before these
        # The spools the worker used (it may have spooled some of these events already).
        spools = dict(self._state.get("spools", {}))
        places = [(mirror.name, spools.get(mirror.name)) for mirror in self.sinks]
        stored = rescue.spool_frames(
            [data for _, data, _ in frames], rate, root, places, self.options.batch_size, deadline
        )
        done = stored.frames_done
        if done:
            self._release_through(frames[done - 1][0])
        # The worker counted what it took (spooled, or dropped): those are not counted again.
        worker = self._state.get("stats", {})
        taken = worker.get("processed", 0) + worker.get("dropped", 0)
        already = max(0, taken - before)
        rescued = max(0, sum(count for _, _, count in frames[:done]) - already)
        self._base["processed"] += rescued
        return rescued, stored.spooled, stored.directories, stored.error

    def note_restart(self, code: int | None) -> None:
        """The worker died: its counters start over with the resent frames."""
        worker = self._state.get("stats", {})
        resent = self._retained_events
        # What it processed and will not get again: no more than the events not resent to the
        # new worker (it may have processed only some of the resent ones, or reported late).
        done = min(worker.get("processed", 0), self._sent_events - resent)
        self._base["processed"] += max(0, done)
        self._base["dropped"] += worker.get("dropped", 0)
        self._state = {}
        self._sent_events = resent  # the new worker gets them again
        self.opened.clear()
        self.worker_restarts += 1
        self._restart_notes.append(
            f"the tracker worker exited (code {code}) and was restarted; the open session was "
            f"rebuilt from {len(self._retained)} resent batches"
            + (
                f" ({self.unprotected} older events could not be resent)"
                if self.unprotected
                else ""
            )
        )

    # -- replies (the link's reader thread) ------------------------------------------------

    def on_state(self, state: dict[str, Any]) -> None:
        """The worker's latest counters."""
        self._state = state
        self.open_errors = state.get("open_errors", {})
        if state.get("opened"):
            self.opened.set()
        for mirror in self.sinks:
            report = state.get("sinks", {}).get(mirror.name)
            if report is not None:
                mirror.update(*report)

    def on_flushed(self, seq: int, result: FlushResult) -> None:
        """A barrier came out of every sink in the worker."""
        request = self._requests.pop(seq, None)
        if request is None:  # a resent barrier, answered before the restart
            return
        stats = self.stats()
        delivered, dropped = self._since_flush
        # The worker's own count holds unless a restart started its counters over.
        if self._restart_notes:
            result.written = max(0, stats["processed"] - delivered - result.spooled - result.lost)
        result.dropped = stats["dropped"] - dropped
        self._since_flush = (stats["processed"], stats["dropped"])
        if self._restart_notes:
            result.errors = [*self._restart_notes, *result.errors]
            self._restart_notes = []
        session_ends = request.finish or request.reset
        if session_ends or (self._safe_at_flush and not result.errors):
            self._release_through(seq)
        if request.finish and not request.reset:
            self.closed = True
            self._link.detach(self)
        if not request.done.done():
            request.done.set_result(result)


def _stores_at_flush(spec: SinkSpec) -> bool:
    """Whether what the sink got is stored once it flushed (not only at its finish)."""
    if spec.name == "jsonl":
        return True
    return spec.kwargs.get("offline") is False
