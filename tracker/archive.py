"""Readers for the offline archives that the ClearML and Comet SDKs write.

Both SDKs can run with no server: ClearML's offline mode (``Task.set_offline(True)``) zips each
task's session into ``<cache>/offline/<task id>.zip`` on ``Task.close()``, and Comet's
``OfflineExperiment`` writes ``<offline dir>/<experiment id>.zip`` on ``end()``. These readers turn
such an archive back into Python objects (dicts, strings, bytes and pandas DataFrames), without
importing either SDK, so that tests and the ``tracker inspect`` command can check what was logged.

Layouts, as written by clearml 2.1 and comet_ml 3.58:

ClearML (a zip, or the session folder before zipping)
    ``task.json``: the task's fields. ``metrics.jsonl``: one JSON list of events per line (``plot``
    events from ``report_table`` with a plotly table in ``plot_str``; ``training_debug_image``
    events from ``report_media``/``report_image`` whose ``key`` names a file under ``data/``;
    ``training_stats_scalar`` events from ``report_scalar``). ``log.jsonl``: one JSON list of
    ``log`` events per line, each with ``msg`` (ClearML joins consecutive console/``report_text``
    messages into one event, separated by ``"\\n"``). ``data/...``: the media files.

Comet (a zip)
    ``experiment.json``: project, workspace, tags, times. ``messages.json``: one JSON message per
    line, ``{"type": ..., "payload": {...}}`` (``metric_msg``, ``parameter_msg``, ``log_other``,
    ``file_upload``, ...). Every other member is an uploaded file, named by a ``file_upload``
    payload's ``file_path``; ``upload_type`` tells what it is (``text-sample``, ``dataframe``,
    ``asset``, ``model-element``, ...).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd

from workers.sinks.comet_samples import split_sample

__all__ = [
    "ClearMLArchive",
    "CometArchive",
    "read_archive",
    "read_clearml_archive",
    "read_comet_archive",
]

# Members that identify each kind of archive.
_CLEARML_TASK = "task.json"
_CLEARML_METRICS = "metrics.jsonl"
_CLEARML_LOG = "log.jsonl"
_CLEARML_DATA = "data/"
# Media live under data/, offline OutputModel weights under models/.
_CLEARML_FILES = (_CLEARML_DATA, "models/")
_COMET_EXPERIMENT = "experiment.json"
_COMET_MESSAGES = "messages.json"

# ClearML's report_table replaces missing values with the string "nan" (``fillna(str(np.nan))``)
# and infinities with these strings before building the plotly table.
_CLEARML_CELL_VALUES: dict[str, float] = {
    "nan": math.nan,
    "NaN": math.nan,
    "Inf": math.inf,
    "-Inf": -math.inf,
}


# --------------------------------------------------------------------------------------------
# Reading members
# --------------------------------------------------------------------------------------------


def _read_members(path: Path, expected: str) -> dict[str, bytes]:
    """All members of a zip archive (or files of a folder), by POSIX name relative to the root.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is neither a zip file nor a folder.
    """
    if path.is_dir():
        # A folder is accepted because ClearML keeps the session unzipped until Task.close().
        return {
            file.relative_to(path).as_posix(): file.read_bytes()
            for file in sorted(path.rglob("*"))
            if file.is_file()
        }
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; expected {expected}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a zip file; expected {expected}")
    try:
        with zipfile.ZipFile(path) as archive:
            return {
                info.filename: archive.read(info)
                for info in archive.infolist()
                if not info.is_dir()
            }
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(f"{path}: unreadable zip ({error}); expected {expected}") from error


def _load_json(path: Path, member: str, data: bytes) -> Any:
    """Parse one JSON member, naming the archive and the member on failure."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: member {member!r} is not valid JSON ({error})") from error


def _load_json_lines(path: Path, member: str, data: bytes) -> list[Any]:
    """Parse a JSON-lines member, skipping blank lines (the SDKs end files with a newline)."""
    values = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}: line {number} of member {member!r} is not valid JSON ({error})"
            ) from error
    return values


