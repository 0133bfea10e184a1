"""Shutdown: SIGTERM to a FastAPI server mid-load, and to a sync script, loses no finished work.

The server is ``examples/fastapi_app.py`` under uvicorn in a child process. Its lifespan shutdown
awaits ``aflush_tracker(finish=True)`` on both handlers; uvicorn runs it after the requests in
flight have finished. Every request id the clients got a 200 for must be in both archives with
all of its events.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tracker.archive import read_clearml_archive, read_comet_archive

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 200
WORDS = 6  # the fake model streams the question back: one token per word
# Per request: sequence, prompt and parser start/end; the model's start, tokens and end.
EXPECTED = Counter(
    on_chain_start=3, on_chain_end=3, on_llm_start=1, on_llm_new_token=WORDS, on_llm_end=1
)
RID = re.compile(r"req-\d{6}(?=\.w)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_env(tmp_path: Path, offline_dir: Path) -> dict[str, str]:
    # A fresh program: ClearML's Task.init exports CLEARML_* ids into os.environ, and a child
    # inheriting them would take itself for a sub-process of that task.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    env["CLEARML_CACHE_DIR"] = str(tmp_path / "clearml-cache")
    env["TRACKER_OFFLINE_DIR"] = str(offline_dir)
    env["TRACKER_FLUSH_TIMEOUT"] = "60"
    env["PYTHONPATH"] = str(ROOT)
    return env


def _question(rid: str) -> str:
    return " ".join(f"{rid}.w{i}" for i in range(WORDS))


async def _load(port: int, server: subprocess.Popen[bytes]) -> tuple[list[str], int, float]:
    """200 clients post until the server goes away; SIGTERM once enough requests completed.

    Returns the ids answered with 200, how many of them completed after the SIGTERM, and when
    it was sent.
    """
    completed: list[tuple[str, float]] = []
    numbers = iter(range(1_000_000))
    url = f"http://127.0.0.1:{port}/chat"
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)

    async def client(http: httpx.AsyncClient) -> None:
        while True:
            rid = f"req-{next(numbers):06d}"
            body = {"question": _question(rid), "request_id": rid}
            try:
                response = await http.post(url, json=body)
            except httpx.HTTPError:
                return  # the server closed: this client is done
            if response.status_code == 200:
                assert response.json()["request_id"] == rid
                completed.append((rid, time.monotonic()))
            else:
                return  # 503: the server is shutting down

    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        clients = [asyncio.create_task(client(http)) for _ in range(CLIENTS)]
        deadline = time.monotonic() + 60
        while len(completed) < 2 * CLIENTS and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        sent = time.monotonic()
        server.send_signal(signal.SIGTERM)  # mid-load: every client has a request in flight
        await asyncio.wait_for(asyncio.gather(*clients), 90)
    after = sum(1 for _, t in completed if t > sent)
    return [rid for rid, _ in completed], after, sent


def _wait_ready(port: int, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited during start-up"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not start in time")


def _clearml_events(path: Path) -> dict[str, Counter[str]]:
    """Per request id, the actions of the console records ClearML kept."""
    per_request: dict[str, Counter[str]] = {}
    for line in read_clearml_archive(path).text_lines():
        match = re.match(r"\{'action': '(\w+)'", line)
        if match is None:
            continue  # ClearML's own console lines
        rids = set(RID.findall(line))
        if not rids and match.group(1).endswith("_error"):
            continue  # a chain cancelled by uvicorn's graceful timeout: not a completed request
        assert len(rids) == 1, f"every record names one request: {line[:300]}"
        per_request.setdefault(rids.pop(), Counter())[match.group(1)] += 1
    return per_request


def comet_action_records(path: Path) -> list[dict[str, Any]]:
    """Every action record Comet got (every flush and rotation, in order), read whole: a part
    past the row limit holds its first rows and names its full copy, which is read instead.

    The Comet seed logs no text for a streamed token; its action records have them all.
    """
    return read_comet_archive(path).action_records()


def _per_request(items: list[tuple[str, str]]) -> dict[str, Counter[str]]:
    """(action, text) pairs counted per request id found in the text."""
    per_request: dict[str, Counter[str]] = {}
    for action, text in items:
        rids = set(RID.findall(text))
        if not rids and action.endswith("_error"):
            continue  # a chain cancelled by uvicorn's graceful timeout
        assert len(rids) == 1, f"every record names one request: {text[:300]}"
        per_request.setdefault(rids.pop(), Counter())[action] += 1
    return per_request


def _comet_events(path: Path) -> tuple[dict[str, Counter[str]], dict[str, Counter[str]]]:
    """Per request id, the actions of Comet's texts, and of its action records."""
    texts = [(meta["action"], text) for text, meta in read_comet_archive(path).texts()]
    records = [(row["action"], json.dumps(row)) for row in comet_action_records(path)]
    return _per_request(texts), _per_request(records)


