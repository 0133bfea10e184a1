"""A fault-injecting wrapper around a real sink: slow or failing calls, the SDK untouched."""

from __future__ import annotations

from typing import Any

import anyio

from workers.counters import Counters
from workers.flush import FlushRequest
from workers.records import Record
from workers.sinks.base import Sink


class FaultySink(Sink):
    """Delegates to ``inner`` after ``delay`` seconds per write; fails every ``fail_every``-th."""

    def __init__(self, inner: Sink, *, delay: float = 0.0, fail_every: int = 0) -> None:
        self.inner = inner
        self.name = f"faulty-{inner.name}"
        self.needs_complexity = inner.needs_complexity
        self.needs_pages = inner.needs_pages
        self.delay = delay
        self.fail_every = fail_every
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def counters(self) -> Counters:
        return self.inner.counters

    @property
    def archive_path(self) -> Any:  # type: ignore[override]
        return self.inner.archive_path

    @archive_path.setter
    def archive_path(self, value: Any) -> None:
        self.inner.archive_path = value

    async def open(self) -> None:
        self.inner.render_sentences = self.render_sentences
        await self.inner.open()

    async def write(self, records: list[Record]) -> None:
        self.writes += 1
        if self.delay:
            await anyio.sleep(self.delay)
        if self.fail_every and self.writes % self.fail_every == 0:
            raise ConnectionError(f"injected fault on write {self.writes}")
        await self.inner.write(records)

    async def flush(self, request: FlushRequest) -> None:
        await self.inner.flush(request)

    async def reset_counters(self) -> None:
        await self.inner.reset_counters()

    async def close(self) -> None:
        await self.inner.close()
