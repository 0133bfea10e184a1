"""A durable local spool: batches a backend could not take yet, kept on disk in order.

Storage is SQLite (standard library) in WAL mode with ``synchronous=FULL``: an append returns
once its transaction is on disk, a crash mid-append leaves the database as it was before it,
and a full disk fails the one append (its transaction rolls back) without harming what is
already stored or what is appended once space is back. That replaces the hand-written framing,
CRC and cursor of earlier versions (a torn frame after ``ENOSPC`` hid every later batch).

Layout: a directory (mode 0700) holding ``spool.sqlite3`` and its WAL files (mode 0600), and a
``lock`` file. Each batch is a row (a pickled list of wire tuples, see
:meth:`workers.records.Record.to_wire`), replayed oldest first; :meth:`Spool.commit` deletes it
once the backend took it, so a batch is replayed once unless the process dies between the
backend's write and that delete.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger("tracker.spool")

DATABASE = "spool.sqlite3"


class SpoolError(RuntimeError):
    """The spool directory cannot be used (permissions, full disk, …)."""


class SpoolBusy(SpoolError):
    """Another live process owns this spool directory."""


def _try_lock(directory: Path) -> int | None:
    """An exclusive lock on ``directory`` held as long as the returned descriptor is open."""
    fd = os.open(directory / "lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def adopt_spools(root: str | os.PathLike[str], name: str) -> list[Spool]:
    """Every spool ``root/name``, ``root/name-N`` that holds batches and no live process owns.

    For a new process to take over what dead ones left (the caller closes each).
    """
    adopted: list[Spool] = []
    for directory in sorted(Path(root).glob(f"{name}*")):
        suffix = directory.name[len(name) :]
        if not directory.is_dir() or (suffix and not suffix.lstrip("-").isdigit()):
            continue
        try:
            spool = Spool(directory)
        except SpoolError:  # owned by a live process, or unusable: not ours to take
            continue
        if spool.pending_batches:
            adopted.append(spool)
        else:
            spool.close()
    return adopted


def open_spool(root: str | os.PathLike[str], name: str) -> Spool:
    """The first spool ``root/name``, ``root/name-1``, … that no other live process holds.

    Processes sharing an offline directory (gunicorn workers, a restarted service next to its
    old instance) each get their own; a new process adopts, and replays, whatever a dead one left
    in the first free directory.
    """
    for index in range(64):
        directory = Path(root) / (name if index == 0 else f"{name}-{index}")
        with contextlib.suppress(SpoolBusy):
            return Spool(directory)
    raise SpoolError(f"no free spool directory below {root} for {name!r} (64 are in use)")


class Spool:
    """Durable, ordered batch storage with replay-once commits.

    One owner process at a time (a ``flock`` on the directory); within it, safe from any thread.
    """

    def __init__(self, directory: str | os.PathLike[str]):
        """Open (or create) the spool in ``directory``; counts what an earlier run left there."""
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.directory, 0o700)
        except OSError as exc:
            raise SpoolError(
                f"cannot use {self.directory} as the tracker's spool ({exc}); pass spool= a "
                "writable directory, or spool=False to go without one (batches the backend "
                "refuses are then dropped and counted)"
            ) from exc
        self._lock = _try_lock(self.directory)
        if self._lock is None:
            raise SpoolBusy(f"{self.directory} is in use by another process")
        self._mutex = threading.Lock()
        path = self.directory / DATABASE
        old_umask = os.umask(0o077)  # the database and its WAL files: 0600
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS batches ("
                "id INTEGER PRIMARY KEY AUTOINCREMENT, events INTEGER NOT NULL, "
                "payload BLOB NOT NULL)"
            )
            count, events = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(events), 0) FROM batches"
            ).fetchone()
        except sqlite3.Error as exc:
            os.close(self._lock)
            self._lock = None
            raise SpoolError(f"cannot use the spool at {path}: {exc}") from exc
        finally:
            os.umask(old_umask)
        self.pending_batches: int = count
        self.pending_events: int = events

    def append(self, batch: list[Any], events: int | None = None) -> None:
        """Store one batch durably; ``events``: how many events it holds (``len(batch)``).

        Raises :class:`SpoolError` (the batch was not stored) on a full disk or a broken file.
        """
        count = len(batch) if events is None else events
        self._insert([(count, pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))])

    def append_many(self, batches: list[list[Any]]) -> None:
        """Store ``batches`` durably in one transaction (one sync for all): all or none."""
        self._insert([(len(b), pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL)) for b in batches])

    def _insert(self, payloads: list[tuple[int, bytes]]) -> None:
        """One transaction for ``payloads`` (events, pickled batch); :class:`SpoolError` and
        nothing stored when it fails."""
        count = sum(n for n, _ in payloads)
        with self._mutex:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO batches (events, payload) VALUES (?, ?)", payloads
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise SpoolError(
                    f"could not write {count} events to the spool at {self.directory}: {exc}"
                ) from exc
            self.pending_batches += len(payloads)
            self.pending_events += count

    def peek(self) -> tuple[int, list[Any]] | None:
        """The oldest batch not yet replayed, with the position to :meth:`commit` after it."""
        with self._mutex:
            row = self._db.execute("SELECT id, payload FROM batches ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        return row[0], pickle.loads(row[1])

    def commit(self, position: int, events: int) -> None:
        """Mark the batch at ``position`` (and any older one) replayed, durably."""
        with self._mutex:
            self._db.execute("DELETE FROM batches WHERE id <= ?", (position,))
            self.pending_batches = max(0, self.pending_batches - 1)
            self.pending_events = max(0, self.pending_events - events)

    def batches(self) -> list[list[Any]]:
        """Every stored batch, oldest first, without replaying any (for inspection)."""
        with self._mutex:
            rows = self._db.execute("SELECT payload FROM batches ORDER BY id").fetchall()
        return [pickle.loads(row[0]) for row in rows]

    def newest_batches(self) -> Iterator[list[Any]]:
        """Stored batches, newest first (read one at a time: stop when old enough)."""
        with self._mutex:
            ids = [row[0] for row in self._db.execute("SELECT id FROM batches ORDER BY id DESC")]
        for position in ids:
            with self._mutex:
                row = self._db.execute(
                    "SELECT payload FROM batches WHERE id = ?", (position,)
                ).fetchone()
            if row is not None:
                yield pickle.loads(row[0])

    def close(self) -> None:
        """Close the database and release the directory (the data stays for a replay)."""
        with self._mutex:
            if self._lock is None:
                return
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            os.close(self._lock)
            self._lock = None

    def __len__(self) -> int:
        """Batches waiting to be replayed."""
        return self.pending_batches
