"""Joining a trace's events at the source, so that any worker can build its rows alone.

With a broker between the application and a pool of tracker workers, any worker may receive any
batch. A run's start and end, a run and its parent, an LLM start and its generations, and a
run's streamed tokens must then reach the same worker, or the run tree, the session tables'
prompt/output pairs and the token aggregates come out wrong. The application's background
thread therefore holds each trace's events (a trace: a root run and every run below it) until
the root run ends, and ships them together. Why here and not by routing: Redis consumer groups
hand an entry to whichever consumer asks, with no key affinity; routing by trace would need one
stream per partition and an assignment of partitions to workers, which Redis does not provide.

Bounded: past ``max_events`` held, or ``max_age`` seconds open, a trace is shipped as it is and
its later events follow as they come (counted in ``split``); a flush ships every open trace the
same way, since its events must be in the stream when it returns.

Events come back in **groups**: a whole trace, or one event that has no trace to wait for. The
transport keeps a group in one stream entry (:func:`pack`); cutting a trace between two entries
would hand its halves to two workers, the very thing joining prevents.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from uuid import UUID

from workers.event import RUN_ENDS, RUN_STARTS, Event

MAX_HELD_EVENTS = 100_000
MAX_TRACE_AGE = 60.0
#: Traces remembered after they were shipped, so that a late event finds its root.
MAX_REMEMBERED_RUNS = 100_000

Group = list[Event]


class TraceJoiner:
    """Holds events per trace and releases whole traces (in the order their roots ended)."""

    def __init__(self, max_events: int = MAX_HELD_EVENTS, max_age: float = MAX_TRACE_AGE) -> None:
        """Hold at most ``max_events`` events, and a trace at most ``max_age`` seconds."""
        self.max_events = max_events
        self.max_age = max_age
        self._root_of: OrderedDict[UUID, UUID] = OrderedDict()  # run -> its trace's root
        self._held: OrderedDict[UUID, tuple[float, list[Event]]] = OrderedDict()
        self._shipped: set[UUID] = set()  # roots shipped early: their events go as they come
        self.held_events = 0
        self.split = 0  # traces shipped before their root ended

    def add(self, event: Event) -> list[Group]:
        """Take one event; returns the groups ready to ship now, in order."""
        run = event.run_id
        if run is None:
            return [[event]]
        root = self._root_of.get(run)
        if root is None:
            parent = event.parent_run_id
            if event.kind in RUN_STARTS:
                root = self._root_of.get(parent, parent) if parent is not None else run
                self._remember(run, root)
            else:  # an event of a run never announced (or long forgotten): nothing to join
                return [[event]]
        if root in self._shipped or (root not in self._held and root != run):
            return [[event]]  # its trace went early, or ended: follow as it comes
        if root not in self._held:
            self._held[root] = (time.monotonic(), [])
        self._held[root][1].append(event)
        self.held_events += 1
        if run == root and event.kind in RUN_ENDS:
            _, events = self._held.pop(root)
            self.held_events -= len(events)
            return [events]
        if self.held_events > self.max_events:
            return [self._release(next(iter(self._held)))]
        return []

    def expired(self) -> list[Group]:
        """The traces open longer than ``max_age`` (shipped as they are)."""
        out: list[Group] = []
        now = time.monotonic()
        while self._held:
            root, (since, _) = next(iter(self._held.items()))
            if now - since < self.max_age:
                break
            out.append(self._release(root))
        return out

    def release_all(self) -> list[Group]:
        """Every held trace (a flush: they must be in the stream when it returns)."""
        return [self._release(root) for root in list(self._held)]

    def _release(self, root: UUID) -> Group:
        _, events = self._held.pop(root)
        self.held_events -= len(events)
        self.split += 1
        self._shipped.add(root)
        if len(self._shipped) > MAX_REMEMBERED_RUNS:
            self._shipped.pop()
        return events

    def _remember(self, run: UUID, root: UUID) -> None:
        self._root_of[run] = root
        if len(self._root_of) > MAX_REMEMBERED_RUNS:
            self._root_of.popitem(last=False)


def pack(groups: list[Group], size: int, limit: int) -> tuple[list[list[Event]], int]:
    """Stream entries from ``groups``, in order, and how many groups had to be cut.

    An entry takes whole groups while it holds at most ``size`` events; a group larger than
    ``size`` is an entry of its own, and only one larger than ``limit`` is cut (into entries
    of ``limit`` events): an entry's encoding is held whole in memory on both sides.
    """
    entries: list[list[Event]] = []
    current: list[Event] = []
    cut = 0
    for group in groups:
        if current and len(current) + len(group) > size:
            entries.append(current)
            current = []
        if len(group) > limit:
            cut += 1
            entries.extend(group[start : start + limit] for start in range(0, len(group), limit))
            continue
        current.extend(group)
    if current:
        entries.append(current)
    return entries, cut
