"""A local JSON-lines sink: every record as one line, and the runs table at each flush.

For tests, for grepping, and for shipping to anything that reads JSON lines. One file per
session: ``<directory>/<name>-<timestamp>-<pid>.jsonl``; each line is an object with a ``type``:
``"record"`` (one callback), ``"runs"`` (part of the run table, at a flush or a rotation) or
``"flush"``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio

from workers.counters import Counters
from workers.flush import FlushRequest
from workers.json_text import json_text
from workers.records import Record
from workers.runs import RunTable
from workers.session import SessionStore
from workers.sinks.base import Sink


def record_line(record: Record) -> dict[str, Any]:
    """The JSON object of one record."""
    event = record.event
    line: dict[str, Any] = {
        "type": "record",
        "kind": event.kind.value,
        "seq": event.seq,
        "time": event.time,
        "run_id": str(event.run_id) if event.run_id is not None else None,
        "parent_run_id": str(event.parent_run_id) if event.parent_run_id is not None else None,
        "name": record.name,
        "tags": record.tags,
        "metadata": record.metadata,
        "fields": record.fields,
    }
    if record.degraded:
        line["degraded"] = True
    if record.complexity:
        line["complexity"] = record.complexity
    return line


class JsonLinesSink(Sink):
    """Appends records to a JSON-lines file (mode 0600), flushed to disk at each flush."""

    name = "jsonl"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        session: str = "langchain",
        whole_sessions: bool = False,
    ) -> None:
        """Write below ``directory``; ``session`` starts the file's name.

        ``whole_sessions``: write to ``<name>.jsonl.partial`` and rename it at the finish, so
        that a ``.jsonl`` file is always a finished session (``tracker worker``: a killed
        worker's entries are written again by another, and must not count twice).
        """
        self.directory = Path(directory)
        self.session = session
        self.whole_sessions = whole_sessions
        self._writing: Path | None = None
        self.path: Path | None = None
        self.store = SessionStore()
        self.runs = RunTable(self.store.table("runs"))
        self._counters = Counters()
        self._file: Any = None

    @property
    def counters(self) -> Counters:
        """The seed counters, replayed from the records."""
        return self._counters

    async def open(self) -> None:
        """Create the session file."""
        await anyio.to_thread.run_sync(self._open)

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = self.directory / f"{self.session}-{stamp}-{os.getpid()}.jsonl"
        self._writing = (
            self.path.with_suffix(".jsonl.partial") if self.whole_sessions else self.path
        )
        fd = os.open(self._writing, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    async def write(self, records: list[Record]) -> None:
        """One line per record, in order."""
        await anyio.to_thread.run_sync(self._write, records)

    def _write(self, records: list[Record]) -> None:
        lines = []
        for record in records:
            self._counters.advance(record.kind)
            self.runs.observe(record, self.session_keys)
            lines.append(json_text(record_line(record)) + "\n")
        self._file.write("".join(lines))

    async def log_health(self, values: dict[str, float], step: int) -> None:
        """A ``"health"`` line."""
        line = json_text({"type": "health", "step": step, "time": time.time(), **values})
        await anyio.to_thread.run_sync(self._file.write, line + "\n")

    async def flush(self, request: FlushRequest) -> None:
        """The runs table and a flush marker, then fsync; with ``finish`` close the file."""
        await anyio.to_thread.run_sync(self._flush, request)

    def _flush(self, request: FlushRequest) -> None:
        out = self._file
        self._write_runs(request.name, open_runs=True)
        out.write(json_text({"type": "flush", "name": request.name, "time": time.time()}))
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
        if request.finish:
            out.close()
            self._file = None
            self.store.close()
            if self._writing is not None and self._writing != self.path:
                os.replace(self._writing, self.path)
            self.archive_path = self.path

    async def rotate(self, label: str) -> None:
        """The runs ended so far, as ``"runs"`` lines named ``label``."""
        await anyio.to_thread.run_sync(self._write_runs, label, False)

    def _write_runs(self, name: str | None, open_runs: bool) -> None:
        """``"runs"`` lines, one per chunk of the table (memory holds one chunk)."""
        for chunk in self.runs.report(open_runs=open_runs).chunks():
            self._file.write(json_text({"type": "runs", "name": name, "runs": chunk}) + "\n")
        self.runs.reported()

    async def close(self) -> None:
        """Close the file without a final flush record."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.store.close()
