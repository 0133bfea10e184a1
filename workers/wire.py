"""The pipe between the application's process and the tracker worker: framing, ops, pickling.

Both sides import this module and nothing else of each other. A frame is a 4-byte big-endian
length and a pickle of ``(op, pipeline, seq, payload)``.

Safety: the worker is a program of its own that must never import the user's code (it would run
the user's script again). So pickles that cross the pipe name only classes from an allow-list
of libraries (:data:`PORTABLE_MODULES`), on both sides: :class:`PortablePickler` refuses to
write anything else (the caller then converts that event in place, see
:mod:`workers.snapshot`), and :func:`loads` refuses to import anything else.
"""

from __future__ import annotations

import functools
import io
import pickle
import struct
import types
from enum import IntEnum
from typing import IO, Any

from workers.sanitize import Converted, Shape, shape_of, to_jsonable

#: Frame header: the pickle's length, 4 bytes big-endian.
HEADER = struct.Struct(">I")

#: Top-level packages whose classes may cross the pipe by reference. The worker imports them
#: (never the user's modules); anything else is converted to plain data before it leaves.
PORTABLE_MODULES = frozenset(
    {
        "builtins",
        "collections",
        "copyreg",
        "datetime",
        "decimal",
        "fractions",
        "uuid",
        "pathlib",
        "pydantic",
        "pydantic_core",
        "langchain_core",
        "workers",
    }
)


class Op(IntEnum):
    """What a frame asks (application → worker) or answers (worker → application)."""

    OPEN = 1  # payload: the pipeline's plan (sinks, options); answered by STATE
    EVENTS = 2  # payload: (count, snapshot bytes) — a batch of events, see workers.snapshot
    FLUSH = 3  # payload: (request id, FlushRequest without its future); answered by FLUSHED
    RESET = 4  # payload: None — reset_callback_meta, in queue order
    ABANDON = 5  # payload: None — exit deadline: spool what is left, finish, exit
    STATE = 11  # payload: the pipeline's counters (sent after work, throttled)
    FLUSHED = 12  # payload: (request id, FlushResult, counters)


def _portable(module: str | None) -> bool:
    return module is not None and module.partition(".")[0] in PORTABLE_MODULES


@functools.lru_cache(maxsize=2048)
def _portable_type(cls: type) -> bool:
    """Whether ``cls`` lives in the allow-list: asked for every payload and nested object of
    every event, so remembered (against ~0.5 µs of reading and splitting the module's name);
    bounded, for programs that make classes as they go."""
    return _portable(getattr(cls, "__module__", None))


_BY_REFERENCE = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


class PortablePickler(pickle.Pickler):
    """A pickler that sends no object whose class (or which, for classes and functions) lives
    outside :data:`PORTABLE_MODULES`: such an object goes as its plain data instead.

    Called only for objects that are not plain str/int/float/bytes/dict/list/tuple/set, so a
    batch of plain fields pays nothing for the check.
    """

    def reducer_override(self, obj: Any) -> Any:
        """Let allowed objects pickle as usual; the rest go as their fields
        (:class:`~workers.sanitize.Shape`, converted in the worker) or, if they have none, as
        their plain data (:class:`~workers.sanitize.Converted`), converted here."""
        if isinstance(obj, _BY_REFERENCE):
            allowed = _portable(getattr(obj, "__module__", None))
        else:
            allowed = _portable_type(type(obj))
        if not allowed:
            shape = None if isinstance(obj, _BY_REFERENCE) else shape_of(obj)
            if shape is not None:
                return (Shape, shape)
            return (Converted, (to_jsonable(obj),))
        return NotImplemented


def portable(obj: Any) -> bool:
    """Whether ``obj`` itself may cross by reference (its class lives in the allow-list)."""
    return _portable_type(type(obj))


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` for the pipe (the user's objects inside go as their plain data)."""
    buffer = io.BytesIO()
    PortablePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


class _PortableUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if not _portable(module):
            raise pickle.UnpicklingError(f"{module}.{name} is not importable in the tracker")
        return super().find_class(module, name)


def loads(data: bytes) -> Any:
    """Unpickle what :func:`dumps` wrote, importing nothing outside the allow-list."""
    return _PortableUnpickler(io.BytesIO(data)).load()


def frame(op: Op, pipeline: int, seq: int, payload: Any) -> bytes:
    """One frame, header included."""
    data = dumps((int(op), pipeline, seq, payload))
    return HEADER.pack(len(data)) + data


def read_frame(stream: IO[bytes]) -> tuple[Op, int, int, Any] | None:
    """The next frame from ``stream``; None at the end of the stream (or a torn frame)."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    op, pipeline, seq, payload = loads(data)
    return Op(op), pipeline, seq, payload
