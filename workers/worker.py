"""The tracker worker: ``python -m workers.worker``, one per application process.

The application's process only records: its handlers append events to their queues and one
background thread ships them here as snapshots (:mod:`workers.snapshot`) over the worker's
stdin (:mod:`workers.wire`). Here each handler gets a :class:`~workers.pipeline.Pipeline`
(conversion, secret scrubbing, sampling, rows and the run tree, text metrics, visualisations,
sinks with retries and spool), the same pipeline that ``sink_process=False`` runs in the
application's process for debugging.

This is a program of its own, started as ``[sys.executable, "-m", "workers.worker"]``: it imports
only the tracker's code and the libraries it uses, never the user's ``__main__``. It runs at a
lower scheduling priority (``TRACKER_WORKER_NICE``, default 10) so it takes only the CPU the
application leaves over. Metric processes it may start for load (``anyio.to_process``) re-import
this module as ``__mp_main__``; the guard at the bottom keeps them from serving.

Replies go back on the original stdout; the SDKs' console output is sent to stderr at start, so
it cannot corrupt the replies.

When the application's process goes away (its end of the pipe closes), the worker finishes every
session it holds, as an exit drain would, and exits.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from concurrent.futures import Future
from typing import IO, Any

from workers import gc_policy, wire
from workers.flush import FlushRequest, FlushResult
from workers.pipeline import Pipeline
from workers.plan import PipelinePlan
from workers.snapshot import decode
from workers.wire import Op

logger = logging.getLogger("tracker.worker")

#: Environment variable: the worker's niceness increment (0 keeps the application's priority).
NICE_ENV = "TRACKER_WORKER_NICE"
DEFAULT_NICE = 10
#: Seconds between counter updates sent to the application (its ``stats()``).
STATE_INTERVAL = 0.1
#: How long the worker finishes its sessions when its application is gone, at most.
ORPHAN_FINISH_SECONDS = 30.0
#: After serving, the process must be gone this soon: an SDK thread stuck in a call (a backend
#: that never answers) would otherwise hold the interpreter's exit forever.
EXIT_WATCHDOG_SECONDS = 10.0


class Worker:
    """Serves the pipelines of one application process, frame by frame from ``requests``."""

    def __init__(self, requests: IO[bytes], replies: IO[bytes]) -> None:
        """Read requests from ``requests``; write replies (one lock: several threads reply)."""
        self._requests = requests
        self._replies = replies
        # Held while a state is built and sent, so that no older state goes out after a newer.
        self._reply_lock = threading.RLock()
        self.pipelines: dict[int, Pipeline] = {}
        self._sent: dict[int, dict[str, Any]] = {}
        self._undecodable: dict[int, int] = {}  # events counted dropped, per handler
        self._broken: dict[int, str] = {}  # handlers whose pipeline could not be built: why
        self._stop = threading.Event()

    # -- replies ---------------------------------------------------------------------------

    def _reply(self, op: Op, pipeline: int, seq: int, payload: Any) -> None:
        data = wire.frame(op, pipeline, seq, payload)
        with self._reply_lock:
            try:
                self._replies.write(data)
                self._replies.flush()
            except (BrokenPipeError, ValueError, OSError):  # the application is gone
                self._stop.set()

    def state(self, key: int, pipeline: Pipeline | None = None) -> dict[str, Any]:
        """What the application mirrors of pipeline ``key``: stats, counters, archives."""
        pipeline = pipeline if pipeline is not None else self.pipelines[key]
        stats = pipeline.stats()
        stats["dropped"] += self._undecodable.get(key, 0)
        return {
            "stats": stats,
            "opened": pipeline.opened.is_set(),
            "open_errors": dict(pipeline.open_errors),
            # Where each sink spools: a rescue at the application's exit checks these.
            "spools": {
                sink.name: str(sink.spool.directory)
                for sink in pipeline.sinks
                if sink.spool is not None
            },
            "sinks": {
                sink.name: (
                    dict(sink.counters.values),
                    str(sink.archive_path) if sink.archive_path is not None else None,
                )
                for sink in pipeline.sinks
            },
        }

    def _report_states(self) -> None:
        """Send each pipeline's state when it changed (throttled), until stopped."""
        while not self._stop.wait(STATE_INTERVAL):
            self.report_changes()

    def _report_now(self, key: int, pipeline: Pipeline) -> None:
        """Send ``pipeline``'s state at once (from the loop, before its next write)."""
        with self._reply_lock:
            state = self.state(key, pipeline)
            self._sent[key] = state
            self._reply(Op.STATE, key, 0, state)

    def report_changes(self) -> None:
        """One round of state updates (also called before exit)."""
        for key in list(self.pipelines):
            with self._reply_lock:
                try:
                    state = self.state(key)
                except Exception:  # a pipeline being built or torn down: next round
                    continue
                if state != self._sent.get(key):
                    self._sent[key] = state
                    self._reply(Op.STATE, key, 0, state)

    # -- requests --------------------------------------------------------------------------

    def serve(self) -> None:
        """Handle frames until the application closes the pipe or abandons its pipelines."""
        threading.Thread(target=self._report_states, name="tracker-state", daemon=True).start()
        while True:
            try:
                message = wire.read_frame(self._requests)
            except Exception:  # a frame we cannot read: the stream is out of step, stop
                logger.exception("tracker worker: unreadable request; finishing")
                message = None
            if message is None:
                self._finish_all(ORPHAN_FINISH_SECONDS)
                return
            op, key, seq, payload = message
            try:
                if self._handle(op, key, seq, payload):
                    return
            except Exception:
                logger.exception("tracker worker: %s for pipeline %d failed", op.name, key)

    def _handle(self, op: Op, key: int, seq: int, payload: Any) -> bool:
        """One request; True when the worker should exit."""
        if op is Op.OPEN:
            self._open(key, payload)
            return False
        if op is Op.ABANDON:
            for pipeline in self.pipelines.values():
                pipeline.abandon()
            return False
        pipeline = self.pipelines.get(key)
        if pipeline is None:
            self._unserved(op, key, seq, payload)
            return False
        if op is Op.EVENTS:
            count, data = payload
            self._ingest(key, pipeline, count, data)
        elif op is Op.FLUSH:
            request_id, request = payload
            self._flush(key, pipeline, request_id, request)
        elif op is Op.RESET:
            pipeline.reset_counters()
        else:
            logger.error("tracker worker: unexpected request %s", op.name)
        return False

    def _open(self, key: int, plan: PipelinePlan) -> None:
        if key in self.pipelines:
            return
        try:
            pipeline = plan.build()
            for sink in pipeline.sinks:
                # The application learns of an open before any write reaches that backend
                # (an exit rescue relies on it: workers.rescue). Set before this handler's
                # events are read (they follow this frame), so before any write.
                sink.on_opened = lambda key=key, p=pipeline: self._report_now(key, p)
            self.pipelines[key] = pipeline
        except Exception as exc:  # a sink that cannot be built (a missing SDK, bad arguments)
            self._broken[key] = f"{type(exc).__name__}: {exc}"
            logger.error("tracker worker: could not set up a handler: %s", exc)

    def _unserved(self, op: Op, key: int, seq: int, payload: Any) -> None:
        """A request for a handler the worker could not set up: answer, count, never hang."""
        why = self._broken.get(key, "unknown handler")
        if op is Op.EVENTS:
            self._undecodable[key] = self._undecodable.get(key, 0) + payload[0]
            stats = {"processed": 0, "dropped": self._undecodable[key], "closed": False}
            self._reply(Op.STATE, key, 0, {"stats": stats, "open_errors": {"worker": why}})
        elif op is Op.FLUSH:
            request_id = payload[0]
            error = f"the tracker worker could not set up this handler: {why}"
            state = {"stats": {"processed": 0, "dropped": self._undecodable.get(key, 0)}}
            self._reply(Op.FLUSHED, key, request_id, (FlushResult(errors=[error]), state))

    def _ingest(self, key: int, pipeline: Pipeline, count: int, data: bytes) -> None:
        try:
            events = decode(data)
        except Exception as exc:  # never expected (the sender checks): count, do not crash
            self._undecodable[key] = self._undecodable.get(key, 0) + count
            logger.error("tracker worker: %d events could not be decoded: %s", count, exc)
            return
        ingest = pipeline.queue.ingest
        for event in events:
            ingest(event)

    def _flush(self, key: int, pipeline: Pipeline, request_id: int, request: FlushRequest) -> None:
        def answer(done: Future[FlushResult]) -> None:
            try:
                result = done.result()
            except Exception as exc:  # pragma: no cover - the pipeline always sets a result
                result = FlushResult(errors=[f"tracker worker: {exc}"])
            with self._reply_lock:
                state = self.state(key)
                self._reply(Op.FLUSHED, key, request_id, (result, state))
                self._sent[key] = state

        request.done.add_done_callback(answer)
        pipeline.submit(request)

    def _finish_all(self, timeout: float) -> None:
        """The application is gone: finish every session (bounded), report, and return."""
        deadline = time.monotonic() + timeout
        open_pipelines = [p for p in self.pipelines.values() if not p.closed]
        if open_pipelines:
            logger.warning(
                "tracker worker: the application closed its pipe; finishing %d session(s)",
                len(open_pipelines),
            )
        for pipeline in open_pipelines:
            pipeline.drain_at_exit(max(0.1, deadline - time.monotonic()))
        self.report_changes()


def _lower_priority() -> None:
    try:
        increment = int(os.environ.get(NICE_ENV, DEFAULT_NICE))
    except ValueError:
        increment = DEFAULT_NICE
    if increment > 0:
        try:
            os.nice(increment)
        except OSError:  # not permitted here: run at the application's priority
            logger.debug("tracker worker: could not lower its priority", exc_info=True)


def main() -> None:
    """Serve the application's process on stdin/stdout until it closes the pipe."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # SDK console output goes to stderr, never into the reply pipe
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _lower_priority()
    gc_policy.tune()
    worker = Worker(sys.stdin.buffer, replies)
    try:
        worker.serve()
    finally:
        watchdog = threading.Timer(EXIT_WATCHDOG_SECONDS, os._exit, (3,))
        watchdog.daemon = True
        watchdog.start()
        from workers.runtime import get_runtime

        get_runtime().shutdown(timeout=1.0)
        worker.report_changes()


# Guarded: the metric processes this worker may start re-import this module as __mp_main__.
if __name__ == "__main__":
    main()