def _flatten_event_lines(lines: list[Any]) -> list[dict[str, Any]]:
    """ClearML writes one JSON list of events per line (one batch); flatten the batches."""
    events: list[dict[str, Any]] = []
    for line in lines:
        if isinstance(line, list):
            events.extend(event for event in line if isinstance(event, dict))
        elif isinstance(line, dict):
            events.append(line)
    return events


# --------------------------------------------------------------------------------------------
# ClearML
# --------------------------------------------------------------------------------------------


@dataclass
class ClearMLArchive:
    """A ClearML offline session: the task, its metric events, its console log and media files.

    Attributes:
        kind: ``"clearml"`` (a class constant, to dispatch on what :func:`read_archive` found).
        path: Where the archive was read from.
        task: ``task.json`` (id, name, project, type, tags, script, ...).
        events: Every metric event of ``metrics.jsonl``, flattened, in file order (tables are
            ``plot`` events, media ``training_debug_image``, scalars ``training_stats_scalar``).
        log_events: Every ``log`` event of ``log.jsonl`` (``level``, ``timestamp``, ``msg``, ...).
        log_messages: The ``msg`` of each log event; one message may hold several lines.
        files: Media and model files: member name (``data/...``, ``models/...``) -> content.
    """

    kind: ClassVar[Literal["clearml"]] = "clearml"

    path: Path
    task: dict[str, Any]
    events: list[dict[str, Any]]
    log_events: list[dict[str, Any]]
    log_messages: list[str]
    files: dict[str, bytes] = field(repr=False)

    def events_of_type(self, event_type: str) -> list[dict[str, Any]]:
        """The metric events whose ``type`` is ``event_type`` (e.g. ``"plot"``), in order."""
        return [event for event in self.events if event.get("type") == event_type]

    def tables(self, *, restore_missing: bool = True) -> dict[tuple[str, str], pd.DataFrame]:
        """Tables reported with ``Logger.report_table``, keyed by ``(title, series)``.

        Each DataFrame is rebuilt from the plotly table in the ``plot`` event's ``plot_str``, so
        it has the reported columns in order. ClearML adds a DataFrame's index as leading
        column(s) unless it is a ``RangeIndex``; those are told apart by their header (a bare name
        instead of ``[name]``) and become the index again. When the same title and series were
        reported several times, the last report wins, as in ClearML's UI.

        Args:
            restore_missing: Turn the strings ClearML substitutes for missing and infinite values
                (``"nan"``, ``"NaN"``, ``"Inf"``, ``"-Inf"``) back into floats before pandas
                infers each column's dtype. A genuine text cell ``"nan"`` cannot be told apart.
        """
        tables: dict[tuple[str, str], pd.DataFrame] = {}
        for event in self.events_of_type("plot"):
            table = _plotly_table(event.get("plot_str"))
            if table is None:
                continue  # Another kind of plot (scatter, histogram, ...).
            frame = _clearml_table_frame(*table, restore_missing=restore_missing)
            tables[(str(event.get("metric", "")), str(event.get("variant", "")))] = frame
        return tables

    def text_lines(self) -> list[str]:
        """Every console line: log messages split on ``"\\n"``.

        ClearML merges consecutive ``report_text`` calls (and captured console output) into one
        log event, so one line per call is only recovered by splitting. A text that itself
        contains newlines spans several lines.
        """
        return [line for message in self.log_messages for line in message.split("\n")]

    def media(self) -> list[dict[str, Any]]:
        """Debug samples (``report_media``/``report_image``), in report order.

        Each dict has ``title``, ``series``, ``iteration``, ``key`` (the SDK's storage key),
        ``member`` (the archive member holding the file, or ``None``) and ``content`` (its bytes,
        or ``None`` when the sample points to a URL outside the archive).
        """
        items = []
        for event in self.events_of_type("training_debug_image"):
            key = event.get("key")
            member = self._media_member(key, event.get("url"))
            items.append(
                {
                    "title": event.get("metric"),
                    "series": event.get("variant"),
                    "iteration": event.get("iter"),
                    "key": key,
                    "member": member,
                    "content": self.files.get(member) if member else None,
                }
            )
        return items

    def _media_member(self, key: Any, url: Any) -> str | None:
        """The ``data/`` member for a media event: ``data/<key>``, else the URL's tail."""
        if isinstance(key, str) and _CLEARML_DATA + key in self.files:
            return _CLEARML_DATA + key
        # Offline urls are absolute paths into the session folder, which the zip roots at data/.
        if isinstance(url, str):
            marker = "/" + _CLEARML_DATA
            if marker in url:
                member = _CLEARML_DATA + url.split(marker, 1)[1]
                if member in self.files:
                    return member
        return None

    def artifacts(self) -> list[dict[str, Any]]:
        """The Task's artifacts (``upload_artifact``): ``key``, ``metadata``, ``member`` (the
        archive member holding the file, or ``None``) and ``content`` (its bytes, or ``None``)."""
        items = []
        for artifact in (self.task.get("execution") or {}).get("artifacts") or []:
            uri = str(artifact.get("uri") or "")
            member = None
            marker = "/" + _CLEARML_DATA
            if marker in uri:
                member = _CLEARML_DATA + uri.split(marker, 1)[1]
            items.append(
                {
                    "key": artifact.get("key"),
                    "metadata": dict(artifact.get("display_data") or []),
                    "member": member if member in self.files else None,
                    "content": self.files.get(member) if member else None,
                }
            )
        return items

    def table_parts(self, title: str) -> list[tuple[str, pd.DataFrame]]:
        """Every report of the table ``title``, in order, as ``(series, rows)``: whole.

        A table past the tracker's row limit was reported with its first rows only, its full
        copy uploaded as the artifact ``"<title> / <series>"`` (gzip CSV): that copy is read
        instead. Rotations report a table several times, once per part.
        """
        full = {str(a["key"]): a["content"] for a in self.artifacts() if a["content"] is not None}
        parts = []
        for event in self.events_of_type("plot"):
            if str(event.get("metric", "")) != title:
                continue
            table = _plotly_table(event.get("plot_str"))
            if table is None:
                continue
            series = str(event.get("variant", ""))
            content = full.get(f"{title} / {series}")
            if content is not None:
                parts.append((series, _gzip_csv_frame(content)))
            else:
                parts.append((series, _clearml_table_frame(*table, restore_missing=True)))
        return parts

    def scalars(self) -> list[dict[str, Any]]:
        """Scalars (``report_scalar``) in report order: ``title``, ``series``, ``iteration``,
        ``value``."""
        return [
            {
                "title": event.get("metric"),
                "series": event.get("variant"),
                "iteration": event.get("iter"),
                "value": event.get("value"),
            }
            for event in self.events_of_type("training_stats_scalar")
        ]


