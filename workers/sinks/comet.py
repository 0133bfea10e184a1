"""Comet: an Experiment (OfflineExperiment by default) with texts, metrics, tables and assets.

Off the caller's path, in a worker thread. Comet's own auto-logging (code, git, environment,
stdout) is off: this sink logs LangChain data only.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from workers.counters import Counters
from workers.flush import FlushRequest
from workers.records import Record
from workers.rows.comet import CometRows, session_table
from workers.runs import RUN_COLUMNS, RunTable
from workers.session import SessionStore
from workers.sinks.archive_check import verify_archive
from workers.sinks.asset import snapshot_asset
from workers.sinks.base import Sink

logger = logging.getLogger("tracker.sinks.comet")

LANGCHAIN_MODEL_NAME = "langchain-model"
# Messages comet_ml may hold unwritten before a write waits for its writer (~1 KB each), and the
# longest such wait (a writer that stopped must not stop the tracker).
WRITER_BACKLOG = 10_000
WRITER_WAIT_SECONDS = 60.0
AUTO_LOGGING_OFF: dict[str, Any] = {
    "log_code": False,
    "log_graph": False,
    "auto_param_logging": False,
    "auto_metric_logging": False,
    "parse_args": False,
    "auto_output_logging": None,
    "log_env_details": False,
    "log_git_metadata": False,
    "log_git_patch": False,
    "log_env_gpu": False,
    "log_env_cpu": False,
    "log_env_host": False,
    "display_summary_level": 0,
}


def _langchain_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("langchain-core")
    except PackageNotFoundError:  # pragma: no cover - langchain-core is a dependency
        return "unknown"


#: The experiments this module created (see CometSink._open).
_OURS: weakref.WeakSet[Any] = weakref.WeakSet()


class CometSink(Sink):
    """Logs records to a Comet Experiment as langchain_community's CometCallbackHandler does."""

    name = "comet"

    def __init__(
        self,
        *,
        task_type: str | None = "inference",
        workspace: str | None = None,
        project_name: str | None = None,
        tags: list[str] | None = None,
        name: str | None = None,
        visualizations: list[str] | None = None,
        complexity_metrics: bool = False,
        custom_metrics: Callable[..., dict[str, Any]] | None = None,
        stream_logs: bool = True,
        offline: bool = True,
        offline_dir: Path = Path("tracker-offline"),
    ) -> None:
        """The seed's parameters, plus where offline experiments go."""
        self.task_type = task_type
        self.workspace = workspace
        self.project_name = project_name
        self.tags = tags
        self.experiment_name = name
        self.visualizations = visualizations
        self.needs_complexity = complexity_metrics
        self._end_error: str | None = None  # why end() failed, for later calls
        self.custom_metrics = custom_metrics
        self.stream_logs = stream_logs
        self.offline = offline
        self.offline_dir = offline_dir
        self.experiment: Any = None
        self.rows = CometRows(custom_metrics)
        self.store = SessionStore()
        self.runs = RunTable(self.store.table("runs"))
        self._llm_runs = 0

    @property
    def counters(self) -> Counters:
        """The seed counters, replayed in queue order."""
        return self.rows.counters

    async def open(self) -> None:
        """Create the experiment, tag and name it, as the seed's constructor does."""
        await anyio.to_thread.run_sync(self._open)

    def _open(self) -> None:
        # Comet reports its own errors to Sentry unless this is off when comet_ml is first
        # imported: a network call at run time, which offline use must never make.
        os.environ.setdefault("COMET_ERROR_TRACKING_ENABLE", "false")
        import comet_ml
        from comet_ml.config import get_global_experiment, set_global_experiment

        # comet_ml ends the process's previous experiment when a new one starts. One tracker
        # worker serves every handler of an application, so several of our experiments share
        # its process: ours must not end each other (a user's is still ended, as the seed does).
        if get_global_experiment() in _OURS:
            set_global_experiment(None)
        if self.offline:
            self.offline_dir.mkdir(parents=True, exist_ok=True)
            experiment = comet_ml.OfflineExperiment(
                project_name=self.project_name,
                workspace=self.workspace,
                offline_directory=str(self.offline_dir),
                **AUTO_LOGGING_OFF,
            )
        else:
            experiment = comet_ml.Experiment(
                project_name=self.project_name, workspace=self.workspace, **AUTO_LOGGING_OFF
            )
        experiment.log_other("Created from", "langchain")
        if self.tags:
            experiment.add_tags(list(self.tags))
        if self.experiment_name:
            experiment.set_name(self.experiment_name)
        self.experiment = experiment
        _OURS.add(experiment)

    async def write(self, records: list[Record]) -> None:
        """Texts and metric summaries now; rows kept for the session tables."""
        await anyio.to_thread.run_sync(self._write, records)

    def _alive(self) -> Any:
        """The experiment, or an error naming why comet_ml no longer takes its data.

        A dead experiment silently discards every later log call, so the cause must be told.
        """
        experiment = self.experiment
        if getattr(experiment, "alive", True):
            return experiment
        if self._end_error is not None:
            raise RuntimeError(f"ending the Comet experiment failed: {self._end_error}")
        from comet_ml.config import get_global_experiment

        current = get_global_experiment()
        if current is not None and current is not experiment and current not in _OURS:
            # comet_ml runs one experiment per process: creating another ends this one.
            raise RuntimeError(
                "the Comet experiment was ended by another experiment created in this process "
                "(comet_ml allows one running experiment at a time); use one CometCallbackHandler "
                "per process, or flush_tracker(reset=True) to start a new experiment"
            )
        raise RuntimeError(
            "comet_ml stopped the experiment (no longer alive): the Comet server may be "
            "unreachable or refusing it; comet_ml's own log lines say why"
        )

    def _write(self, records: list[Record]) -> None:
        experiment = self._alive()
        actions: list[dict[str, Any]] = []
        pairs: list[dict[str, Any]] = []
        for record in records:
            finished = self.runs.observe(record)
            if finished is not None and finished["run_type"] in ("llm", "chat_model"):
                self._log_llm_run(experiment, finished)
            out = self.rows.build(record)
            actions.extend(out.rows)
            pairs.extend(out.pairs)
            if self.stream_logs:
                for text, metadata, step in out.texts:
                    experiment.log_text(text, metadata=metadata, step=step)
            for prefix, values, step in out.metrics:
                experiment.log_metrics(values, prefix=prefix, step=step)
        self.store.table("actions").extend(actions)
        self.store.table("pairs").extend(pairs)
        self._wait_for_writer(experiment)

    async def log_health(self, values: dict[str, float], step: int) -> None:
        """The tracker's health as metrics ``tracker_<name>``."""
        experiment = self._alive()
        await anyio.to_thread.run_sync(
            lambda: experiment.log_metrics(values, prefix="tracker", step=step)
        )

    def _log_llm_run(self, experiment: Any, row: dict[str, Any]) -> None:
        """Latency and tokens of one LLM run as metrics over time (step: the LLM run's number)."""
        self._llm_runs += 1
        values = {
            name: row[name]
            for name in ("latency_s", "prompt_tokens", "completion_tokens", "total_tokens")
            if row[name] is not None
        }
        if values:
            experiment.log_metrics(values, prefix="llm_run", step=self._llm_runs)

    def _wait_for_writer(self, experiment: Any) -> None:
        """Backpressure: let comet_ml's writer thread catch up before taking more.

        comet_ml queues every message in memory and its offline writer thread puts them on disk
        about 1 000 per second; faster input grew the SDK's process by hundreds of MB per million
        events (benchmarks/RESULTS.md, memory). Waiting here (a worker thread of the sink) holds
        our bounded queue back instead, where the overflow policy applies.
        """
        messages = getattr(getattr(experiment, "streamer", None), "messages", None)
        if messages is None or messages.qsize() <= WRITER_BACKLOG:
            return
        deadline = time.monotonic() + WRITER_WAIT_SECONDS
        while messages.qsize() > WRITER_BACKLOG // 2 and time.monotonic() < deadline:
            time.sleep(0.01)

    async def flush(self, request: FlushRequest) -> None:
        """The seed's flush_tracker: session table, action records, visualizations, model."""
        pairs = list(self.store.table("pairs"))
        session = session_table(pairs)
        renders: list[dict[str, Any]] = []
        if self.visualizations and not session.empty and self.render_sentences is not None:
            texts = [str(t) for t in session.get("text", [])]
            try:
                renders = await self.render_sentences(texts, list(self.visualizations))
            except Exception as exc:
                logger.error("tracker: Comet visualizations skipped: %s", exc)
        await anyio.to_thread.run_sync(self._flush, request, session, renders)

    def _flush(self, request: FlushRequest, session: Any, renders: list[dict[str, Any]]) -> None:
        experiment = self._alive()
        if not session.empty:
            experiment.log_table("langchain-llm-session.csv", session)
        runs = self.runs.take()
        if runs:
            import pandas as pd

            table = pd.DataFrame(runs, columns=list(RUN_COLUMNS))
            experiment.log_table("langchain-runs.csv", table)
        experiment.log_asset_data(
            list(self.store.table("actions")),
            "langchain-action_records.json",
            metadata={"langchain_version": _langchain_version()},
        )
        prompts = list(session["prompts"]) if "prompts" in session else [None] * len(renders)
        for idx, (prompt, render) in enumerate(zip(prompts, renders, strict=False)):
            for style, html in render.items():
                if html is not None:
                    experiment.log_asset_data(
                        html,
                        name=f"langchain-viz-{style}-{idx}.html",
                        metadata={"prompt": prompt},
                        step=idx,
                    )
        if request.langchain_asset is not None:
            self._log_model(request.langchain_asset)
        self.store.clear()
        if request.finish:
            self._finish()
        if request.reset:
            self._reset(request.options)

    def _log_model(self, asset: Any) -> None:
        saved = snapshot_asset(asset)
        self.experiment.log_parameters(saved.llm_parameters, prefix="model")
        folder = Path(tempfile.mkdtemp(prefix="tracker-asset-"))
        try:
            path = folder / "model.json"
            path.write_text(saved.json_text, encoding="utf-8")
            self.experiment.log_model(self.experiment_name or LANGCHAIN_MODEL_NAME, str(path))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _finish(self) -> None:
        experiment = self._alive()
        try:
            experiment.end()  # comet_ml logs its own failures here rather than raising them
            if self.offline:
                archive = self.offline_dir / f"{experiment.id}.zip"
                verify_archive(archive, "Comet")
                self.archive_path = archive
                logger.info("tracker: Comet offline experiment written to %s", archive)
        except Exception as exc:
            self._end_error = f"{type(exc).__name__}: {exc}"  # a retry must say this, not "dead"
            raise

    def _reset(self, options: dict[str, Any]) -> None:
        """A new experiment, with the seed's rule: a falsy argument keeps the current value."""
        for key, attr in (
            ("task_type", "task_type"),
            ("workspace", "workspace"),
            ("project_name", "project_name"),
            ("tags", "tags"),
            ("name", "experiment_name"),
            ("visualizations", "visualizations"),
            ("complexity_metrics", "needs_complexity"),
            ("custom_metrics", "custom_metrics"),
        ):
            if options.get(key):
                setattr(self, attr, options[key])
        self.rows = CometRows(self.custom_metrics)
        self._open()

    async def close(self) -> None:
        """Drop local spill files."""
        self.store.close()
