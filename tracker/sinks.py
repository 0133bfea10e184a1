"""Backends for :class:`~tracker.TrackerCallbackHandler`: ClearML, Comet and JSON lines.

Each function returns a :class:`~workers.sinks.spec.SinkSpec`: a description that the tracker
worker builds in its own process (nothing of the SDK is imported here). The ClearML and Comet
sinks take the seed handlers' parameters; ``sink_process=False`` runs the sink, and with it the
handler's whole pipeline, in the application's process (for debugging).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tracker.settings import (
    clearml_configured,
    comet_configured,
    resolve_offline,
    resolve_offline_dir,
)
from workers.sinks.comet_metrics import METRIC_SUMMARIES
from workers.sinks.comet_samples import TEXT_SAMPLE_MODES
from workers.sinks.spec import SinkSpec


def clearml_task_is_current() -> bool:
    """True when this process has a ClearML Task: a current one, or one an agent runs it for."""
    if os.environ.get("CLEARML_TASK_ID") or os.environ.get("TRAINS_TASK_ID"):
        return True
    clearml = sys.modules.get("clearml")
    return clearml is not None and clearml.Task.current_task() is not None


def clearml(
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
    sink_process: bool | None = None,
) -> SinkSpec:
    """A ClearML Task sink, with :class:`~tracker.ClearMLCallbackHandler`'s parameters.

    ``sink_process=None`` runs the SDK in the tracker worker unless a Task is current here.
    """
    kwargs: dict[str, Any] = {
        "task_type": task_type,
        "project_name": project_name,
        "tags": list(tags) if tags else None,
        "task_name": task_name,
        "visualize": visualize,
        "complexity_metrics": complexity_metrics,
        "stream_logs": stream_logs,
        "offline": resolve_offline(offline, clearml_configured()),
        "offline_dir": resolve_offline_dir(offline_dir),
    }
    # A Task already current in this process is reused, as the seed does: that needs the
    # sink here. Otherwise the SDK runs in the tracker worker, off this process's GIL.
    remote = not clearml_task_is_current() if sink_process is None else bool(sink_process)
    return SinkSpec(
        "workers.sinks.clearml.ClearMLSink",
        kwargs,
        name="clearml",
        needs_complexity=complexity_metrics,
        needs_pages=visualize,
        in_process=not remote,
    )


def comet(
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
    sink_process: bool = True,
    text_sample: str = "batch",
    metric_summary: str = "batch_mean",
) -> SinkSpec:
    """A Comet experiment sink, with :class:`~tracker.CometCallbackHandler`'s parameters.

    ``text_sample="batch"`` (the default here) logs one Comet text sample per batch, each
    record's text and metadata kept inside it (``tracker inspect`` and
    :meth:`tracker.archive.CometArchive.texts` split them back); ``"record"`` logs a sample per
    text, as the seed and :class:`~tracker.CometCallbackHandler` do.
    ``metric_summary="batch_mean"`` (the default here) logs ``<metric>_mean`` of the complexity
    and custom metrics once per batch the worker writes, over its LLM ends (one point per LLM
    end under light load, one per batch under load); ``"mean"`` that of each LLM end;
    ``"describe"`` the seed's 8 statistics per metric and LLM end
    (:mod:`workers.sinks.comet_metrics`).
    """
    if text_sample not in TEXT_SAMPLE_MODES:
        raise ValueError(f"text_sample must be 'record' or 'batch', got {text_sample!r}")
    if metric_summary not in METRIC_SUMMARIES:
        raise ValueError(
            f"metric_summary must be one of {METRIC_SUMMARIES}, got {metric_summary!r}"
        )
    kwargs: dict[str, Any] = {
        "task_type": task_type,
        "workspace": workspace,
        "project_name": project_name,
        "tags": list(tags) if tags else None,
        "name": name,
        "visualizations": visualizations,
        "complexity_metrics": complexity_metrics,
        "stream_logs": stream_logs,
        "offline": resolve_offline(offline, comet_configured()),
        "offline_dir": resolve_offline_dir(offline_dir),
        "text_sample": text_sample,
        "metric_summary": metric_summary,
    }
    return SinkSpec(
        "workers.sinks.comet.CometSink",
        kwargs,
        name="comet",
        needs_complexity=complexity_metrics,
        in_process=not sink_process,
        custom_metrics=custom_metrics,
    )


def jsonl(
    directory: str | os.PathLike[str] | None = None,
    session: str = "langchain",
    *,
    sink_process: bool = True,
    whole_sessions: bool = False,
) -> SinkSpec:
    """A JSON-lines file per session below ``directory`` (default ``./tracker-offline``).

    ``whole_sessions``: the file is named ``.jsonl`` only once its session finished
    (``.jsonl.partial`` until then).
    """
    return SinkSpec(
        "workers.sinks.jsonl.JsonLinesSink",
        {
            "directory": resolve_offline_dir(directory),
            "session": session,
            "whole_sessions": whole_sessions,
        },
        name="jsonl",
        in_process=not sink_process,
    )
