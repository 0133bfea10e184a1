"""The hot path: every LangChain callback becomes one small record appended to a bounded queue.

Read this file top to bottom: it is all the tracker does on the caller's path. No copies (but a
shallow one of chain input/output dicts, so a caller reusing its dict cannot change what is
logged), no conversion (but an error's, read at its callback into three strings: an exception
kept would keep every frame of its traceback alive, see ``workers/tracebacks.py``), no logging,
no lock (but a full queue's ``drop_oldest``, which tries one and never waits), no SDK call. The
queue lays each event's fields out flat in its deque (the payload, the four keyword arguments
the records use, the run ids as ints: ``workers/queue.py``), with no object of its own per event
and not LangChain's keyword dict: every object that waits is one more for the application's
garbage collector. Everything else happens behind the queue: a background thread of this
process encodes batches (``workers/link.py``) and another writes them (``workers/outbox.py``)
to the tracker worker, a program of its own (``workers/worker.py``).

Why synchronous methods with ``run_inline = True``: LangChain calls such a method directly from
both of its managers. In async chains that is one call, no task, no thread-pool hop; in sync
chains it avoids the ~220 µs per event that a coroutine handler costs (LangChain runs each
coroutine on a loop of its own there). Callbacks also arrive from LangChain's thread pool
(chat models that only implement ``_stream``): the queue's append is thread-safe without a lock.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from workers.event import Kind
from workers.pipeline import Pipeline
from workers.tracebacks import capture as _capture

_LLM_START = Kind.LLM_START
_CHAT_MODEL_START = Kind.CHAT_MODEL_START
_LLM_NEW_TOKEN = Kind.LLM_NEW_TOKEN
_LLM_END = Kind.LLM_END
_LLM_ERROR = Kind.LLM_ERROR
_CHAIN_START = Kind.CHAIN_START
_CHAIN_END = Kind.CHAIN_END
_CHAIN_ERROR = Kind.CHAIN_ERROR
_TOOL_START = Kind.TOOL_START
_TOOL_END = Kind.TOOL_END
_TOOL_ERROR = Kind.TOOL_ERROR
_TEXT = Kind.TEXT
_AGENT_ACTION = Kind.AGENT_ACTION
_AGENT_FINISH = Kind.AGENT_FINISH
_RETRIEVER_START = Kind.RETRIEVER_START
_RETRIEVER_END = Kind.RETRIEVER_END
_RETRIEVER_ERROR = Kind.RETRIEVER_ERROR
_RETRY = Kind.RETRY
_CUSTOM_EVENT = Kind.CUSTOM_EVENT


def _own(value: Any) -> Any:
    """A shallow copy of a plain dict (its values stay shared), anything else as is."""
    return dict(value) if type(value) is dict else value


class QueueingCallbackHandler(BaseCallbackHandler):
    """A LangChain callback handler whose every callback only enqueues an event record.

    Subclasses build the :class:`~workers.pipeline.Pipeline` (queue, sinks) and pass it here.
    """

    run_inline = True
    raise_error = False

    def __init__(self, pipeline: Pipeline) -> None:
        """Attach to ``pipeline``: its queue's ``put`` is the whole hot path."""
        self._pipeline = pipeline
        self._put = pipeline.queue.put

    # -- LLMs and chat models ------------------------------------------------------------------

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record an LLM start with its prompts."""
        self._put(_LLM_START, run_id, parent_run_id, kwargs, serialized, prompts)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a chat model start with its messages (roles and tool calls kept)."""
        self._put(_CHAT_MODEL_START, run_id, parent_run_id, kwargs, serialized, messages)

    def on_llm_new_token(
        self,
        token: str,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record one streamed token (its ``chunk``, which repeats it, is not kept)."""
        self._put(_LLM_NEW_TOKEN, run_id, parent_run_id, kwargs, token)

    def on_llm_end(
        self,
        response: Any,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record an LLM end with its LLMResult."""
        self._put(_LLM_END, run_id, parent_run_id, kwargs, response)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record an LLM error (read now: its traceback as it is now)."""
        self._put(_LLM_ERROR, run_id, parent_run_id, kwargs, _capture(error))

    # -- chains --------------------------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a chain start with its inputs (any shape)."""
        self._put(_CHAIN_START, run_id, parent_run_id, kwargs, serialized, _own(inputs))

    def on_chain_end(
        self,
        outputs: Any,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a chain end with its outputs (any shape)."""
        self._put(_CHAIN_END, run_id, parent_run_id, kwargs, _own(outputs))

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a chain error (read now: its traceback as it is now)."""
        self._put(_CHAIN_ERROR, run_id, parent_run_id, kwargs, _capture(error))

    # -- tools, agents, text -------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a tool start with its input."""
        self._put(_TOOL_START, run_id, parent_run_id, kwargs, serialized, input_str)

    def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a tool end with its output."""
        self._put(_TOOL_END, run_id, parent_run_id, kwargs, output)

    def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a tool error (read now: its traceback as it is now)."""
        self._put(_TOOL_ERROR, run_id, parent_run_id, kwargs, _capture(error))

    def on_text(
        self,
        text: str,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a text event."""
        self._put(_TEXT, run_id, parent_run_id, kwargs, text)

    def on_agent_action(
        self,
        action: Any,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record an agent action."""
        self._put(_AGENT_ACTION, run_id, parent_run_id, kwargs, action)

    def on_agent_finish(
        self,
        finish: Any,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record an agent finish."""
        self._put(_AGENT_FINISH, run_id, parent_run_id, kwargs, finish)

    # -- retrievers, retries, custom events ----------------------------------------------------

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a retriever start with its query."""
        self._put(_RETRIEVER_START, run_id, parent_run_id, kwargs, serialized, query)

    def on_retriever_end(
        self,
        documents: Any,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a retriever end with its documents."""
        self._put(_RETRIEVER_END, run_id, parent_run_id, kwargs, documents)

    def on_retriever_error(
        self,
        error: BaseException,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a retriever error (read now: its traceback as it is now)."""
        self._put(_RETRIEVER_ERROR, run_id, parent_run_id, kwargs, _capture(error))

    def on_retry(
        self,
        retry_state: Any,
        *,
        run_id: UUID | None = None,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a retry."""
        self._put(_RETRY, run_id, parent_run_id, kwargs, retry_state)

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a custom event dispatched by user code."""
        self._put(_CUSTOM_EVENT, run_id, None, kwargs, name, data)
