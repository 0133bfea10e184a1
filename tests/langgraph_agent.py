"""A LangGraph ReAct agent for the tests: a tool-calling fake chat model, two tools (one fails
every third session), a checkpointer with thread ids.

LangChain's ``GenericFakeChatModel`` drops ``tool_calls`` and ``usage_metadata`` when it
streams, so this model streams its own chunks, tool calls and token usage included.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import tool

USAGE = {"input_tokens": 20, "output_tokens": 5, "total_tokens": 25}


class ToolCallingChat(BaseChatModel):
    """Asks for a tool on the user's turn, answers once the tool replied."""

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ToolCallingChat:  # type: ignore[override]
        """The tools are known: this model asks for them by name."""
        return self

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            return AIMessage(content=f"The answer is {last.content}.", usage_metadata=USAGE)
        question = str(last.content)
        name = "fragile" if "fail" in question else "lookup"
        call = {"name": name, "args": {"query": question}, "id": f"call-{abs(hash(question))}"}
        return AIMessage(content="", tool_calls=[call], usage_metadata=USAGE)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    def _chunks(self, messages: list[BaseMessage]) -> list[AIMessageChunk]:
        reply = self._reply(messages)
        if reply.tool_calls:
            call = reply.tool_calls[0]
            chunk = {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"]}
            return [
                AIMessageChunk(
                    content="",
                    tool_call_chunks=[{**chunk, "index": 0}],
                    usage_metadata=reply.usage_metadata,
                )
            ]
        words = str(reply.content).split(" ")
        chunks = [AIMessageChunk(content=(" " if i else "") + w) for i, w in enumerate(words)]
        chunks[-1] = AIMessageChunk(content=chunks[-1].content, usage_metadata=reply.usage_metadata)
        return chunks

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            yield ChatGenerationChunk(message=chunk)


@tool
def lookup(query: str) -> str:
    """Look a question up."""
    return f"42 ({len(query)} chars)"


@tool
def fragile(query: str) -> str:
    """A tool that fails."""
    raise RuntimeError(f"the fragile tool broke on {query!r}")


def agent() -> Any:
    """The ReAct agent: the model, both tools, a MemorySaver (thread ids)."""
    from langgraph.checkpoint.memory import MemorySaver
    from langgraph.prebuilt import create_react_agent

    return create_react_agent(ToolCallingChat(), [lookup, fragile], checkpointer=MemorySaver())
