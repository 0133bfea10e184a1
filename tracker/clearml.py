"""``ClearMLCallbackHandler``: langchain_community's, on the tracker's queue and workers."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from tracker import sinks
from tracker.seed import SeedCompatibleHandler
from tracker.settings import clearml_configured, resolve_offline, resolve_offline_dir, resolve_spool
from tracker.sinks import clearml_task_is_current
from workers.flush import FlushRequest, FlushResult
from workers.records import Record


class ClearMLCallbackHandler(SeedCompatibleHandler):
    """Callback handler that logs to ClearML, a drop-in for langchain_community's.

    Parameters (the seed's, with its defaults):
        task_type: ClearML task type ("inference", "testing", "qc", …).
        project_name: ClearML project name.
        tags: tags to add to the task.
        task_name: name of the ClearML task.
        visualize: log spaCy dependency and entity plots of each generation.
        complexity_metrics: log the 16 textstat complexity metrics of each generation.
        stream_logs: report each callback record to the task's console log.

    Keyword-only extras:
        offline: True for a ClearML offline session, False for the configured server; None
            (default) goes offline when no ClearML credentials are configured.
        offline_dir: where offline session archives go (default ``./tracker-offline``).
        spool: where batches the backend refuses are kept on disk until it answers again
            (True: ``offline_dir/spool``; a path; False: none, such batches are dropped and
            counted). A new handler replays what an earlier process left there.
        sink_process: run the ClearML SDK in the tracker worker process (None: yes, unless a
            Task is already current in this process, which is then reused as the seed does).
            False runs everything in this process, for debugging; ``.task`` and ``.logger``
            are only available then.
        redact: ``f(record) -> record | None``, run on every converted record after the default
            secret scrubber: return it (edit ``record.fields``, see
            :class:`~workers.records.Record`) or None to drop it (``stats()["redacted_dropped"]``).
            It is your code, so it runs in this process (on the tracker's background thread).
            A hook that raises never reaches the chain: that record is logged with its fields
            withheld (``stats()["redact_errors"]``). See :mod:`workers.redact`.
        **settings: the pipeline settings of :class:`~workers.options.PipelineOptions`
            (``queue_size``, ``batch_size``, ``flush_interval``, ``metric_processes``,
            ``overflow`` — "drop_newest", "drop_oldest", "block" or "spill" —,
            ``block_timeout``, ``sample_rate``).
    """

    def __init__(
        self,
        task_type: str | None = "inference",
        project_name: str | None = "langchain_callback_demo",
        tags: Sequence[str] | None = None,
        task_name: str | None = None,
        visualize: bool = False,
        complexity_metrics: bool = False,
        stream_logs: bool = False,
        *,
        offline: bool | None = None,
        offline_dir: str | os.PathLike[str] | None = None,
        spool: bool | str | os.PathLike[str] = True,
        sink_process: bool | None = None,
        redact: Callable[[Record], Record | None] | None = None,
        **settings: Any,
    ) -> None:
        """Start the pipeline; the ClearML Task is created in the background."""
        self.task_type = task_type
        self.project_name = project_name
        self.tags = tags
        self.task_name = task_name
        self.visualize = visualize
        self.complexity_metrics = complexity_metrics
        self.stream_logs = stream_logs
        self.offline = resolve_offline(offline, clearml_configured())
        self.offline_dir = resolve_offline_dir(offline_dir)
        self.sink_process = (
            not clearml_task_is_current() if sink_process is None else bool(sink_process)
        )
        sink = sinks.clearml(
            task_type,
            project_name,
            tags,
            task_name,
            visualize,
            complexity_metrics,
            stream_logs,
            offline=self.offline,
            offline_dir=self.offline_dir,
            sink_process=self.sink_process,
        )
        super().__init__(
            sink,
            spool=resolve_spool(spool, self.offline_dir),
            redact=redact,
            **settings,
        )

    @property
    def task(self) -> Any:
        """The ClearML Task (waits for the background start, at most a minute)."""
        return self._in_process("task").task

    @property
    def logger(self) -> Any:
        """The Task's ClearML Logger."""
        return self._in_process("logger").logger

    def flush_tracker(
        self,
        name: str | None = None,
        langchain_asset: Any = None,
        finish: bool = False,
        *,
        timeout: float | None = None,
    ) -> FlushResult:
        """Wait until every event so far reached ClearML, then log the session tables.

        Logs "Action Records" and "Session Analysis" (series ``name``), the langchain_asset as an
        OutputModel, resets the counters as the seed does, and with ``finish`` closes the Task
        (offline: writes the session zip, see :attr:`archive_path`). Returns a
        :class:`~workers.flush.FlushResult`; ``timeout`` (seconds) bounds the wait.
        """
        request = FlushRequest(name=name, langchain_asset=langchain_asset, finish=finish)
        return self._flush(request, timeout)

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
        return await self._aflush(request, timeout)
