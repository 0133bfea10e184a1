"""The application's end of the pipe to its tracker worker: one process, one thread, per process.

Every handler of the application's process shares one :class:`WorkerLink`. It starts the worker
program (``python -m workers.worker``, see there) when the first handler is built, so the
backend sessions open while the application warms up, and it runs the one background thread the
application's process has: it takes batches from the handlers' queues and encodes them
(:mod:`workers.snapshot`). A writer thread puts the frames into the worker's pipe
(:mod:`workers.outbox`), and a third thread reads the worker's replies (counters, flush
results).

Worker death: if the worker exits unexpectedly (SIGKILL, out of memory), the link starts a new
one and sends each handler's plan again, then every frame since that handler's last finished
session (see :class:`~workers.forwarding.ForwardingPipeline`), so the new worker rebuilds the
sessions the dead one was writing. The next flush result says that it happened.

Exit: a drain at interpreter exit sends every handler a finish and waits up to
:data:`EXIT_DRAIN_SECONDS`; then it tells the worker to spool what is left instead of writing it
(replayed by the next process with the same spool), waits :data:`EXIT_GRACE_SECONDS` more, and
kills the worker if it is still there. So a process exits within the drain deadline plus the
grace, whatever a backend does.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import subprocess
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from workers import wire
from workers.busy import BusyMeter
from workers.options import EXIT_DRAIN_ENV, EXIT_DRAIN_SECONDS, hold_while_busy_seconds
from workers.outbox import Outbox
from workers.wire import Op

if TYPE_CHECKING:
    from workers.forwarding import ForwardingPipeline

logger = logging.getLogger("tracker.link")

EXIT_GRACE_SECONDS = 5.0
#: Of that grace, what the application keeps to spool what a worker that took nothing left.
RESCUE_SECONDS = 2.0
#: The rescue stops storing chunks this long before the exit's end (one chunk may still finish).
RESCUE_MARGIN_SECONDS = 0.5
#: Seconds between restarts of a worker that keeps dying (a crash loop must not spin).
RESTART_PAUSE_SECONDS = 1.0
#: How often the background thread looks at quiet queues (a full batch wakes it at once).
POLL_SECONDS = 0.05
#: Bytes of encoded frames waiting for the worker's pipe before the forwarding thread waits too
#: (mostly frames the resend buffer keeps anyway: little memory of its own). Half of it may be
#: held while the process is busy (workers.outbox): 16 MB, ~60,000 LangGraph events, so that a
#: longer hold (TRACKER_HOLD_WHILE_BUSY_SECONDS) is not cut short by bytes: a 2 s burst of 50
#: concurrent agent sessions on two cores is 5.6 MB.
OUTBOX_LIMIT_BYTES = 32 * 1024 * 1024
# ClearML marks the process that ran Task.init; a child inheriting the mark takes itself for a
# sub-process of that Task and gets a stub. The worker is a program of its own.
NOT_INHERITED = ("CLEARML_PROC_MASTER_ID", "TRAINS_PROC_MASTER_ID")


class WorkerLink:
    """Owns the worker process and the thread that feeds it, for every handler of a process."""

    def __init__(self) -> None:
        """Nothing starts until the first handler attaches."""
        self._lock = threading.RLock()  # the pipeline table and which worker is current
        self._pipelines: dict[int, ForwardingPipeline] = {}
        self._finished: dict[int, ForwardingPipeline] = {}  # still get the worker's last counts
        self._keys = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None
        self._wake = threading.Event()
        #: Seconds the handlers' events may wait, while this process is busy, before they are
        #: encoded (here) and before the worker gets them (the outbox): the tracker's work
        #: waits for the application's quiet moments (0: never).
        self.hold_seconds = hold_while_busy_seconds()
        # One meter for both holds: the forwarding thread looks at every poll, so the busy
        # spell's start is known even when no frame waits in the outbox.
        self._meter = BusyMeter()
        self._outbox = Outbox(
            OUTBOX_LIMIT_BYTES, self._broken, hold_seconds=self.hold_seconds, meter=self._meter
        )
        self._thread: threading.Thread | None = None
        self._dead = False
        self._stopping = False
        self._last_restart = 0.0
        self._write_deadline: float | None = None  # set by the exit drain
        self._spawned: list[subprocess.Popen[bytes]] = []  # every worker started here
        self._readers: list[threading.Thread] = []  # their reply readers
        self.restarts = 0
        self.pid = os.getpid()

    # -- handlers --------------------------------------------------------------------------

    def attach(self, pipeline: ForwardingPipeline) -> bool:
        """Register ``pipeline`` and open it in the worker (started now if needed).

        False when this link is stopping (its last handler just finished): the caller takes a
        new one from :func:`attach`. Checked under the lock that ``detach`` takes, so a handler
        built while another finishes never joins a worker on its way out.
        """
        with self._lock:
            if self._stopping:
                return False
            key = next(self._keys)
            self._pipelines[key] = pipeline
            pipeline.key = key
            if self._process is None:
                self._start()
            self._send_open(pipeline)
        return True

    def detach(self, pipeline: ForwardingPipeline) -> None:
        """Forget a finished pipeline; the worker stops when the last one is gone."""
        with self._lock:
            self._pipelines.pop(pipeline.key, None)
            self._finished[pipeline.key] = pipeline
            idle = not self._pipelines
            if idle:  # a handler built from now on gets a new link (get_link)
                self._stopping = True
        if idle:  # not on the reply reader's thread, which must keep reading meanwhile
            threading.Thread(
                target=self._stop_worker,
                args=(EXIT_GRACE_SECONDS,),
                name="tracker-stop",
                daemon=True,  # the exit drain makes sure the worker is gone, whatever this does
            ).start()

    def wake(self) -> None:
        """Have the background thread take batches now (cheap, thread-safe)."""
        self._wake.set()

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id, while it runs."""
        process = self._process
        return process.pid if process is not None else None

    # -- the worker process ----------------------------------------------------------------

    def _start(self) -> None:
        """Start the worker, its reply reader and (once) the forwarding thread; holds the lock."""
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the SDKs' console output shows as the application's
            env=env,
            close_fds=True,
        )
        self._process = process
        self._spawned.append(process)
        self._dead = False
        assert process.stdin is not None
        self._outbox.open(process.stdin)
        reader = threading.Thread(
            target=self._read_replies,
            args=(process,),
            name="tracker-replies",
            daemon=True,
        )
        reader.start()
        self._readers = [r for r in self._readers if r.is_alive()] + [reader]
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(
                target=self._forward, name="tracker-forwarder", daemon=True
            )
            self._thread.start()

    def _send_open(self, pipeline: ForwardingPipeline) -> None:
        self.write(wire.frame(Op.OPEN, pipeline.key, 0, pipeline.plan))

    def write(self, data: bytes, *, urgent: bool = False, hold_since: float | None = None) -> bool:
        """Send one frame to the worker, in order; False when it is gone (a restart will
        resend) or, at exit, when its pipe stayed full past the exit's own deadline.

        ``urgent``: ahead of every frame still waiting for the pipe. ``hold_since``: a batch of
        events recorded since then (``time.monotonic()``), which may wait while this process is
        busy, up to :attr:`hold_seconds` after it (:mod:`workers.outbox`).
        """
        if self._dead:
            return False
        return self._outbox.put(
            data, deadline=self._write_deadline, urgent=urgent, hold_since=hold_since
        )

    @property
    def outbox_bytes(self) -> int:
        """Bytes of frames waiting for the worker's pipe: held while busy, or behind a full pipe."""
        return self._outbox.pending_bytes

    def busy(self) -> bool:
        """Whether this process is busy now (the forwarding thread asks at every poll)."""
        return self._meter.busy()

    def spell_seconds(self) -> float:
        """How long this process has been busy, as of the last :meth:`busy` (0: idle)."""
        started = self._meter.spell_started
        return 0.0 if started is None else time.monotonic() - started

    def saturated(self) -> bool:
        """Whether the application's threads left the GIL no room, as of the last :meth:`busy`."""
        return self._meter.saturated

    def set_busy_share(self, share: float, saturation: float) -> tuple[float, float]:
        """Set the shares of a core that make this process busy and saturated (0: always), in
        a busy spell of its own; returns the previous pair (``tracker.testing.always_busy``)."""
        return self._meter.set_share(share, saturation)

    def set_hold(self, seconds: float) -> None:
        """Change :attr:`hold_seconds` here and in the outbox (``tracker.testing``)."""
        self.hold_seconds = self._outbox.hold_seconds = seconds

    def _broken(self) -> None:
        """The writer thread found the worker's pipe closed: start a new worker."""
        self._dead = True
        self._wake.set()

    def _read_replies(self, process: subprocess.Popen[bytes]) -> None:
        self._meter.count_as_own()
        stream: IO[bytes] | None = process.stdout
        assert stream is not None
        while True:
            try:
                message = wire.read_frame(stream)
            except Exception:
                logger.exception("tracker: unreadable reply from the tracker worker")
                message = None
            if message is None:
                break
            op, key, seq, payload = message
            pipeline = self._pipelines.get(key) or self._finished.get(key)
            if pipeline is None:
                continue
            try:
                if op is Op.STATE:
                    pipeline.on_state(payload)
                elif op is Op.FLUSHED:
                    result, state = payload
                    pipeline.on_state(state)
                    pipeline.on_flushed(seq, result)
            except Exception:
                logger.exception("tracker: a reply of the tracker worker could not be applied")
        process.wait()
        with self._lock:
            if process is self._process and not self._stopping:
                self._dead = True
                self._wake.set()

    def _forward(self) -> None:
        """The application's one background thread: queues → worker, restarts on death."""
        self._meter.count_as_own()
        while not self._stopping:
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            if self._dead and not self._stopping:
                self._restart()
                continue
            busy = True
            while busy and not self._dead:
                busy = False
                for pipeline in list(self._pipelines.values()):
                    try:
                        busy = pipeline.pump() or busy
                    except Exception:  # a bug here must not stop the tracker for good
                        logger.exception("tracker: forwarding a batch failed")

    def _restart(self) -> None:
        with self._lock:
            if self._stopping or not self._pipelines:
                return
            old = self._process
            code = old.poll() if old is not None else None
            if old is not None and code is None:
                old.kill()
                code = old.wait()
            pause = self._last_restart + RESTART_PAUSE_SECONDS - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        with self._lock:
            if self._stopping:
                return
            self._last_restart = time.monotonic()
            self.restarts += 1
            frames = sum(p.retained_frames for p in self._pipelines.values())
            logger.warning(
                "tracker: the tracker worker exited (code %s); starting a new one and resending "
                "%d batches of the open sessions",
                code,
                frames,
            )
            self._start()
            for pipeline in list(self._pipelines.values()):
                pipeline.note_restart(code)
                self._send_open(pipeline)
                for data in pipeline.retained():
                    if not self.write(data):
                        return

    # -- exit ------------------------------------------------------------------------------

    def drain(self, timeout: float | None = None) -> None:
        """Finish every handler within ``timeout``; spool what is left; stop the worker."""
        if os.getpid() != self.pid:
            return
        if timeout is None:
            timeout = EXIT_DRAIN_SECONDS
        with self._lock:
            pipelines = [p for p in self._pipelines.values() if not p.closed]
        if not pipelines:
            self._stop_worker(EXIT_GRACE_SECONDS)
            self._reap(time.monotonic() + EXIT_GRACE_SECONDS)
            return
        requests = [pipeline.submit_finish() for pipeline in pipelines]
        deadline = time.monotonic() + timeout
        end = deadline + EXIT_GRACE_SECONDS  # the whole exit, whatever the worker does
        self._write_deadline = end
        for request in requests:
            with contextlib.suppress(Exception):
                request.done.result(max(0.0, deadline - time.monotonic()))
        late = [p for p, r in zip(pipelines, requests, strict=True) if not r.done.done()]
        if late:
            pending = sum(p.stats()["pending"] for p in late)
            logger.warning(
                "tracker: the exit drain timed out after %.1fs with %d events still on their "
                "way; the tracker worker is told to spool them for the next start",
                timeout,
                pending,
            )
            waiting = [r for r in requests if not r.done.done()]
            # Writes to a worker that reads nothing must not take the rescue's time either.
            self._write_deadline = self._stop_at(late, end)
            self._abandon(late, waiting, self._write_deadline)
        unconfirmed = [p for p, r in zip(pipelines, requests, strict=True) if not r.done.done()]
        stop_at = self._stop_at(unconfirmed, end)
        self._write_deadline = stop_at
        self._stop_worker(max(0.5, stop_at - time.monotonic()))
        self._reap(stop_at)
        for reader in self._readers:  # its last replies, before deciding what it never took
            if reader.is_alive():
                reader.join(max(0.0, stop_at + 0.5 - time.monotonic()))
        self._rescue_unconfirmed(pipelines, requests, end - RESCUE_MARGIN_SECONDS)
        self._report_unconfirmed(pipelines, requests, timeout)

    @staticmethod
    def _stop_at(pipelines: list[ForwardingPipeline], end: float) -> float:
        """When to stop the worker: at the exit's ``end``, or, when it has taken none of these
        pipelines' events yet, early enough for the application to spool what it holds by
        then (:mod:`workers.rescue`)."""
        if pipelines and all(pipeline.rescuable() for pipeline in pipelines):
            return end - RESCUE_SECONDS
        return end

    @staticmethod
    def _rescue_unconfirmed(
        pipelines: list[ForwardingPipeline], requests: list[Any], end: float
    ) -> None:
        """The worker is gone: what it never took goes from our resend buffer to the spools."""
        for pipeline, request in zip(pipelines, requests, strict=True):
            if request.done.done():
                continue
            try:
                rescued, spooled, directories, error = pipeline.rescue_unconfirmed(end)
            except Exception as exc:  # the count that follows says what this leaves
                logger.error("tracker: spooling what the tracker worker left failed: %s", exc)
                continue
            if error is not None:
                logger.error("tracker: spooling what the tracker worker left stopped: %s", error)
            if rescued:
                logger.warning(
                    "tracker: the tracker worker was stopped before it took %d events for %s; "
                    "the application spooled them (%d records) at %s, for the next start with "
                    "that spool to replay",
                    rescued,
                    ", ".join(mirror.name for mirror in pipeline.sinks),
                    spooled,
                    ", ".join(str(directory) for directory in directories),
                )

    @staticmethod
    def _report_unconfirmed(
        pipelines: list[ForwardingPipeline], requests: list[Any], timeout: float
    ) -> None:
        """Say what the worker never confirmed written or spooled: nothing is lost silently.

        The worker confirms a finish once every event before it is written or spooled; one it
        did not confirm by the end of the exit (a worker too slow to start, or stalled) may have
        taken its events with it. The count is the worker's last report, so an upper bound.
        """
        for pipeline, request in zip(pipelines, requests, strict=True):
            if request.done.done():
                continue
            lost = pipeline.stats()["pending"]
            if not lost:
                continue
            logger.error(
                "tracker: up to %d events for %s may be lost: the tracker worker did not "
                "confirm them written or spooled within the exit's %.1fs and %.1fs of grace "
                "(a worker too slow to start or stalled; a longer %s gives it more time)",
                lost,
                ", ".join(mirror.name for mirror in pipeline.sinks),
                timeout,
                EXIT_GRACE_SECONDS,
                EXIT_DRAIN_ENV,
            )

    def _reap(self, end: float) -> None:
        """No worker of ours outlives the application: wait until ``end``, then kill."""
        for process in self._spawned:
            try:
                process.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("tracker: the tracker worker did not stop in time: killed")
                process.kill()
                process.wait()

    def _abandon(
        self, pipelines: list[ForwardingPipeline], requests: list[Any], end: float
    ) -> None:
        """Past the deadline: the worker spools instead of writing; we send it all we have."""
        self.write(wire.frame(Op.ABANDON, 0, 0, None), urgent=True)
        for pipeline in pipelines:
            pipeline.pump_all()
        for request in requests:
            with contextlib.suppress(Exception):
                request.done.result(max(0.0, end - time.monotonic()))

    def _stop_worker(self, grace: float) -> None:
        """Let the worker read what waits for it, close the pipe (the worker finishes and exits);
        kill it if it is still there ``grace`` seconds from now.

        A worker that stopped reading holds our writer thread in a pipe write: it is killed at
        once, which fails that write and frees the writer.
        """
        end = time.monotonic() + grace
        # A restart waiting for room in the outbox holds the lock: past the grace, a kill frees it.
        got = self._lock.acquire(timeout=grace)
        self._stopping = True
        process, self._process = self._process, None
        if got:
            self._lock.release()
        self._wake.set()
        if process is None:
            return
        if not got or not self._outbox.finish(end):
            logger.warning("tracker: the tracker worker stopped reading its pipe: killed")
            process.kill()
            process.wait()
            return
        with contextlib.suppress(Exception):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("tracker: the tracker worker did not stop within %.1fs: killed", grace)
            process.kill()
            process.wait()


