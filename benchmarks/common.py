"""What every benchmark phase shares: environment, sizes, statistics, tables, progress lines.

A phase runs in a child process of :mod:`benchmarks.run` (ClearML allows one live Task per process,
and each phase needs its own handlers) and hands back :class:`Table` objects as JSON.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The repository: the tracker worker must import ``benchmarks.load`` (the phases' sink wrapper).
ROOT = Path(__file__).resolve().parent.parent


def prepare_environment(tmp: Path) -> None:
    """Offline SDKs with their caches under ``tmp``; call before anything imports an SDK.

    Also puts the repository on ``PYTHONPATH``: the tracker worker (``python -m
    workers.worker``, started with this environment) builds the phases' sink wrapper
    (``benchmarks.load.ControlledSink``) by import path, whatever its working directory.
    """
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, paths)])
    os.environ["COMET_ERROR_TRACKING_ENABLE"] = "false"
    os.environ["CLEARML_CACHE_DIR"] = str(tmp / "clearml-cache")
    for name in ("COMET_API_KEY", "CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY"):
        os.environ.pop(name, None)


def log(message: str) -> None:
    """A progress line on stderr (the parent echoes lines starting with ``bench:``)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sizes:
    """How much work each phase does; ``quick`` is the smoke-test size."""

    # Hot path: rounds x samples x calls per sample, per (handler, callback).
    hot_rounds: int
    hot_samples: int
    hot_batch: int
    # Seeds are slow: calls per round (one call per sample).
    seed_clearml_calls: int
    seed_comet_calls: int
    # Chain overhead: rounds (after one warm-up round) x invocations per variant.
    chain_rounds: int
    chain_invokes: int
    # Pipeline capacity: events enqueued per backend.
    capacity_events: int
    # Flush: timed flushes of an empty queue, events queued before a flush (and its rounds),
    # the small backlog a finish starts from.
    flush_empty: int = 30
    flush_events: int = 10_000
    flush_rounds: int = 3
    finish_backlog: int = 300
    # Memory: queue_size of the handlers, seconds of overload, events without a flush.
    memory_queue: int = 20_000
    memory_seconds: float = 60.0
    memory_events: int = 1_000_000

    @classmethod
    def named(cls, name: str) -> Sizes:
        """``full`` (what ``make bench`` runs) or ``quick``."""
        if name == "quick":
            return cls(
                2,
                20,
                10,
                5,
                1,
                1,
                10,
                600,
                flush_empty=5,
                flush_events=1_000,
                flush_rounds=1,
                finish_backlog=50,
                memory_queue=2_000,
                memory_seconds=3.0,
                memory_events=20_000,
            )
        return cls(10, 100, 10, 40, 4, 5, 100, 30_000)


@dataclass
class Summary:
    """Order statistics of one variant's samples (nanoseconds per unit)."""

    n: int
    median: float
    p99: float
    mean: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """Summarise ``values`` (p99: nearest rank)."""
        if not values:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        ordered = sorted(values)
        rank = max(0, math.ceil(0.99 * len(ordered)) - 1)
        return cls(
            n=len(ordered),
            median=statistics.median(ordered),
            p99=ordered[rank],
            mean=statistics.fmean(ordered),
            max=ordered[-1],
        )


def fmt_ns(ns: float) -> str:
    """A duration for a table: ns, µs, ms or s with three significant digits."""
    if ns is None or math.isnan(ns):
        return "n/a"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if abs(ns) >= scale:
            return f"{_sig(ns / scale)} {unit}"
    return f"{_sig(ns)} ns"


def fmt_ratio(ratio: float) -> str:
    """A ratio for a table: ``1.031x``, ``2.45x``, ``52x``."""
    if ratio is None or math.isnan(ratio):
        return "n/a"
    if ratio < 2:
        return f"{ratio:.3f}x"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x"


def fmt_rate(per_second: float) -> str:
    """Events per second with a thousands separator."""
    if per_second is None or math.isnan(per_second):
        return "n/a"
    return f"{per_second:,.0f}/s"


def _sig(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def met(ok: bool | None) -> str:
    """The "met?" cell."""
    if ok is None:
        return "—"
    return "yes" if ok else "**no**"


@dataclass
class Table:
    """One target's results: a markdown table plus notes, and the raw numbers for tools."""

    id: str
    title: str
    target: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdicts: dict[str, bool] = field(default_factory=dict)
    measured: dict[str, str] = field(default_factory=dict)  # per verdict: the numbers behind it
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, *cells: object) -> None:
        """Append a row (cells converted with ``str``)."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])

    def to_json(self) -> dict[str, Any]:
        """Plain data for the parent process."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Table:
        """Inverse of :meth:`to_json`."""
        return cls(**data)


class Stopwatch:
    """Wall time of a block, in seconds: ``with Stopwatch() as sw: …; sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.seconds = math.nan
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def rotated(items: Sequence[Any], by: int) -> list[Any]:
    """``items`` rotated left by ``by`` (each round starts with a different variant)."""
    if not items:
        return []
    by %= len(items)
    return [*items[by:], *items[:by]]


class GcWatch:
    """Records garbage collections of at least ``min_ms`` milliseconds, in any thread.

    A collection holds the GIL throughout, so one started by a background thread stalls the
    caller too. ``take()`` returns and forgets what was recorded since the last call.
    """

    def __init__(self, min_ms: float = 5.0) -> None:
        self.min_ns = min_ms * 1e6
        self._started = 0
        self._pauses: list[tuple[int, float, str]] = []

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
            return
        elapsed = time.perf_counter_ns() - self._started
        if elapsed >= self.min_ns:
            thread = threading.current_thread().name
            self._pauses.append((info["generation"], elapsed, thread))

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def take(self) -> list[tuple[int, float, str]]:
        """(generation, nanoseconds, thread name) of each long collection since the last call."""
        pauses, self._pauses = self._pauses, []
        return pauses


def describe_pauses(pauses: Sequence[tuple[int, float, str]]) -> str:
    """``3 (max 118 ms; in AnyIO worker thread x2, MainThread x1)``, or ``0``."""
    if not pauses:
        return "0"
    threads: dict[str, int] = {}
    for _, _, thread in pauses:
        name = "tracker-runtime" if thread.startswith("tracker-runtime") else thread
        name = "Comet OfflineStreamer" if name.startswith("OfflineStreamer") else name
        threads[name] = threads.get(name, 0) + 1
    where = ", ".join(f"{name} x{count}" for name, count in threads.items())
    return f"{len(pauses)} (max {fmt_ns(max(p[1] for p in pauses))}; in {where})"
