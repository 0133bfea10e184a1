"""Tail sampling: a trace is kept or dropped when its root run ends, knowing how it went.

Head sampling (``sample_rate`` alone, :mod:`workers.sampling`) decides when a trace starts, so
it drops failed and slow traces as often as any. With ``keep_errors`` or ``keep_slower_than``
the tracker holds each trace's records (in the tracker worker, converted, never in the
application's process) until its root run ends, then keeps the whole trace if a run in it
failed, if the root took longer than ``keep_slower_than`` seconds, or if it is in the
``sample_rate`` share (the same deterministic hash as head sampling); otherwise it drops it,
counted. The held records are bounded (``trace_buffer`` events): past it, and at the finish,
the oldest open traces follow the ``open_traces`` policy: ``"keep"`` (delivered as they are,
counted) or ``"drop"`` (counted).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from uuid import UUID

from workers.event import RUN_ENDS, RUN_ERRORS, RUN_STARTS
from workers.records import Record
from workers.sampling import keeps

OPEN_TRACE_POLICIES = ("keep", "drop")
MAX_REMEMBERED_RUNS = 100_000


@dataclass
class _Trace:
    records: list[Record] = field(default_factory=list)
    start: float | None = None
    failed: bool = False


class TailSampler:
    """Holds records per trace; releases the kept traces' records when their roots end."""

    def __init__(
        self,
        rate: float,
        *,
        keep_errors: bool,
        keep_slower_than: float | None,
        buffer: int,
        open_traces: str = "keep",
    ) -> None:
        """Keep failed traces (``keep_errors``), slow ones, and a ``rate`` share of the rest."""
        self.rate = rate
        self.keep_errors = keep_errors
        self.keep_slower_than = keep_slower_than
        self.buffer = buffer
        self.open_traces = open_traces
        self._root_of: OrderedDict[UUID, UUID] = OrderedDict()
        self._open: OrderedDict[UUID, _Trace] = OrderedDict()
        self.held = 0
        #: Traces kept, per reason ("error", "slow", "sampled", "open"), and dropped.
        self.kept: Counter[str] = Counter()
        self.sampled_out = 0  # traces dropped by the decision
        self.dropped_open = 0  # open traces dropped by the ``open_traces="drop"`` policy
        self.dropped_records = 0  # records of dropped traces

    def take(self, record: Record) -> list[Record]:
        """One record in queue order; returns the records to deliver now (maybe none)."""
        run = record.run_id
        if run is None:
            return [record]
        kind = record.kind
        root = self._root_of.get(run)
        if root is None:
            if kind not in RUN_STARTS:
                return [record]  # a run never announced: no trace to hold it in
            parent = record.event.parent_run_id
            root = self._root_of.get(parent, parent) if parent is not None else run
            self._root_of[run] = root
            if len(self._root_of) > MAX_REMEMBERED_RUNS:
                self._root_of.popitem(last=False)
        trace = self._open.get(root)
        if trace is None:
            if root != run or kind not in RUN_STARTS:
                return [record]  # its trace was decided already (a late event): as it comes
            trace = self._open[root] = _Trace(start=record.event.time)
        trace.records.append(record)
        trace.failed = trace.failed or kind in RUN_ERRORS
        self.held += 1
        if run == root and kind in RUN_ENDS:
            return self._decide(root, record.event.time)
        if self.held > self.buffer:
            return self._overflow()
        return []

    def release_all(self) -> list[Record]:
        """Every open trace, by the ``open_traces`` policy (the pipeline finishes)."""
        out: list[Record] = []
        while self._open:
            out.extend(self._release_open(next(iter(self._open))))
        return out

    def stats(self) -> dict[str, int]:
        """Traces kept per reason, sampled out, open traces dropped, records held now."""
        return {
            "kept_error": self.kept["error"],
            "kept_slow": self.kept["slow"],
            "kept_sampled": self.kept["sampled"],
            "kept_open": self.kept["open"],
            "sampled_out": self.sampled_out,
            "dropped_open": self.dropped_open,
            "held": self.held,
        }

    def _decide(self, root: UUID, end: float) -> list[Record]:
        trace = self._open.pop(root)
        self.held -= len(trace.records)
        slow = (
            self.keep_slower_than is not None
            and trace.start is not None
            and end - trace.start > self.keep_slower_than
        )
        if self.keep_errors and trace.failed:
            self.kept["error"] += 1
        elif slow:
            self.kept["slow"] += 1
        elif keeps(root, self.rate):
            self.kept["sampled"] += 1
        else:
            self.sampled_out += 1
            self.dropped_records += len(trace.records)
            return []
        return trace.records

    def _overflow(self) -> list[Record]:
        out: list[Record] = []
        while self.held > self.buffer and self._open:
            out.extend(self._release_open(next(iter(self._open))))
        return out

    def _release_open(self, root: UUID) -> list[Record]:
        trace = self._open.pop(root)
        self.held -= len(trace.records)
        if self.open_traces == "keep":
            self.kept["open"] += 1
            return trace.records
        self.dropped_open += 1
        self.dropped_records += len(trace.records)
        return []
