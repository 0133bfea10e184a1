"""Load helpers for the flush and memory phases: a controllable sink wrapper, an event mix, RSS.

:class:`ControlledSink` goes around a handler's real sink through the handlers' private
``_wrap_sink=`` keyword (the hook the tests use for fault injection). It can pause writes, slow
them to a given rate, and it times the real sink's own flush, so a phase can tell the tracker's
share of a flush from the backend's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import psutil

from workers.counters import Counters
from workers.flush import FlushRequest
from workers.records import Record
from workers.sinks.base import Sink

MB = 1024 * 1024


class ControlledSink(Sink):
    """Delegates to ``inner``; writes can be paused or throttled, flushes are timed.

    ``paused`` and ``rate`` are plain attributes set from the benchmark's thread and read on the
    runtime loop: a stale read only delays the change by one poll, which is harmless here.
    """

    def __init__(self, inner: Sink) -> None:
        """Wrap ``inner`` (the handler's real sink, a RemoteSink by default)."""
        self.inner = inner
        self.name = inner.name
        self.needs_complexity = inner.needs_complexity
        self.needs_pages = inner.needs_pages
        #: While True, ``write`` waits (the pipeline stops taking batches; events stay queued).
        self.paused = False
        #: Events per second a write may go at (sleeps ``len(records) / rate`` first); None: free.
        self.rate: float | None = None
        #: Seconds each ``inner.flush`` took (the backend's own flush, seen from the pipeline).
        self.flush_seconds: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def counters(self) -> Counters:
        """The real sink's counters."""
        return self.inner.counters

    @property
    def archive_path(self) -> Any:  # type: ignore[override]
        """The real sink's archive."""
        return self.inner.archive_path

    @archive_path.setter
    def archive_path(self, value: Any) -> None:
        self.inner.archive_path = value

    @property
    def pid(self) -> int | None:
        """The sink process's id, when the real sink runs in a child process."""
        process = getattr(self.inner, "_process", None)
        return getattr(process, "pid", None)

    async def open(self) -> None:
        """Open the real sink (with the renderer the pipeline gave this wrapper)."""
        self.inner.render_sentences = self.render_sentences
        await self.inner.open()

    async def write(self, records: list[Record]) -> None:
        """Wait while paused, sleep per the rate, then write."""
        while self.paused:
            await anyio.sleep(0.005)
        rate = self.rate
        if rate:
            await anyio.sleep(len(records) / rate)
        await self.inner.write(records)

    async def flush(self, request: FlushRequest) -> None:
        """Flush the real sink and record how long it took."""
        started = time.perf_counter()
        try:
            await self.inner.flush(request)
        finally:
            self.flush_seconds.append(time.perf_counter() - started)

    async def reset_counters(self) -> None:
        """Reset the real sink's counters."""
        await self.inner.reset_counters()

    async def close(self) -> None:
        """Close the real sink."""
        await self.inner.close()


@dataclass
class Wrappers:
    """Collects the :class:`ControlledSink` of each handler built with :meth:`wrap`."""

    made: list[ControlledSink] = field(default_factory=list)

    def wrap(self, sink: Sink) -> Sink:
        """The ``_wrap_sink=`` callable."""
        wrapper = ControlledSink(sink)
        self.made.append(wrapper)
        return wrapper


def controlled(handler: Any) -> ControlledSink:
    """The wrapper around ``handler``'s sink (the handler was built with ``Wrappers.wrap``)."""
    sink = handler._sink
    if not isinstance(sink, ControlledSink):
        raise TypeError(f"{type(handler).__name__} was not built with a ControlledSink")
    return sink


class Mix:
    """capacity.py's event mix: on_chain_start, on_llm_new_token, on_tool_end in turn.

    One call of :meth:`emit` sends the next ``n`` events of the mix to every handler given, as
    LangChain does when both handlers are attached to a run.
    """

    def __init__(self) -> None:
        """Fixed run ids and payloads (as a long-lived run would pass them)."""
        self.root, self.llm_run, self.tool_run, self.chain_run = (uuid.uuid4() for _ in range(4))
        self.serialized = {
            "lc": 1,
            "type": "not_implemented",
            "id": ["RunnableSequence"],
            "name": "Seq",
        }
        self.inputs = {"question": "Why does water boil sooner in the mountains?"}
        self.sent = 0

    def emit(self, handlers: Sequence[Any], n: int) -> None:
        """Send ``n`` events to each of ``handlers`` (continuing the mix where it stopped)."""
        tags: list[str] = []
        root, llm_run, tool_run, chain_run = self.root, self.llm_run, self.tool_run, self.chain_run
        serialized, inputs = self.serialized, self.inputs
        for i in range(self.sent, self.sent + n):
            step = i % 3
            for handler in handlers:
                if step == 0:
                    handler.on_chain_start(
                        serialized,
                        inputs,
                        run_id=chain_run,
                        parent_run_id=root,
                        tags=tags,
                        metadata={},
                        name="RunnableSequence",
                    )
                elif step == 1:
                    handler.on_llm_new_token(
                        " water", run_id=llm_run, parent_run_id=root, tags=tags, chunk=None
                    )
                else:
                    handler.on_tool_end(
                        "4", run_id=tool_run, parent_run_id=root, tags=tags, name="calculator"
                    )
        self.sent += n


def rss(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (this process by default), in bytes; 0 if it is gone."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def tree_rss(pid: int | None) -> int:
    """RSS of ``pid`` plus its descendants (a sink process and its metric workers)."""
    if pid is None:
        return 0
    try:
        process = psutil.Process(pid)
        total = int(process.memory_info().rss)
        for child in process.children(recursive=True):
            try:
                total += int(child.memory_info().rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def trim() -> bool:
    """Collect garbage and ask glibc to give free heap pages back to the OS (``malloc_trim``).

    Comparing RSS before and after tells memory still referenced (a leak, or a cache) from memory
    merely kept by the allocator. Returns False where glibc is not available.
    """
    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


@dataclass
class Sample:
    """One RSS reading: seconds since the sampler started, parent bytes, bytes per child tree."""

    t: float
    parent: int
    children: dict[str, int]


class RssSampler:
    """Samples this process's RSS and named child process trees every ``interval`` seconds.

    ``mark(label)`` notes the time of a milestone so :meth:`peak` can be asked between marks.
    """

    def __init__(self, children: dict[str, int | None], interval: float = 0.5) -> None:
        """``children``: label → pid of a sink process (None: not a child process)."""
        self.children = {name: pid for name, pid in children.items() if pid is not None}
        self.interval = interval
        self.samples: list[Sample] = []
        self.marks: dict[str, float] = {}
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def now(self) -> float:
        """Seconds since the sampler started."""
        return time.perf_counter() - self._started

    def take(self) -> Sample:
        """Read every RSS now (also recorded)."""
        sample = Sample(
            self.now(),
            rss(),
            {name: tree_rss(pid) for name, pid in self.children.items()},
        )
        self.samples.append(sample)
        return sample

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.take()
            self._stop.wait(self.interval)

    def mark(self, label: str) -> float:
        """Remember now as ``label``; returns the time."""
        self.marks[label] = self.now()
        return self.marks[label]

    def between(self, start: str, end: str | None = None) -> list[Sample]:
        """Samples from mark ``start`` to mark ``end`` (or to now)."""
        t0 = self.marks[start]
        t1 = self.marks[end] if end is not None else float("inf")
        return [s for s in list(self.samples) if t0 <= s.t <= t1]

    @staticmethod
    def peak(samples: Sequence[Sample], who: str = "parent") -> int:
        """The largest RSS among ``samples`` for ``who`` ("parent" or a child label)."""
        values = [s.parent if who == "parent" else s.children.get(who, 0) for s in samples]
        return max(values, default=0)


def settle(seconds: float, sampler: RssSampler, who: str = "parent") -> int:
    """Median RSS of ``who`` over ``seconds`` of extra readings (a steadier level than one)."""
    values: list[int] = []
    deadline = time.perf_counter() + seconds
    while True:
        sample = sampler.take()
        values.append(sample.parent if who == "parent" else sample.children.get(who, 0))
        if time.perf_counter() >= deadline:
            break
        time.sleep(0.1)
    values.sort()
    return values[len(values) // 2]


def wait_until(condition: Callable[[], bool], timeout: float, poll: float = 0.005) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; returns whether it held."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            return False
        time.sleep(poll)
    return True


def fmt_mb(n: float) -> str:
    """Bytes as ``123.4 MB`` (MiB)."""
    return f"{n / MB:.1f} MB"
