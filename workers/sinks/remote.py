"""A sink that runs in a child process (``workers.sink_host``): the default for both backends.

The parent keeps the pipeline (queue, conversion, metrics) and ships each converted batch to the
child, which builds the rows and makes every SDK call, so neither the SDKs' threads nor the row
building compete for the parent's GIL. Replies carry the child's counters, mirrored here.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import PIPE
from typing import Any

import anyio
from anyio.abc import Process

from workers.counters import Counters
from workers.event import Kind
from workers.flush import FlushRequest
from workers.records import Record
from workers.rows.comet import CometRows
from workers.sink_host import HEADER
from workers.sinks.asset import snapshot_asset
from workers.sinks.base import Sink

EXIT_WAIT_SECONDS = 30.0
# ClearML marks the process that ran Task.init; a child inheriting the mark takes itself for a
# sub-process of that Task and gets a stub. The sink process is a program of its own.
_NOT_INHERITED = ("CLEARML_PROC_MASTER_ID", "TRAINS_PROC_MASTER_ID")


class SinkProcessError(RuntimeError):
    """The sink process failed a request, or is gone."""


class RemoteSink(Sink):
    """Proxy for a sink class built and driven in a child process.

    ``sink_class`` is the import path of the real sink, ``kwargs`` its (picklable) arguments.
    ``custom_metrics`` (Comet) stays in this process: it needs the original Generation objects.
    """

    def __init__(
        self,
        sink_class: str,
        kwargs: dict[str, Any],
        *,
        name: str,
        needs_complexity: bool = False,
        needs_pages: bool = False,
        metric_processes: int = 2,
        custom_metrics: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        """Describe the child's sink; nothing starts until :meth:`open`."""
        self.name = name
        self.needs_complexity = needs_complexity
        self.needs_pages = needs_pages
        self._spec = (sink_class, kwargs)
        self._metric_processes = metric_processes
        self._custom = CometRows(custom_metrics) if custom_metrics is not None else None
        self._counters = Counters()
        self._process: Process | None = None
        self._buffer = b""

    @property
    def counters(self) -> Counters:
        """The child's counters as of its last reply."""
        return self._counters

    async def open(self) -> None:
        """Start the child and have it open the backend session."""
        self._process = await anyio.open_process(
            [sys.executable, "-m", "workers.sink_host", str(self._metric_processes)],
            stdin=PIPE,
            stdout=PIPE,
            stderr=None,  # the SDKs' console output shows as the parent's
            env={k: v for k, v in os.environ.items() if k not in _NOT_INHERITED},
        )
        await self._call("open", self._spec)

    async def write(self, records: list[Record]) -> None:
        """Ship a batch (without the original payload objects)."""
        if self._custom is not None:
            for record in records:
                if record.kind is Kind.LLM_END and not record.degraded:
                    record.custom = self._custom.custom_for(record)
        await self._call("write", [record.to_wire() for record in records])

    async def flush(self, request: FlushRequest) -> None:
        """Flush in the child; the asset is saved here first (it may not pickle)."""
        options = {k: v for k, v in request.options.items() if k != "custom_metrics"}
        if request.reset and request.options.get("custom_metrics"):
            self._custom = CometRows(request.options["custom_metrics"])
        asset = request.langchain_asset
        shipped = FlushRequest(
            name=request.name,
            langchain_asset=snapshot_asset(asset) if asset is not None else None,
            finish=request.finish,
            reset=request.reset,
            options=options,
        )
        await self._call("flush", shipped)
        if request.finish and not request.reset:
            await self._wait_exit()

    async def log_health(self, values: dict[str, float], step: int) -> None:
        """Forward a health sample to the child's sink."""
        await self._call("health", (values, step))

    async def reset_counters(self) -> None:
        """Reset the child's counters (in queue order)."""
        await self._call("reset", None)

    async def close(self) -> None:
        """Stop the child without finishing the backend session."""
        if self._process is not None and self._process.returncode is None:
            try:
                await self._call("close", None)
            except SinkProcessError:
                pass
            await self._wait_exit()

    async def _wait_exit(self) -> None:
        process = self._process
        if process is None:
            return
        with anyio.move_on_after(EXIT_WAIT_SECONDS):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()

    async def _call(self, op: str, payload: Any) -> Any:
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise SinkProcessError(f"the {self.name} sink process is not running")
        data = pickle.dumps((op, payload), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            # Shielded: a request cut after sending would leave its reply in the pipe for the
            # next call, and a retried write could be delivered twice. A hung child is waited
            # for, like a hung SDK call in a worker thread.
            with anyio.CancelScope(shield=True):
                await process.stdin.send(HEADER.pack(len(data)) + data)
                header = await self._receive(HEADER.size)
                reply = pickle.loads(await self._receive(HEADER.unpack(header)[0]))
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise SinkProcessError(
                f"the {self.name} sink process exited (code {process.returncode}) during '{op}'"
            ) from exc
        status, detail, counters, archive = reply
        self._counters.values.update(counters)
        if archive is not None:
            self.archive_path = Path(archive)
        if status != "ok":
            raise SinkProcessError(f"{op}: {detail}")
        return detail

    async def _receive(self, size: int) -> bytes:
        stdout = self._process.stdout  # type: ignore[union-attr]
        while len(self._buffer) < size:
            self._buffer += await stdout.receive()  # type: ignore[union-attr]
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data
