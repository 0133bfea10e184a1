"""A durable local spool: batches a backend could not take yet, kept on disk in order.

Layout: a directory (mode 0700) of append-only segment files (mode 0600) named by a zero-padded
number, so sorting names sorts them in write order. Each frame is a 4-byte length, a 4-byte CRC32
and a pickled batch (a list of wire tuples, see :meth:`workers.records.Record.to_wire`); every
append is fsynced, so a batch the spool accepted survives a crash of the process.

Replay reads frames from the oldest segment on. Progress is a cursor file (segment, offset),
written and fsynced after each replayed batch, so a batch is replayed once even if the process dies
between batches; a segment is deleted once it is fully replayed. A torn last frame (the process died
mid-append) fails its length or CRC check and is skipped with a warning: it was never acknowledged.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger("tracker.spool")

FRAME = struct.Struct(">II")  # payload length, CRC32 of the payload
SEGMENT_BYTES = 16 * 1024 * 1024
_SUFFIX = ".spool"
_CURSOR = "cursor"


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
    """Append-only, fsynced batch storage with an exactly-once replay cursor.

    One owner at a time: a pipeline's sink wrapper, on the runtime loop. Several handlers must use
    different directories (each sink gets its own below the handler's spool root).
    """

    def __init__(self, directory: str | os.PathLike[str], segment_bytes: int = SEGMENT_BYTES):
        """Open (or create) the spool in ``directory``; counts what an earlier run left there."""
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
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
        self._writer: Any = None
        self._writer_path: Path | None = None
        self.pending_batches = 0
        self.pending_events = 0
        for _, batch in self._frames():
            self.pending_batches += 1
            self.pending_events += len(batch)

    # -- writing -----------------------------------------------------------------------------

    def append(self, batch: list[tuple[Any, ...]]) -> None:
        """Write one batch durably (fsync) at the end of the spool."""
        payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
        writer = self._segment_for(len(payload))
        writer.write(FRAME.pack(len(payload), zlib.crc32(payload)) + payload)
        writer.flush()
        os.fsync(writer.fileno())
        self.pending_batches += 1
        self.pending_events += len(batch)

    def _segment_for(self, size: int) -> Any:
        writer = self._writer
        if writer is not None and writer.tell() + size <= self.segment_bytes:
            return writer
        self._close_writer()
        segments = self._segments()
        number = int(segments[-1].stem) + 1 if segments else 0
        path = self.directory / f"{number:012d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._writer, self._writer_path = os.fdopen(fd, "ab"), path
        return self._writer

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = self._writer_path = None

    # -- replaying ---------------------------------------------------------------------------

    def peek(self) -> tuple[tuple[str, int], list[tuple[Any, ...]]] | None:
        """The oldest batch not yet replayed, with the position to :meth:`commit` after it."""
        for position, batch in self._frames():
            return position, batch
        return None

    def commit(self, position: tuple[str, int], events: int) -> None:
        """Mark everything up to ``position`` replayed (fsynced); drop finished segments."""
        name, offset = position
        path = self.directory / name
        self.pending_batches = max(0, self.pending_batches - 1)
        self.pending_events = max(0, self.pending_events - events)
        finished = offset >= path.stat().st_size
        if finished and path == self._writer_path and not self.pending_batches:
            self._close_writer()  # all caught up: the next append starts a new segment
        if finished and path != self._writer_path:
            path.unlink()
            self._write_cursor(None)
        else:
            self._write_cursor(position)

    def _frames(self) -> Iterator[tuple[tuple[str, int], list[tuple[Any, ...]]]]:
        """(position after the frame, batch) for every frame after the cursor, oldest first."""
        cursor = self._read_cursor()
        for segment in self._segments():
            if cursor is not None and segment.name < cursor[0]:
                segment.unlink()  # fully replayed before a crash, not yet deleted
                continue
            offset = cursor[1] if cursor is not None and segment.name == cursor[0] else 0
            with open(segment, "rb") as reader:
                reader.seek(offset)
                while header := reader.read(FRAME.size):
                    payload = b""
                    if len(header) == FRAME.size:
                        size, crc = FRAME.unpack(header)
                        payload = reader.read(size)
                        if len(payload) == size and zlib.crc32(payload) == crc:
                            offset = reader.tell()
                            yield (segment.name, offset), pickle.loads(payload)
                            continue
                    logger.warning(
                        "tracker: skipping a torn frame at the end of %s (written when the "
                        "process died; that batch was never acknowledged)",
                        segment,
                    )
                    break

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{_SUFFIX}"))

    def _read_cursor(self) -> tuple[str, int] | None:
        try:
            name, offset = (self.directory / _CURSOR).read_text().split()
            return name, int(offset)
        except (OSError, ValueError):
            return None

    def _write_cursor(self, position: tuple[str, int] | None) -> None:
        path = self.directory / _CURSOR
        if position is None:
            path.unlink(missing_ok=True)
            return
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"{position[0]} {position[1]}")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)

    def close(self) -> None:
        """Close the open segment and release the directory (the data stays for a replay)."""
        self._close_writer()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __len__(self) -> int:
        """Batches waiting to be replayed."""
        return self.pending_batches
