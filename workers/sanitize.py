"""Turn arbitrary callback payloads into JSON-safe values, never raising.

Chains pass anything: pydantic models, messages, documents, numpy values, cycles, objects whose
``repr``/``str``/``__getattr__`` raise, huge strings, bytes, lone surrogates, ints too large to
print. Backends take JSON-like data. Whatever cannot be converted becomes a truncated ``repr``
(or a marker), and the caller can count it.

Bounds: one string keeps at most ``MAX_TEXT`` characters, one container ``MAX_ITEMS`` items,
nesting ``MAX_DEPTH`` levels; a :class:`Budget` shared by the conversions of one record caps its
values (``MAX_NODES``) and characters (``MAX_RECORD_TEXT``), so a record stays a few MB at most
whatever the payload. Every cut leaves a visible marker (:data:`TRUNCATED`, ``"… N more items"``,
``"<max depth>"``, ``"<cycle>"``, :data:`OMITTED`).

Attribute lookups go through the type (``type(value).model_dump``), not the instance, so an
object whose ``__getattr__`` raises cannot break them.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Mapping
from typing import Any

MAX_TEXT = 100_000
MAX_ITEMS = 1_000
MAX_DEPTH = 12
MAX_NODES = 20_000
MAX_RECORD_TEXT = 1_000_000
MAX_KEY = 200
TRUNCATED = "…[truncated {n} chars]"
OMITTED = "…[omitted: record size limit]"
#: What a secret value becomes (pydantic ``SecretStr``/``SecretBytes``; see workers.redact).
REDACTED = "[REDACTED]"
# Ints past 64 bits become text (pandas and the SDKs' JSON want int64); past CPython's
# int-to-str digit limit (4 300 digits by default) printing raises, so they become a marker.
_INT_BITS = 64
_INT_PRINTABLE_BITS = 14_000


#: Conversions already made for the records of one batch (:class:`Budget`'s ``memo``).
Memo = dict[tuple[int, int], tuple[Any, Any, int, int]]


class Budget:
    """What one record may still hold: values (``nodes``) and characters (``chars``).

    ``memo``: shared by the conversions of one batch's records. A LangGraph node's state is in
    the inputs and outputs of every run inside the node (13 chain runs per ReAct turn); with a
    memo, each object (a message, a list of them) is converted once per batch and its result
    shared. A result is reused only where converting again would give the same: the object at
    the same depth, no cycle marker in it, and budget enough left that nothing would be cut.
    The results are shared, so a memo is only for records that nobody changes in place.
    """

    __slots__ = ("chars", "cycles", "memo", "nodes")

    def __init__(
        self, nodes: int = MAX_NODES, chars: int = MAX_RECORD_TEXT, memo: Memo | None = None
    ) -> None:
        """A fresh budget of ``nodes`` values and ``chars`` characters."""
        self.nodes = nodes
        self.chars = chars
        self.memo = memo
        self.cycles = 0

    def text(self, text: str, limit: int = MAX_TEXT) -> str:
        """``text`` clipped to ``limit`` and to what is left of the budget (which it spends)."""
        size = len(text)
        if size <= limit and size <= self.chars:  # the common case, kept cheap
            self.chars -= size
            return text
        allowed = min(limit, max(self.chars, 0))
        out = clip(text, allowed)
        self.chars -= min(len(text), allowed)
        return out


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters with a visible marker saying how much was dropped."""
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATED.format(n=len(text) - limit)


def encodable(text: str) -> str:
    """An exact ``str`` that UTF-8 can encode (lone surrogates replaced: backends refuse them)."""
    if type(text) is not str:
        text = str.__str__(text)  # a str subclass may override anything; keep only the text
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _marker(value: object, exc: BaseException) -> str:
    try:
        name = type(value).__name__
    except Exception:  # pragma: no cover - a metaclass would have to break __name__
        name = "object"
    return f"<unrepresentable {name}: {type(exc).__name__}>"


def safe_repr(value: object, limit: int = 1_000, budget: Budget | None = None) -> str:
    """``repr(value)``, truncated; a marker if ``repr`` itself raises (or returns a non-str)."""
    if type(value) is int:
        return _int_text(value)
    try:
        text = repr(value)
        if not isinstance(text, str):
            raise TypeError("__repr__ returned a non-string")
        text = encodable(text)
    except Exception as exc:  # a hostile __repr__ must not break logging
        return _marker(value, exc)
    return budget.text(text, limit) if budget is not None else clip(text, limit)


def safe_str(value: object, limit: int = MAX_TEXT, budget: Budget | None = None) -> str:
    """``str(value)`` for text fields (tool outputs, tokens), truncated; never raises."""
    if type(value) is str and value.isascii():
        text = value
    elif isinstance(value, str):
        text = encodable(value)
    elif type(value) is int:
        text = _int_text(value)
    else:
        try:
            text = str(value)
            if not isinstance(text, str):
                raise TypeError("__str__ returned a non-string")
            text = encodable(text)
        except Exception:
            return safe_repr(value, min(limit, 1_000), budget)
    return budget.text(text, limit) if budget is not None else clip(text, limit)


