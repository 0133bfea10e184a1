"""Shared set-up: SDK caches in a temporary folder, no error reporting to the network."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before any SDK is imported: ClearML's offline sessions and caches stay out of the home folder,
# and Comet does not try to report its own errors to Sentry.
_cache = Path(tempfile.mkdtemp(prefix="tracker-tests-"))
os.environ.setdefault("CLEARML_CACHE_DIR", str(_cache / "clearml"))
os.environ.setdefault("COMET_ERROR_TRACKING_ENABLE", "false")
os.environ.pop("COMET_API_KEY", None)
os.environ.pop("CLEARML_API_ACCESS_KEY", None)


@pytest.fixture
def offline_dir(tmp_path: Path) -> Path:
    """Where a test's offline archives go."""
    folder = tmp_path / "offline"
    folder.mkdir()
    return folder


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Fail any connection to a non-loopback address made by this process; yields attempts."""
    import socket

    attempts: list[object] = []
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("::1", "localhost")):
            return real_connect(self, address)  # type: ignore[arg-type]
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)  # type: ignore[arg-type]
        attempts.append(address)
        raise OSError(f"tests: network access to {address!r} is not allowed")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield attempts
