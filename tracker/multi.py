"""``TrackerCallbackHandler``: one queue, one conversion, several backends.

Attaching ``ClearMLCallbackHandler`` and ``CometCallbackHandler`` side by side queues, ships and
converts every event twice. This handler does it once and hands each batch to all its sinks
(they write concurrently, each in order); the seed classes are this handler with one sink.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracker import testing
from tracker.handler import QueueingCallbackHandler
from tracker.settings import resolve_offline_dir, resolve_spool
from workers.flush import FlushRequest, FlushResult
from workers.forwarding import ForwardingPipeline
from workers.options import SERVING_DEFAULTS, PipelineOptions
from workers.pipeline import Pipeline
from workers.redact import RedactHook
from workers.sinks.base import Sink
from workers.sinks.spec import SinkSpec


def build_pipeline(
    sinks: Sequence[Sink | SinkSpec], options: PipelineOptions, redact: RedactHook | None
) -> Pipeline | ForwardingPipeline:
    """The tracker worker's pipeline for ``sinks``, unless one of them must run here.

    A sink must run in this process when it was built here (a :class:`Sink` object), asked to
    (``sink_process=False``), or wrapped by :func:`tracker.testing.wrap_sinks`; then all of
    them do, and the text metrics run in a thread of this process.
    """
    if options.transport is not None:  # a broker: the workers' sinks are theirs, not ours
        from workers.stream_transport import StreamPipeline

        specs = [sink if isinstance(sink, SinkSpec) else _spec_of(sink) for sink in sinks]
        return StreamPipeline(specs, options, redact=redact)  # type: ignore[return-value]
    wrap = testing.current_wrapper()
    local = wrap is not None or any(
        not isinstance(sink, SinkSpec) or sink.in_process for sink in sinks
    )
    if not local:
        return ForwardingPipeline(list(sinks), options, redact=redact)  # type: ignore[arg-type]
    built = [sink.build() if isinstance(sink, SinkSpec) else sink for sink in sinks]
    if wrap is not None:
        built = [wrap(sink) for sink in built]
    return Pipeline(built, options, redact=redact, local_metrics=True)


def _spec_of(sink: Sink) -> SinkSpec:
    """A description of a sink built here (only its name and needs are used by a transport)."""
    return SinkSpec(
        f"{type(sink).__module__}.{type(sink).__qualname__}",
        {},
        name=sink.name,
        needs_complexity=sink.needs_complexity,
        needs_pages=sink.needs_pages,
    )


class TrackerCallbackHandler(QueueingCallbackHandler):
    """A LangChain callback handler that logs to every sink in ``sinks``.

    ``sinks``: built with :mod:`tracker.sinks` (``clearml(...)``, ``comet(...)``,
    ``jsonl(...)``). ``spool``: where batches a backend refuses wait on disk (True:
    ``offline_dir/spool``; a path; False: none). ``redact``: ``f(record) -> record | None`` run
    after the default secret scrubber (it runs in this process: it is your code). The other
    keyword arguments are the settings of :class:`~workers.options.PipelineOptions`
    (``queue_size``, ``batch_size``, ``flush_interval``, ``metric_processes``, ``overflow``,
    ``block_timeout``, ``sample_rate``, ``stream_tokens``, ``table_rows``, ``rotate_events``,
    ``rotate_seconds``, ``enrichment_budget``, ``keep_errors``, ``keep_slower_than``,
    ``trace_buffer``, ``open_traces``, ``session_keys``, ``transport``, ``stream``). Its
    defaults are for serving (:data:`~workers.options.SERVING_DEFAULTS`), where the seed
    classes keep the seeds' ways:
    a run's streamed tokens go on its end record (``stream_tokens="aggregate"``;
    ``fields["streamed"]``: count and text) instead of a record per token; the session tables
    are written every 10,000 events or 60 s, so a flush has little left; and spaCy
    visualisations are skipped (counted) for events that waited over 2 s.
    """

    def __init__(
        self,
        sinks: Sequence[Sink | SinkSpec],
        *,
        spool: bool | str | os.PathLike[str] = True,
        offline_dir: str | os.PathLike[str] | None = None,
        redact: RedactHook | None = None,
        **settings: Any,
    ) -> None:
        """Start one pipeline feeding all ``sinks`` (in the tracker worker by default)."""
        sinks = list(sinks)
        if not sinks:
            raise ValueError("TrackerCallbackHandler needs at least one sink (tracker.sinks)")
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names):  # each sink spools in a directory named after it
            raise ValueError(f"sinks must be of different kinds, got {names}")
        for name, value in SERVING_DEFAULTS.items():
            settings.setdefault(name, value)
        settings["spool"] = resolve_spool(spool, resolve_offline_dir(offline_dir))
        options = PipelineOptions.from_settings(settings)
        super().__init__(build_pipeline(sinks, options, redact))

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

    @property
    def options(self) -> PipelineOptions:
        """The settings this handler runs with (defaults filled in)."""
        return self._pipeline.options

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
