"""Turn arbitrary callback payloads into JSON-safe values, never raising.

Chains pass anything: pydantic models, messages, documents, numpy values, cycles, objects whose
``repr`` raises, huge strings. Backends take JSON-like data. Whatever cannot be converted becomes a
truncated ``repr`` (or a marker), and the caller can count it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_TEXT = 100_000
MAX_ITEMS = 1_000
MAX_DEPTH = 12
TRUNCATED = "…[truncated {n} chars]"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters with a visible marker saying how much was dropped."""
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATED.format(n=len(text) - limit)


def safe_repr(value: object, limit: int = 1_000) -> str:
    """``repr(value)``, truncated; a marker if ``repr`` itself raises."""
    try:
        text = repr(value)
    except Exception as exc:  # a hostile __repr__ must not break logging
        return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return clip(text, limit)


def safe_str(value: object, limit: int = MAX_TEXT) -> str:
    """``str(value)`` for text fields (tool outputs, tokens), truncated; never raises."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = str(value)
        except Exception:
            return safe_repr(value)
    # Lone surrogates cannot be encoded to UTF-8 by any backend.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return clip(text, limit)


def to_jsonable(value: Any, _depth: int = 0, _seen: frozenset[int] = frozenset()) -> Any:
    """A JSON-safe copy of ``value``: dicts, lists, str, int, float, bool and None only.

    Pydantic models and LangChain objects are dumped; cycles and over-deep nesting become markers;
    anything else becomes a truncated repr. Floats stay floats (NaN and inf included): pandas
    and the seeds keep them so.
    """
    if value is None or isinstance(value, (bool, int, float)):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
            return safe_repr(value)
        return value
    if isinstance(value, str):
        return safe_str(value)
    if _depth >= MAX_DEPTH:
        return "<max depth>"
    ident = id(value)
    if ident in _seen:
        return "<cycle>"
    seen = _seen | {ident}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        try:
            items = list(value.items())
        except Exception:
            return safe_repr(value)
        for i, (key, item) in enumerate(items):
            if i >= MAX_ITEMS:
                out["…"] = f"{len(items) - MAX_ITEMS} more items"
                break
            out[key if isinstance(key, str) else safe_str(key, 200)] = to_jsonable(
                item, _depth + 1, seen
            )
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = list(value)
        out_list = [to_jsonable(item, _depth + 1, seen) for item in seq[:MAX_ITEMS]]
        if len(seq) > MAX_ITEMS:
            out_list.append(f"… {len(seq) - MAX_ITEMS} more items")
        return out_list
    if isinstance(value, (bytes, bytearray, memoryview)):
        return safe_repr(bytes(value[:200])) + (
            f"…[{len(value)} bytes]" if len(value) > 200 else ""
        )
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return to_jsonable(dump(), _depth + 1, seen)
        except Exception:
            return safe_repr(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and type(value).__module__.startswith("numpy"):
        try:
            return to_jsonable(item(), _depth + 1, seen)
        except Exception:
            return safe_repr(value)
    return safe_repr(value)


def is_finite_number(value: object) -> bool:
    """True for an int or a finite float (not bool): what a metric backend can plot."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def flatten(nested: Mapping[str, Any] | None, parent: str = "", sep: str = "_") -> dict[str, Any]:
    """The seeds' ``flatten_dict``: nested dict keys joined with ``_``; None flattens to {}."""
    out: dict[str, Any] = {}
    if not nested:
        return out
    for key, value in nested.items():
        name = f"{parent}{sep}{key}" if parent else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out
