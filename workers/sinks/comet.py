"""Comet: an Experiment (OfflineExperiment by default) with texts, metrics, tables and assets.

Off the caller's path, in a worker thread. Comet's own auto-logging (code, git, environment,
stdout) is off: this sink logs LangChain data only.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pandas as pd

from workers.counters import Counters
from workers.flush import FlushRequest
from workers.records import Record
from workers.rows.comet import CometRows, session_layout, session_table
from workers.runs import LLM_RUN_FIGURES, RunTable, run_columns
from workers.session import SessionStore
from workers.sinks.archive_check import verify_archive
from workers.sinks.asset import snapshot_asset
from workers.sinks.base import Sink
from workers.sinks.comet_metrics import METRIC_SUMMARIES, Summary, metric_calls
from workers.sinks.comet_samples import TEXT_SAMPLE_MODES, shared_samples
from workers.table_report import TableReport, bounded, file_name, json_array, write_jsonl_gz

logger = logging.getLogger("tracker.sinks.comet")

LANGCHAIN_MODEL_NAME = "langchain-model"
# Messages comet_ml may hold unwritten before a write waits for its writer (~1 KB each; it writes
# ~2,800 a second, and end() must write them all), per text_sample mode: the seed's way (a
# message per text) keeps the earlier 10,000, so that bursts wait in comet_ml rather than in
# queues that drop (at 2,000 for both, the seed classes' 2,000-chain serving rows dropped 16k
# of 130k events, which they had not at 10,000); shared samples send few messages, and 2,000
# keeps end() short.
WRITER_BACKLOG = {"record": 10_000, "batch": 2_000}
# The longest such wait: a writer that stopped must not stop the tracker.
WRITER_WAIT_SECONDS = 60.0
# Seconds comet_ml's offline writer thread waits on its empty queue before it looks again (the
# SDK's own is 1 s): end() stops that thread and joins it, so every end() took a second idle.
OFFLINE_WRITER_POLL_SECONDS = 0.05
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


#: The experiments this module created (see CometSink._open), and the lock creating them.
_OURS: weakref.WeakSet[Any] = weakref.WeakSet()
_OPENING = threading.Lock()


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
        text_sample: str = "record",
        metric_summary: str = "describe",
    ) -> None:
        """The seed's parameters, plus where offline experiments go.

        ``text_sample``: ``"record"`` logs a Comet text sample per text, as the seed does;
        ``"batch"`` logs one shared sample per batch, each record's text and metadata kept
        inside it (:func:`shared_samples`), which comet_ml's offline writer takes ~16x faster.
        ``metric_summary``: ``"describe"`` logs the seed's summary of each LLM end's complexity
        (and custom) metrics, 8 statistics per metric (``<metric>_count``, ``_mean``, ``_std``,
        ``_min``, ``_25%``, ``_50%``, ``_75%``, ``_max``); ``"mean"`` only ``<metric>_mean``,
        under the same name; ``"batch_mean"`` ``<metric>_mean`` over each batch's LLM ends
        (:mod:`workers.sinks.comet_metrics`).
        """
        if metric_summary not in METRIC_SUMMARIES:
            raise ValueError(
                f"metric_summary must be one of {METRIC_SUMMARIES}, got {metric_summary!r}"
            )
        self.metric_summary = metric_summary
        if text_sample not in TEXT_SAMPLE_MODES:
            raise ValueError(f"text_sample must be 'record' or 'batch', got {text_sample!r}")
        self.text_sample = text_sample
        self.task_type = task_type
        self.workspace = workspace
        self.project_name = project_name
        self.tags = tags
        self.experiment_name = name
        self.visualizations = visualizations
        self.needs_complexity = complexity_metrics
        self.needs_sentences = list(visualizations or [])
        self._viz_index = 0  # session rows since the flush: the seed's visualization index
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
        # Sinks open concurrently: one at a time here, or two could both see no experiment and
        # the second would end the first.
        with _OPENING:
            if get_global_experiment() in _OURS:
                set_global_experiment(None)
            self._create(comet_ml)

    def _create(self, comet_ml: Any) -> None:
        if self.offline:
            self.offline_dir.mkdir(parents=True, exist_ok=True)
            experiment = comet_ml.OfflineExperiment(
                project_name=self.project_name,
                workspace=self.workspace,
                offline_directory=str(self.offline_dir),
                **AUTO_LOGGING_OFF,
            )
            streamer = getattr(experiment, "streamer", None)
            if isinstance(getattr(streamer, "queue_timeout", None), (int, float)):
                streamer.queue_timeout = OFFLINE_WRITER_POLL_SECONDS
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
        texts: list[tuple[str, dict[str, Any], int]] = []
        batched: list[Summary] = []  # "batch_mean": the batch's summaries, logged as one
        for record in records:
            finished = self.runs.observe(record, self.session_keys)
            if finished is not None and finished["run_type"] in ("llm", "chat_model"):
                self._log_llm_run(experiment, finished)
            out = self.rows.build(record)
            actions.extend(out.rows)
            pairs.extend(out.pairs)
            if self.stream_logs:
                texts.extend(out.texts)
            if self.metric_summary == "batch_mean":
                batched.extend(out.metrics)
            else:
                self._log_summaries(experiment, out.metrics)
            if out.pairs and self.visualizations:
                self._log_visualizations(experiment, record, out.pairs)
        if batched:
            self._log_summaries(experiment, batched)
        if self.text_sample == "record":
            for text, metadata, step in texts:
                experiment.log_text(text, metadata=metadata, step=step)
        else:
            for text, metadata, step in shared_samples(texts):
                experiment.log_text(text, metadata=metadata, step=step)
        self.store.table("actions").extend(actions)
        self.store.table("pairs").extend(pairs)
        self._wait_for_writer(experiment)

    def _log_summaries(self, experiment: Any, summaries: list[Summary]) -> None:
        """LLM ends' metric summaries, the ``metric_summary`` way."""
        for values, prefix, step in metric_calls(summaries, self.metric_summary):
            experiment.log_metrics(values, prefix=prefix, step=step)

    def _log_visualizations(
        self, experiment: Any, record: Record, pairs: list[dict[str, Any]]
    ) -> None:
        """The seed's sentence renders of each generation, logged as its session row arrives.

        The seed renders every session row at the flush (~20 ms each); here they were rendered
        off the flush by the pipeline (``record.sentences``; None when skipped for the
        enrichment budget), under the seed's names: the index is the row's place in the
        session table since the last flush.
        """
        renders = record.sentences or []
        for offset, pair in enumerate(pairs):
            index = self._viz_index + offset
            render = renders[offset] if offset < len(renders) else None
            start = pair.get("start") or {}
            for style, html in (render or {}).items():
                if html is not None:
                    experiment.log_asset_data(
                        html,
                        name=f"langchain-viz-{style}-{index}.html",
                        metadata={"prompt": start.get("prompts")},
                        step=index,
                    )
        self._viz_index += len(pairs)

    async def log_health(self, values: dict[str, float], step: int) -> None:
        """The tracker's health as metrics ``tracker_<name>``."""
        experiment = self._alive()
        await anyio.to_thread.run_sync(
            lambda: experiment.log_metrics(values, prefix="tracker", step=step)
        )

    def _log_llm_run(self, experiment: Any, row: dict[str, Any]) -> None:
        """Latency and tokens of one LLM run as metrics over time (step: the LLM run's number)."""
        self._llm_runs += 1
        values = {name: row[name] for name in LLM_RUN_FIGURES if row[name] is not None}
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
        backlog = WRITER_BACKLOG[self.text_sample]
        if messages is None or messages.qsize() <= backlog:
            return
        deadline = time.monotonic() + WRITER_WAIT_SECONDS
        while messages.qsize() > backlog // 2 and time.monotonic() < deadline:
            time.sleep(0.01)

    async def flush(self, request: FlushRequest) -> None:
        """The seed's flush_tracker: session table, action records, model (bounded tables)."""
        await anyio.to_thread.run_sync(self._flush, request)

    def _flush(self, request: FlushRequest) -> None:
        experiment = self._alive()
        self._log_tables(experiment, None, open_runs=True)
        if request.langchain_asset is not None:
            self._log_model(request.langchain_asset)
        self._viz_index = 0
        if request.finish:
            self._finish()
        if request.reset:
            self._reset(request.options)

    async def rotate(self, label: str) -> None:
        """The tables so far under names carrying ``label`` (no model, no reset)."""
        await anyio.to_thread.run_sync(self._log_tables, self._alive(), label, False)

    def _log_tables(self, experiment: Any, label: str | None, open_runs: bool) -> None:
        """The session table, the runs table and the action records, bounded.

        At a flush (``label`` None) under the seed's names; a rotation's part carries its label
        in each name (``langchain-llm-session.part-3.csv``).
        """
        limit, folder = self.table_rows, self.store.folder
        suffix = f".{file_name(label, None, '')}" if label else ""
        session_name = f"langchain-llm-session{suffix}.csv"
        session = bounded(
            self.store.table("pairs"),
            limit,
            session_table,
            folder / f"{session_name}.gz",
            session_layout,
        )
        self._log_table(experiment, session_name, session)
        runs_name = f"langchain-runs{suffix}.csv"
        runs = bounded(
            self.runs.report(open_runs=open_runs),
            limit,
            lambda rows: pd.DataFrame(rows, columns=run_columns(self.session_keys)),
            folder / f"{runs_name}.gz",
            lambda table: (run_columns(self.session_keys), None),
        )
        self._log_table(experiment, runs_name, runs)
        self._log_actions(experiment, f"langchain-action_records{suffix}.json")
        self.store.clear()
        self.runs.reported()

    def _log_table(self, experiment: Any, name: str, report: TableReport) -> None:
        """``log_table`` as the seed; past the row limit, the full table as a gzip asset too."""
        if report.shown.empty:
            return
        experiment.log_table(name, report.shown)
        if report.full is not None:
            full = f"{name}.gz"
            experiment.log_asset(
                str(report.full), file_name=full, metadata={"table": name, "rows": report.rows}
            )
            report.full.unlink(missing_ok=True)  # comet_ml copied it (copy_to_tmp)
            experiment.log_other(name, report.note(f"the asset {full!r}"))

    def _log_actions(self, experiment: Any, name: str) -> None:
        """The action records as the seed's JSON asset (bounded), all of them as JSON lines."""
        table = self.store.table("actions")
        metadata: dict[str, Any] = {"langchain_version": _langchain_version()}
        if len(table) > self.table_rows:
            full = f"{name.removesuffix('.json')}.jsonl.gz"
            path = self.store.folder / full
            metadata.update(rows=len(table), shown=self.table_rows, full_table=full)
            write_jsonl_gz(table, path)
            experiment.log_asset(str(path), file_name=full, metadata={"rows": len(table)})
            path.unlink(missing_ok=True)
        experiment.log_asset_data(json_array(table.head(self.table_rows)), name, metadata=metadata)

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
        self.needs_sentences = list(self.visualizations or [])
        self.rows = CometRows(self.custom_metrics)
        self._open()

    async def close(self) -> None:
        """Drop local spill files."""
        self.store.close()
