"""The background runtime: one event loop on a daemon thread per process, shared by all pipelines.

Callers may have no loop (sync chains), one loop, or several loops in several threads; the
pipelines must outlive all of them. So they run on a loop of their own, started lazily through an
anyio blocking portal. Blocking SDK calls go from that loop to anyio worker threads, CPU-heavy
metrics to anyio worker processes.

Idle: when the last task spawned here ends (every pipeline finished), the loop stops, which also
ends anyio's worker threads and kills its metric worker processes; the next handler starts a new
loop. So a finished program leaves no thread or process of the tracker behind.

Exit: anyio's worker threads are not daemons, and the interpreter joins non-daemon threads *before*
``atexit`` hooks run. So the drain-and-stop hook is registered with ``threading._register_atexit``
(the hook ``concurrent.futures`` uses), which runs first, while the SDKs are still alive.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from workers.options import EXIT_DRAIN_SECONDS

logger = logging.getLogger("tracker.runtime")

T = TypeVar("T")


class Drainable(Protocol):
    """What the runtime asks of each pipeline at interpreter exit."""

    def drain_at_exit(self, timeout: float) -> None:
        """Deliver what is queued and close the sinks, within ``timeout`` seconds."""


class Runtime:
    """A process-wide background event loop, started on first use and stopped at exit."""

    def __init__(self) -> None:
        """Create a runtime; nothing starts until :meth:`portal` is first used."""
        self._lock = threading.Lock()
        self._stack: contextlib.ExitStack | None = None
        self._portal: BlockingPortal | None = None
        self._thread_id: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = os.getpid()
        self._pipelines: list[Drainable] = []
        self._active = 0  # tasks spawned on the current loop that have not ended yet
        self._exiting = False

    @property
    def portal(self) -> BlockingPortal:
        """The portal to the background loop, starting it if needed."""
        portal = self._portal
        if portal is not None:
            return portal
        with self._lock:
            return self._start_locked()

    def _start_locked(self) -> BlockingPortal:
        """The running portal, or a new loop thread (caller holds ``self._lock``)."""
        if self._portal is None:
            stack = contextlib.ExitStack()
            portal = stack.enter_context(start_blocking_portal(name="tracker-runtime"))
            self._thread_id = portal.call(threading.get_ident)
            self._loop = portal.call(asyncio.get_running_loop)
            self._stack, self._portal = stack, portal
            logger.debug("runtime started in thread %s", self._thread_id)
        return self._portal

    def in_runtime_thread(self) -> bool:
        """True when called from the runtime's own loop thread (where blocking would deadlock)."""
        return self._thread_id is not None and threading.get_ident() == self._thread_id

    def spawn(self, func: Callable[..., Awaitable[T]], *args: Any) -> Future[T]:
        """Start ``func(*args)`` as a task on the background loop; returns its future.

        The loop stays up while any spawned task runs and stops when the last one ends.
        """
        with self._lock:
            # Counted before the task exists, under the lock the idle stop takes: the loop
            # cannot stop between here and the task's start.
            portal = self._start_locked()
            self._active += 1
        # Outside the lock: start_task_soon waits for the loop, whose tasks take the lock.
        return portal.start_task_soon(self._tracked, portal, func, args)

    async def _tracked(
        self, portal: BlockingPortal, func: Callable[..., Awaitable[T]], args: tuple[Any, ...]
    ) -> T:
        try:
            return await func(*args)
        finally:
            self._task_ended(portal)

    def _task_ended(self, portal: BlockingPortal) -> None:
        """On the loop: the last task gone, detach this loop and stop it from another thread."""
        with self._lock:
            if self._portal is not portal:
                return  # a loop already detached (by shutdown): it is being stopped
            self._active -= 1
            if self._active or self._exiting:
                return
            stack = self._stack
            self._stack, self._portal, self._loop, self._thread_id = None, None, None, None
        if stack is None:
            return
        logger.debug("runtime idle: stopping its loop")
        # Stopping joins the loop thread, so it cannot run on that thread. Not a daemon: an
        # interpreter exiting right now waits for the metric processes to be killed.
        threading.Thread(target=_close_quietly, args=(stack,), name="tracker-runtime-stop").start()

    def call_soon(self, func: Callable[[], object]) -> None:
        """Run a plain callable on the background loop soon; never blocks the calling thread."""
        loop = self._loop
        if loop is None:
            return
        # The portal's blocking calls would wait for the loop; this is one self-pipe write.
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(func)

    def register(self, pipeline: Drainable) -> None:
        """Have ``pipeline`` drained when the interpreter exits."""
        with self._lock:
            self._pipelines.append(pipeline)

    def unregister(self, pipeline: Drainable) -> None:
        """Forget a pipeline that has closed."""
        with self._lock, contextlib.suppress(ValueError):
            self._pipelines.remove(pipeline)

    def shutdown(self, timeout: float = EXIT_DRAIN_SECONDS) -> None:
        """Drain every registered pipeline (bounded by ``timeout`` each) and stop the loop."""
        if os.getpid() != self._pid:
            return  # a forked child does not own the parent's loop thread
        with self._lock:
            self._exiting = True  # the loop is stopped here, not by the idle stop
            pipelines = list(self._pipelines)
        for pipeline in pipelines:
            try:
                pipeline.drain_at_exit(timeout)
            except Exception:
                logger.exception("tracker: draining a pipeline at exit failed")
        with self._lock:
            stack, portal = self._stack, self._portal
            self._stack, self._portal, self._loop, self._thread_id = None, None, None, None
            self._active = 0
            self._exiting = False
        if portal is not None:
            # A pipeline whose drain timed out still runs; stopping without cancelling it would
            # wait for it forever and the interpreter would never exit.
            with contextlib.suppress(Exception):
                portal.call(portal.stop, True)
        if stack is not None:
            _close_quietly(stack)


def _close_quietly(stack: contextlib.ExitStack) -> None:
    """Stop a runtime loop (waits for its thread)."""
    try:
        stack.close()
    except Exception:  # a task that failed while stopping: already logged by the pipeline
        logger.debug("runtime stopped with an error", exc_info=True)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process's runtime (a new one in a forked child: the parent's loop thread is gone)."""
    global _runtime
    runtime = _runtime
    if runtime is not None and runtime._pid == os.getpid():
        return runtime
    with _runtime_lock:
        if _runtime is None or _runtime._pid != os.getpid():
            _runtime = Runtime()
        return _runtime


def restart_in_forked_children(pipelines: Any, what: str) -> None:
    """Have each of ``pipelines`` (a WeakSet) restart in a forked child, whose copy of their
    threads does not run: ``_restart_in_forked_child`` on each, a failure logged, not raised."""

    def after_fork_in_child() -> None:
        for pipeline in list(pipelines):
            try:
                pipeline._restart_in_forked_child()
            except Exception:  # the child must start even if its tracking cannot
                logger.exception("tracker: could not restart a %s in the forked child", what)

    os.register_at_fork(after_in_child=after_fork_in_child)


def _shutdown_at_exit() -> None:
    runtime = _runtime
    if runtime is not None:
        runtime.shutdown()


try:
    threading._register_atexit(_shutdown_at_exit)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover - very old or already-exiting Python
    atexit.register(_shutdown_at_exit)
