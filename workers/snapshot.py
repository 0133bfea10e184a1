"""Events → bytes for the worker, in the application's process: as little work as possible.

What the worker needs of an event is its payload and four keyword arguments (name, tags,
metadata, a tool's inputs); the rest (a streamed token's ``chunk``, invocation parameters…) is
left behind. Payloads are pickled as they are: LangChain's own objects pickle in a few µs
(measured in benchmarks/RESULTS.md) and the worker converts them exactly as the in-process
pipeline would, so the logged data does not depend on where it was converted.

Three kinds of event are converted here instead (:func:`workers.records.convert`, which never
raises), and cross as finished records:

- errors that reach here as live exceptions (the handlers read theirs at the callback, see
  :func:`workers.tracebacks.capture`): the traceback is read from the exception (it does not
  pickle);
- events whose payload is an object the worker may not import (the user's classes, closures;
  see :mod:`workers.wire`: one nested inside a payload, such as LangGraph's ``Send`` in a
  chain's outputs, goes as its plain data instead, in the same single pickling pass), or that
  fail to pickle (a hostile ``__reduce__``, a dict changed while it was read);
- LLM ends, when a user hook must see the original generations first (Comet's
  ``custom_metrics``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from workers import wire
from workers.event import RUN_ERRORS, Event, Kind
from workers.queue import event_of, is_whole, payload_of
from workers.records import (
    COUNTERS_KEY,
    KIND_BY_VALUE,
    Record,
    convert,
    preconverted,
    token_of,
)
from workers.tracebacks import CapturedError

#: The keyword arguments the records are built from (workers.records); the rest stays here.
_KEPT = ("name", "tags", "metadata", "inputs", COUNTERS_KEY)
_KEPT_SET = frozenset(_KEPT)
_TOKEN = Kind.LLM_NEW_TOKEN
#: Each kind's value (an Enum's ``.value`` is a Python-level property: ~0.3 µs an event).
_VALUES = {kind: kind.value for kind in Kind}

#: An item is an event tuple (:func:`event_item`) or ``(RECORD, wire record)``.
RECORD = "record"

Enrich = Callable[[Record], None]


def kept_extra(extra: Any) -> dict[str, Any]:
    """The keyword arguments of ``extra`` the records are built from (``extra`` itself if only
    those: the queue's events carry no others, see workers/queue.py)."""
    if type(extra) is not dict:
        return {}
    if extra.keys() <= _KEPT_SET:
        return extra
    return {key: extra[key] for key in _KEPT if key in extra}


def event_item(event: Event) -> tuple[Any, ...]:
    """The plain-tuple form of an event (ids as ints, the kind as its value)."""
    run, parent = event.run_id, event.parent_run_id
    data = event.data
    if event.kind is _TOKEN:
        data = (token_of(event),)
    return (
        _VALUES[event.kind],
        event.seq,
        event.time,
        run.int if run is not None else None,
        parent.int if parent is not None else None,
        data,
        kept_extra(event.extra),
    )


def _captured(data: tuple[Any, ...]) -> bool:
    """Whether an error event's payload is the :class:`CapturedError` its handler read."""
    return len(data) == 1 and type(data[0]) is CapturedError


def _record_item(event: Event, enrich: Enrich | None) -> tuple[str, tuple[Any, ...]]:
    record = convert(event)
    if enrich is not None:
        enrich(record)
    return (RECORD, record.to_wire())


def _plain(kind: Kind, data: tuple[Any, ...], enrich: Enrich | None) -> bool:
    """Whether an event of ``kind`` with payload ``data`` crosses as its plain tuple (else it
    is converted here)."""
    # A payload that is itself the user's object (an LLMResult subclass, …) is converted here
    # whole; one nested deeper goes as its plain data (workers.wire).
    return not (
        (kind in RUN_ERRORS and not _captured(data))
        or (enrich is not None and kind is Kind.LLM_END)
        or not all(map(wire.portable, data))
    )


def _item(event: Event, enrich: Enrich | None) -> tuple[Any, ...]:
    if _plain(event.kind, event.data, enrich):
        return event_item(event)
    return _record_item(event, enrich)


def _raw_item(raw: tuple[Any, ...], enrich: Enrich | None) -> tuple[Any, ...] | None:
    """A put's record (:meth:`workers.queue.EventQueue.take_raw`) as :func:`event_item` would
    make it of its ``Event``, without making that ``Event``; None where the event is converted
    here (:func:`_plain`) or an id is not a ``UUID``'s int (the caller goes through the
    ``Event``)."""
    kind, seq, at, run, parent = raw[0], raw[1], raw[2], raw[3], raw[4]
    if (run is not None and type(run) is not int) or (
        parent is not None and type(parent) is not int
    ):
        return None
    data, extra = payload_of(raw)
    if not _plain(kind, data, enrich):
        return None
    return (_VALUES[kind], seq, at, run, parent, data, extra)


def _dumps(items: list[Any], event_at: Callable[[int], Event]) -> bytes:
    """``items`` pickled; those that cannot cross are converted here (never raises for what
    the events carry). ``event_at(i)``: the event of ``items[i]``."""
    try:
        return wire.dumps(items)
    except Exception:  # some event carries what cannot cross: find it, convert it here
        pass
    for index, item in enumerate(items):
        if item[0] == RECORD:
            continue
        try:
            wire.dumps(item)
        except Exception:
            items[index] = _record_item(event_at(index), None)
    try:
        return wire.dumps(items)
    except Exception:  # changed under us between the two passes: convert the whole batch
        return wire.dumps([_record_item(event_at(index), None) for index in range(len(items))])


def encode(events: list[Event], enrich: Enrich | None = None) -> bytes:
    """One batch as bytes for :func:`decode` (never raises for what the events carry).

    ``enrich``: called with the converted record of each LLM end (custom metrics); those are
    converted here, where the original objects are.
    """
    return _dumps([_item(event, enrich) for event in events], events.__getitem__)


def encode_raw(raws: list[tuple[Any, ...]], enrich: Enrich | None = None) -> bytes:
    """:func:`encode` of the queue's records as :meth:`~workers.queue.EventQueue.take_raw`
    gives them: the same bytes, with an ``Event`` made only for what is converted here."""
    items = [
        (None if is_whole(raw) else _raw_item(raw, enrich)) or _item(event_of(raw), enrich)
        for raw in raws
    ]
    return _dumps(items, lambda index: event_of(raws[index]))


def encode_records(records: list[Record]) -> bytes:
    """Records already converted here (and redacted by the user's hook) as one batch."""
    try:
        return wire.dumps([(RECORD, record.to_wire()) for record in records])
    except Exception:  # a hook that put an object of its own in a record: make it plain
        from workers.sanitize import to_jsonable

        for record in records:
            record.fields = to_jsonable(record.fields)
            record.metadata = to_jsonable(record.metadata)
        return wire.dumps([(RECORD, record.to_wire()) for record in records])


def decode(data: bytes) -> list[Event]:
    """The events :func:`encode` wrote (in the worker); converted ones carry their record."""
    events: list[Event] = []
    for item in wire.loads(data):
        if item[0] == RECORD:
            events.append(preconverted(Record.from_wire(item[1])))
            continue
        kind, seq, time, run, parent, payload, extra = item
        events.append(
            Event(
                KIND_BY_VALUE[kind],
                seq,
                time,
                UUID(int=run) if run is not None else None,
                UUID(int=parent) if parent is not None else None,
                payload,
                extra,
            )
        )
    return events
