"""``tracker demo``: an agent-serving simulation with both handlers attached, offline.

Hundreds of concurrent async LCEL chains — a retriever, a prompt, a streaming chat model and a
tool — run on one event loop with ClearML and Comet handlers (complexity metrics and
visualizations on). At shutdown it awaits both flushes with a progress bar, then prints what was
captured, written and dropped per backend, the flush time and the archives.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import tool

from tracker.clearml import ClearMLCallbackHandler
from tracker.comet import CometCallbackHandler
from tracker.seed import SeedCompatibleHandler

ANSWERS = [
    "Paris is the capital of France. The city sits on the Seine and has about two million "
    "people. Its museums, like the Louvre, draw visitors from every country.",
    "Apple was founded in California in 1976. Steve Jobs and Steve Wozniak built the first "
    "computers in a garage. Today the company sells phones around the world.",
    "The Amazon river carries more water than any other river. It flows through Brazil and "
    "Peru before reaching the Atlantic Ocean near Belem.",
    "Marie Curie won two Nobel prizes, in physics and in chemistry. She worked in Paris and "
    "studied radioactivity with Pierre Curie.",
]
DOCUMENTS = [
    Document(page_content="France is a country in Western Europe.", metadata={"id": 1}),
    Document(page_content="Apple Inc. designs consumer electronics.", metadata={"id": 2}),
    Document(page_content="Rivers carry water to the sea.", metadata={"id": 3}),
    Document(page_content="Nobel prizes are awarded in Stockholm.", metadata={"id": 4}),
]


class ScriptedChatModel(BaseChatModel):
    """A fake chat model that streams a scripted answer word by word, natively async."""

    answers: list[str]
    tokens: int = 50

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    def _answer(self, messages: list[BaseMessage]) -> str:
        words = self.answers[hash(str(messages[-1].content)) % len(self.answers)].split()
        repeated = (words * (self.tokens // max(1, len(words)) + 1))[: self.tokens]
        return " ".join(repeated)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self._answer(messages)))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for i, word in enumerate(self._answer(messages).split(" ")):
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=word if i == 0 else " " + word)
            )

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for i, word in enumerate(self._answer(messages).split(" ")):
            await asyncio.sleep(0)  # a real model yields to the loop between tokens
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=word if i == 0 else " " + word)
            )


class KeywordRetriever(BaseRetriever):
    """Returns the documents sharing a word with the query (at least one)."""

    documents: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        words = set(query.lower().split())
        hits = [d for d in self.documents if words & set(d.page_content.lower().split())]
        return hits or self.documents[:1]


@tool
def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


def build_chain(tokens: int = 50) -> Runnable[dict[str, str], Any]:
    """retriever → prompt → streaming chat model → tool, as one LCEL chain."""
    retriever = KeywordRetriever(documents=DOCUMENTS)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context: {context}"), ("human", "{question}")]
    )
    model = ScriptedChatModel(answers=ANSWERS, tokens=tokens)

    async def retrieve(inputs: dict[str, str]) -> dict[str, str]:
        docs = await retriever.ainvoke(inputs["question"])
        return {"question": inputs["question"], "context": " ".join(d.page_content for d in docs)}

    async def count_words(message: AIMessage) -> dict[str, Any]:
        return {"answer": message.content, "words": await word_count.ainvoke(message.content)}

    return RunnableLambda(retrieve) | prompt | model | RunnableLambda(count_words)


QUESTIONS = [
    "What is the capital of France?",
    "Who founded Apple?",
    "Which river carries the most water?",
    "Who won two Nobel prizes?",
]


@dataclass
class DemoReport:
    """What the demo measured."""

    chains: int
    serve_seconds: float
    flush_seconds: float
    stats: dict[str, dict[str, Any]]
    archives: dict[str, Path | None]
    errors: list[str]


async def _serve(chain: Runnable[Any, Any], handlers: list[Any], chains: int) -> None:
    async def one(i: int) -> None:
        question = QUESTIONS[i % len(QUESTIONS)] + f" (request {i})"
        async for _ in chain.astream({"question": question}, config={"callbacks": handlers}):
            pass

    await asyncio.gather(*(one(i) for i in range(chains)))


async def _flush_with_progress(handlers: dict[str, SeedCompatibleHandler]) -> list[Any]:
    flushes = [asyncio.ensure_future(h.aflush_tracker(finish=True)) for h in handlers.values()]
    # A live bar on a terminal; one line every few seconds in a log.
    live = sys.stdout.isatty()
    ticks = 0
    while not all(f.done() for f in flushes):
        parts = []
        for name, handler in handlers.items():
            s = handler.stats()
            total = max(1, s["enqueued"] - s["dropped"])
            done = s["processed"]
            bar = "#" * int(20 * done / total)
            parts.append(f"{name} [{bar:<20}] {done}/{total}")
        if live:
            print("\rflushing  " + "   ".join(parts), end="", flush=True)
        elif ticks % 25 == 0:
            print("flushing  " + "   ".join(parts), flush=True)
        ticks += 1
        await asyncio.sleep(0.2)
    if live:
        print()
    return [f.result() for f in flushes]


async def run_demo(
    chains: int = 500, tokens: int = 50, offline_dir: Path = Path("tracker-offline")
) -> DemoReport:
    """Serve ``chains`` concurrent chains with both handlers, then flush and report."""
    random.seed(0)
    handlers: dict[str, SeedCompatibleHandler] = {
        "clearml": ClearMLCallbackHandler(
            task_name="tracker demo",
            stream_logs=True,
            complexity_metrics=True,
            visualize=True,
            offline=True,
            offline_dir=offline_dir,
        ),
        "comet": CometCallbackHandler(
            project_name="tracker-demo",
            name="tracker demo",
            stream_logs=True,
            complexity_metrics=True,
            visualizations=["dep", "ent"],
            offline=True,
            offline_dir=offline_dir,
        ),
    }
    chain = build_chain(tokens)
    print(f"serving {chains} concurrent chains ({tokens} streamed tokens each)…")
    started = time.perf_counter()
    await _serve(chain, list(handlers.values()), chains)
    served = time.perf_counter() - started
    print(f"served in {served:.1f}s; flushing at shutdown")
    started = time.perf_counter()
    results = await _flush_with_progress(handlers)
    flushed = time.perf_counter() - started
    errors = [e for r in results for e in r.errors]
    return DemoReport(
        chains=chains,
        serve_seconds=served,
        flush_seconds=flushed,
        stats={name: h.stats() for name, h in handlers.items()},
        archives={name: h.archive_path for name, h in handlers.items()},
        errors=errors,
    )


def print_report(report: DemoReport) -> None:
    """The demo's summary for a person."""
    print()
    print(
        f"{report.chains} chains served in {report.serve_seconds:.1f}s, "
        f"flushed in {report.flush_seconds:.1f}s"
    )
    print(f"{'backend':<8} {'captured':>9} {'written':>9} {'dropped':>8} {'pending':>8}")
    for name, s in report.stats.items():
        print(
            f"{name:<8} {s['enqueued']:>9} {s['processed']:>9} {s['dropped']:>8} {s['pending']:>8}"
        )
    print("archives:")
    for name, path in report.archives.items():
        print(f"  {name:<8} {path}")
    print("upload them later:")
    if report.archives.get("clearml"):
        print(
            '  ClearML: python -c "from clearml import Task; '
            f"Task.import_offline_session('{report.archives['clearml']}')\""
        )
    if report.archives.get("comet"):
        print(f"  Comet:   comet upload {report.archives['comet']}")
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)
