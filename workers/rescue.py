"""At exit, what the tracker worker never confirmed: from the resend buffer into the spools.

The application keeps every frame it sent since the worker last confirmed them stored
(:data:`workers.forwarding.RESEND_LIMIT_BYTES`). When an exit ends with the worker killed before
it confirmed its finish, having taken none of those events (too slow to start on a starved
host, or its loop held), the frames are all that is left of them. The application then does
what the worker's exit path would have done (sample, convert, scrub) and appends the records to
each sink's spool, which the next start with the same ``offline_dir`` replays.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

from workers import snapshot, wire
from workers.records import Record, convert
from workers.redact import Redactor
from workers.sampling import TraceSampler
from workers.spool import open_spool
from workers.wire import Op


def records_of(frames: Iterable[bytes], sample_rate: float) -> list[Record]:
    """The records of the event frames among ``frames``, sampled and scrubbed as the worker
    spools them (a user's redact hook already ran on those it concerns, in this process)."""
    sampler = TraceSampler(sample_rate)
    records: list[Record] = []
    for data in frames:
        parsed = wire.read_frame(io.BytesIO(data))
        if parsed is None or parsed[0] is not Op.EVENTS:
            continue  # barriers and resets: the next start's session has its own
        records.extend(
            convert(event) for event in snapshot.decode(parsed[3][1]) if sampler.keep(event)
        )
    return Redactor(None).apply(records)


def spool_records(
    records: list[Record], root: str | os.PathLike[str], sinks: Iterable[str], batch_size: int
) -> list[Path]:
    """Append ``records`` to each sink's spool below ``root``, in batches; their directories."""
    directories: list[Path] = []
    for name in sinks:
        spool = open_spool(root, name)
        try:
            for start in range(0, len(records), batch_size):
                spool.append([record.to_wire() for record in records[start : start + batch_size]])
        finally:
            spool.close()
        directories.append(spool.directory)
    return directories
