"""An error's traceback as it was when the run failed, read cheaply.

``traceback.format_exception`` costs about 0.9 ms for a LangGraph tool error here (22 frames):
Python 3.11 finds each frame's columns and parses its source line with ``ast`` to draw the
``^^^^`` carets, and stats every file. A failing agent session reports its error three to five
times (the tool, its node, the graph), so that was most of the tracker's cost in the
application's process (issue 15). This module reads what the text needs (file, line, function,
the source line from ``linecache``, which reads each file once) and writes it in the standard
layout, chained causes included, without the carets: about 20x cheaper. Each frame's text is
kept, since a service's errors pass through the same frames again and again, and the final line
(type, message, notes) is written here too: a LangGraph error chain then costs ~14 µs to encode,
against ~23 µs reading each frame's line again (benchmarks/analysis.md).

When: at the error's callback (``tracker/handler.py`` calls :func:`capture`). An exception's
``__traceback__`` grows as it propagates, so read later it would hold the frames of every caller
up to wherever the exception had got to by then; and an event that kept the exception while it
waited for its batch kept the frames, and every frame's locals, alive: on 50 concurrent
LangGraph sessions a tool error's event kept ~320 objects (run managers, configs, states), 40%
of what a round's waiting events kept for the application's collector to walk. A
:class:`CapturedError` is three strings.
"""

from __future__ import annotations

import functools
import linecache
import traceback
from types import TracebackType
from typing import Any, NamedTuple

from workers.sanitize import safe_str

#: Longest message and traceback text an error's record keeps.
MESSAGE_LIMIT = 10_000
TRACEBACK_LIMIT = 20_000

#: Chained exceptions followed at most (``__cause__`` / ``__context__``), as the stdlib's limit.
MAX_CHAIN = 20

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


#: Frames' text kept, by file, line and function. A service's errors go up through the same
#: few hundred frames again and again, and reading a frame's source line costs about 1 µs (a
#: LangGraph error's chain has ~18 frames, raised 3 to 5 times a failing session).
FRAME_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=FRAME_CACHE_SIZE)
def _frame(filename: str, lineno: int, name: str) -> str:
    """One frame's lines, as ``traceback`` lays them out (without carets)."""
    text = f'  File "{filename}", line {lineno}, in {name}\n'
    source = linecache.getline(filename, lineno).strip()
    return f"{text}    {source}\n" if source else text


def _frames(tb: TracebackType | None) -> list[str]:
    lines = []
    while tb is not None:
        code = tb.tb_frame.f_code
        lines.append(_frame(code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return lines


def _final_line(error: BaseException) -> list[str]:
    """``traceback.format_exception_only(type(error), error)``, without its cost (~4 µs: it
    builds a ``TracebackException`` of the whole chain) in the common case: any exception but
    a syntax error, with no notes or a list of text notes (LangGraph adds one to each error
    that crosses a node)."""
    cls = type(error)
    notes = getattr(error, "__notes__", None)
    if issubclass(cls, SyntaxError) or (
        notes is not None and not (type(notes) is list and all(type(note) is str for note in notes))
    ):
        return traceback.format_exception_only(cls, error)
    name = cls.__qualname__
    if cls.__module__ not in ("__main__", "builtins"):
        name = f"{cls.__module__}.{name}"
    try:
        text = str(error)
    except Exception:
        text = "<exception str() failed>"  # the stdlib's words
    lines = [f"{name}: {text}\n" if text else f"{name}\n"]
    for note in notes or ():
        lines += [line + "\n" for line in note.split("\n")]
    return lines


def _one(error: BaseException, tb: TracebackType | None) -> list[str]:
    lines = ["Traceback (most recent call last):\n", *_frames(tb)] if tb is not None else []
    try:
        lines += _final_line(error)
    except Exception:  # a hostile class or __notes__: the type still names it
        lines.append(f"{type(error).__name__}: <unprintable>\n")
    return lines


def format_error(error: BaseException, tb: TracebackType | None) -> str:
    """``error``'s traceback text as ``traceback.format_exception`` lays it out (no carets).

    ``tb``: the traceback to show for ``error`` itself (the one it had at its callback);
    chained exceptions show their own.
    """
    parts: list[list[str]] = [_one(error, tb)]
    seen = {id(error)}
    current = error
    while len(parts) < MAX_CHAIN:
        if current.__cause__ is not None:
            link, current = _CAUSE, current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            link, current = _CONTEXT, current.__context__
        else:
            break
        if id(current) in seen:  # a cycle of contexts
            break
        seen.add(id(current))
        parts.append([*_one(current, current.__traceback__), link])
    return "".join(line for part in reversed(parts) for line in part)


class CapturedError(NamedTuple):
    """An error as its record needs it, read at its callback: no exception, no frames."""

    #: ``type(error).__name__``.
    type_name: str
    #: ``str(error)`` (its repr if that fails), at most :data:`MESSAGE_LIMIT` characters.
    message: str
    #: :func:`format_error` of the traceback the error had at its callback, at most
    #: :data:`TRACEBACK_LIMIT` characters.
    traceback: str


def capture(error: Any) -> Any:
    """``error`` as a :class:`CapturedError`, from the traceback it has now; never raises.

    Anything that is not an exception is returned as it is (its record says what it was), and
    so is an exception that cannot even be read.
    """
    try:
        if not isinstance(error, BaseException):
            return error
        try:
            text = format_error(error, error.__traceback__)
        except Exception:  # a hostile __cause__ or __traceback__: the rest still tells it
            text = ""
        return CapturedError(
            type(error).__name__,
            safe_str(error, MESSAGE_LIMIT),
            safe_str(text, TRACEBACK_LIMIT),
        )
    except Exception:
        return error
