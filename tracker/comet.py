"""``CometCallbackHandler``: langchain_community's, on the tracker's queue and workers."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from tracker import sinks
from tracker.seed import SeedCompatibleHandler
from tracker.settings import comet_configured, resolve_offline, resolve_offline_dir, resolve_spool
from workers.flush import FlushRequest, FlushResult
from workers.records import Record


class CometCallbackHandler(SeedCompatibleHandler):
    """Callback handler that logs to Comet, a drop-in for langchain_community's.

    Parameters (the seed's, with its defaults):
        task_type: kept for compatibility (the seed stores it and does nothing with it).
        workspace, project_name: where the experiment goes.
        tags: tags to add to the experiment.
        name: the experiment's name (also the logged model's name).
        visualizations: spaCy displacy styles (e.g. ["dep", "ent"]) rendered at flush.
        complexity_metrics: log the 16 textstat complexity metrics of each generation.
        custom_metrics: ``f(generation, prompt_idx, gen_idx) -> dict`` of extra metrics.
        stream_logs: log each callback's text with its record as metadata.

    Keyword-only extras: ``offline`` (None: offline when no COMET_API_KEY / .comet.config),
    ``offline_dir``, ``spool``, ``redact`` and the pipeline ``**settings``, as for
    :class:`~tracker.ClearMLCallbackHandler`; ``sink_process`` (default True) runs comet_ml in
    the tracker worker process (``.experiment`` is available only with False).
    ``custom_metrics`` is your code: it runs in this process, on the original generations.
    """

    def __init__(
        self,
        task_type: str | None = "inference",
        workspace: str | None = None,
        project_name: str | None = None,
        tags: Sequence[str] | None = None,
        name: str | None = None,
        visualizations: list[str] | None = None,
        complexity_metrics: bool = False,
        custom_metrics: Callable[..., dict[str, Any]] | None = None,
        stream_logs: bool = True,
        *,
        offline: bool | None = None,
        offline_dir: str | os.PathLike[str] | None = None,
        spool: bool | str | os.PathLike[str] = True,
        sink_process: bool = True,
        redact: Callable[[Record], Record | None] | None = None,
        **settings: Any,
    ) -> None:
        """Start the pipeline; the Comet experiment is created in the background."""
        self.task_type = task_type
        self.workspace = workspace
        self.project_name = project_name
        self.tags = tags
        self.name = name
        self.visualizations = visualizations
        self.complexity_metrics = complexity_metrics
        self.custom_metrics = custom_metrics
        self.stream_logs = stream_logs
        self.offline = resolve_offline(offline, comet_configured())
        self.offline_dir = resolve_offline_dir(offline_dir)
        self.sink_process = bool(sink_process)
        sink = sinks.comet(
            task_type,
            workspace,
            project_name,
            tags,
            name,
            visualizations,
            complexity_metrics,
            custom_metrics,
            stream_logs,
            offline=self.offline,
            offline_dir=self.offline_dir,
            sink_process=self.sink_process,
            text_sample="record",  # the seed's one text sample per text
            metric_summary="describe",  # and its 8 statistics per metric
        )
        super().__init__(
            sink,
            spool=resolve_spool(spool, self.offline_dir),
            redact=redact,
            **settings,
        )

    @property
    def experiment(self) -> Any:
        """The Comet experiment (waits for the background start, at most a minute)."""
        return self._in_process("experiment").experiment

    def flush_tracker(
        self,
        langchain_asset: Any = None,
        task_type: str | None = "inference",
        workspace: str | None = None,
        project_name: str | None = "comet-langchain-demo",
        tags: Sequence[str] | None = None,
        name: str | None = None,
        visualizations: list[str] | None = None,
        complexity_metrics: bool = False,
        custom_metrics: Callable[..., dict[str, Any]] | None = None,
        finish: bool = False,
        reset: bool = False,
        *,
        timeout: float | None = None,
    ) -> FlushResult:
        """Wait until every event so far reached Comet, then log the session.

        Logs "langchain-llm-session.csv", "langchain-action_records.json", the visualizations
        and the langchain_asset (parameters and model); ``finish`` ends the experiment (offline:
        writes the zip, see :attr:`archive_path`); ``reset`` starts a new experiment, each
        argument falling back to the current value when falsy, as the seed does.
        """
        return self._flush(self._request(locals()), timeout)

    async def aflush_tracker(
        self,
        langchain_asset: Any = None,
        task_type: str | None = "inference",
        workspace: str | None = None,
        project_name: str | None = "comet-langchain-demo",
        tags: Sequence[str] | None = None,
        name: str | None = None,
        visualizations: list[str] | None = None,
        complexity_metrics: bool = False,
        custom_metrics: Callable[..., dict[str, Any]] | None = None,
        finish: bool = False,
        reset: bool = False,
        *,
        timeout: float | None = None,
    ) -> FlushResult:
        """:meth:`flush_tracker` for async code: awaits without blocking the event loop."""
        return await self._aflush(self._request(locals()), timeout)

    def _request(self, args: dict[str, Any]) -> FlushRequest:
        options = {
            key: args[key]
            for key in (
                "task_type",
                "workspace",
                "project_name",
                "tags",
                "name",
                "visualizations",
                "complexity_metrics",
                "custom_metrics",
            )
        }
        if args["reset"]:
            # The seed re-runs __init__ with these; keep the public attributes in step.
            for key, value in options.items():
                if value:
                    setattr(self, key, value)
        return FlushRequest(
            langchain_asset=args["langchain_asset"],
            finish=args["finish"],
            reset=args["reset"],
            options=options,
        )
