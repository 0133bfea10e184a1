"""At exit, what the tracker worker never took: from the resend buffer into the spools.

The application keeps every frame it sent since the worker last confirmed them stored
(:data:`workers.forwarding.RESEND_LIMIT_BYTES`). When an exit ends with the worker killed before
it confirmed its finish, having taken none of those events (too slow to start on a starved
host, or its loop held), the frames are all that is left of them. The application then does
what the worker's exit path would have done (sample, convert, scrub) and appends the records to
each sink's spool, which the next start replays.

Within a time budget (the exit stays bounded), and never a second copy of what the worker
spooled in its last moments, after its last report: records already in a spool (the same
``seq`` and ``time``) are left out.
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
from workers.spool import open_spool
from workers.wire import Op


@dataclass
class Rescue:
    """What a rescue stored: per sink, its spool and how many records went there."""

    records: int = 0  # records converted from the frames (after sampling and scrubbing)
    frames_done: int = 0  # frames converted within the budget (the rest are not rescued)
    spooled: dict[str, int] = field(default_factory=dict)
    directories: list[Path] = field(default_factory=list)


def records_of(
    frames: Iterable[bytes], sample_rate: float, deadline: float
) -> tuple[list[Record], int]:
    """The records of the event frames among ``frames``, sampled and scrubbed as the worker
    spools them (a user's redact hook already ran on those it concerns, in this process),
    and how many frames were read before ``deadline`` (``time.monotonic()``)."""
    sampler = TraceSampler(sample_rate)
    records: list[Record] = []
    done = 0
    for data in frames:
        if time.monotonic() >= deadline:
            break
        done += 1
        parsed = wire.read_frame(io.BytesIO(data))
        if parsed is None or parsed[0] is not Op.EVENTS:
            continue  # barriers and resets: the next start's session has its own
        events = snapshot.decode(parsed[3][1])
        records.extend(convert(event) for event in events if sampler.keep(event))
    return Redactor(None).apply(records), done


def _key(item: Any) -> tuple[Any, Any]:
    return item[1], item[2]  # a record's wire form: (kind, seq, time, …)


def spool_records(
    records: list[Record], root: str | os.PathLike[str], sinks: Iterable[str], batch_size: int
) -> Rescue:
    """Append ``records`` to each sink's spool below ``root`` (one transaction per sink),
    leaving out any the spool already holds."""
    rescue = Rescue(records=len(records))
    wired = [record.to_wire() for record in records]
    for name in sinks:
        spool = open_spool(root, name)
        try:
            held = {_key(item) for batch in spool.batches() for item in batch}
            fresh = [item for item in wired if _key(item) not in held]
            spool.append_many(
                [fresh[start : start + batch_size] for start in range(0, len(fresh), batch_size)]
            )
        finally:
            spool.close()
        rescue.spooled[name] = len(fresh)
        rescue.directories.append(spool.directory)
    return rescue