def _plotly_table(plot_str: Any) -> tuple[list[Any], list[list[Any]]] | None:
    """Header values and cell columns of the first ``table`` trace of a plotly JSON string."""
    if not isinstance(plot_str, str):
        return None
    try:
        plot = json.loads(plot_str)
    except json.JSONDecodeError:
        return None
    for trace in plot.get("data") or []:
        if isinstance(trace, dict) and trace.get("type") == "table":
            headers = (trace.get("header") or {}).get("values") or []
            cells = (trace.get("cells") or {}).get("values") or []
            return list(headers), [list(column) for column in cells]
    return None


def _clearml_table_frame(
    headers: list[Any], columns: list[list[Any]], *, restore_missing: bool
) -> pd.DataFrame:
    """Rebuild the DataFrame given to ``report_table`` from its plotly header and cells.

    ClearML's ``create_plotly_table`` writes each DataFrame column's header as ``[name]`` and
    each index level's header as a bare ``name`` (``""`` when unnamed), index levels first. A
    table given as a list of rows has only bare headers, all of them columns.
    """
    if restore_missing:
        columns = [[_restore_cell(value) for value in column] for column in columns]
    # Index levels are the bare headers before the first [name] one. A table given as a list of
    # rows has no [name] header at all, and no index.
    is_column = [isinstance(header, list) for header in headers]
    index_count = is_column.index(True) if any(is_column) else 0
    # Lenient with malformed plots: a header without cells gets an empty column, cells without a
    # header are dropped.
    columns = columns + [[] for _ in range(len(headers) - len(columns))]
    pairs = list(zip((_header_name(header) for header in headers), columns, strict=False))
    index_pairs, column_pairs = pairs[:index_count], pairs[index_count:]
    row_count = max((len(values) for _, values in pairs), default=0)
    # Built column by column (keys are positions, since names may repeat), so that pandas infers
    # each column's dtype from its own values, as it did for the frame that was reported.
    frame = pd.DataFrame(
        {position: pd.Series(values) for position, (_, values) in enumerate(column_pairs)},
        index=pd.RangeIndex(row_count),
    )
    frame.columns = pd.Index([name for name, _ in column_pairs])
    if len(index_pairs) == 1:
        name, values = index_pairs[0]
        frame.index = pd.Index(values, name=name or None)
    elif index_pairs:
        frame.index = pd.MultiIndex.from_arrays(
            [values for _, values in index_pairs], names=[name or None for name, _ in index_pairs]
        )
    return frame


