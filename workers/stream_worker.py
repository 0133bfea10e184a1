"""``tracker worker``: a tracker worker that reads a Redis stream in a consumer group.

Any number of them, on any hosts, share the stream's batches (``XREADGROUP``: each entry goes to
one consumer of the group). Each runs the same :class:`~workers.pipeline.Pipeline` as the local
worker, in **sessions**: a session is one set of sinks (a ClearML Task, a Comet experiment, a
JSON-lines file) that is finished, and its archive written, every ``session_events`` events or
``session_seconds`` seconds, on SIGTERM, and at the end of ``--drain``.

At least once, written once:

- An entry is acknowledged (``XACK``) only when the session holding it has finished and every
  sink wrote it or spooled it: an offline SDK session is on disk only once finished, so a batch
  acknowledged earlier would die with a killed worker.
- While a session is open its entries stay pending; the worker touches them (``XCLAIM ...
  JUSTID``, which resets their idle time) so that live workers do not take each other's.
- A dead worker's pending entries go idle; after ``claim_idle`` seconds a live worker takes them
  (``XAUTOCLAIM``) and writes them into its own session.
- Each entry carries its batch id (``<producer>:<n>``). A finished session marks its batch ids
  done (a key with a week's TTL) in the same transaction as the ``XACK``; a worker skips (and
  acknowledges) an entry whose batch is done, or already in its open session: an entry the
  application sent twice (a lost reply, then the spool's replay) or one claimed back.
  What is left: a worker killed between writing its archive and that transaction leaves its
  entries to be written again by another (a window of milliseconds per session).
- The stream is trimmed (``XTRIM MINID``) only below what every consumer group has
  acknowledged: never unread or pending entries.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workers.flush import FlushRequest, FlushResult
from workers.options import PipelineOptions
from workers.pipeline import Pipeline
from workers.sinks.spec import SinkSpec
from workers.snapshot import decode
from workers.stream_transport import connect

logger = logging.getLogger("tracker.stream_worker")

DONE_TTL_SECONDS = 7 * 24 * 3600
READ_COUNT = 16  # entries per XREADGROUP (each up to batch_size events, or one larger trace)
READ_BLOCK_MS = 500
MAINTAIN_SECONDS = 2.0  # between claims, touches and trims
SESSION_CLOSE_TIMEOUT = 600.0


@dataclass
class Session:
    """One set of sinks and the stream entries it holds (acknowledged when it finishes)."""

    number: int
    pipeline: Pipeline
    started: float = field(default_factory=time.monotonic)
    entries: list[str] = field(default_factory=list)
    batches: set[str] = field(default_factory=set)
    events: int = 0


@dataclass
class WorkerStats:
    """What a worker did (printed by ``tracker worker`` at its end)."""

    entries: int = 0
    events: int = 0
    duplicates: int = 0
    claimed: int = 0
    sessions: int = 0
    acked: int = 0
    trimmed: int = 0
    archives: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class StreamWorker:
    """Reads ``stream`` in consumer group ``group`` and writes sessions of sinks."""

    def __init__(
        self,
        url: str,
        stream: str,
        make_sinks: Callable[[int], list[SinkSpec]],
        options: PipelineOptions,
        *,
        group: str = "tracker",
        consumer: str | None = None,
        claim_idle: float = 30.0,
        session_events: int = 50_000,
        session_seconds: float = 300.0,
        stop: threading.Event | None = None,
    ) -> None:
        """``make_sinks(n)``: the sinks of session ``n`` (a name per session); ``stop``: an
        event that ends :meth:`run` gracefully (see :meth:`install_signal_handlers`)."""
        self.url = url
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.make_sinks = make_sinks
        self.options = options
        self.claim_idle = claim_idle
        self.session_events = session_events
        self.session_seconds = session_seconds
        self.stats = WorkerStats()
        self._redis = connect(url)
        self._session: Session | None = None
        self._stop = stop if stop is not None else threading.Event()
        self._maintained = 0.0
        self._untaken: list[tuple[Any, dict[Any, Any]]] = []
        # Entries a finished session wrote whose ack failed (Redis away): acked at the next try.
        self._unacked: list[str] = []

    # -- control -------------------------------------------------------------------------------

    def stop(self, *_: Any) -> None:
        """Finish the open session and return from :meth:`run` (SIGTERM, SIGINT)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the worker gracefully (its session is finished first)."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self, *, drain: bool = False, deadline: float | None = None) -> WorkerStats:
        """Read and write until stopped; with ``drain``, until nothing is left for the group."""
        self._ensure_group()
        quiet_since: float | None = None
        while not self._stop.is_set():
            if deadline is not None and time.monotonic() > deadline:
                break
            got = self._read()
            now = time.monotonic()
            if now - self._maintained >= MAINTAIN_SECONDS or (drain and not got):
                got += self._maintain()
                self._maintained = now
            if self._session_due():
                self._close_session()
            if drain:
                if got:
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = now
                elif now - quiet_since > 1.0:
                    self._close_session()  # nothing new: what it holds is written and acked
                    if self._nothing_left():
                        break
        self._close_session()
        self._trim()
        return self.stats

    # -- reading -------------------------------------------------------------------------------

    def _ensure_group(self) -> None:
        import redis

        try:
            self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _read(self) -> int:
        self._ack_duplicates()
        # Entries delivered to us whose taking failed (Redis went away in between) come first:
        # the group will not deliver them again, and claiming them back takes claim_idle.
        entries, self._untaken = self._untaken, []
        if not entries:
            try:
                reply = self._redis.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.stream: ">"},
                    count=READ_COUNT,
                    block=READ_BLOCK_MS,
                )
            except Exception as exc:  # Redis away: try again (the application spools meanwhile)
                logger.warning("tracker worker: reading %s failed: %s", self.url, exc)
                self._stop.wait(1.0)
                return 0
            entries = [entry for _, items in reply or [] for entry in items]
        try:
            self._take(entries)
        except Exception as exc:  # taken again next time (a batch held already is skipped)
            logger.warning(
                "tracker worker: taking %d entries from %s failed: %s", len(entries), self.url, exc
            )
            self._untaken = entries
            self._stop.wait(1.0)
            return 0
        return len(entries)

    def _take(self, entries: list[tuple[Any, dict[Any, Any]]]) -> None:
        """Hold delivered entries in the open session. Raises (Redis away) only before any of
        them is held or counted, so the caller can take them all again."""
        if not entries:
            return
        session = self._open_session()
        batch_ids = [_text(fields.get(b"id", b"")) for _, fields in entries]
        done = self._redis.mget([self._done_key(b) for b in batch_ids]) if batch_ids else []
        duplicates: list[str] = []
        for (entry_id, fields), batch_id, seen in zip(entries, batch_ids, done, strict=True):
            entry = _text(entry_id)
            self.stats.entries += 1
            if seen is not None:  # written by a finished session: only the ack was missing
                duplicates.append(entry)
                continue
            session.entries.append(entry)
            if batch_id in session.batches:  # sent twice, or claimed back: held already
                self.stats.duplicates += 1
                continue
            session.batches.add(batch_id)
            try:
                events = decode(fields[b"b"])
            except Exception as exc:  # never expected: count it, keep the entry for a look
                logger.error("tracker worker: entry %s could not be decoded: %s", entry, exc)
                self.stats.errors.append(f"entry {entry} could not be decoded: {exc}")
                continue
            ingest = session.pipeline.queue.ingest
            for event in events:
                ingest(event)
            session.events += len(events)
            self.stats.events += len(events)
        if duplicates:
            self.stats.duplicates += len(duplicates)
            self._unacked.extend(duplicates)
        self._ack_duplicates()

    def _ack_duplicates(self) -> None:
        """Acknowledge the entries whose batches a finished session wrote; never raises.

        Everything else about them is done, so a failed ack is tried again later rather than
        taking them again (which would count them twice); a worker that never gets to try
        leaves them pending, to be claimed and acked by another.
        """
        if not self._unacked:
            return
        try:
            self._redis.xack(self.stream, self.group, *self._unacked)
        except Exception as exc:
            logger.warning(
                "tracker worker: acknowledging %d entries already written failed on %s: %s; "
                "tried again later",
                len(self._unacked),
                self.url,
                exc,
            )
            return
        self._unacked = []

    def _maintain(self) -> int:
        """Claim dead workers' entries, keep ours fresh, trim what every group acknowledged."""
        claimed = 0
        try:
            self._touch()
            _, entries, *_ = self._redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=int(self.claim_idle * 1000),
                start_id="0-0",
                count=100,
            )
            if entries:
                self.stats.claimed += len(entries)
                logger.warning(
                    "tracker worker: took %d entries a silent worker left pending", len(entries)
                )
                self._take(entries)
                claimed = len(entries)
            self._trim()
        except Exception as exc:
            logger.warning("tracker worker: maintaining %s failed: %s", self.url, exc)
        return claimed

    def _touch(self) -> None:
        """Reset the idle time of the open session's entries: they are not abandoned."""
        session = self._session
        if session is None or not session.entries:
            return
        for start in range(0, len(session.entries), 1000):
            ids = session.entries[start : start + 1000]
            self._redis.xclaim(self.stream, self.group, self.consumer, 0, ids, justid=True)

    def _nothing_left(self) -> bool:
        """Nothing for this worker to write: no entry undelivered, and every pending one held
        by a live worker (its idle time, which live workers reset, under ``claim_idle``).

        Entries a silent worker left go idle and are claimed by :meth:`_maintain` first.
        """
        info = next(
            (g for g in self._redis.xinfo_groups(self.stream) if _text(g["name"]) == self.group),
            None,
        )
        if info is None:
            return True
        # Redis 6.2 has no "lag": an entry after the last delivered one is undelivered.
        last = _text(info["last-delivered-id"])
        if self._redis.xrange(self.stream, min=f"({last}", count=1):
            return False
        if not int(info["pending"]):
            return True
        abandoned = self._redis.xpending_range(
            self.stream,
            self.group,
            min="-",
            max="+",
            count=1,
            idle=int(self.claim_idle * 1000),
        )
        return not abandoned

    # -- sessions ------------------------------------------------------------------------------

    def _open_session(self) -> Session:
        if self._session is None:
            number = self.stats.sessions + 1
            sinks = [spec.build() for spec in self.make_sinks(number)]
            self._session = Session(number, Pipeline(sinks, self.options))
            self.stats.sessions = number
        return self._session

    def _session_due(self) -> bool:
        session = self._session
        if session is None or not session.entries:
            return False
        return (
            session.events >= self.session_events
            or time.monotonic() - session.started >= self.session_seconds
        )

    def _close_session(self) -> None:
        """Finish the sinks (archives on disk), then mark the batches done and ack them."""
        session = self._session
        if session is None:
            return
        self._session = None
        result: FlushResult = session.pipeline.flush(
            FlushRequest(name=f"session {session.number}", finish=True), SESSION_CLOSE_TIMEOUT
        )
        self.stats.archives.extend(str(path) for path in result.archives)
        durable = not result.timed_out and result.lost == 0 and not _archive_failed(result)
        if not durable:
            why = "; ".join(result.errors) or "the session did not finish in time"
            self.stats.errors.append(f"session {session.number} not acknowledged: {why}")
            logger.error(
                "tracker worker: session %d is not stored (%s); its %d entries stay pending, "
                "for this or another worker to write again",
                session.number,
                why,
                len(session.entries),
            )
            return
        self._acknowledge(session)

    def _acknowledge(self, session: Session) -> None:
        """Mark the session's batches done and ack its entries, in one transaction.

        The archive is written by now: while Redis is away, keep trying (a stopping worker
        tries for a few seconds, then leaves them pending: written again by another worker).
        """
        attempts = 0
        while True:
            try:
                with self._redis.pipeline(transaction=True) as tx:
                    for batch_id in session.batches:
                        tx.set(self._done_key(batch_id), b"1", ex=DONE_TTL_SECONDS)
                    for start in range(0, len(session.entries), 1000):
                        tx.xack(self.stream, self.group, *session.entries[start : start + 1000])
                    tx.execute()
                self.stats.acked += len(session.entries)
                return
            except Exception as exc:
                attempts += 1
                logger.warning(
                    "tracker worker: acknowledging session %d failed: %s", session.number, exc
                )
                if self._stop.is_set() and attempts >= 5:
                    self.stats.errors.append(
                        f"session {session.number}: written, not acknowledged ({exc})"
                    )
                    return
                time.sleep(1.0)

    def _done_key(self, batch_id: str) -> str:
        return f"tracker:done:{self.stream}:{self.group}:{batch_id}"

    # -- trimming ------------------------------------------------------------------------------

    def _trim(self) -> None:
        """Drop the entries every consumer group has acknowledged (never unread ones)."""
        try:
            floor: tuple[int, int] | None = None
            for group in self._redis.xinfo_groups(self.stream):
                name = _text(group["name"])
                if int(group["pending"]):
                    oldest = self._redis.xpending(self.stream, name)["min"]
                    mark = _entry_id(_text(oldest))
                else:
                    ms, seq = _entry_id(_text(group["last-delivered-id"]))
                    mark = (ms, seq + 1)
                floor = mark if floor is None else min(floor, mark)
            if floor is not None and floor > (0, 0):
                self.stats.trimmed += int(
                    self._redis.xtrim(
                        self.stream, minid=f"{floor[0]}-{floor[1]}", approximate=False
                    )
                )
        except Exception as exc:
            logger.debug("tracker worker: trimming %s failed: %s", self.stream, exc)


def _archive_failed(result: FlushResult) -> bool:
    return any("the flush failed" in error for error in result.errors)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)
