"""``TrackerCallbackHandler``: one queue, one conversion, several backends.

Attaching ``ClearMLCallbackHandler`` and ``CometCallbackHandler`` side by side queues, converts
and scrubs every event twice. This handler does it once and hands each batch to all its sinks
(they write concurrently, each in order); the seed classes are this handler with one sink.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracker.handler import QueueingCallbackHandler
from tracker.settings import resolve_offline_dir, resolve_spool
from workers.flush import FlushRequest, FlushResult
from workers.pipeline import DEFAULT_BATCH_SIZE, DEFAULT_FLUSH_INTERVAL, Pipeline
from workers.queue import DEFAULT_QUEUE_SIZE
from workers.redact import RedactHook
from workers.sinks.base import Sink


class TrackerCallbackHandler(QueueingCallbackHandler):
    """A LangChain callback handler that logs to every sink in ``sinks``.

    ``sinks``: built with :mod:`tracker.sinks` (``clearml(...)``, ``comet(...)``,
    ``jsonl(...)``). The keyword arguments are the seed classes' extras (see the README):
    ``queue_size``, ``batch_size``, ``flush_interval``, ``metric_processes``, ``overflow``,
    ``block_timeout``, ``spool`` (below ``offline_dir``), ``redact``; ``sample_rate``, the
    share of root runs (whole traces) to log; ``stream_tokens``: "aggregate" (default) puts a
    run's streamed tokens on its end record (``fields["streamed"]``: count and text), "each"
    logs a record per token, as the seed classes do.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        metric_processes: int = 2,
        overflow: str = "drop_newest",
        block_timeout: float = 1.0,
        spool: bool | str | os.PathLike[str] = True,
        offline_dir: str | os.PathLike[str] | None = None,
        redact: RedactHook | None = None,
        sample_rate: float = 1.0,
        stream_tokens: str = "aggregate",
    ) -> None:
        """Start one pipeline feeding all ``sinks``."""
        sinks = list(sinks)
        if not sinks:
            raise ValueError("TrackerCallbackHandler needs at least one sink (tracker.sinks)")
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names):  # each sink spools in a directory named after it
            raise ValueError(f"sinks must be of different kinds, got {names}")
        pipeline = Pipeline(
            sinks,
            queue_size=queue_size,
            batch_size=batch_size,
            flush_interval=flush_interval,
            metric_processes=metric_processes,
            overflow=overflow,
            block_timeout=block_timeout,
            spool=resolve_spool(spool, resolve_offline_dir(offline_dir)),
            redact=redact,
            sample_rate=sample_rate,
            stream_tokens=stream_tokens,
        )
        super().__init__(pipeline)

    def flush_tracker(
        self,
        name: str | None = None,
        langchain_asset: Any = None,
        finish: bool = False,
        *,
        timeout: float | None = None,
    ) -> FlushResult:
        """Wait until every event so far reached every sink; write the session tables."""
        request = FlushRequest(name=name, langchain_asset=langchain_asset, finish=finish)
        return self._pipeline.flush(request, timeout)

    async def aflush_tracker(
        self,
        name: str | None = None,
        langchain_asset: Any = None,
        finish: bool = False,
        *,
        timeout: float | None = None,
    ) -> FlushResult:
        """:meth:`flush_tracker` for async code: awaits without blocking the event loop."""
        request = FlushRequest(name=name, langchain_asset=langchain_asset, finish=finish)
        return await self._pipeline.aflush(request, timeout)

    def stats(self) -> dict[str, Any]:
        """Queue and pipeline counters: enqueued, processed, dropped, queue_depth, …"""
        return self._pipeline.stats()

    @property
    def archive_paths(self) -> dict[str, Path]:
        """Each sink's archive (offline zip, JSON-lines file) once ``finish`` wrote it."""
        return {
            sink.name: sink.archive_path
            for sink in self._pipeline.sinks
            if sink.archive_path is not None
        }
