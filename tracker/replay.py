"""``tracker replay``: deliver a spool to its backend now, in order, each batch once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from tracker import sinks
from workers.flush import FlushRequest
from workers.records import Record
from workers.resilient import ResilientSink
from workers.spool import Spool


@dataclass
class ReplayReport:
    """What a replay delivered and what is left."""

    spool: Path
    backend: str
    replayed: int = 0
    left: int = 0
    archive: Path | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the spool is empty and the backend took everything."""
        return not self.errors and self.left == 0

    def describe(self) -> str:
        """One paragraph for the command line."""
        lines = [f"{self.backend}: {self.replayed} events replayed from {self.spool}"]
        if self.archive is not None:
            lines.append(f"archive: {self.archive}")
        if self.left:
            lines.append(f"{self.left} events are still in the spool")
        lines.extend(f"error: {e}" for e in self.errors)
        return "\n".join(lines)


def replay_spool(
    spool_dir: Path,
    *,
    offline_dir: str | os.PathLike[str] | None = None,
    project: str | None = None,
    name: str | None = None,
    backend: str | None = None,
) -> ReplayReport:
    """Open the backend ``spool_dir`` is named after and replay the spool into a new session.

    An overflow spill (``spool/overflow``) belongs to a handler, not to one backend: name the
    ``backend`` to send it to.
    """
    overflow = spool_dir.name.split("-")[0] == "overflow"
    if overflow and backend is None:
        raise ValueError(
            f"{spool_dir} is an overflow spill (events a handler spilled before any backend got "
            "them): name the backend to send them to with --backend clearml|comet|jsonl"
        )
    backend = backend or spool_dir.name.split("-")[0]
    if backend == "jsonl":
        sink = sinks.jsonl(offline_dir, session=name or "replay").build()
    elif backend == "clearml":
        sink = sinks.clearml(
            project_name=project or "langchain_callback_demo",
            task_name=name,
            offline_dir=offline_dir,
        ).build()
    elif backend == "comet":
        sink = sinks.comet(project_name=project, name=name, offline_dir=offline_dir).build()
    else:
        raise ValueError(
            f"{spool_dir} is not a tracker spool: its name should start with 'clearml', "
            "'comet', 'jsonl' or 'overflow' (e.g. tracker-offline/spool/comet)"
        )
    if not spool_dir.is_dir():
        raise ValueError(f"{spool_dir} is not a directory")
    report = ReplayReport(spool_dir, backend)

    async def run_overflow() -> None:
        spool = await anyio.to_thread.run_sync(Spool, spool_dir)
        await sink.open()
        try:
            while (item := await anyio.to_thread.run_sync(spool.peek)) is not None:
                position, (taken, batch) = item
                await sink.write([Record.from_wire(wire) for wire in batch])
                await anyio.to_thread.run_sync(spool.commit, position, taken)
                report.replayed += len(batch)
            await sink.flush(FlushRequest(name="replay", finish=True))
        except Exception as exc:
            report.errors.append(f"{type(exc).__name__}: {exc}")
        report.left, report.archive = spool.pending_events, sink.archive_path
        spool.close()

    async def run() -> None:
        spool = await anyio.to_thread.run_sync(Spool, spool_dir)
        resilient = ResilientSink(sink, lambda: spool)
        await resilient.open()  # opening replays what the spool holds, oldest first
        try:
            await resilient.flush(FlushRequest(name="replay", finish=True))
        except Exception as exc:
            report.errors.append(str(exc))
        report.replayed, report.left = resilient.replayed, spool.pending_events
        report.archive = resilient.archive_path

    anyio.run(run_overflow if overflow else run)
    return report
