"""Secrets never leave the process: a default scrubber on every record, then the user's hook.

Applied by the pipeline right after conversion, before the text metrics, the sinks (and any
spool) see a record. The default scrubber (:func:`scrub_record`) replaces with
:data:`~workers.sanitize.REDACTED`:

- the value under any secret-looking key, at any depth of ``fields`` and ``metadata``: keys
  that end (case, ``_`` and ``-`` ignored) in api_key, apikey, password, passwd, passphrase,
  secret, secret_key, access_key, access_token, refresh_token, auth_token, id_token,
  session_token, bearer_token, private_key, authorization, credential(s), cookie. Not
  secrets: ``token`` (a streamed token), ``token_usage``, ``prompt_tokens``, ``max_tokens``…;
- LangChain's serialized secret markers ``{"lc": 1, "type": "secret", "id": [...]}``;
- in every string (prompts, outputs, reprs, tags, …): ``key=value`` / ``"key": "value"`` pairs
  with such a key, ``Bearer <token>``, and well-known key formats (``sk-…``, ``ghp_…``,
  ``xox?-…``, ``AKIA…``, ``AIza…``, ``hf_…``, JWTs).

pydantic ``SecretStr`` / ``SecretBytes`` values never get this far: conversion
(:func:`workers.sanitize.to_jsonable`) already turns them into the marker.

Then the user's ``redact=`` hook (:class:`Redactor`), ``Callable[[Record], Record | None]``:
it returns the record (edited in place or a new one), or None to drop it (counted in
``stats()["redacted_dropped"]``). What it returns is made JSON-safe and scrubbed again. A hook
that raises, or returns something else than a Record or None, fails closed: the record is still
logged (the event is not lost) but its fields are withheld, replaced by a ``redact_error``
marker, its metadata emptied; it is counted in ``stats()["redact_errors"]`` and logged (an
error the first time, at debug level after).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from workers.records import Record
from workers.sanitize import REDACTED, to_jsonable

logger = logging.getLogger("tracker.redact")

#: The user hook's type: the record to log (possibly edited), or None to drop it.
RedactHook = Callable[[Record], "Record | None"]

_SECRET_SUFFIXES = (
    "apikey",
    "password",
    "passwd",
    "passphrase",
    "secret",
    "secretkey",
    "accesskey",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "idtoken",
    "sessiontoken",
    "bearertoken",
    "privatekey",
    "authorization",
    "credential",
    "credentials",
    "cookie",
)
_KEY_WORDS = (
    r"api[_-]?key|passw(?:or)?d|passphrase|secret(?:[_-]?key)?|access[_-]?key|"
    r"(?:access|refresh|auth|id|session|bearer)[_-]?token|private[_-]?key|authorization"
)
# key=value, key: value, 'key': 'value', key=SecretStr('value'): the value goes.
_PAIR = re.compile(
    rf"""(?i)((?:{_KEY_WORDS})["']?\s*[:=]\s*(?:SecretStr\()?["']?)(?!\[REDACTED\])"""
    r"""([^\s"',;)}\]]+)"""
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)(?!\[REDACTED\])[A-Za-z0-9\-._~+/]{6,}=*")
_TOKENS = re.compile(
    r"\bsk-[A-Za-z0-9_\-]{16,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}"
    r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\bAIza[0-9A-Za-z_\-]{30,}"
    r"|\bhf_[A-Za-z0-9]{30,}"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
)
# No secret pattern matches fewer characters ("secret=x"): streamed tokens skip the search.
_SHORTEST = 8
# What each pattern cannot match without, casefolded: substring tests rule out the common case
# (no secret-looking text) in ~5 µs on a 1.6 KB text, where one case-insensitive search of the
# alternation took ~700 µs.
_PAIR_HINTS = ("key", "passw", "passphrase", "secret", "token", "authorization")
_TOKEN_HINTS = ("sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "akia", "aiza", "hf_", "eyj")


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True when a dict key names a secret (``openai_api_key``, ``Authorization``, …)."""
    normalized = "".join(ch for ch in key.lower() if ch.isalnum())
    return normalized.endswith(_SECRET_SUFFIXES)


def scrub_text(text: str) -> str:
    """``text`` with secret-looking values replaced by the marker."""
    if len(text) < _SHORTEST:
        return text
    if len(text) <= _CACHED_LENGTH:  # keys, names, ids repeat in every event: search once
        return _scrub_short(text)
    return _scrub(text)


# Short strings (dict keys, class names, ids, prompts' template parts) recur in every event:
# searching them once is most of the scrubber's cost saved. Long texts are rarely repeated.
_CACHED_LENGTH = 256


def _scrub(text: str) -> str:
    folded = text.casefold()
    if "bearer" in folded:
        text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    if any(hint in folded for hint in _TOKEN_HINTS):
        text = _TOKENS.sub(REDACTED, text)
    if ("=" in text or ":" in text) and any(hint in folded for hint in _PAIR_HINTS):
        text = _PAIR.sub(rf"\g<1>{REDACTED}", text)
    return text


_scrub_short = lru_cache(maxsize=16_384)(_scrub)


def _is_marker(value: dict[str, Any]) -> bool:
    return value.get("type") == "secret" and value.get("lc") == 1 and "id" in value


#: Scrubbed values already made for the records of one batch: id → (value, scrubbed).
ScrubMemo = dict[tuple[int, bool], tuple[Any, Any]]


def scrub(value: Any, keep_markers: bool = False, memo: ScrubMemo | None = None) -> Any:
    """A JSON-safe value with its secrets replaced (see the module docstring).

    ``keep_markers``: leave LangChain's secret markers as they are. They name the environment
    variable a loader reads the secret from, not the secret, and a saved model needs them.
    ``memo``: one per batch; a dict or list that several records share (a graph state's
    messages, converted once: :class:`~workers.sanitize.Budget`) is scrubbed once, and the
    result shared, so only for records nobody changes in place.
    """
    if isinstance(value, str):
        return scrub_text(value)
    if not isinstance(value, (dict, list)):
        return value
    if memo is not None:
        hit = memo.get((id(value), keep_markers))
        if hit is not None and hit[0] is value:
            return hit[1]
    if isinstance(value, dict):
        if _is_marker(value):
            return value if keep_markers else REDACTED
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = scrub_text(key) if isinstance(key, str) else key
            if isinstance(key, str) and is_secret_key(key) and _has_value(item):
                is_marker = isinstance(item, dict) and _is_marker(item)
                out[name] = item if keep_markers and is_marker else REDACTED
            else:
                out[name] = scrub(item, keep_markers, memo)
        result: Any = out
    else:
        result = [scrub(item, keep_markers, memo) for item in value]
    if memo is not None:
        memo[(id(value), keep_markers)] = (value, result)
    return result


def _has_value(item: Any) -> bool:
    """Worth hiding: not None, a flag, an empty string or the marker already."""
    return not (item is None or isinstance(item, bool) or item in ("", REDACTED))


def scrub_record(record: Record, memo: ScrubMemo | None = None) -> Record:
    """The default scrubber: ``record`` with secrets removed from every logged part (in place).

    ``memo``: see :func:`scrub`.
    """
    record.fields = scrub(record.fields, memo=memo)
    record.metadata = scrub(record.metadata, memo=memo)
    if record.name is not None:
        record.name = scrub_text(record.name)
    record.tags = [scrub_text(tag) for tag in record.tags]
    return record


def _withhold(record: Record, reason: str) -> Record:
    """Fail closed: keep the event (kind, run, time, name, tags) and drop what it carried."""
    record.fields = {"redact_error": reason}
    record.metadata = {}
    record.degraded = True  # the sinks' rows then take the fields as they are
    record.complexity = record.pages = record.custom = None
    return record


class Redactor:
    """The default scrubber plus an optional user hook, with counters for ``stats()``."""

    def __init__(self, hook: RedactHook | None = None) -> None:
        """Scrub every record, then pass it to ``hook`` (if any)."""
        if hook is not None and not callable(hook):
            raise TypeError(f"redact must be a callable taking a Record, got {hook!r}")
        self.hook = hook
        self.dropped = 0
        self.errors = 0

    def apply(self, records: list[Record]) -> list[Record]:
        """The records to log, scrubbed and passed through the hook; never raises."""
        kept: list[Record] = []
        # A hook may change a record in place: then no record shares a scrubbed value.
        memo: ScrubMemo | None = {} if self.hook is None else None
        for record in records:
            try:
                scrub_record(record, memo)
            except Exception as exc:  # pragma: no cover - records are JSON-safe by now
                self._failed(record, exc, "the secret scrubber")
                kept.append(_withhold(record, f"scrubber failed: {type(exc).__name__}"))
                continue
            if self.hook is None:
                kept.append(record)
                continue
            result = self._run_hook(record)
            if result is not None:
                kept.append(result)
        return kept

    def _run_hook(self, record: Record) -> Record | None:
        hook = self.hook
        assert hook is not None
        try:
            result = hook(record)
            if result is None:
                self.dropped += 1
                return None
            if not isinstance(result, Record):
                raise TypeError(f"returned {type(result).__name__}, not a Record or None")
            # Whatever the hook put in must still be JSON-safe and free of secrets.
            fields = to_jsonable(result.fields)
            result.fields = fields if isinstance(fields, dict) else {"fields": fields}
            metadata = to_jsonable(result.metadata)
            result.metadata = metadata if isinstance(metadata, dict) else {}
            result.name = None if result.name is None else str(to_jsonable(result.name))
            tags = result.tags if isinstance(result.tags, list) else []
            result.tags = [str(to_jsonable(tag)) for tag in tags]
            return scrub_record(result)
        except Exception as exc:
            self._failed(record, exc, "the redact hook")
            return _withhold(record, f"redact hook failed: {type(exc).__name__}")

    def _failed(self, record: Record, exc: Exception, what: str) -> None:
        self.errors += 1
        # The exception's message may quote the secret the hook was handling: the type only,
        # and the traceback at debug level.
        if self.errors == 1:
            logger.error(
                "tracker: %s raised %s on an %s record; its fields were withheld and logged as "
                "a redact_error marker (reported once; see stats()['redact_errors'])",
                what,
                type(exc).__name__,
                record.kind.value,
            )
        logger.debug("tracker: %s failed", what, exc_info=True)