def _int_text(value: int) -> str:
    bits = value.bit_length()
    if bits > _INT_PRINTABLE_BITS:
        return f"<int of {bits} bits>"
    return clip(repr(value), 1_000)


def _type_attr(value: object, name: str) -> Any:
    """``type(value).<name>`` or None: the instance's ``__getattr__`` is never involved."""
    try:
        return getattr(type(value), name, None)
    except Exception:
        return None


def _is_secret(value: object) -> bool:
    """pydantic's ``SecretStr``/``SecretBytes``/``Secret`` (v1 or v2), by type."""
    cls = type(value)
    return "Secret" in cls.__name__ and cls.__module__.startswith("pydantic")


#: The key naming an object's class when it is converted as its fields (:func:`shape_of`).
TYPE_KEY = "__type__"


def shape_of(value: object) -> tuple[str, dict[str, Any]] | None:
    """An object's class name and fields, when it is a dataclass or a class with ``__slots__``.

    Such an object is its fields (LangGraph's ``Send``, ``Command`` and ``Interrupt`` are), so
    it converts to them, under :data:`TYPE_KEY`, rather than to a ``repr``: the fields stay
    data, and a ``repr`` of a graph state costs ~0.4 ms (pydantic's field defaults, each
    message's). None for any other object, or if a field cannot be read.
    """
    cls = type(value)
    try:
        params = getattr(cls, "__dataclass_fields__", None)
        if isinstance(params, dict):
            names = [name for name, f in params.items() if getattr(f, "repr", True)]
        elif "__slots__" in cls.__dict__ and not hasattr(value, "__dict__"):
            names = [
                name
                for klass in cls.__mro__
                for name in _slot_names(klass)
                if not name.startswith("__")
            ]
        else:
            return None
        fields = {name: object.__getattribute__(value, name) for name in names}
        return f"{cls.__module__}.{cls.__qualname__}", fields
    except Exception:  # an unset slot, a hostile descriptor: the repr will do
        return None


def _slot_names(klass: type) -> tuple[str, ...]:
    slots = klass.__dict__.get("__slots__", ())
    return (slots,) if isinstance(slots, str) else tuple(slots)


class Shape:
    """An object the tracker worker may not import, sent as its class name and fields.

    :mod:`workers.wire` puts one in place of a dataclass or slotted object (:func:`shape_of`)
    when it pickles a batch: its fields pickle as the rest of the batch does (a graph state's
    messages once per batch, whoever holds them), and the worker converts it, as
    :func:`to_jsonable` would have converted the object.
    """

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: dict[str, Any]) -> None:
        """Hold the class's qualified name and the fields."""
        self.name = name
        self.fields = fields

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the name and fields it holds."""
        return (Shape, (self.name, self.fields))


class Converted:
    """Plain data standing in for an object the tracker worker may not import.

    :mod:`workers.wire` puts one in place of such an object, nested in an event's payload,
    when it pickles a batch: the object is converted (:func:`to_jsonable`) where it lives, in
    the application, and the batch pickles in one pass. :func:`to_jsonable` returns the data.
    """

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        """Hold ``data`` (already JSON-safe)."""
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the data it holds."""
        return (Converted, (self.data,))


def to_jsonable(
    value: Any,
    _depth: int = 0,
    _seen: frozenset[int] = frozenset(),
    *,
    budget: Budget | None = None,
) -> Any:
    """A JSON-safe copy of ``value``: dicts, lists, str, int, float, bool and None only.

    Pydantic models and LangChain objects are dumped; dataclasses and slotted objects become
    their fields (:func:`shape_of`); cycles and over-deep nesting become markers;
    pydantic secrets become :data:`REDACTED`; anything else becomes a truncated repr. Floats stay
    floats (NaN and inf included): pandas and the seeds keep them so. ``budget`` bounds the
    result; pass one :class:`Budget` to every conversion of one record. Never raises.
    """
    if budget is None:
        budget = Budget()
    try:
        return _convert(value, _depth, _seen, budget)
    except Exception as exc:  # belt and braces: _convert guards each risky step itself
        return _marker(value, exc)