def test_sigterm_mid_load_keeps_every_completed_request(tmp_path: Path):
    offline_dir = tmp_path / "offline"
    offline_dir.mkdir()
    port = _free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.fastapi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--timeout-graceful-shutdown",
            "10",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=_child_env(tmp_path, offline_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(port, server, 60)
        completed, after_sigterm, sent = asyncio.run(_load(port, server))
        # Bounded: 10 s of grace for requests in flight, then both flushes.
        returncode = server.wait(timeout=75)
        exited_after = time.monotonic() - sent
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    output = (tmp_path / "server.log").read_text(errors="replace")
    # uvicorn re-raises the SIGTERM it handled once it is done: -15 is its clean exit.
    assert returncode in (0, -signal.SIGTERM), output[-3000:]
    assert exited_after < 75
    assert len(completed) >= 2 * CLIENTS and len(set(completed)) == len(completed)
    assert after_sigterm > 0, "the SIGTERM did not land while requests were in flight"
    assert output.count("timed_out=False errors=[]") == 2, output[-3000:]

    archives = sorted(offline_dir.glob("*.zip"))
    clearml_zip = next(p for p in archives if p.name.startswith("offline-"))
    comet_zip = next(p for p in archives if not p.name.startswith("offline-"))
    comet_texts, comet_records = _comet_events(comet_zip)
    for name, events, expected in (
        ("clearml", _clearml_events(clearml_zip), EXPECTED),
        ("comet records", comet_records, EXPECTED),
        ("comet texts", comet_texts, EXPECTED - Counter(on_llm_new_token=WORDS)),
    ):
        missing = [rid for rid in completed if events.get(rid) != expected]
        assert not missing, (name, len(missing), missing[:5], [events.get(r) for r in missing[:3]])


def test_sigterm_to_a_sync_script_drains_at_exit(tmp_path: Path):
    """A script that turns SIGTERM into SystemExit gets the interpreter-exit drain."""
    offline_dir = tmp_path / "offline"
    script = textwrap.dedent(
        f"""
        import signal, sys, time
        from tracker import ClearMLCallbackHandler, CometCallbackHandler

        logged = 0

        def stop(signum, frame):
            print(f"logged {{logged}}", flush=True)
            sys.exit(0)  # SystemExit: the interpreter exits normally, exit hooks run

        signal.signal(signal.SIGTERM, stop)
        handlers = [
            ClearMLCallbackHandler(task_name="sigterm", stream_logs=True,
                                   offline_dir={str(offline_dir)!r}),
            CometCallbackHandler(offline_dir={str(offline_dir)!r}),
        ]
        print("ready", flush=True)
        while True:
            for h in handlers:
                h.on_text(f"line {{logged}}")
            logged += 1
            time.sleep(0.002)
        """
    )
    script_path = tmp_path / "script.py"
    script_path.write_text(script)
    child = subprocess.Popen(
        [sys.executable, str(script_path)],
        cwd=ROOT,
        env=_child_env(tmp_path, offline_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err[-3000:]
    logged = int(re.search(r"logged (\d+)", out).group(1))  # type: ignore[union-attr]
    assert logged > 50
    clearml_zip = next(offline_dir.glob("offline-*.zip"))
    comet_zip = next(p for p in offline_dir.glob("*.zip") if not p.name.startswith("offline-"))
    # The signal may land between a callback and the count: one more line is fine, none lost.
    lines = [x for x in read_clearml_archive(clearml_zip).text_lines() if "'on_text'" in x]
    texts = [t for t, _ in read_comet_archive(comet_zip).texts()]
    for got in (len(lines), len(texts)):
        assert got in (logged, logged + 1), (got, logged)
    assert texts == [f"line {i}" for i in range(len(texts))]