_link: WorkerLink | None = None
_link_lock = threading.Lock()


def get_link() -> WorkerLink:
    """The process's link (a new one in a forked child: the parent's worker is not its own)."""
    global _link
    link = _link
    if link is not None and link.pid == os.getpid() and not link._stopping:
        return link
    with _link_lock:
        if _link is None or _link.pid != os.getpid() or _link._stopping:
            _link = WorkerLink()
        return _link


def attach(pipeline: ForwardingPipeline) -> WorkerLink:
    """Attach ``pipeline`` to the process's link (a new one if the current one is stopping)."""
    while True:
        link = get_link()
        if link.attach(pipeline):
            return link


def current_link() -> WorkerLink | None:
    """The process's link if one was started here (for diagnostics and tests)."""
    link = _link
    return link if link is not None and link.pid == os.getpid() else None


def _drain_at_exit() -> None:
    link = current_link()
    if link is not None:
        try:
            link.drain()
        except Exception:
            logger.exception("tracker: the exit drain failed")


def _after_fork_in_child() -> None:
    global _link
    parent, _link = _link, None
    if parent is None:
        return
    for pipeline in list(parent._pipelines.values()):
        try:
            pipeline.restart_in_forked_child()
        except Exception:  # the child must start even if its tracking cannot
            logger.exception("tracker: could not restart a pipeline in the forked child")


os.register_at_fork(after_in_child=_after_fork_in_child)

try:  # before the interpreter joins threads, as workers.runtime explains
    threading._register_atexit(_drain_at_exit)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover
    import atexit

    atexit.register(_drain_at_exit)