def _header_name(header: Any) -> Any:
    """A column name from a plotly header: ``[name]`` -> name, ``[a, b]`` -> ``(a, b)``."""
    if isinstance(header, list):
        if len(header) == 1:
            return header[0]
        return tuple(header)
    return header


def _restore_cell(value: Any) -> Any:
    """Undo ClearML's string stand-ins for missing and infinite values."""
    if isinstance(value, str):
        return _CLEARML_CELL_VALUES.get(value, value)
    return value


def read_clearml_archive(path: str | Path) -> ClearMLArchive:
    """Read a ClearML offline session: ``<task id>.zip``, or the unzipped session folder.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a ClearML offline session (not a zip, or no ``task.json``),
            or one of its JSON members is corrupt.
    """
    path = Path(path)
    expected = "a ClearML offline session (zip with task.json, metrics.jsonl, log.jsonl)"
    members = _read_members(path, expected)
    return _clearml_from_members(path, members, expected)


def _clearml_from_members(path: Path, members: dict[str, bytes], expected: str) -> ClearMLArchive:
    """Build a :class:`ClearMLArchive` from already-read members."""
    if _CLEARML_TASK not in members:
        raise ValueError(f"{path}: no {_CLEARML_TASK} member; expected {expected}")
    task = _load_json(path, _CLEARML_TASK, members[_CLEARML_TASK])
    if not isinstance(task, dict):
        raise ValueError(f"{path}: {_CLEARML_TASK} is not a JSON object; expected {expected}")
    # Both files are absent when nothing was reported, which is a valid (empty) session.
    events = _flatten_event_lines(
        _load_json_lines(path, _CLEARML_METRICS, members.get(_CLEARML_METRICS, b""))
    )
    log_events = _flatten_event_lines(
        _load_json_lines(path, _CLEARML_LOG, members.get(_CLEARML_LOG, b""))
    )
    return ClearMLArchive(
        path=path,
        task=task,
        events=events,
        log_events=log_events,
        log_messages=[str(event.get("msg", "")) for event in log_events if "msg" in event],
        files={name: data for name, data in members.items() if name.startswith(_CLEARML_FILES)},
    )


# --------------------------------------------------------------------------------------------
# Comet
# --------------------------------------------------------------------------------------------


