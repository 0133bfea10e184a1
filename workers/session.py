"""Rows kept between flushes for the session tables, bounded in memory.

The seeds keep every record in Python lists until flush: a long-running server grows without
bound. Here each table keeps at most ``memory_rows`` rows in memory and appends the rest to a
file in a private (0700) temporary folder; the flush reads them back a chunk at a time (see
:mod:`workers.table_report`), so its memory does not grow with the session either.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_MEMORY_ROWS = 5_000


class SessionTable:
    """An append-only list of flat rows that spills to disk past ``memory_rows``."""

    def __init__(
        self, name: str, folder: Callable[[], Path], memory_rows: int = DEFAULT_MEMORY_ROWS
    ) -> None:
        """A table called ``name`` whose overflow file lives in ``folder()`` (asked for only
        when it first spills)."""
        self.name = name
        self._folder = folder
        self._path: Path | None = None
        self._memory_rows = memory_rows
        self._rows: list[dict[str, Any]] = []
        self._spilled = 0

    def __len__(self) -> int:
        """Rows held, in memory and on disk."""
        return self._spilled + len(self._rows)

    def extend(self, rows: list[dict[str, Any]]) -> None:
        """Append rows (JSON-safe dicts), spilling to disk when memory holds enough."""
        self._rows.extend(rows)
        if len(self._rows) >= self._memory_rows:
            self._spill()

    def _spill(self) -> None:
        # One pickle per spill of ``memory_rows`` rows: ~10x cheaper than a JSON line per row,
        # and only this process reads the file back, from a folder only its user can open.
        if self._path is None:
            self._path = self._folder() / f"{self.name}.pickles"
        with open(self._path, "ab") as out:
            pickle.dump(self._rows, out, protocol=pickle.HIGHEST_PROTOCOL)
        self._spilled += len(self._rows)
        self._rows = []

    def chunks(self) -> Iterator[list[dict[str, Any]]]:
        """Every row in order, a chunk at a time (at most ``memory_rows`` rows in memory)."""
        if self._spilled and self._path is not None:
            with open(self._path, "rb") as src:
                while True:
                    try:
                        rows = pickle.load(src)
                    except EOFError:
                        break
                    yield rows
        if self._rows:
            yield self._rows

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every row in order: the spilled ones first, then those in memory."""
        for chunk in self.chunks():
            yield from chunk

    def head(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` rows (reading no more of the spill file than they need)."""
        rows: list[dict[str, Any]] = []
        for chunk in self.chunks():
            rows.extend(chunk[: count - len(rows)])
            if len(rows) >= count:
                break
        return rows

    def frame(self, limit: int | None = None) -> pd.DataFrame:
        """The rows (the first ``limit`` of them) as a DataFrame, columns in first-seen order."""
        return pd.DataFrame(list(self) if limit is None else self.head(limit))

    def clear(self) -> None:
        """Forget every row."""
        self._rows = []
        self._spilled = 0
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None  # the next spill asks for the folder again (it may be new)


class SessionStore:
    """The tables of one sink between two flushes, with their private spill folder (made only
    when something is written to it: a sink built and never used leaves nothing behind)."""

    def __init__(self, memory_rows: int = DEFAULT_MEMORY_ROWS) -> None:
        """Create the store; its 0700 spill folder comes with the first file written there."""
        self._folder: Path | None = None
        self._cleanup: weakref.finalize | None = None
        self._memory_rows = memory_rows
        self._tables: dict[str, SessionTable] = {}

    def table(self, name: str) -> SessionTable:
        """The table called ``name``, created empty on first use."""
        table = self._tables.get(name)
        if table is None:
            table = self._tables[name] = SessionTable(name, lambda: self.folder, self._memory_rows)
        return table

    @property
    def folder(self) -> Path:
        """The store's private folder (for files written from its tables), made on first use."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="tracker-session-"))
            os.chmod(self._folder, 0o700)
            # A process that ends without closing its sinks (no finish) removes it too, if empty.
            self._cleanup = weakref.finalize(self, _remove_empty, self._folder)
        return self._folder

    def clear(self) -> None:
        """Empty every table (after a flush wrote them)."""
        for table in self._tables.values():
            table.clear()

    def close(self) -> None:
        """Remove the spill folder (if a file written there is still in it, it stays)."""
        self.clear()
        if self._cleanup is not None:
            self._cleanup()
        self._folder = self._cleanup = None


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` if it is empty (a file logged from it may still be needed)."""
    try:
        folder.rmdir()
    except OSError:
        pass