def _convert(value: Any, depth: int, seen: frozenset[int], budget: Budget) -> Any:
    budget.nodes -= 1
    if budget.nodes < 0:
        return OMITTED
    cls = type(value)
    if value is None or cls is bool or cls is float:
        return value
    if cls is str:
        return budget.text(encodable(value))
    if cls is Converted:
        return _convert(value.data, depth, seen, budget)
    if cls is Shape:
        return _shape(value.name, value.fields, depth, seen, budget)
    if cls is int:
        return value if value.bit_length() <= _INT_BITS else _int_text(value)
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        return bool(value)
    if isinstance(value, int):  # IntEnum, numpy-like ints: their own methods may be hostile
        return _convert(int.__int__(value), depth, seen, budget)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return budget.text(encodable(value))
    if depth >= MAX_DEPTH:
        return "<max depth>"
    ident = id(value)
    if ident in seen:
        budget.cycles += 1
        return "<cycle>"
    memo = budget.memo
    if memo is None:
        return _compound(value, cls, depth, seen | {ident}, budget)
    key = (ident, depth)
    hit = memo.get(key)
    if hit is not None and hit[0] is value and budget.nodes >= hit[2] and budget.chars > hit[3]:
        budget.nodes -= hit[2]
        budget.chars -= hit[3]
        return hit[1]
    nodes, chars, cycles = budget.nodes, budget.chars, budget.cycles
    result = _compound(value, cls, depth, seen | {ident}, budget)
    if budget.nodes >= 0 and budget.chars > 0 and budget.cycles == cycles:  # nothing was cut
        # This call's own node was spent before the memo was read, hit or not.
        memo[key] = (value, result, nodes - budget.nodes, chars - budget.chars)
    return result


def _compound(value: Any, cls: type, depth: int, inner: frozenset[int], budget: Budget) -> Any:
    if cls is dict or isinstance(value, Mapping):
        return _mapping(value, depth, inner, budget)
    if cls in (list, tuple, set, frozenset, deque) or isinstance(
        value, (list, tuple, set, frozenset, deque)
    ):
        return _sequence(value, depth, inner, budget)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes(value, budget)
    if _is_secret(value):
        return REDACTED
    dump = _type_attr(value, "model_dump")
    if callable(dump):
        try:
            dumped = dump(value)
        except Exception:
            return safe_repr(value, budget=budget)
        return _convert(dumped, depth + 1, inner, budget)
    item = _type_attr(value, "item")  # numpy scalars
    if callable(item) and cls.__module__.startswith("numpy"):
        try:
            scalar = item(value)
        except Exception:
            return safe_repr(value, budget=budget)
        return _convert(scalar, depth + 1, inner, budget)
    shape = shape_of(value)
    if shape is not None:
        return _shape(*shape, depth, inner, budget)
    return safe_repr(value, budget=budget)


def _shape(
    name: str, fields: dict[str, Any], depth: int, seen: frozenset[int], budget: Budget
) -> dict[str, Any]:
    out = {TYPE_KEY: budget.text(encodable(name))}
    converted = _mapping(fields, depth, seen, budget)
    if isinstance(converted, dict):
        out.update(converted)
    return out


def _mapping(value: Any, depth: int, seen: frozenset[int], budget: Budget) -> Any:
    try:
        size = len(value)
        items = list(itertools.islice(value.items(), MAX_ITEMS))
    except Exception:  # a broken Mapping, or a dict another thread is changing
        return safe_repr(value, budget=budget)
    out: dict[str, Any] = {}
    for key, item in items:
        plain = type(key) is str and len(key) <= MAX_KEY
        name = encodable(key) if plain else safe_str(key, MAX_KEY)
        budget.chars -= len(name)
        out[name] = _convert(item, depth + 1, seen, budget)
    if size > MAX_ITEMS:
        out["…"] = f"{size - MAX_ITEMS} more items"
    return out


def _sequence(value: Any, depth: int, seen: frozenset[int], budget: Budget) -> Any:
    try:
        size = len(value)
        head = list(itertools.islice(value, MAX_ITEMS))
    except Exception:
        return safe_repr(value, budget=budget)
    out = [_convert(item, depth + 1, seen, budget) for item in head]
    if size > MAX_ITEMS:
        out.append(f"… {size - MAX_ITEMS} more items")
    return out


def _bytes(value: bytes | bytearray | memoryview, budget: Budget) -> str:
    try:
        size = value.nbytes if isinstance(value, memoryview) else len(value)
        head = bytes(value)[:200] if isinstance(value, memoryview) else bytes(value[:200])
    except Exception as exc:
        return _marker(value, exc)
    return budget.text(repr(head)) + (f"…[{size} bytes]" if size > 200 else "")


def is_finite_number(value: object) -> bool:
    """True for an int or a finite float (not bool): what a metric backend can plot."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True  # math.isfinite would raise OverflowError past float range
    return isinstance(value, float) and math.isfinite(value)


def flatten(nested: Mapping[str, Any] | None, parent: str = "", sep: str = "_") -> dict[str, Any]:
    """The seeds' ``flatten_dict``: nested dict keys joined with ``_``; None flattens to {}."""
    out: dict[str, Any] = {}
    if not nested or not isinstance(nested, Mapping):
        return out
    for key, value in nested.items():
        name = f"{parent}{sep}{key}" if parent else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out
