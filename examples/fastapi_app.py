"""A FastAPI service with both tracker handlers attached, flushed in its lifespan shutdown.

Run it (offline archives go to ``$TRACKER_OFFLINE_DIR``, default ``./tracker-offline``)::

    TRACKER_OFFLINE_DIR=/tmp/offline uvicorn examples.fastapi_app:app --timeout-graceful-shutdown 10

``POST /chat`` with ``{"question": "...", "request_id": "..."}`` (``request_id`` optional) runs
``prompt | fake streaming chat model | parser`` with the ClearML and Comet handlers attached
and answers ``{"request_id": ..., "answer": ...}``. The request id travels with the run as
LangChain metadata and a tag, and the fake model streams the question back word by word, so
every logged event of a request carries its text. On SIGTERM uvicorn finishes the requests in
flight, then the lifespan awaits ``aflush_tracker(finish=True)`` on both handlers, which writes
both offline archives before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from tracker import ClearMLCallbackHandler, CometCallbackHandler, FlushResult

logger = logging.getLogger("examples.fastapi_app")

OFFLINE_DIR_ENV = "TRACKER_OFFLINE_DIR"
FLUSH_TIMEOUT = float(os.environ.get("TRACKER_FLUSH_TIMEOUT", "30"))


class ParrotChatModel(BaseChatModel):
    """A fake chat model that streams the last human message back, one word per token."""

    streaming: bool = False

    @property
    def _llm_type(self) -> str:
        return "parrot-chat"

    @staticmethod
    def _words(messages: list[BaseMessage]) -> list[str]:
        words = str(messages[-1].content).split() or ["..."]
        return [word if i == 0 else " " + word for i, word in enumerate(words)]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join(self._words(messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _chunks(self, messages: list[BaseMessage]) -> Iterator[ChatGenerationChunk]:
        words = self._words(messages)
        for i, word in enumerate(words):
            # Marking the last chunk keeps LangChain from adding an empty one (an empty token).
            last = "last" if i == len(words) - 1 else None
            yield ChatGenerationChunk(message=AIMessageChunk(content=word, chunk_position=last))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # LangChain reports each yielded chunk as a new token itself.
        yield from self._chunks(messages)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            await asyncio.sleep(0)  # a real model yields to the loop between tokens
            yield chunk


def build_chain() -> Runnable[dict[str, Any], str]:
    """prompt | streaming fake chat model | parser."""
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Repeat the question."), ("human", "{question}")]
    )
    # streaming=True (set explicitly: LangChain reads it from the fields set): ainvoke streams
    # too, so every token is a callback.
    return prompt | ParrotChatModel(streaming=True) | StrOutputParser()


def make_handlers(offline_dir: Path) -> list[ClearMLCallbackHandler | CometCallbackHandler]:
    """Both handlers, offline, into ``offline_dir``."""
    return [
        ClearMLCallbackHandler(
            task_name="fastapi example", stream_logs=True, offline=True, offline_dir=offline_dir
        ),
        CometCallbackHandler(
            project_name="fastapi-example", stream_logs=True, offline=True, offline_dir=offline_dir
        ),
    ]


async def flush_all(
    handlers: list[ClearMLCallbackHandler | CometCallbackHandler], timeout: float
) -> list[FlushResult]:
    """Finish every handler concurrently: their sinks write the offline archives."""
    return list(
        await asyncio.gather(*(h.aflush_tracker(finish=True, timeout=timeout) for h in handlers))
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the handlers; at shutdown, after the last request, flush and finish them."""
    offline_dir = Path(os.environ.get(OFFLINE_DIR_ENV, "tracker-offline"))
    # Construction starts the tracker's background loop thread (and waits for it to be up)
    # and resolves paths: short, but blocking, so it stays off the serving loop.
    handlers = await asyncio.to_thread(make_handlers, offline_dir)
    app.state.handlers = handlers
    app.state.chain = build_chain()
    app.state.gate = RequestGate()
    yield
    # uvicorn runs this after its graceful wait for connections, but a kept-alive connection
    # can still bring requests in while it runs (seen with uvicorn 0.54 under load): their
    # events would arrive after finish and be dropped. So refuse new chains, let the running
    # ones end, then flush.
    await app.state.gate.close(timeout=FLUSH_TIMEOUT)
    for handler, result in zip(handlers, await flush_all(handlers, FLUSH_TIMEOUT), strict=True):
        # One line per backend: the test and an operator read what was written where.
        logger.warning(
            "tracker flush %s: written=%d dropped=%d pending=%d timed_out=%s errors=%s archive=%s",
            type(handler).__name__,
            result.written,
            result.dropped,
            result.pending,
            result.timed_out,
            result.errors,
            handler.archive_path,
        )


class RequestGate:
    """Counts the chains running; once closed, refuses new ones and waits for the rest."""

    def __init__(self) -> None:
        """An open gate with nothing running."""
        self.open = True
        self.running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def enter(self) -> AsyncIterator[bool]:
        """Yield whether the chain may run (False once the gate is closed)."""
        if not self.open:
            yield False
            return
        self.running += 1
        self._idle.clear()
        try:
            yield True
        finally:
            self.running -= 1
            if self.running == 0:
                self._idle.set()

    async def close(self, timeout: float) -> None:
        """Refuse new chains and wait (at most ``timeout`` seconds) for the running ones."""
        self.open = False
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            logger.warning("%d chains still running at shutdown; flushing anyway", self.running)


app = FastAPI(lifespan=lifespan)


class ChatRequest(BaseModel):
    """The body of ``POST /chat``."""

    question: str
    request_id: str | None = None


class ChatResponse(BaseModel):
    """The answer, with the request id that the logged events carry."""

    request_id: str
    answer: str


@app.post("/chat", response_model=ChatResponse, responses={503: {"description": "shutting down"}})
async def chat(body: ChatRequest, request: Request) -> ChatResponse | JSONResponse:
    """Run the chain with both handlers attached (503 once shutdown has begun)."""
    request_id = body.request_id or uuid.uuid4().hex
    config: dict[str, Any] = {
        "callbacks": request.app.state.handlers,
        "metadata": {"request_id": request_id},
        "tags": [f"request:{request_id}"],
    }
    async with request.app.state.gate.enter() as admitted:
        if not admitted:
            return JSONResponse(
                {"detail": "shutting down"}, status_code=503, headers={"Connection": "close"}
            )
        answer = await request.app.state.chain.ainvoke({"question": body.question}, config=config)
    return ChatResponse(request_id=request_id, answer=answer)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Readiness: the lifespan startup has run."""
    return {"status": "ok"}
