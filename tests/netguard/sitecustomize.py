"""Loopback-only network for the processes of tests/test_backends_down.py.

Put on ``PYTHONPATH`` by :func:`tests.loopback.guarded_env`; Python imports it at start-up in the
test's script and in every Python process started from it (the tracker worker inherits the
environment). A connection, datagram or name lookup for anything but the loopback fails as an
unreachable network would (``OSError`` / ``socket.gaierror``), and is logged, one line each, to
the file named by ``TRACKER_TEST_NETLOG``. Nothing is patched when that variable is unset.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import traceback
from typing import Any

_LOG = os.environ.get("TRACKER_TEST_NETLOG")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _loopback(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    name = host.strip("[]").split("%")[0].lower()
    if name in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _refuse(what: str, target: Any) -> None:
    caller = ""
    for frame in reversed(traceback.extract_stack(limit=12)[:-2]):
        if "sitecustomize" not in frame.filename and "/socket.py" not in frame.filename:
            caller = f"{frame.filename}:{frame.lineno} {frame.name}"
            break
    try:
        with open(_LOG, "a", encoding="utf-8") as log:  # type: ignore[arg-type]
            log.write(f"pid {os.getpid()} {what} {target!r} from {caller}\n")
    except OSError:
        pass


def _install() -> None:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_sendto = socket.socket.sendto
    real_getaddrinfo = socket.getaddrinfo
    real_gethostbyname = socket.gethostbyname
    real_gethostbyname_ex = socket.gethostbyname_ex

    def allowed(sock: socket.socket, address: Any) -> bool:
        if sock.family == getattr(socket, "AF_UNIX", None):
            return True
        host = address[0] if isinstance(address, tuple) else address
        return _loopback(host)

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(self, address):
            _refuse("connect", address)
            raise OSError(101, f"tests: network access to {address!r} is not allowed")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(self, address):
            _refuse("connect_ex", address)
            return 101
        return real_connect_ex(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        address = args[-1]
        if not allowed(self, address):
            _refuse("sendto", address)
            raise OSError(101, f"tests: network access to {address!r} is not allowed")
        return real_sendto(self, data, *args)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host):
            _refuse("getaddrinfo", host)
            raise socket.gaierror(socket.EAI_NONAME, f"tests: no lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def gethostbyname(host: str) -> str:
        if not _loopback(host):
            _refuse("gethostbyname", host)
            raise socket.gaierror(socket.EAI_NONAME, f"tests: no lookup of {host!r}")
        return real_gethostbyname(host)

    def gethostbyname_ex(host: str) -> Any:
        if not _loopback(host):
            _refuse("gethostbyname_ex", host)
            raise socket.gaierror(socket.EAI_NONAME, f"tests: no lookup of {host!r}")
        return real_gethostbyname_ex(host)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex


if _LOG:
    _install()
