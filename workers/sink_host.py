"""A sink in a child process: ``python -m workers.sink_host``, driven over its stdin.

Why a process: the SDKs' work (ClearML's reporter, Comet's offline streamer writing a file per
text) and building rows hold the GIL, which the serving loop in the parent needs; measured in
benchmarks/RESULTS.md. The parent converts events to JSON-safe records (cheap, and the place
where bad input becomes a safe record) and ships batches here.

Protocol: frames of a 4-byte big-endian length and a pickle. Requests ``(op, payload)`` arrive
on stdin; each gets one reply ``(status, detail, counters, archive_path)`` on the reply pipe.
Stdout is redirected to stderr at start, so SDK console output cannot corrupt the replies.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import pickle
import struct
import sys
from typing import IO, Any

import anyio

from workers.records import Record
from workers.sinks.base import Sink

logger = logging.getLogger("tracker.sink_host")

#: Frame header: the pickle's length, 4 bytes big-endian (shared with workers.sinks.remote).
HEADER = struct.Struct(">I")


def write_frame(stream: IO[bytes], message: Any) -> None:
    """Send one pickled message."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """Receive one pickled message; None at end of stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def _build(spec: tuple[str, dict[str, Any]]) -> Sink:
    path, kwargs = spec
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    sink: Sink = cls(**kwargs)
    return sink


async def _serve(requests: IO[bytes], replies: IO[bytes], metric_processes: int) -> None:
    sink: Sink | None = None
    while True:
        request = await anyio.to_thread.run_sync(read_frame, requests)
        if request is None:  # the parent is gone or closed the pipe
            if sink is not None:
                await sink.close()
            return
        op, payload = request
        status, detail = "ok", None
        try:
            if op == "open":
                sink = _build(payload)
                from workers.metrics import Analyzer

                sink.render_sentences = Analyzer(processes=metric_processes).render_sentences
                await sink.open()
                # The SDK's modules and objects live as long as this process: out of the
                # collector's sight, full collections stop scanning them (tens of ms each,
                # several per second under load, measured in the capacity benchmark).
                gc.freeze()
            elif sink is None:
                raise RuntimeError(f"'{op}' before 'open'")
            elif op == "write":
                await sink.write([Record.from_wire(wire) for wire in payload])
            elif op == "flush":
                await sink.flush(payload)
            elif op == "reset":
                await sink.reset_counters()
            elif op == "health":
                await sink.log_health(*payload)
            elif op == "close":
                await sink.close()
            else:
                raise ValueError(f"unknown request {op!r}")
        except Exception as exc:
            logger.debug("sink host: %s failed", op, exc_info=True)
            status, detail = "error", f"{type(exc).__name__}: {exc}"
        counters = dict(sink.counters.values) if sink is not None else {}
        archive = sink.archive_path if sink is not None else None
        write_frame(replies, (status, detail, counters, archive))
        if op == "close" or (op == "flush" and payload.finish and not payload.reset):
            return


def main() -> None:
    """Serve one sink until the parent closes the pipe or the sink is finished."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # SDK console output goes to stderr, never into the reply pipe
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    processes = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    anyio.run(_serve, sys.stdin.buffer, replies, processes)


# Guarded: anyio's metric worker processes re-import this module as __mp_main__.
if __name__ == "__main__":
    main()
