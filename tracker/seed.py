"""What the langchain_community handlers expose besides callbacks: counters, flags, flush.

The counters live in the workers (replayed in queue order); reading them here gives the value as
of the last processed event, which is exact after a flush.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tracker.multi import TrackerCallbackHandler
from workers.counters import COUNTER_NAMES
from workers.flush import FlushRequest, FlushResult
from workers.forwarding import SinkMirror
from workers.redact import RedactHook
from workers.sinks.base import Sink
from workers.sinks.spec import SinkSpec

OPEN_WAIT_SECONDS = 60.0


def _counter(name: str) -> property:
    def get(self: SeedCompatibleHandler) -> int:
        return self._sink.counters.values[name]

    return property(get, doc=f"The seed's ``{name}`` counter, replayed in queue order.")


class SeedCompatibleHandler(TrackerCallbackHandler):
    """The attributes and methods both seed handlers share: a tracker with one sink."""

    always_verbose_ = False

    def __init__(
        self,
        sink: Sink | SinkSpec,
        *,
        spool: Path | None = None,
        redact: RedactHook | None = None,
        **settings: Any,
    ) -> None:
        """Serve ``sink`` through a new pipeline (``settings``: see PipelineOptions)."""
        # The seeds' ways unless asked: a record per token (same records, same counters), the
        # session tables only at flushes, every enrichment computed however late.
        seed_ways = {"rotate_events": None, "rotate_seconds": None, "enrichment_budget": None}
        super().__init__(
            [sink],
            spool=spool if spool is not None else False,
            redact=redact,
            stream_tokens="each",
            **{**seed_ways, **settings},
        )
        self.ignore_llm_ = False
        self.ignore_chain_ = False
        self.ignore_agent_ = False
        self.ignore_retriever_ = False
        self.always_verbose_ = False
        self.callback_columns: list[str] = []

    @property
    def _sink(self) -> Sink:
        """The served sink (the real one, or the test's wrapper around it).

        Read through the pipeline: in a forked child the pipeline serves a fresh sink.
        """
        return self._pipeline.sinks[0].inner

    step = _counter("step")
    starts = _counter("starts")
    ends = _counter("ends")
    errors = _counter("errors")
    text_ctr = _counter("text_ctr")
    chain_starts = _counter("chain_starts")
    chain_ends = _counter("chain_ends")
    llm_starts = _counter("llm_starts")
    llm_ends = _counter("llm_ends")
    llm_streams = _counter("llm_streams")
    tool_starts = _counter("tool_starts")
    tool_ends = _counter("tool_ends")
    agent_ends = _counter("agent_ends")

    @property
    def always_verbose(self) -> bool:
        """Whether to call verbose callbacks even if verbose is False."""
        return self.always_verbose_

    @property
    def ignore_llm(self) -> bool:
        """Whether to ignore LLM callbacks."""
        return self.ignore_llm_

    @property
    def ignore_chain(self) -> bool:
        """Whether to ignore chain callbacks."""
        return self.ignore_chain_

    @property
    def ignore_agent(self) -> bool:
        """Whether to ignore agent callbacks."""
        return self.ignore_agent_

    @property
    def ignore_retriever(self) -> bool:
        """Whether to ignore retriever callbacks."""
        return self.ignore_retriever_

    def get_custom_callback_meta(self) -> dict[str, Any]:
        """The seed counters (as of the last processed event; exact after a flush)."""
        values = self._sink.counters.values
        return {name: values[name] for name in COUNTER_NAMES}

    def reset_callback_meta(self) -> None:
        """Reset the counters, in order: events queued before this call still count as before."""
        self.ignore_llm_ = self.ignore_chain_ = self.ignore_agent_ = False
        self.always_verbose_ = False
        self._pipeline.reset_counters()

    @property
    def action_records(self) -> list[dict[str, Any]]:
        """The action rows since the last flush (as processed so far)."""
        return list(self._in_process("action_records").store.table("actions"))

    def _in_process(self, what: str) -> Any:
        """The real sink, when it runs in this process; else a clear error."""
        sink = getattr(self._sink, "inner", self._sink)
        if isinstance(sink, SinkMirror):
            raise RuntimeError(
                f"{type(self).__name__}.{what} lives in the tracker worker process; "
                "pass sink_process=False to the handler to use it from this process"
            )
        self._wait_open()
        return sink

    def analyze_text(self, text: str) -> dict[str, Any]:
        """The 16 complexity metrics of ``text`` if complexity_metrics is on (computed now)."""
        if not self._sink.needs_complexity:
            return {}
        from workers.metrics import complexity

        return complexity([text])[0]

    @property
    def archive_path(self) -> Path | None:
        """The offline archive written by ``flush_tracker(finish=True)``, else None."""
        return self._sink.archive_path

    def _wait_open(self) -> None:
        self._pipeline.opened.wait(OPEN_WAIT_SECONDS)

    def _flush(self, request: FlushRequest, timeout: float | None) -> FlushResult:
        return self._pipeline.flush(request, timeout)

    async def _aflush(self, request: FlushRequest, timeout: float | None) -> FlushResult:
        return await self._pipeline.aflush(request, timeout)
