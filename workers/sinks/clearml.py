"""ClearML: a Task (offline session by default), its console log, tables, media and model.

Off the caller's path, in a worker thread. Offline specifics measured here (see README):
the reporter runs in a thread (ClearML's subprocess reporter makes each flush wait ~5 s), the
repository/requirements detection is skipped (it held ``close()`` for minutes), and the offline
model upload bypasses ``OutputModel.published``, which crashes on ClearML's offline DummyModel.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pandas as pd

from workers.counters import Counters
from workers.flush import FlushRequest
from workers.records import Record
from workers.rows.clearml import ClearMLRows, session_analysis, session_columns
from workers.runs import LLM_RUN_FIGURES, RunTable, run_columns
from workers.session import SessionStore
from workers.sinks.archive_check import ArchiveError, verify_archive
from workers.sinks.asset import snapshot_asset
from workers.sinks.base import Sink
from workers.table_report import TableReport, bounded, file_name, ordered_columns

logger = logging.getLogger("tracker.sinks.clearml")

# Under ClearML's 1 MiB log-event size: a longer text would be cut mid-line into two events.
CONSOLE_CHUNK_CHARS = 512 * 1024

# Task.init binds to every ML framework it finds unless told not to; a LangChain logger wants none.
FRAMEWORKS_OFF: dict[str, bool] = dict.fromkeys(
    (
        "catboost fastai gradio hydra joblib lightgbm matplotlib megengine pytorch scikit "
        "tensorboard tensorflow tfdefines xgboost detect_repository"
    ).split(),
    False,
)
# ClearML names the media file "<title>_<series>_00000000.html": one path component, 255 bytes.
MEDIA_SERIES_BYTES = 220


class ClearMLSink(Sink):
    """Logs records to a ClearML Task as langchain_community's ClearMLCallbackHandler does."""

    name = "clearml"

    def __init__(
        self,
        *,
        task_type: str | None = "inference",
        project_name: str | None = "langchain_callback_demo",
        tags: list[str] | None = None,
        task_name: str | None = None,
        visualize: bool = False,
        complexity_metrics: bool = False,
        stream_logs: bool = False,
        offline: bool = True,
        offline_dir: Path = Path("tracker-offline"),
    ) -> None:
        """The seed's parameters, plus where offline sessions go."""
        self.task_type = task_type
        self.project_name = project_name
        self.tags = tags
        self.task_name = task_name
        self.stream_logs = stream_logs
        self.needs_complexity = complexity_metrics
        self.needs_pages = visualize
        self.offline = offline
        self.offline_dir = offline_dir
        self.task: Any = None
        self.logger: Any = None
        self.rows = ClearMLRows()
        self.store = SessionStore()
        self.runs = RunTable(self.store.table("runs"))
        self._llm_runs = 0
        self._media_dir = Path(tempfile.mkdtemp(prefix="tracker-clearml-media-"))

    @property
    def counters(self) -> Counters:
        """The seed counters, replayed in queue order."""
        return self.rows.counters

    async def open(self) -> None:
        """Create (or reuse, as the seed does) the current Task."""
        await anyio.to_thread.run_sync(self._open)

    def _open(self) -> None:
        from clearml import Task

        if self.offline:
            Task.set_offline(offline_mode=True)
            # Thread reporter: the subprocess one makes every flush wait ~5 s offline.
            Task._report_subprocess_enabled = False
        task = Task.current_task()
        if task is None:
            task = Task.init(
                project_name=self.project_name,
                task_name=self.task_name,
                task_type=self.task_type or Task.TaskTypes.inference,
                tags=self.tags,
                output_uri=True,
                auto_connect_frameworks=FRAMEWORKS_OFF,
                auto_connect_arg_parser=False,
                auto_connect_streams=False,
                auto_resource_monitoring=False,
            )
        self.task = task
        self.logger = task.get_logger()

    async def write(self, records: list[Record]) -> None:
        """Rows for the session tables; console text and media when streaming/visualizing."""
        await anyio.to_thread.run_sync(self._write, records)

    def _write(self, records: list[Record]) -> None:
        actions: list[dict[str, Any]] = []
        session: list[dict[str, Any]] = []
        for record in records:
            finished = self.runs.observe(record, self.session_keys)
            if finished is not None and finished["run_type"] in ("llm", "chat_model"):
                self._report_llm_run(finished)
            rows, pairs = self.rows.rows(record)
            actions.extend(rows)
            session.extend(pairs)
            if record.pages:
                self._report_pages(record)
        if self.stream_logs and actions:
            self._report_lines([str(row) for row in actions])
        self.store.table("actions").extend(actions)
        self.store.table("session").extend(session)

    def _report_lines(self, lines: list[str]) -> None:
        """The seed's one ``report_text`` per row, as a few calls of many lines.

        ClearML itself joins the texts reported within a second into one log event (lines
        separated by "\\n", up to 1 MiB), so the archive and the console view read the same;
        each call costs ~100 µs of the SDK's own Python, whatever its length. A row's ``str``
        never holds a raw newline (strings inside are repr'd), so no line is cut or merged.
        """
        chunk: list[str] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) + 1 > CONSOLE_CHUNK_CHARS:
                self.logger.report_text("\n".join(chunk), print_console=False)
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        if chunk:
            self.logger.report_text("\n".join(chunk), print_console=False)

    async def log_health(self, values: dict[str, float], step: int) -> None:
        """The tracker's health as scalars: title "Tracker health", one series per value."""
        await anyio.to_thread.run_sync(self._log_health, values, step)

    def _log_health(self, values: dict[str, float], step: int) -> None:
        for series, value in values.items():
            self.logger.report_scalar("Tracker health", series, value, iteration=step)

    def _report_llm_run(self, row: dict[str, Any]) -> None:
        """Latency and tokens of one LLM run as scalars over time (x: the LLM run's number)."""
        self._llm_runs += 1
        for series in LLM_RUN_FIGURES:
            value = row[series]
            if value is not None:
                self.logger.report_scalar("LLM runs", series, value, iteration=self._llm_runs)

    def _report_pages(self, record: Record) -> None:
        for text, page in zip(record.generation_texts(), record.pages or [], strict=False):
            if page is None:
                continue
            # The seed uses the whole text as the series, which ClearML puts in a file name:
            # past 255 bytes the seed fails with "File name too long".
            series = _clip_bytes(text, MEDIA_SERIES_BYTES)
            for title, html, style in (
                ("Dependencies Plot", page[0], "dep"),
                ("Entities Plot", page[1], "ent"),
            ):
                digest = hashlib.sha1(f"{style}-{text}".encode()).hexdigest()
                path = self._media_dir / f"{digest}.html"
                path.write_text(html, encoding="utf-8")
                self.logger.report_media(title, series, local_path=str(path))

    async def flush(self, request: FlushRequest) -> None:
        """The seed's flush_tracker: tables, asset, backend flush, counter reset, close."""
        await anyio.to_thread.run_sync(self._flush, request)

    def _flush(self, request: FlushRequest) -> None:
        actions, session = self._report_tables(request.name, open_runs=True)
        if self.stream_logs:
            self.logger.report_text(
                str({"action_records": actions, "session_analysis": session}), print_console=False
            )
        if request.langchain_asset is not None:
            self._log_asset(request.langchain_asset, request.name)
        self.task.flush(wait_for_uploads=True)
        self.rows.reset()
        if request.finish:
            self._finish()

    async def rotate(self, label: str) -> None:
        """The tables so far as series ``label`` (no counter reset, no backend flush)."""
        await anyio.to_thread.run_sync(self._report_tables, label, False)

    def _report_tables(
        self, series: str | None, open_runs: bool
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Action Records, Session Analysis and Runs as tables of ``series``, bounded.

        Returns the two seed tables as shown (the seed also streams them at its flush).
        """
        limit, folder = self.table_rows, self.store.folder
        actions = bounded(
            self.store.table("actions"),
            limit,
            pd.DataFrame,
            folder / file_name("Action Records", series, ".csv.gz"),
            lambda table: (ordered_columns(table), None),
        )
        session = bounded(
            self.store.table("session"),
            limit,
            lambda rows: session_analysis(pd.DataFrame(rows)),
            folder / file_name("Session Analysis", series, ".csv.gz"),
            lambda table: (session_columns(table), None),
        )
        runs = bounded(
            self.runs.report(open_runs=open_runs),
            limit,
            lambda rows: pd.DataFrame(rows, columns=run_columns(self.session_keys)),
            folder / file_name("Runs", series, ".csv.gz"),
            lambda table: (run_columns(self.session_keys), None),
        )
        for title, report in (
            ("Action Records", actions),
            ("Session Analysis", session),
            ("Runs", runs),
        ):
            self._report_table(title, series, report)
        self.store.clear()
        self.runs.reported()
        return actions.shown, session.shown

    def _report_table(self, title: str, series: str | None, report: TableReport) -> None:
        """One table the seed's way; past the row limit, its full copy as an artifact."""
        if report.shown.empty:
            return
        layout = None
        if report.full is not None:
            artifact = f"{title} / {series or ''}"  # ClearML stores a None series as ""
            note = report.note(f"the artifact {artifact!r}")
            self.task.upload_artifact(
                artifact,
                artifact_object=report.full,
                metadata={"table": title, "series": series or "", "rows": report.rows},
                wait_on_upload=True,
            )
            report.full.unlink(missing_ok=True)  # the Task keeps its own copy
            self.logger.report_text(f"tracker: {artifact}: {note}", print_console=False)
            layout = {"title": note}
        self.logger.report_table(
            title, series, table_plot=_cells(report.shown), extra_layout=layout
        )

    def _log_asset(self, asset: Any, name: str | None) -> None:
        from clearml import OutputModel

        saved = snapshot_asset(asset)
        folder = Path(tempfile.mkdtemp(prefix="tracker-asset-"))
        try:
            path = folder / "model.json"
            path.write_text(saved.json_text, encoding="utf-8")
            model = OutputModel(task=self.task, config_text=saved.json_text)
            if self.task.is_offline():
                # update_weights() first reads .published, which fails on the offline DummyModel.
                model._update_weights_offline(weights_filename=str(path), target_filename=name)
            else:
                model.update_weights(
                    weights_filename=str(path), auto_delete_file=False, target_filename=name
                )
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _finish(self) -> None:
        task = self.task
        offline = task.is_offline()
        folder = Path(task.get_offline_mode_folder()) if offline else None
        task.close()
        self.store.close()
        shutil.rmtree(self._media_dir, ignore_errors=True)
        if folder is not None:
            zipped = folder.with_suffix(".zip")
            if not zipped.exists():
                raise ArchiveError(f"ClearML wrote no offline session zip (expected {zipped})")
            target = self.offline_dir / zipped.name
            try:
                self.offline_dir.mkdir(parents=True, exist_ok=True)
                shutil.move(str(zipped), target)
            except OSError as exc:
                where = zipped if zipped.exists() else folder
                raise ArchiveError(
                    f"could not write the ClearML offline session to {target} ({exc}); "
                    f"ClearML's own copy is at {where}: upload it with "
                    "Task.import_offline_session"
                ) from exc
            verify_archive(target, "ClearML")
            self.archive_path = target
            logger.info("tracker: ClearML offline session written to %s", target)

    async def close(self) -> None:
        """Drop local files (the Task stays open for whoever owns it)."""
        self.store.close()
        shutil.rmtree(self._media_dir, ignore_errors=True)


def _clip_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (with "…" when cut)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "…"


def _cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A table ClearML's ``report_table`` takes as the seed's: dict cells as JSON text, and
    float columns with gaps as objects (ClearML fills gaps with the string "nan", which pandas
    refuses to put in a float column)."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if series.dtype == object:
            out[column] = series.map(lambda v: json.dumps(v) if isinstance(v, dict) else v)
        elif series.dtype.kind == "f" and series.isna().any():
            out[column] = series.astype(object)
    return out
