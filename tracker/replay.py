"""``tracker replay``: deliver a spool to its backend now, in order, each batch once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from tracker import sinks
from workers.flush import FlushRequest
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
) -> ReplayReport:
    """Open the backend ``spool_dir`` is named after and replay the spool into a new session."""
    backend = spool_dir.name.split("-")[0]
    if backend == "clearml":
        sink = sinks.clearml(
            project_name=project or "langchain_callback_demo",
            task_name=name,
            offline_dir=offline_dir,
        ).build()
    elif backend == "comet":
        sink = sinks.comet(project_name=project, name=name, offline_dir=offline_dir).build()
    else:
        raise ValueError(
            f"{spool_dir} is not a tracker spool: its name should start with 'clearml' or "
            "'comet' (e.g. tracker-offline/spool/comet)"
        )
    if not spool_dir.is_dir():
        raise ValueError(f"{spool_dir} is not a directory")
    report = ReplayReport(spool_dir, backend)

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

    anyio.run(run)
    return report
