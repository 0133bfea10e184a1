"""A bounded, thread-safe event queue with exact counters and no locks on the producer side.

Producers are LangChain callbacks on any thread (the caller's loop, LangChain's thread pool, sync
chains in user threads); there is one consumer, the pipeline. ``collections.deque`` appends,
extends and pops are atomic under the GIL, and ``next()`` on an ``itertools.count`` is atomic too,
so a put is a few attribute loads, one ``next``, a length check and an extend: no lock, no wait,
no syscall. (The consumer's takes and ``drop_oldest``'s removals, which pop a record slot by
slot, share a lock; ``drop_oldest`` never waits for it.)

A put keeps no object of its own per event: its fields go flat into the queue's deque, one
:data:`WIDTH`-slot record each ``(kind, seq, time, run_id, parent_run_id, name, tags, metadata,
inputs, first, second)``: the payload, the four keyword arguments the records use, and the run
ids as ints. Not LangChain's keyword dict, nor a tuple per event, nor the run's ``UUID`` object:
waiting events are what the application's garbage collector walks and promotes, and each of
those is one more tracked object (issue 15, benchmarks/analysis.md). One ``deque.extend`` of a
tuple is a single C call under the GIL, so records of producers on several threads never
interleave. :meth:`EventQueue.take` gives the consumer :class:`Event` records.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from time import monotonic, sleep, time
from typing import Any
from uuid import UUID, SafeUUID

from workers.event import RUN_STARTS, Event, Kind
from workers.options import DEFAULT_QUEUE_SIZE, OVERFLOW_POLICIES

_new = tuple.__new__
_object_new = object.__new__
_set = object.__setattr__

#: Slots one record takes in the queue's deque (the fields of :func:`_event`'s ``raw``).
WIDTH = 11

#: The kinds whose payload has two parts (a start's serialized form and its input, a custom
#: event's name and data); every other kind has one.
_PAIRS = frozenset({*RUN_STARTS, Kind.CUSTOM_EVENT})

#: In a record's ``first`` slot: the record is a whole :class:`Event` (a control record, an
#: ingested or a returned one), in its ``second`` slot.
_WHOLE = object()


def _uuid(value: int) -> UUID:
    """The ``UUID`` a put kept as its int (``UUID(int=…)`` checks what needs no check: ~0.5 µs
    against ~0.2 µs)."""
    run = _object_new(UUID)
    _set(run, "int", value)
    _set(run, "is_safe", SafeUUID.unknown)
    return run


def _whole(event: Event) -> tuple[Any, ...]:
    """The record that keeps ``event`` as it is (seq and time where a put's record has them)."""
    return (event.kind, event.seq, event.time, None, None, None, None, None, None, _WHOLE, event)


def is_whole(raw: tuple[Any, ...]) -> bool:
    """Whether a record taken by :meth:`EventQueue.take_raw` keeps a whole :class:`Event` (a
    control record, an ingested or a returned one) in its last slot, instead of a put's fields."""
    return raw[9] is _WHOLE


def payload_of(raw: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A put's record's payload and keyword arguments, as its :class:`Event` has them."""
    kind, _, _, _, _, name, tags, metadata, inputs, first, second = raw
    extra: dict[str, Any] = {}  # None stands for absent: the records read both alike
    if name is not None:
        extra["name"] = name
    if tags is not None:
        extra["tags"] = tags
    if metadata is not None:
        extra["metadata"] = metadata
    if inputs is not None:
        extra["inputs"] = inputs
    return ((first, second) if kind in _PAIRS else (first,)), extra


def event_of(raw: tuple[Any, ...]) -> Event:
    """The :class:`Event` a record stands for (consumer side)."""
    if raw[9] is _WHOLE:
        return raw[10]  # type: ignore[no-any-return]
    kind, seq, at, run_id, parent_run_id = raw[0], raw[1], raw[2], raw[3], raw[4]
    data, extra = payload_of(raw)
    if type(run_id) is int:
        run_id = _uuid(run_id)
    if type(parent_run_id) is int:
        parent_run_id = _uuid(parent_run_id)
    return _new(Event, (kind, seq, at, run_id, parent_run_id, data, extra))


def _spilled_events(items: list[Any]) -> list[Event]:
    """Spilled items as events (a put's spills its record; ``ingest`` its event)."""
    return [item if type(item) is Event else event_of(item) for item in items]


def _peek(counter: itertools.count[int]) -> int:
    """The next value an ``itertools.count`` would return, without advancing it."""
    # repr is "count(N)" on every supported Python; reading it takes no lock and moves nothing.
    return int(repr(counter)[6:-1])


class EventQueue:
    """Bounded FIFO of :class:`Event` records.

    Overflow policy, when ``maxsize`` data events are waiting:

    - ``drop_newest`` (default): the new event is dropped and counted; what is queued is older
      and part of runs already being logged;
    - ``drop_oldest``: the oldest queued event makes room (counted as dropped): the freshest
      data wins;
    - ``block``: the producer waits up to ``block_timeout`` seconds for room, then drops the new
      event. This blocks the caller's thread, and with it its event loop: a choice for batch
      jobs that must not lose events, not for servers.
    - ``spill``: the new event, and every one after it until the consumer has caught up, goes
      to :attr:`spill` instead, which the pipeline empties to a disk spool as fast as it can
      convert (not as fast as the backend writes) and replays after what was queued before.
      The producer pays one append, as usual.

    Control records (flush barriers, resets) are never dropped; they take a place in the queue
    like an event (one per flush, so the bound stays what was asked, give or take a few).

    Counters are exact: ``enqueued == delivered + dropped + depth + len(spill) + (spilled events
    not replayed yet)`` at any quiet moment, and ``enqueued == delivered + dropped`` after a flush.
    """

    @classmethod
    def for_options(cls, options: Any, wake: Callable[[], None] | None) -> EventQueue:
        """The queue a handler's :class:`~workers.options.PipelineOptions` describe."""
        return cls(
            options.queue_size,
            wake_at=options.batch_size,
            wake=wake,
            overflow=options.overflow,
            block_timeout=options.block_timeout,
        )

    def __init__(
        self,
        maxsize: int = DEFAULT_QUEUE_SIZE,
        wake_at: int = 1024,
        wake: Callable[[], None] | None = None,
        overflow: str = "drop_newest",
        block_timeout: float = 1.0,
    ) -> None:
        """Create a queue holding at most ``maxsize`` data events.

        ``wake`` is called (from the producing thread) when the depth reaches ``wake_at``, so the
        consumer can start a batch before its timer fires; it must be cheap and thread-safe.
        """
        if maxsize < 1:
            raise ValueError(f"queue_size must be at least 1, got {maxsize!r}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(
                f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {overflow!r}"
            )
        if not block_timeout >= 0:
            raise ValueError(f"block_timeout must be >= 0 seconds, got {block_timeout!r}")
        self.limit = maxsize
        self.maxsize = maxsize  # 0 while closed or spilling: every put takes the overflow path
        self.closed = False
        self.overflow = overflow
        self.block_timeout = block_timeout
        # WIDTH slots a record (the module's docstring); the consumer and drop_oldest's pops
        # take the lock (a put's extend at the other end needs none).
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._dropped = itertools.count()
        self.spill: deque[Any] = deque()
        self._spilled = itertools.count()
        self._wake_at = max(1, min(wake_at, maxsize)) * WIDTH
        self._wake = wake
        self._woken = False  # a wake is on its way since the last take
        self.delivered = 0  # written by the single consumer only
        self._controls = itertools.count()  # control records put (producers: atomic)
        self._controls_taken = 0  # and taken (the single consumer)

    @property
    def maxsize(self) -> int:
        """How many data events may wait now: ``limit``, or 0 while closed or spilling."""
        return self._room // WIDTH

    @maxsize.setter
    def maxsize(self, events: int) -> None:
        self._room = events * WIDTH  # in slots: what the put compares the deque's length with

    def put(
        self,
        kind: Kind,
        run_id: UUID | None,
        parent_run_id: UUID | None,
        extra: dict[str, Any],
        first: Any = None,
        second: Any = None,
    ) -> bool:
        """Record one callback; returns False when it was dropped because the queue is full.

        ``extra``: the callback's keyword arguments (only the four the records use are kept);
        ``first``, ``second``: its payload (``second`` for the kinds in :data:`_PAIRS`).
        """
        items = self._items
        seq = next(self._seq)
        get = extra.get
        tags = get("tags")
        # One tuple literal, laid out flat in the deque and let go, with the keyword dict (see
        # the docstring). Tags as a tuple of strings: the collector stops tracking it at its
        # first pass, where a list (the run's own) would be walked until encoded.
        raw = (
            kind,
            seq,
            time(),
            run_id.int if type(run_id) is UUID else run_id,
            parent_run_id.int if type(parent_run_id) is UUID else parent_run_id,
            get("name"),
            tuple(tags) if type(tags) is list else tags,
            get("metadata"),
            get("inputs"),
            first,
            second,
        )
        if len(items) >= self._room:
            room = self._make_room(raw)
            if room is None:  # spilled
                return True
            if not room:
                next(self._dropped)
                return False
        items.extend(raw)
        # ">=" and a flag, not "==": producers on several threads can step over the exact depth.
        if len(items) >= self._wake_at and not self._woken and self._wake is not None:
            self._woken = True
            self._wake()
        return True

    def _make_room(self, raw: tuple[Any, ...]) -> bool | None:
        """The overflow policy, off the fast path.

        True: append the event to the queue; False: drop it; None: it was spilled.
        """
        items = self._items
        if self.closed:
            return False
        if self.overflow == "spill":
            self.maxsize = 0  # until the consumer caught up, everything spills, in order
            self.spill.append(raw)
            next(self._spilled)
            return None
        if self.overflow == "drop_oldest":
            # Without waiting: a consumer holding the lock is taking records, which makes room
            # (and a collector's finalizer on its thread may be what called us).
            if not self._lock.acquire(blocking=False):
                return True
            try:
                # The oldest data record; a flush barrier keeps its place. Deleting slot by
                # slot is safe: producers only append at the other end.
                for start in range(0, len(items) - WIDTH + 1, WIDTH):
                    if items[start + 1] >= 0:  # seq
                        for _ in range(WIDTH):
                            del items[start]
                        next(self._dropped)
                        return True
                return True  # empty, or only control records are queued
            finally:
                self._lock.release()
        if self.overflow == "block":
            if self._wake is not None:
                self._wake()
            deadline = monotonic() + self.block_timeout
            while len(items) >= self._room:
                if self.closed or monotonic() >= deadline:
                    return False
                sleep(0.0005)
            return True
        return False

    def ingest(self, event: Event) -> bool:
        """Worker side: queue an event recorded in the application (its seq and time kept).

        The application already applied its overflow policy; here a full queue waits for room
        (the pipe behind it holds the application's background thread back, not its callers),
        except with ``spill``, which spills as :meth:`put` does. False: refused (closed).
        """
        items = self._items
        next(self._seq)
        if len(items) >= self._room:
            if self.closed:
                next(self._dropped)
                return False
            if self.overflow == "spill":
                self.maxsize = 0
                self.spill.append(event)
                next(self._spilled)
                return True
            if self._wake is not None:
                self._wake()
            while len(items) >= self._room:
                if self.closed:
                    next(self._dropped)
                    return False
                sleep(0.001)
        items.extend(_whole(event))
        if len(items) >= self._wake_at and not self._woken and self._wake is not None:
            self._woken = True
            self._wake()
        return True

    def push_front(self, events: list[Event]) -> None:
        """Put taken records back at the head of the queue, in their order (consumer side)."""
        self._controls_taken -= sum(1 for event in events if event.seq < 0)
        slots = [slot for event in events for slot in _whole(event)]
        with self._lock:
            self._items.extendleft(reversed(slots))

    def reset_after_fork(self) -> None:
        """Start over empty in a forked child: the parent's queued events stay the parent's."""
        self._items.clear()
        self._lock = threading.Lock()  # another thread of the parent may have held it
        self.spill.clear()
        self._controls = itertools.count()
        self._controls_taken = 0
        self._seq = itertools.count()
        self._dropped = itertools.count()
        self._spilled = itertools.count()
        self.maxsize = self.limit
        self.delivered = 0

    def discard(self, events: list[Event]) -> int:
        """Count the data events among ``events``, already taken, as dropped; returns how many."""
        dropped = 0
        for event in events:
            if event.seq >= 0:
                next(self._dropped)
                dropped += 1
        return dropped

    def take_spill(self, limit: int) -> list[Event]:
        """Pop up to ``limit`` spilled events, oldest first (consumer side)."""
        spill = self.spill
        taken: list[Any] = []
        try:
            for _ in range(min(limit, len(spill))):
                taken.append(spill.popleft())
        except IndexError:  # pragma: no cover - single consumer
            pass
        return _spilled_events(taken)

    def resume(self) -> None:
        """The consumer caught up with the spill: new events go to the queue again."""
        if not self.closed:
            self.maxsize = self.limit

    @property
    def spilling(self) -> bool:
        """True while new events go to :attr:`spill`."""
        return self.maxsize == 0 and not self.closed

    @property
    def spilled(self) -> int:
        """Events that went to the spill so far."""
        return _peek(self._spilled)

    def put_control(self, kind: Kind, data: tuple[Any, ...]) -> None:
        """Append a control record (never dropped, not counted as an event).

        It notes how many events had spilled by then: those come before it.
        """
        next(self._controls)  # before the append: a consumer that sees the record counts it
        self._items.extend(
            _whole(Event(kind, -1, time(), None, None, data, {"spilled": self.spilled}))
        )

    def take(self, limit: int) -> list[Event]:
        """Pop up to ``limit`` records in FIFO order (consumer side)."""
        return [event_of(raw) for raw in self.take_raw(limit)]

    def take_raw(self, limit: int) -> list[tuple[Any, ...]]:
        """Pop up to ``limit`` records in FIFO order as the puts laid them out (consumer side):
        ``(kind, seq, time, run_id, parent_run_id, name, tags, metadata, inputs, first,
        second)``, the run ids as ints; :func:`event_of` makes one an :class:`Event`. For a
        consumer that needs the fields, not the ``Event`` and its ``UUID`` objects (the
        forwarding thread encodes ids as ints: ~3 µs an event less)."""
        items = self._items
        self._woken = False  # the next crossing of the threshold wakes the consumer again
        popleft = items.popleft
        with self._lock:  # whole records: producers append whole ones, drop_oldest waits
            taken = [popleft() for _ in range(min(limit, len(items) // WIDTH) * WIDTH)]
        batch = list(zip(*[iter(taken)] * WIDTH, strict=True))
        if self._controls_taken != _peek(self._controls):
            self._controls_taken += sum(1 for raw in batch if raw[1] < 0)
        return batch

    @property
    def controls(self) -> int:
        """Control records (flush barriers, resets) queued and not taken yet."""
        return _peek(self._controls) - self._controls_taken

    def oldest_time(self) -> float | None:
        """When the record at the head of the queue was put (``time.time()``); None if empty."""
        with self._lock:
            try:
                return self._items[2]  # type: ignore[no-any-return]  # the first record's time
            except IndexError:
                return None

    @property
    def enqueued(self) -> int:
        """Data events offered to the queue so far (accepted or dropped)."""
        return _peek(self._seq)

    @property
    def dropped(self) -> int:
        """Data events refused because the queue was full."""
        return _peek(self._dropped)

    @property
    def depth(self) -> int:
        """Records waiting right now (data and control)."""
        return len(self._items) // WIDTH

    def close(self) -> int:
        """Refuse every later event (counted as dropped) and drop what is still queued.

        Returns how many queued data events were dropped.
        """
        self.closed = True
        self.maxsize = 0  # put() now refuses (and counts) everything
        return self.discard([*self.take(len(self._items)), *self.take_spill(len(self.spill))])


#: Seconds between "queue full" warnings, whatever the drop rate.
DROP_WARNING_INTERVAL = 10.0


class DropWarner:
    """Logs a queue's drops at most once per :data:`DROP_WARNING_INTERVAL`, never per event."""

    def __init__(self, queue: EventQueue, logger: logging.Logger) -> None:
        """Watch ``queue``; warn on ``logger``."""
        self.queue = queue
        self.logger = logger
        self._warned = (0, -DROP_WARNING_INTERVAL)  # (dropped count, monotonic time)

    def check(self) -> None:
        """Warn if events were dropped since the last warning and the interval has passed."""
        dropped = self.queue.dropped
        count, at = self._warned
        if dropped > count and monotonic() - at >= DROP_WARNING_INTERVAL:
            self._warned = (dropped, monotonic())
            self.logger.warning(
                "tracker: the event queue is full (queue_size=%d, overflow=%s): %d events "
                "dropped so far; raise queue_size, or see stats() for where the time goes",
                self.queue.limit,
                self.queue.overflow,
                dropped,
            )
