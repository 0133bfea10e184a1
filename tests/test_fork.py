"""Fork after the handlers started (gunicorn --preload): the child starts over, the parent
goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tracker.archive import read_clearml_archive, read_comet_archive

ROOT = Path(__file__).resolve().parent.parent

FORKING = textwrap.dedent(
    """
    import json, os, sys
    from tracker import ClearMLCallbackHandler, CometCallbackHandler

    out = sys.argv[1]
    handlers = {
        "clearml": ClearMLCallbackHandler(stream_logs=True, offline_dir=out, flush_interval=60,
                                          batch_size=10_000),
        "comet": CometCallbackHandler(stream_logs=True, offline_dir=out, flush_interval=60,
                                      batch_size=10_000),
    }
    for h in handlers.values():
        h.on_text("parent-before")
        assert h.flush_tracker(timeout=120).ok
        h.on_text("parent-queued")  # still queued at the fork: a long interval, a big batch
    pid = os.fork()
    if pid == 0:
        report = {}
        for name, h in handlers.items():
            h.on_text("child")
            stats = h.stats()
            result = h.flush_tracker(finish=True, timeout=120)
            report[name] = [result.ok, str(h.archive_path), stats["enqueued"], result.errors]
        with open(os.path.join(out, "child.json"), "w") as f:
            json.dump(report, f)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    report = {"child_status": status}
    for name, h in handlers.items():
        h.on_text("parent-after")
        result = h.flush_tracker(finish=True, timeout=120)
        report[name] = [result.ok, str(h.archive_path), h.stats()["enqueued"], result.errors]
    with open(os.path.join(out, "parent.json"), "w") as f:
        json.dump(report, f)
    """
)


def _clearml_texts(path: str) -> list[str]:
    lines = read_clearml_archive(Path(path)).text_lines()
    return [line.split("'text': '")[1].split("'")[0] for line in lines if "'text': '" in line]


def _comet_texts(path: str) -> list[str]:
    return [text for text, _ in read_comet_archive(Path(path)).texts()]


def test_forked_child_gets_its_own_pipeline_and_parent_keeps_working(offline_dir: Path):
    run = subprocess.run(
        [sys.executable, "-c", FORKING, str(offline_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    parent = json.loads((offline_dir / "parent.json").read_text())
    child = json.loads((offline_dir / "child.json").read_text())
    assert parent["child_status"] == 0
    for name, texts_of in (("clearml", _clearml_texts), ("comet", _comet_texts)):
        ok, archive, enqueued, errors = child[name]
        assert ok and enqueued == 1, (name, errors)  # no inherited queue, no inherited counts
        assert texts_of(archive) == ["child"]
        ok, archive, enqueued, errors = parent[name]
        assert ok and enqueued == 3, (name, errors)
        assert texts_of(archive) == ["parent-before", "parent-queued", "parent-after"]
        assert archive != child[name][1]
