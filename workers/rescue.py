"""At exit, what the tracker worker never took: from the resend buffer into the spools.

The application keeps every frame it sent since the worker last confirmed them stored
(:data:`workers.forwarding.RESEND_LIMIT_BYTES`). When an exit ends with the worker killed before
it confirmed its finish, having taken none of those events and with none of its sinks open (too
slow to start on a starved host, or its loop held), the frames are all that is left of them.
The application then does what the worker's exit path would have done (sample, convert, scrub)
and appends the records to each sink's spool, which the next start replays.

Bounded: chunk by chunk until a deadline (the exit keeps its bound; frames left are not
rescued, and counted). Never a second copy of what the worker spooled in its last moments,
after its last report: records the spool already holds (the same ``seq`` and ``time``, among
its batches as recent as the frames) are left out.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers import snapshot, wire
from workers.records import Record, convert
from workers.redact import Redactor
from workers.sampling import TraceSampler
from workers.spool import Spool, SpoolError, open_spool
from workers.wire import Op

#: Records converted before they are written (one transaction per sink), then the next chunk.
CHUNK_RECORDS = 1_000


@dataclass
class Rescue:
    """What a rescue stored."""

    frames_done: int = 0  # frames read and stored (the first ones; the rest were not)
    spooled: int = 0  # records newly stored (the fewest of any sink)
    directories: list[Path] = field(default_factory=list)
    error: str | None = None  # why it stopped before the last frame, other than the deadline


def _key(item: Any) -> tuple[Any, Any]:
    return item[1], item[2]  # a record's wire form: (kind, seq, time, …)


def _recent_keys(spool: Spool, since: float) -> set[tuple[Any, Any]]:
    """Keys of the spool's records from batches as recent as ``since`` (a record time)."""
    keys: set[tuple[Any, Any]] = set()
    for batch in spool.newest_batches():
        keys.update(_key(item) for item in batch)
        if batch and max(item[2] for item in batch) < since:
            break  # older than every frame: an earlier run's, not the worker's last moments
    return keys


def _open(root: str | os.PathLike[str], name: str, directory: str | None) -> Spool:
    """The spool the worker used (``directory``, as it reported), else the first free one."""
    if directory is not None:
        try:
            return Spool(directory)
        except SpoolError:  # busy (another process took it over) or gone: a free one
            pass
    return open_spool(root, name)


def spool_frames(
    frames: Iterable[bytes],
    sample_rate: float,
    root: str | os.PathLike[str],
    sinks: Iterable[tuple[str, str | None]],
    batch_size: int,
    deadline: float,
) -> Rescue:
    """Convert the event frames among ``frames`` and append their records to each sink's spool
    (``sinks``: name and the directory the worker spooled to, if known) below ``root``, chunk
    by chunk, until ``deadline`` (``time.monotonic()``)."""
    sampler = TraceSampler(sample_rate)
    redactor = Redactor(None)  # the default scrubber (a user's hook already ran here)
    rescue = Rescue()
    spools: list[Spool] = []
    held: list[set[tuple[Any, Any]]] | None = None
    chunk: list[Record] = []
    frames_in_chunk = 0

    def store() -> None:
        nonlocal held, frames_in_chunk
        wired = [record.to_wire() for record in redactor.apply(chunk)]
        if held is None:
            since = min((item[2] for item in wired), default=time.time())
            held = [_recent_keys(spool, since) for spool in spools]
        taken = len(wired)
        for spool, keys in zip(spools, held, strict=True):
            fresh = [item for item in wired if _key(item) not in keys]
            spool.append_many([fresh[i : i + batch_size] for i in range(0, len(fresh), batch_size)])
            taken = min(taken, len(fresh))
        rescue.frames_done += frames_in_chunk
        rescue.spooled += taken
        chunk.clear()
        frames_in_chunk = 0

    try:
        if time.monotonic() >= deadline:
            return rescue
        for name, directory in sinks:
            spools.append(_open(root, name, directory))
        for data in frames:
            if time.monotonic() >= deadline:
                break
            frames_in_chunk += 1
            parsed = wire.read_frame(io.BytesIO(data))
            if parsed is not None and parsed[0] is Op.EVENTS:  # not barriers, resets
                events = snapshot.decode(parsed[3][1])
                chunk.extend(convert(event) for event in events if sampler.keep(event))
            if len(chunk) >= CHUNK_RECORDS:
                store()
        if frames_in_chunk and time.monotonic() < deadline:
            store()
    except Exception as exc:  # what was stored so far counts; the rest is reported lost
        rescue.error = f"{type(exc).__name__}: {exc}"
    finally:
        for spool in spools:
            spool.close()
    rescue.directories = [spool.directory for spool in spools]
    return rescue
