"""The application's side of a broker transport: batches to a Redis stream, for any worker.

``TrackerCallbackHandler(transport="redis://host:6379/0", stream="langchain")`` (or
``TRACKER_TRANSPORT``) keeps the hot path as it is (one append to the bounded queue); one
background thread per handler then takes batches and:

- counts the seed counters here, in queue order, and stamps them on each event, since no single
  worker sees every event (:func:`workers.counters.source_or_replayed`);
- joins each trace's events (:mod:`workers.traces`), so that the worker that gets a trace can
  build its run tree, session pairs and token aggregates alone; an entry holds whole traces
  (up to ``batch_size`` events, or one larger trace), never a part of one;
- encodes them as the pipe transport does (:mod:`workers.snapshot`) and ``XADD``s them as
  entries of whole traces, each with a batch id (``<producer>:<n>``) the workers suppress
  duplicates by.

If Redis is unreachable or slow (a 2 s socket timeout), batches go to a local durable spool
(``offline_dir/spool/stream``, SQLite) and every later batch follows them there, so that order
holds; the thread retries every second and replays the spool, oldest first, before anything new.
Nothing of the sinks runs in this process: ``tracker worker`` processes, on any host, read the
stream. A flush returns once the events before it are in the stream (``FlushResult.streamed``)
or in the spool (``spooled``), and says which.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import weakref
from typing import Any

from workers import snapshot
from workers.counters import Counters
from workers.event import Event, Kind
from workers.flush import FlushRequest, FlushResult, FlushWaiting
from workers.options import PipelineOptions
from workers.queue import DropWarner, EventQueue
from workers.records import COUNTERS_KEY, convert
from workers.redact import RedactHook, Redactor
from workers.runtime import get_runtime, restart_in_forked_children
from workers.sinks.spec import SinkSpec
from workers.spool import Spool, SpoolError, open_spool
from workers.traces import Group, TraceJoiner, pack

logger = logging.getLogger("tracker.stream")

#: Seconds a Redis call may take before the batch goes to the spool instead.
REDIS_TIMEOUT = 2.0
#: Seconds between attempts to reach Redis again while batches wait in the spool.
RETRY_SECONDS = 1.0
#: Environment variable naming the deployment, carried with every batch (README: where runs land).
DEPLOYMENT_ENV = "TRACKER_DEPLOYMENT"
#: The format of a stream entry (fields b, n, id, producer, host, pid, deployment, v).
ENTRY_VERSION = "1"
#: Events in one entry past which a single trace is cut between entries (and counted).
MAX_ENTRY_EVENTS = 10_000


def connect(url: str) -> Any:
    """A redis-py client for ``url`` with the tracker's timeouts (imported only when used)."""
    import redis

    return redis.Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        health_check_interval=0,
    )


class StreamMirror:
    """What the seed classes read of their sink in this mode: the counters counted here."""

    def __init__(self, spec: SinkSpec, counters: Counters) -> None:
        """Mirror ``spec``; its counters are the source's."""
        self.spec = spec
        self.name = spec.name
        self.needs_complexity = spec.needs_complexity
        self.needs_pages = spec.needs_pages
        self.counters = counters
        self.archive_path = None  # the workers write the archives
        self.inner = self


