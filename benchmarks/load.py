"""Load helpers for the flush and memory phases: a controllable sink wrapper, an event mix, RSS.

:class:`ControlledSink` goes around a handler's real sink where that sink runs: in the tracker
worker (``python -m workers.worker``, what users run), built there from a
:class:`~workers.sinks.spec.SinkSpec` (``benchmarks.load.ControlledSink`` with the real sink's
spec as ``inner``), or in this process under :func:`tracker.testing.wrap_sinks` (the debugging
mode). It can pause writes, slow them to a given rate, and it times the real sink's own flush, so
a phase can tell the tracker's share of a flush from the backend's.

The benchmark cannot hold a wrapper that lives in another process, so :class:`LoadControl`
drives it through files in a folder: a ``paused`` file pauses writes while it exists, a ``rate``
file holds events per second, and the wrapper appends one line per flush of its sink to
``flush-<sink name>``: when the barrier reached the sink (``time.monotonic()``, a system-wide
clock on Linux, so comparable across processes) and how long the real flush took.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psutil

from workers.flush import FlushRequest
from workers.records import Record
from workers.sinks.base import Sink
from workers.sinks.spec import SinkSpec
from workers.testing import DelegatingSink

MB = 1024 * 1024


class ControlledSink(DelegatingSink):
    """Delegates to ``inner``; writes can be paused or throttled, flushes are timed.

    ``control``: the :class:`LoadControl` folder. The wrapper looks at it on every write (a
    ``stat`` and a small read: microseconds per batch of up to 512 events) and polls it every
    5 ms while paused.
    """

    def __init__(self, inner: Sink | SinkSpec, *, control: str) -> None:
        """Wrap ``inner`` (built here first when it is a spec: in the worker, the real sink)."""
        super().__init__(inner)
        self.control = control
        self._paused = os.path.join(control, "paused")
        self._rate = os.path.join(control, "rate")
        self._flushes = os.path.join(control, f"flush-{self.inner.name}")

    def fresh(self) -> ControlledSink:
        """A twin around a fresh inner sink (a forked child's)."""
        return ControlledSink(self.inner.fresh(), control=self.control)

    def rate(self) -> float | None:
        """Events per second a write may go at (None: free)."""
        try:
            with open(self._rate, encoding="utf-8") as file:
                return float(file.read().strip() or 0) or None
        except (OSError, ValueError):
            return None

    async def write(self, records: list[Record]) -> None:
        """Wait while paused, sleep per the rate, then write."""
        while os.path.exists(self._paused):
            await anyio.sleep(0.005)
        rate = self.rate()
        if rate:
            await anyio.sleep(len(records) / rate)
        await self.inner.write(records)

    async def flush(self, request: FlushRequest) -> None:
        """Flush the real sink; note when the barrier got here and how long the flush took."""
        reached = time.monotonic()
        try:
            await self.inner.flush(request)
        finally:
            took = time.monotonic() - reached
            with open(self._flushes, "a", encoding="utf-8") as file:
                file.write(f"{reached!r} {took!r}\n")


@dataclass(frozen=True)
class FlushTiming:
    """One flush as the wrapper saw it: when the barrier reached the sink, the real flush's time.

    ``reached`` is ``time.monotonic()`` in the process the sink runs in (system-wide on Linux).
    """

    reached: float
    seconds: float


class LoadControl:
    """This side of the :class:`ControlledSink` wrappers of some handlers: a folder of flags."""

    def __init__(self, folder: Path) -> None:
        """Use (and create) ``folder``; writes start unpaused and unthrottled."""
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.set()

    def set(self, *, paused: bool = False, rate: float | None = None) -> None:
        """Pause or resume every wrapper's writes, and set (or lift, None) their rate."""
        (self.folder / "rate").write_text(repr(float(rate or 0)), encoding="utf-8")
        flag = self.folder / "paused"
        if paused:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def spec(self, spec: SinkSpec) -> SinkSpec:
        """``spec`` wrapped in a :class:`ControlledSink` (built where the sink runs)."""
        return SinkSpec(
            f"{__name__}.ControlledSink",
            {"inner": spec, "control": str(self.folder)},
            spec.name,
            spec.needs_complexity,
            spec.needs_pages,
            spec.in_process,
            spec.custom_metrics,
        )

    def wrap(self, sink: Sink) -> Sink:
        """For :func:`tracker.testing.wrap_sinks`: wrap a sink built in this process."""
        return ControlledSink(sink, control=str(self.folder))

    def flushes(self, sink: str) -> list[FlushTiming]:
        """Every flush of the sink named ``sink`` ("clearml", "comet") so far, in order."""
        try:
            text = (self.folder / f"flush-{sink}").read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [FlushTiming(*map(float, line.split())) for line in text.splitlines() if line]


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


def worker_pid() -> int | None:
    """The process id of this process's tracker worker, while one runs."""
    from workers.link import current_link

    link = current_link()
    return link.worker_pid if link is not None else None


def descendants_rss(pid: int | None) -> list[int]:
    """RSS of each descendant of ``pid`` (the worker's metric processes), in bytes."""
    if pid is None:
        return []
    try:
        children = psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
    sizes = []
    for child in children:
        try:
            sizes.append(int(child.memory_info().rss))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return sizes


def trim() -> bool:
    """Collect garbage and ask glibc to give free heap pages back to the OS (``malloc_trim``).

    Comparing RSS before and after tells memory still referenced (a leak, or a cache) from memory
    merely kept by the allocator. Returns False where glibc is not available. Only this process:
    the worker's allocator is its own.
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


#: What a :class:`Sample` can be asked for (see :meth:`Sample.of`).
WHO = ("parent", "worker", "helpers", "largest helper", "worker tree", "all")


@dataclass(frozen=True)
class Sample:
    """One reading, in bytes: this process, its tracker worker, the worker's descendants.

    ``helpers`` is the sum over the worker's descendants (its metric processes, when it started
    any), ``largest_helper`` the largest of them, ``helper_count`` how many there were.
    """

    t: float
    parent: int
    worker: int
    helpers: int
    largest_helper: int
    helper_count: int

    def of(self, who: str) -> int:
        """One of :data:`WHO`: ``worker tree`` = worker + helpers, ``all`` = parent + tree."""
        if who == "parent":
            return self.parent
        if who == "worker":
            return self.worker
        if who == "helpers":
            return self.helpers
        if who == "largest helper":
            return self.largest_helper
        if who == "worker tree":
            return self.worker + self.helpers
        if who == "all":
            return self.parent + self.worker + self.helpers
        raise ValueError(f"who must be one of {WHO}, got {who!r}")


class RssSampler:
    """Samples the RSS of this process, its tracker worker and the worker's descendants.

    Every ``interval`` seconds, in a thread; the worker is looked up at each reading (a
    restarted worker is followed). ``mark(label)`` notes the time of a milestone so
    :meth:`between` can select the readings from one mark to another.
    """

    def __init__(self, interval: float = 0.5) -> None:
        """Sample every ``interval`` seconds once entered."""
        self.interval = interval
        self.samples: list[Sample] = []
        self.marks: dict[str, float] = {}
        self.helpers_seen = 0
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
        pid = worker_pid()
        helpers = descendants_rss(pid)
        sample = Sample(
            self.now(),
            rss(),
            rss(pid) if pid is not None else 0,
            sum(helpers),
            max(helpers, default=0),
            len(helpers),
        )
        self.helpers_seen = max(self.helpers_seen, len(helpers))
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
        """The largest RSS among ``samples`` for ``who`` (one of :data:`WHO`)."""
        return max((s.of(who) for s in samples), default=0)


def settle(seconds: float, sampler: RssSampler, who: str = "parent") -> int:
    """Median RSS of ``who`` over ``seconds`` of extra readings (a steadier level than one)."""
    return settle_all(seconds, sampler)[who]


def settle_all(seconds: float, sampler: RssSampler) -> dict[str, int]:
    """Median RSS of each of :data:`WHO` over ``seconds`` of extra readings."""
    samples: list[Sample] = []
    deadline = time.perf_counter() + seconds
    while True:
        samples.append(sampler.take())
        if time.perf_counter() >= deadline:
            break
        time.sleep(0.1)
    medians = {}
    for who in WHO:
        values = sorted(s.of(who) for s in samples)
        medians[who] = values[len(values) // 2]
    return medians


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
