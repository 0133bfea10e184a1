"""Error records' traceback text: the stdlib's layout (without carets), made cheaply."""

from __future__ import annotations

import re
import traceback

import pytest

from workers import tracebacks
from workers.tracebacks import format_error


class ToolBroke(RuntimeError):
    """An exception class of a module other than builtins (its name is qualified)."""


class Unprintable(Exception):
    """An exception whose message cannot be read."""

    def __str__(self) -> str:
        raise ValueError("no")


def _inner(kind: str) -> None:
    if kind == "empty":
        raise KeyError()
    if kind == "unprintable":
        raise Unprintable()
    if kind == "syntax":
        compile("def broken(:\n", "<agent tool>", "exec")
    if kind == "notes":
        error = ValueError("with notes")
        error.add_note("raised by the fragile tool")
        error.add_note("during task 'tools'\nof the agent")
        raise error
    if kind == "odd notes":
        error = ValueError("with odd notes")
        error.__notes__ = ("a tuple", 3)  # type: ignore[attr-defined]
        raise error
    raise ToolBroke("the fragile tool broke")


def _outer(kind: str) -> None:
    try:
        _inner(kind)
    except Exception as exc:
        if kind == "cause":
            raise LookupError("wrapped") from exc
        if kind == "context":
            raise LookupError("while handling")  # noqa: B904 - the context is the point
        raise


def _caught(kind: str) -> BaseException:
    try:
        _outer(kind)
    except BaseException as exc:
        return exc
    raise AssertionError("nothing raised")


def _stdlib(error: BaseException) -> str:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    # 3.11 draws ^^^^ / ~~~~ under some frames' lines: our layout has none (a syntax error's
    # own caret, in its final lines, stays)
    return re.sub(r'(?m)^(  File ".*", line \d+, in .*\n    .*\n) +[\^~ ]+\n', r"\1", text)


@pytest.mark.parametrize(
    "kind", ["plain", "empty", "unprintable", "syntax", "notes", "odd notes", "cause", "context"]
)
def test_the_text_is_the_stdlib_layout(kind):
    """Frames, source lines, chained causes and contexts, the final line (qualified names,
    empty and unreadable messages, notes, syntax errors) as ``traceback`` writes them."""
    error = _caught(kind)
    assert format_error(error, error.__traceback__) == _stdlib(error)


def test_a_frame_read_again_is_the_same_and_the_cache_is_bounded():
    """The second error through the same frames is written from the cache, identically; the
    cache keeps at most ``FRAME_CACHE_SIZE`` frames, however many it is asked for."""
    tracebacks._frame.cache_clear()
    error = _caught("cause")
    first = format_error(error, error.__traceback__)
    assert tracebacks._frame.cache_info().currsize > 0
    assert format_error(error, error.__traceback__) == first == _stdlib(error)
    assert tracebacks._frame.cache_info().hits > 0
    for line in range(tracebacks.FRAME_CACHE_SIZE + 100):
        tracebacks._frame("<generated>", line, "step")
    assert tracebacks._frame.cache_info().currsize == tracebacks.FRAME_CACHE_SIZE
    assert format_error(error, error.__traceback__) == first


def test_an_error_is_captured_as_it_is_at_its_callback():
    """``capture`` keeps three strings: the type's name, the message and the traceback text of
    the frames the error had then (not those it goes up through afterwards)."""
    error = _caught("cause")
    captured = tracebacks.capture(error)
    assert captured == ("LookupError", "wrapped", _stdlib(error))
    try:  # the error goes on up: its traceback grows, the captured text does not
        raise error
    except LookupError:
        pass
    assert tracebacks.capture(error).traceback != captured.traceback
    assert captured.traceback == _stdlib(_caught("cause"))
    unprintable = tracebacks.capture(_caught("unprintable"))
    assert unprintable.type_name == "Unprintable" and "Unprintable" in unprintable.message
    long = tracebacks.capture(ValueError("x" * (tracebacks.MESSAGE_LIMIT + 500)))
    assert len(long.message) < tracebacks.MESSAGE_LIMIT + 100 and "500" in long.message
    for not_an_error in (None, "a string", 42):
        assert tracebacks.capture(not_an_error) is not_an_error
