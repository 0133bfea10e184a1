"""Compact JSON for what the sinks write: orjson, with the stdlib for what orjson refuses.

The worker turns every event into JSON at least once (a JSON line, a table cell, a Comet text
sample's metadata); the JSON-lines sink's ``json.dumps`` alone took 7% of its CPU on LangGraph
rounds (benchmarks/analysis.md, issue 15). orjson is ~5-10x faster and writes the same values; the
text differs only in spacing and in non-ASCII characters written as themselves, not escaped.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

#: Keys that are not strings (a user's metadata) as text, like ``json.dumps``; numpy values as
#: their numbers. orjson writes NaN and infinities as ``null``, as Comet's encoder makes them.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def json_bytes(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON; anything neither encoder knows as its ``str``."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS)
    except orjson.JSONEncodeError:  # what orjson refuses: an int past 64 bits, a tuple as a key
        return json.dumps(
            _finite(value), default=str, separators=(",", ":"), ensure_ascii=False
        ).encode()


def json_text(value: Any) -> str:
    """:func:`json_bytes` as text."""
    return json_bytes(value).decode()


def _finite(value: Any) -> Any:
    """``value`` as ``json.dumps`` takes it the way orjson writes: NaN and infinities as None
    (``json.dumps`` would write ``NaN``, which is not JSON) and keys it refuses as their text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k if _plain_key(k) else str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _plain_key(key: Any) -> bool:
    return key is None or isinstance(key, (str, int, float, bool))