class StreamPipeline(FlushWaiting):
    """A handler's queue, shipped to a Redis stream by a thread of its own."""

    def __init__(
        self, specs: list[SinkSpec], options: PipelineOptions, *, redact: RedactHook | None = None
    ) -> None:
        """Create the queue and start the shipping thread (it connects on first use)."""
        assert options.transport is not None
        self.options = options
        self.url = options.transport
        self.stream = options.stream
        self.counters = Counters()
        self.sinks = [StreamMirror(spec, self.counters) for spec in specs]
        self.queue = EventQueue.for_options(options, self.wake)
        self._redactor = Redactor(redact) if redact is not None else None
        self._drops = DropWarner(self.queue, logger)
        self._joiner = TraceJoiner()
        self.producer = uuid.uuid4().hex[:16]
        self._identity = {
            "producer": self.producer,
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "deployment": os.environ.get(DEPLOYMENT_ENV, ""),
            "v": ENTRY_VERSION,
        }
        self._batches = 0
        self.traces_cut = 0  # traces larger than MAX_ENTRY_EVENTS, cut between entries
        self._client: Any = None
        self._spool: Spool | None = None
        self._spool_root = options.spool
        self._retry_at = 0.0
        self.last_error: str | None = None
        self.streamed = 0  # events added to the stream
        self.spooled = 0  # events that went to the local spool
        self.replayed = 0  # of those, added to the stream later
        self.lost = 0  # events neither the stream nor a spool took
        self._withheld = 0
        self.closed = False
        self._since_flush = (0, 0)
        self._at_flush = (0, 0)  # (streamed, lost) at the last flush
        self.opened = threading.Event()
        self.opened.set()
        self.open_errors: dict[str, str] = {}
        self._wake_event = threading.Event()
        self._lock = threading.Lock()  # one shipper at a time (the thread, or the exit path)
        self._start()
        _PIPELINES.add(self)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tracker-stream", daemon=True)
        self._thread.start()
        get_runtime().register(self)

    def _restart_in_forked_child(self) -> None:
        """After ``fork()`` (gunicorn ``--preload``): the child ships its own events, with a
        producer id, connection, spool and thread of its own."""
        if self.closed:
            return
        self.queue.reset_after_fork()
        self._joiner = TraceJoiner()
        self.producer = uuid.uuid4().hex[:16]
        self._identity = {**self._identity, "producer": self.producer, "pid": str(os.getpid())}
        self._batches = 0
        self.traces_cut = 0
        self._client = None
        self._spool = None
        self.last_error = None
        self.streamed = self.spooled = self.replayed = self.lost = self._withheld = 0
        self._since_flush, self._at_flush = (0, 0), (0, 0)
        self._wake_event = threading.Event()
        self._lock = threading.Lock()
        self._start()

    # -- caller side -------------------------------------------------------------------------

    def wake(self) -> None:
        """Ask the thread to ship a batch now (thread-safe, non-blocking)."""
        self._wake_event.set()

    def _destination(self) -> str:
        """The broker (what is not shipped by the exit drain's deadline is spooled)."""
        return self.url

    def stats(self) -> dict[str, Any]:
        """Counters: ``processed`` counts events shipped (stream or spool) or withheld."""
        queue = self.queue
        processed = self.streamed + self.spooled - self.replayed + self.lost + self._withheld
        held = self._joiner.held_events
        return {
            "enqueued": queue.enqueued,
            "processed": processed,
            "dropped": queue.dropped,
            "pending": max(0, queue.enqueued - processed - queue.dropped),
            "queue_depth": queue.depth,
            "queue_size": queue.limit,
            "held_in_traces": held,
            "traces_split": self._joiner.split,
            "traces_cut": self.traces_cut,
            "streamed": self.streamed,
            "spooled": self.spooled,
            "replayed": self.replayed,
            "in_spool": self._spool.pending_events if self._spool is not None else 0,
            "lost": self.lost,
            "backend_down": [f"redis {self.url}"] if self.last_error else [],
            "closed": self.closed,
        }

    # -- the shipping thread -----------------------------------------------------------------

    def _run(self) -> None:
        while not self.closed:
            self._wake_event.wait(self.options.flush_interval)
            self._wake_event.clear()
            try:
                with self._lock:
                    self._ship_queued()
            except Exception:  # a bug here must not stop shipping for good
                logger.exception("tracker: shipping a batch to %s failed", self.url)

    def _ship_queued(self) -> None:
        self._drops.check()
        while not self.closed:
            batch = self.queue.take(self.options.batch_size)
            if not batch:
                batch = self.queue.take_spill(self.options.batch_size)
                if not batch:
                    if self.queue.spilling:
                        self.queue.resume()
                    break
            self._take(batch)
        expired = self._joiner.expired()
        if expired:
            self._send(expired)
        self._replay()

    def _take(self, batch: list[Event]) -> None:
        ready: list[Group] = []
        for index, event in enumerate(batch):
            kind = event.kind
            if kind is Kind.FLUSH:
                ready.extend(self._joiner.release_all())
                self._send(ready)
                ready = []
                self._answer(event.data[0], batch[index + 1 :])
                if self.closed:
                    return
            elif kind is Kind.RESET:
                self.counters.reset()
            else:
                stamped = event._replace(
                    extra={
                        **snapshot.kept_extra(event.extra),
                        COUNTERS_KEY: self.counters.advance(kind),
                    }
                )
                ready.extend(self._joiner.add(stamped))
        self._send(ready)

    def _answer(self, request: FlushRequest, rest: list[Event]) -> None:
        """A flush: everything before it is in the stream or the spool; say which."""
        self._replay()
        in_spool = self._spool.pending_events if self._spool is not None else 0
        streamed, lost_before = self._at_flush
        errors: list[str] = []
        if in_spool:
            errors.append(
                f"redis {self.url}: {in_spool} events wait in the spool at "
                f"{self._spool.directory if self._spool else '?'} because the stream could not "
                f"take them ({self.last_error}); they are added in order when it answers again"
            )
        if self.lost - lost_before:
            errors.append(
                f"redis {self.url}: {self.lost - lost_before} events were lost: the stream "
                f"refused them ({self.last_error}) and there is no spool (spool=False)"
            )
        queue = self.queue
        dropped = self._since_flush[1]
        stats = self.stats()
        result = FlushResult(
            streamed=self.streamed - streamed,
            spooled=in_spool,
            lost=self.lost - lost_before,
            dropped=queue.dropped - dropped,
            errors=errors,
        )
        self._since_flush = (stats["processed"], queue.dropped)
        self._at_flush = (self.streamed, self.lost)
        if request.finish:
            self.closed = True
            late = self.queue.close() + self.queue.discard(rest)
            if late:
                logger.warning(
                    "tracker: %d events arrived after flush_tracker(finish=True) and were dropped",
                    late,
                )
            if self._spool is not None and not in_spool:
                self._spool.close()
            get_runtime().unregister(self)
        if not request.done.done():
            request.done.set_result(result)

    # -- to the stream, or the spool ---------------------------------------------------------

    def _send(self, groups: list[Group]) -> None:
        size = self.options.batch_size
        entries, cut = pack(groups, size, max(size, MAX_ENTRY_EVENTS))
        self.traces_cut += cut
        for events in entries:
            self._send_one(events)

    def _send_one(self, events: list[Event]) -> None:
        if not events:
            return
        withheld = self._withheld
        data = self._encode(events)
        # What goes to the stream: the redact hook's withheld records are counted apart.
        count = len(events) - (self._withheld - withheld)
        if data is None:
            return
        self._batches += 1
        batch_id = f"{self.producer}:{self._batches}"
        if (self._spool is None or not self._spool.pending_batches) and self._xadd(
            batch_id, data, count
        ):
            self.streamed += count
            return
        self._to_spool(batch_id, data, count)

    def _encode(self, events: list[Event]) -> bytes | None:
        if self._redactor is None:
            return snapshot.encode(events)
        records = [convert(event) for event in events]
        kept = self._redactor.apply(records)
        self._withheld += len(records) - len(kept)
        return snapshot.encode_records(kept) if kept else None

    def _xadd(self, batch_id: str, data: bytes, count: int) -> bool:
        """One entry; False when Redis did not take it (the caller spools it)."""
        now = time.monotonic()
        if self.last_error is not None and now < self._retry_at:
            return False
        try:
            if self._client is None:
                self._client = connect(self.url)
            fields = {"b": data, "n": str(count), "id": batch_id, **self._identity}
            self._client.xadd(self.stream, fields)
        except Exception as exc:
            if self.last_error is None:
                logger.warning(
                    "tracker: redis %s does not take batches (%s: %s); spooling them in order "
                    "until it does",
                    self.url,
                    type(exc).__name__,
                    exc,
                )
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._retry_at = now + RETRY_SECONDS
            return False
        if self.last_error is not None:
            logger.warning("tracker: redis %s takes batches again", self.url)
            self.last_error = None
        return True

    def _to_spool(self, batch_id: str, data: bytes, count: int) -> None:
        try:
            if self._spool is None:
                if self._spool_root is None:
                    raise SpoolError("no spool (spool=False)")
                self._spool = open_spool(self._spool_root, "stream")
            self._spool.append([batch_id, data, count], count)
        except SpoolError as exc:
            self.lost += count
            logger.error(
                "tracker: %d events lost: redis %s refused them (%s) and the spool failed: %s",
                count,
                self.url,
                self.last_error,
                exc,
            )
            return
        self.spooled += count

    def _replay(self) -> None:
        """Spooled batches into the stream, oldest first, while Redis takes them."""
        spool = self._spool
        while spool is not None and spool.pending_batches:
            item = spool.peek()
            if item is None:
                return
            position, (batch_id, data, count) = item
            if not self._xadd(batch_id, data, count):
                return
            spool.commit(position, count)
            self.replayed += count
            self.streamed += count


_PIPELINES: weakref.WeakSet[StreamPipeline] = weakref.WeakSet()


restart_in_forked_children(_PIPELINES, "stream transport")
