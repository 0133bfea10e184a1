"""Loopback stand-ins for a tracking server that is down, for tests that run the real SDKs online.

Every server here listens on 127.0.0.1 only:

- :func:`refused_port`: a port nothing listens on (connections are refused at once);
- :class:`SilentServer`: accepts connections and never answers (reads and holds them);
- :class:`Http500Server`: answers every request, whatever the method or path, with HTTP 500.

:func:`guarded_env` adds ``tests/netguard`` to ``PYTHONPATH``: its ``sitecustomize`` makes every
Python process of the test (the script, the tracker worker, anything they start) refuse
connections and name lookups outside the loopback, and logs each attempt to a file.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import threading
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
NETGUARD = Path(__file__).resolve().parent / "netguard"
#: Environment variable naming the file where the guard logs refused network attempts.
NETLOG_ENV = "TRACKER_TEST_NETLOG"


def refused_port() -> int:
    """A loopback port that refuses connections: bound once to pick it, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class SilentServer:
    """A listening socket that accepts every connection, reads what comes and never answers."""

    def __init__(self) -> None:
        """Bind on a free loopback port (``port``); serve once entered."""
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((HOST, 0))
        self._sock.listen(128)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://{HOST}:{self.port}"
        self.connections = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                conn = None
            except OSError:
                return
            if conn is not None:
                conn.setblocking(False)
                self.connections += 1
                self._held.append(conn)
            for held in self._held:  # read what clients send, so they never block on it
                with contextlib.suppress(OSError):
                    held.recv(1 << 20)

    def __enter__(self) -> SilentServer:
        """Start accepting."""
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop accepting and close every held connection."""
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.close()


class _Answer500(http.server.BaseHTTPRequestHandler):
    """HTTP 500 with a small JSON body for every request."""

    protocol_version = "HTTP/1.1"
    server: _Http500

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.record(self.command, self.path)
        body = b'{"msg": "loopback test server: internal error", "code": 500}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the server counts requests instead."""


class _Http500(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), _Answer500)
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def record(self, method: str, path: str) -> None:
        with self._lock:
            if len(self.requests) < 10_000:
                self.requests.append((method, path))


class Http500Server:
    """An HTTP server on a loopback port answering every request with 500 (in a thread)."""

    def __init__(self) -> None:
        """Bind on a free loopback port (``port``, ``url``); serve once entered."""
        self._server = _Http500()
        self.port = int(self._server.server_address[1])
        self.url = f"http://{HOST}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request answered so far."""
        return list(self._server.requests)

    def __enter__(self) -> Http500Server:
        """Start serving."""
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def guarded_env(env: dict[str, str], netlog: Path) -> dict[str, str]:
    """``env`` with the loopback-only network guard on ``PYTHONPATH`` (attempts logged to
    ``netlog``)."""
    out = dict(env)
    paths = [str(NETGUARD)] + [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p]
    out["PYTHONPATH"] = os.pathsep.join(paths)
    out[NETLOG_ENV] = str(netlog)
    return out


def netlog_entries(netlog: Path) -> list[str]:
    """The network attempts the guard refused (one line each), if any."""
    if not netlog.exists():
        return []
    return [line for line in netlog.read_text(encoding="utf-8").splitlines() if line]