@dataclass
class CometArchive:
    """A Comet offline experiment: its summary, its messages and its uploaded files.

    Attributes:
        kind: ``"comet"`` (a class constant, to dispatch on what :func:`read_archive` found).
        path: Where the archive was read from.
        experiment: ``experiment.json`` (``offline_id``, ``project_name``, ``workspace``,
            ``tags``, ``start_time``, ``stop_time``, ...).
        messages: ``messages.json``, one dict per message (``type`` and ``payload``), sorted by
            ``payload.message_id``, the order the SDK created them in (stable for messages
            without one).
        files: Uploaded files: member name (a ``file_upload`` payload's ``file_path``) -> bytes.
    """

    kind: ClassVar[Literal["comet"]] = "comet"

    path: Path
    experiment: dict[str, Any]
    messages: list[dict[str, Any]]
    files: dict[str, bytes] = field(repr=False)

    def messages_of_type(self, message_type: str) -> list[dict[str, Any]]:
        """The payloads of the messages whose ``type`` is ``message_type``, in order."""
        return [
            message.get("payload") or {}
            for message in self.messages
            if message.get("type") == message_type
        ]

    def uploads(self, upload_type: str | None = None) -> list[dict[str, Any]]:
        """``file_upload`` payloads (optionally of one ``upload_type``), in order.

        Each is the SDK's payload plus ``content``: the uploaded bytes, or ``None`` when the
        archive lacks the member.
        """
        uploads = []
        for payload in self.messages_of_type("file_upload"):
            if upload_type is not None and payload.get("upload_type") != upload_type:
                continue
            member = payload.get("file_path")
            uploads.append({**payload, "content": self.files.get(member) if member else None})
        return uploads

    def samples(self) -> list[tuple[str, dict[str, Any]]]:
        """``log_text`` samples in order, as uploaded: (text, metadata).

        Comet stores each text as a ``text-sample`` upload whose file is the raw UTF-8 text.
        """
        return [
            ((upload["content"] or b"").decode("utf-8"), dict(upload.get("metadata") or {}))
            for upload in self.uploads("text-sample")
        ]

    def texts(self) -> list[tuple[str, dict[str, Any]]]:
        """The logged texts in order, one per record: (text, metadata).

        A sample that ``TrackerCallbackHandler`` shared between the records of a batch is split
        back into them (:mod:`workers.sinks.comet_samples`); any other sample is one text.
        """
        return [item for text, meta in self.samples() for item in split_sample(text, meta)]

    def table_parts(self, stem: str) -> list[tuple[str, pd.DataFrame]]:
        """Every upload of the table ``stem`` (``"langchain-runs"``), in order, whole.

        Matches ``<stem>.csv`` (each flush) and ``<stem>.<part>.csv`` (each rotation). A table
        past the tracker's row limit was logged with its first rows only and followed by its
        full copy, the asset ``<name>.gz`` (gzip CSV): that copy is read instead.
        """
        parts: list[tuple[str, pd.DataFrame]] = []
        for upload in self.uploads():
            params = upload.get("additional_params") or {}
            name = str(params.get("fileName") or upload.get("file_path"))
            content = upload["content"]
            if content is None or not name.startswith(stem + "."):
                continue
            if upload.get("upload_type") == "dataframe" and name.endswith(".csv"):
                parts.append((name, _comet_csv_frame(content)))
            elif upload.get("upload_type") == "asset" and name.endswith(".csv.gz"):
                if parts and parts[-1][0] == name.removesuffix(".gz"):
                    parts[-1] = (parts[-1][0], _gzip_csv_frame(content))
        return parts

    def action_records(self) -> list[dict[str, Any]]:
        """Every action record of every flush and rotation, in order.

        From the ``langchain-action_records*.json`` assets; past the row limit such an asset
        holds the first rows and names its full copy (JSON lines, gzip) in its metadata.
        """
        records: list[dict[str, Any]] = []
        uploads = self.uploads("asset")
        by_name = {}
        for upload in uploads:
            params = upload.get("additional_params") or {}
            by_name.setdefault(str(params.get("fileName") or upload.get("file_path")), []).append(
                upload
            )
        for upload in uploads:
            params = upload.get("additional_params") or {}
            name = str(params.get("fileName") or upload.get("file_path"))
            if not (name.startswith("langchain-action_records") and name.endswith(".json")):
                continue
            full = (upload.get("metadata") or {}).get("full_table")
            copies = by_name.get(str(full), []) if full else []
            if copies and copies[0]["content"] is not None:
                content = gzip.decompress(copies.pop(0)["content"]).decode("utf-8")
                records.extend(json.loads(line) for line in content.splitlines() if line)
            elif upload["content"] is not None:
                rows = json.loads(upload["content"])
                records.extend(row for row in rows if isinstance(row, dict))
        return records

    def tables(self) -> dict[str, pd.DataFrame]:
        """DataFrames logged with ``log_table``, keyed by file name (last upload wins).

        ``.csv`` tables are parsed back; pandas' ``to_csv`` writes the index as an unnamed first
        column, which becomes the index again (a ``RangeIndex`` when it is ``0..n-1``). ``.json``
        tables are read with ``pandas.read_json``. Other formats (``.md``, ``.html``) are left
        out; their bytes are in :attr:`files`.
        """
        tables: dict[str, pd.DataFrame] = {}
        for upload in self.uploads("dataframe"):
            params = upload.get("additional_params") or {}
            name = str(params.get("fileName") or upload.get("file_path"))
            extension = str(params.get("extension") or name.rsplit(".", 1)[-1]).lower()
            content = upload["content"]
            if content is None:
                continue
            if extension == "csv":
                tables[name] = _comet_csv_frame(content)
            elif extension == "json":
                tables[name] = pd.read_json(io.BytesIO(content))
        return tables

    def assets(self) -> dict[str, tuple[bytes, dict[str, Any]]]:
        """Generic assets (``log_asset``/``log_asset_data``) by file name: (content, metadata).

        Only ``upload_type == "asset"``; text samples, tables and models have their own helpers.
        A name uploaded twice keeps the last content, as Comet's overwrite would.
        """
        assets: dict[str, tuple[bytes, dict[str, Any]]] = {}
        for upload in self.uploads("asset"):
            params = upload.get("additional_params") or {}
            name = str(params.get("fileName") or upload.get("file_path"))
            assets[name] = (upload["content"] or b"", dict(upload.get("metadata") or {}))
        return assets

    def asset_steps(self) -> dict[str, Any]:
        """The ``step`` each generic asset was logged at, by file name (last upload wins)."""
        steps: dict[str, Any] = {}
        for upload in self.uploads("asset"):
            params = upload.get("additional_params") or {}
            steps[str(params.get("fileName") or upload.get("file_path"))] = params.get("step")
        return steps

    def metrics(self) -> list[dict[str, Any]]:
        """Metrics in order: ``name``, ``value``, ``step``, ``epoch``.

        ``log_metrics(d, prefix=p)`` names them ``p_key``. Includes what the SDK adds itself, such
        as ``process duration``.
        """
        metrics = []
        for payload in self.messages_of_type("metric_msg"):
            metric = payload.get("metric") or {}
            metrics.append(
                {
                    "name": metric.get("metricName"),
                    "value": metric.get("metricValue"),
                    "step": metric.get("step"),
                    "epoch": metric.get("epoch"),
                }
            )
        return metrics

    def others(self) -> dict[str, Any]:
        """``log_other`` values by key, the last value winning.

        ``set_name(n)`` shows up as ``"Name": n``, and offline experiments carry
        ``"offline_experiment": True``.
        """
        return {
            payload.get("key"): payload.get("value")
            for payload in self.messages_of_type("log_other")
        }

    def parameters(self) -> list[dict[str, Any]]:
        """Parameters in order: ``name``, ``value``, ``step``, ``source``.

        ``source`` is ``"manual"`` for ``log_parameter(s)`` and ``"auto-logged"`` for those the
        SDK adds, such as ``curr_step`` whenever a call passes a new ``step``.
        """
        parameters = []
        for payload in self.messages_of_type("parameter_msg"):
            param = payload.get("param") or {}
            parameters.append(
                {
                    "name": param.get("paramName"),
                    "value": param.get("paramValue"),
                    "step": param.get("step"),
                    "source": param.get("source"),
                }
            )
        return parameters

    def models(self) -> list[dict[str, Any]]:
        """Model files (``log_model``) in order: ``name`` (the model), ``file_name``,
        ``content``, ``metadata``, ``step``."""
        return [
            {
                "name": (upload.get("additional_params") or {}).get("groupingName"),
                "file_name": (upload.get("additional_params") or {}).get("fileName"),
                "content": upload["content"],
                "metadata": dict(upload.get("metadata") or {}),
                "step": (upload.get("additional_params") or {}).get("step"),
            }
            for upload in self.uploads("model-element")
        ]

    def tags(self) -> list[str]:
        """The experiment's tags (``add_tag(s)``), from ``experiment.json``, sorted.

        Sorted because the SDK keeps tags in a set: their order in the archive varies by run.
        """
        return sorted(str(tag) for tag in self.experiment.get("tags") or [])


