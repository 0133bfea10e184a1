"""``tracker demo``: an agent-serving simulation logged to ClearML and Comet, offline.

Hundreds of concurrent async LCEL chains — a retriever, a prompt, a streaming chat model and a
tool — run on one event loop with the configuration we recommend for serving: one
``TrackerCallbackHandler`` feeding both backends, every feature on (complexity metrics and
visualizations), its serving defaults. It prints that configuration in one line; at shutdown
it awaits the flush with a progress bar, then prints what was captured, written, dropped and
skipped, the flush time and the archives.
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

from tracker import sinks
from tracker.multi import TrackerCallbackHandler

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
    config: str
    serve_seconds: float
    flush_seconds: float
    stats: dict[str, Any]
    skipped: dict[str, int]
    archives: dict[str, Path]
    errors: list[str]
    report: Path | None = None


#: The demo's one handler: what we recommend for serving, every feature on.
def serving_handler(offline_dir: Path) -> TrackerCallbackHandler:
    """One ``TrackerCallbackHandler`` feeding ClearML and Comet, offline, with its defaults."""
    return TrackerCallbackHandler(
        [
            sinks.clearml(
                task_name="tracker demo",
                stream_logs=True,
                complexity_metrics=True,
                visualize=True,
                offline=True,
                offline_dir=offline_dir,
            ),
            sinks.comet(
                project_name="tracker-demo",
                name="tracker demo",
                stream_logs=True,
                complexity_metrics=True,
                visualizations=["dep", "ent"],
                offline=True,
                offline_dir=offline_dir,
            ),
        ],
        offline_dir=offline_dir,
    )


def describe(handler: TrackerCallbackHandler) -> str:
    """The one line naming the handler's configuration."""
    o = handler.options
    rotation = (
        f"every {o.rotate_events:,} events or {o.rotate_seconds:g} s"
        if o.rotate_events and o.rotate_seconds
        else "at flushes only"
    )
    budget = f"{o.enrichment_budget:g} s" if o.enrichment_budget is not None else "none"
    return (
        "config: one TrackerCallbackHandler -> ClearML + Comet (offline; stream_logs, complexity "
        f"metrics, visualizations); stream_tokens={o.stream_tokens!r}; session tables written "
        f"{rotation}; enrichment budget {budget}; Comet texts shared per batch"
    )


async def _serve(chain: Runnable[Any, Any], handlers: list[Any], chains: int) -> None:
    async def one(i: int) -> None:
        question = QUESTIONS[i % len(QUESTIONS)] + f" (request {i})"
        async for _ in chain.astream({"question": question}, config={"callbacks": handlers}):
            pass

    await asyncio.gather(*(one(i) for i in range(chains)))


async def _flush_with_progress(handler: TrackerCallbackHandler) -> Any:
    flush = asyncio.ensure_future(handler.aflush_tracker(finish=True))
    # A live bar on a terminal; one line every few seconds in a log.
    live = sys.stdout.isatty()
    ticks = 0
    while not flush.done():
        s = handler.stats()
        total = max(1, s["enqueued"] - s["dropped"])
        done = s["processed"]
        line = f"flushing  [{'#' * int(20 * done / total):<20}] {done}/{total}"
        if live:
            print("\r" + line, end="", flush=True)
        elif ticks % 25 == 0:
            print(line, flush=True)
        ticks += 1
        await asyncio.sleep(0.2)
    if live:
        print()
    return flush.result()


async def run_demo(
    chains: int = 500, tokens: int = 50, offline_dir: Path = Path("tracker-offline")
) -> DemoReport:
    """Serve ``chains`` concurrent chains with one handler feeding both backends, then flush."""
    random.seed(0)
    handler = serving_handler(offline_dir)
    config = describe(handler)
    print(config)
    chain = build_chain(tokens)
    print(f"serving {chains} concurrent chains ({tokens} streamed tokens each)…")
    started = time.perf_counter()
    await _serve(chain, [handler], chains)
    served = time.perf_counter() - started
    print(f"served in {served:.1f}s; flushing at shutdown")
    started = time.perf_counter()
    result = await _flush_with_progress(handler)
    flushed = time.perf_counter() - started
    archives = handler.archive_paths
    page = None
    if archives:
        from tracker.report import write_report

        page = write_report(list(archives.values()), offline_dir / "report.html")
    return DemoReport(
        chains=chains,
        config=config,
        serve_seconds=served,
        flush_seconds=flushed,
        stats=handler.stats(),
        skipped=result.skipped,
        archives=archives,
        errors=list(result.errors),
        report=page,
    )


def print_report(report: DemoReport) -> None:
    """The demo's summary for a person."""
    s = report.stats
    print()
    print(
        f"{report.chains} chains served in {report.serve_seconds:.1f}s; the flush after serving "
        f"took {report.flush_seconds:.1f}s (target: 5 s)"
    )
    print(
        f"events: captured {s['enqueued']}, written {s['processed']}, dropped {s['dropped']}, "
        f"pending {s['pending']}; session tables written {s['rotations']} times while serving"
    )
    skipped = ", ".join(f"{n} {k}" for k, n in report.skipped.items()) or "nothing"
    print(f"enrichments skipped (generations later than the budget): {skipped}")
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
    if report.report is not None:
        print(f"report (open it in a browser): {report.report.resolve()}")
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)
