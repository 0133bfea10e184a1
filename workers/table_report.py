"""A session table as the seeds report it, bounded: its first rows in the report, all in a file.

ClearML's ``report_table`` and Comet's ``log_table`` take a whole DataFrame; built from a million
rows in one go, the seeds' tables took 2.3 GB at the flush (benchmarks/RESULTS.md). Up to
``limit`` rows a table is reported exactly as the seeds report it. Past that, the report shows
the first ``limit`` rows, and the whole table is streamed a chunk at a time into a gzip file
(CSV, or JSON lines for the seeds' JSON assets) that the sink uploads beside it and the report
names. Memory then holds one chunk of rows, however long the session.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workers.json_text import json_bytes, json_text
from workers.session import SessionTable

#: A row of the table → the flat dict of its CSV line.
Flatten = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class TableReport:
    """What a sink reports for one table: the rows it shows, and the full file past the limit."""

    shown: pd.DataFrame
    rows: int
    full: Path | None = None

    @property
    def truncated(self) -> bool:
        """True when the report shows only the first rows (the rest are in :attr:`full`)."""
        return self.full is not None

    def note(self, where: str) -> str:
        """One line saying what the report shows and where the full table is."""
        return (
            f"{self.rows} rows; the report shows the first {len(self.shown)}; "
            f"the full table is {where}"
        )


def ordered_columns(rows: Iterable[dict[str, Any]], *, non_null: bool = False) -> list[str]:
    """Every key of ``rows`` in first-seen order (``pd.DataFrame(rows)``'s columns).

    ``non_null``: only keys with a value other than None/NaN in some row (``dropna(axis=1,
    how="all")``).
    """
    seen: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if key in seen:
                continue
            if non_null and (value is None or (isinstance(value, float) and value != value)):
                continue
            seen[key] = None
    return list(seen)


def json_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Dict and list cells as JSON text (how the seeds' tables show them)."""
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(
                lambda v: json.dumps(v, default=str) if isinstance(v, (dict, list)) else v
            )
    return frame


def write_csv_gz(
    table: SessionTable, path: Path, columns: list[str], flatten: Flatten | None = None
) -> int:
    """Every row of ``table`` into a gzip CSV at ``path``, a chunk at a time; returns rows."""
    written = 0
    with gzip.open(path, "wt", encoding="utf-8", newline="", compresslevel=5) as out:
        header = True
        for chunk in table.chunks():
            rows = chunk if flatten is None else [flatten(row) for row in chunk]
            frame = json_cells(pd.DataFrame(rows, columns=columns))
            frame.to_csv(out, header=header, index=False)
            header = False
            written += len(rows)
        if header:  # an empty table still has its header line
            pd.DataFrame(columns=columns).to_csv(out, index=False)
    return written


def json_array(rows: list[dict[str, Any]]) -> str:
    """``rows`` as one JSON array, for an asset of JSON text.

    Comet's ``log_asset_data`` given the rows themselves walks every cell twice (its
    ``nan2None``, then ``json.dumps``): a fifth of the worker's time in a session-table part
    (benchmarks/analysis.md, issue 15). Given this text, it stores it as it is.
    """
    return json_text(rows)


def write_jsonl_gz(table: SessionTable, path: Path) -> int:
    """Every row of ``table`` as one JSON line each into a gzip file; returns rows."""
    written = 0
    with gzip.open(path, "wb", compresslevel=5) as out:
        for chunk in table.chunks():
            out.write(b"".join(json_bytes(row) + b"\n" for row in chunk))
            written += len(chunk)
    return written


def bounded(
    table: SessionTable,
    limit: int,
    shape: Callable[[list[dict[str, Any]]], pd.DataFrame],
    full_path: Path,
    layout: Callable[[SessionTable], tuple[list[str], Flatten | None]],
) -> TableReport:
    """``table`` reported the seeds' way up to ``limit`` rows, with a full gzip CSV past it.

    ``shape`` turns rows into the seeds' DataFrame (it sees at most ``limit`` rows);
    ``layout`` gives the full file's columns and the per-row flattening, from a pass over the
    table (only called past the limit).
    """
    rows = len(table)
    if rows <= limit:
        return TableReport(shape(list(table)), rows)
    columns, flatten = layout(table)
    write_csv_gz(table, full_path, columns, flatten)
    return TableReport(shape(table.head(limit)), rows, full_path)


def file_name(title: str, series: str | None, suffix: str) -> str:
    """A file name for a table's full copy: its title and series, in safe characters."""
    stem = title if not series else f"{title} {series}"
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem).strip("-")
    return f"{safe[:120] or 'table'}{suffix}"