def _gzip_csv_frame(content: bytes) -> pd.DataFrame:
    """A table's full copy (gzip CSV, no index column) as a DataFrame."""
    return pd.read_csv(io.BytesIO(gzip.decompress(content)), low_memory=False)


def _comet_csv_frame(content: bytes) -> pd.DataFrame:
    """Parse a ``to_csv`` upload, turning the unnamed leading index column back into the index."""
    text = content.decode("utf-8")
    first_row = next(csv.reader(io.StringIO(text)), [])
    has_index = bool(first_row) and first_row[0] == ""
    frame = pd.read_csv(io.StringIO(text), index_col=0 if has_index else None)
    if has_index:
        frame.index.name = None
        if list(frame.index) == list(range(len(frame))):
            frame.index = pd.RangeIndex(len(frame))
    return frame


def read_comet_archive(path: str | Path) -> CometArchive:
    """Read a Comet offline experiment zip (``<experiment id>.zip``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a Comet offline archive (not a zip, or no
            ``experiment.json``/``messages.json``), or one of its JSON members is corrupt.
    """
    path = Path(path)
    expected = "a Comet offline experiment (zip with experiment.json and messages.json)"
    members = _read_members(path, expected)
    return _comet_from_members(path, members, expected)


def _comet_from_members(path: Path, members: dict[str, bytes], expected: str) -> CometArchive:
    """Build a :class:`CometArchive` from already-read members."""
    for required in (_COMET_EXPERIMENT, _COMET_MESSAGES):
        if required not in members:
            raise ValueError(f"{path}: no {required} member; expected {expected}")
    experiment = _load_json(path, _COMET_EXPERIMENT, members[_COMET_EXPERIMENT])
    if not isinstance(experiment, dict):
        raise ValueError(f"{path}: {_COMET_EXPERIMENT} is not a JSON object; expected {expected}")
    lines = _load_json_lines(path, _COMET_MESSAGES, members[_COMET_MESSAGES])
    messages = [line for line in lines if isinstance(line, dict)]
    messages.sort(key=_message_order)
    return CometArchive(
        path=path,
        experiment=experiment,
        messages=messages,
        files={
            name: data
            for name, data in members.items()
            if name not in (_COMET_EXPERIMENT, _COMET_MESSAGES)
        },
    )


def _message_order(message: dict[str, Any]) -> float:
    """Sort key: the payload's ``message_id``; messages without one go last (sort is stable)."""
    message_id = (message.get("payload") or {}).get("message_id")
    return float(message_id) if isinstance(message_id, int | float) else math.inf


# --------------------------------------------------------------------------------------------
# Either
# --------------------------------------------------------------------------------------------


def read_archive(path: str | Path) -> ClearMLArchive | CometArchive:
    """Read an offline archive of either SDK, telling them apart by their members.

    A ClearML session has ``task.json``; a Comet experiment has ``experiment.json`` and
    ``messages.json``. Folders are accepted for ClearML's unzipped sessions.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is neither kind of archive.
    """
    path = Path(path)
    expected = "a ClearML offline session or a Comet offline experiment"
    members = _read_members(path, expected)
    if _COMET_EXPERIMENT in members and _COMET_MESSAGES in members:
        return _comet_from_members(path, members, expected)
    if _CLEARML_TASK in members:
        return _clearml_from_members(path, members, expected)
    raise ValueError(
        f"{path}: has neither {_CLEARML_TASK} (ClearML) nor {_COMET_EXPERIMENT} and "
        f"{_COMET_MESSAGES} (Comet); expected {expected}"
    )
