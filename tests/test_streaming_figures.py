"""Streaming figures per LLM run (time to first token, tokens per second, chunks) and the
session keys of LangChain's metadata, in the runs table and scalars of every backend (issue 14,
items 2 and 3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate

from tracker import ClearMLCallbackHandler, TrackerCallbackHandler, sinks
from tracker.archive import read_clearml_archive, read_comet_archive

FIRST_TOKEN_DELAY = 0.4
GAP = 0.02
TOKENS = 11
METADATA = {"session_id": "s-1", "user_id": "u-7", "thread_id": 42}


class SlowFirstTokenChat(BaseChatModel):
    """Streams TOKENS chunks: the first after FIRST_TOKEN_DELAY s, then one every GAP s."""

    @property
    def _llm_type(self) -> str:
        return "slow-first-token"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join(f"t{i} " for i in range(TOKENS))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        raise NotImplementedError  # the test streams asynchronously

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        await asyncio.sleep(FIRST_TOKEN_DELAY)
        for i in range(TOKENS):
            if i:
                await asyncio.sleep(GAP)
            yield ChatGenerationChunk(message=AIMessageChunk(content=f"t{i} "))


async def stream_twice(handler: Any) -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | SlowFirstTokenChat()
    config = {"callbacks": [handler], "metadata": METADATA, "tags": ["checkout"]}
    for q in ("a", "b"):
        async for _ in chain.astream({"q": q}, config=config):
            pass


def check(runs: pd.DataFrame) -> None:
    """Each chat model run: its first token ~FIRST_TOKEN_DELAY after its start, TOKENS
    chunks, ~1/GAP tokens a second after the first; the session keys as columns."""
    chat = runs[runs["run_type"] == "chat_model"]
    assert len(chat) == 2
    for _, row in chat.iterrows():
        assert FIRST_TOKEN_DELAY <= float(row["ttft_s"]) < FIRST_TOKEN_DELAY + 0.3, row["ttft_s"]
        assert int(row["chunks"]) == TOKENS
        assert 0.3 / GAP < float(row["tokens_per_s"]) <= 1.1 / GAP, row["tokens_per_s"]
    assert set(runs["session_id"]) == {"s-1"} and set(runs["user_id"]) == {"u-7"}
    assert {int(v) for v in runs["thread_id"]} == {42}
    assert all("checkout" in str(tags) for tags in runs["tags"])
    assert all("s-1" in str(meta) for meta in runs["metadata"])
    others = runs[runs["run_type"] != "chat_model"]
    assert others["ttft_s"].isna().all()  # only runs that streamed have streaming figures


@pytest.mark.parametrize("mode", ["aggregate", "each"])
def test_time_to_first_token_and_session_columns_in_every_backend(offline_dir: Path, mode: str):
    handler = TrackerCallbackHandler(
        [
            sinks.clearml(task_name=f"ttft {mode}", offline_dir=offline_dir),
            sinks.comet(name=f"ttft {mode}", offline_dir=offline_dir),
            sinks.jsonl(offline_dir),
        ],
        offline_dir=offline_dir,
        stream_tokens=mode,
    )
    asyncio.run(stream_twice(handler))
    assert handler.flush_tracker(name="s", finish=True, timeout=120).ok
    paths = handler.archive_paths
    clearml = read_clearml_archive(paths["clearml"])
    check(clearml.tables()[("Runs", "s")])
    ttft = [s["value"] for s in clearml.scalars() if s["series"] == "ttft_s"]
    assert len(ttft) == 2 and all(FIRST_TOKEN_DELAY <= v for v in ttft), ttft
    comet = read_comet_archive(paths["comet"])
    check(comet.tables()["langchain-runs.csv"])
    names = [str(m.get("metricName", m.get("name"))) for m in comet.metrics()]
    assert names.count("llm_run_ttft_s") == 2 and names.count("llm_run_chunks") == 2
    lines = [pd.read_json(paths["jsonl"], lines=True)]
    runs = pd.DataFrame(
        [r for line in lines[0].itertuples() if line.type == "runs" for r in line.runs]
    )
    check(runs)


def test_session_keys_are_settable(offline_dir: Path):
    handler = ClearMLCallbackHandler(
        task_name="keys", offline_dir=offline_dir, session_keys=("tenant",)
    )
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | SlowFirstTokenChat()
    chain.invoke({"q": "x"}, config={"callbacks": [handler], "metadata": {"tenant": "acme"}})
    assert handler.flush_tracker(name="k", finish=True, timeout=120).ok
    runs = read_clearml_archive(handler.archive_path).tables()[("Runs", "k")]
    assert set(runs["tenant"]) == {"acme"} and "session_id" not in runs
