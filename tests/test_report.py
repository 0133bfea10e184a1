"""``tracker report`` (issue 14, item 4): one self-contained HTML file from our ClearML, Comet
and JSON-lines archives and from a seed's, rendered by a real headless Chromium with no
network: the charts must be drawn (Plotly's SVG in the DOM)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.oracle import drive_workload, seed_comet
from tests.test_beyond import drive
from tracker import TrackerCallbackHandler, sinks

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The flags a closed machine needs (no background connections, no sandbox as root).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=20000",
)

if CHROMIUM is None and not os.environ.get("CI"):  # `make test` installs it (Makefile)
    pytest.skip("no chromium here: `make test` installs Debian's", allow_module_level=True)


def rendered(report: Path, profile: Path) -> str:
    """The DOM Chromium built from ``report`` (file://, so no server and no network)."""
    assert CHROMIUM is not None, "chromium is missing: `make test` installs it (Makefile)"
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def report_of(archive: Path, out: Path) -> Path:
    """``tracker report ARCHIVE -o OUT`` through the command line."""
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "report", str(archive), "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(out.resolve()) in done.stdout
    return out


def sections(dom: str) -> list[str]:
    return re.findall(r"<h2>([^<]*)</h2>", dom)


def test_the_report_renders_from_every_archive_in_a_real_browser(offline_dir: Path, tmp_path: Path):
    handler = TrackerCallbackHandler(
        [
            sinks.clearml(task_name="report", offline_dir=offline_dir),
            sinks.comet(name="report", offline_dir=offline_dir),
            sinks.jsonl(offline_dir),
        ],
        offline_dir=offline_dir,
    )
    drive([handler])  # 3 chat chains with token usage, and one that fails
    assert handler.flush_tracker(name="r", finish=True, timeout=120).ok
    with seed_comet(tmp_path / "seed") as run:
        drive_workload(run.handler)
        run.handler.flush_tracker(finish=True)
        seed = run.archive_path()

    charts = ["Runs over time", "Latency per run type", "Tokens over time", "Error rate"]
    for name, archive in (*handler.archive_paths.items(), ("seed", seed)):
        page = report_of(archive, tmp_path / f"{name}.html")
        source = page.read_text(encoding="utf-8")
        assert not re.search(r"<(script|link|img)[^>]+(src|href)=", source)  # self-contained
        dom = rendered(page, tmp_path / f"profile-{name}")
        titles = sections(dom)
        drawn = dom.count('class="main-svg"')
        if name == "seed":  # no runs table: the events by kind, and a word on why
            assert titles == ["Runs", "Events by kind"] and drawn >= 2, titles
            assert "no runs table" in dom
            continue
        assert titles[:4] == charts and "Slowest traces" in titles, titles
        assert any(t.startswith("Run tree of trace") for t in titles), titles
        assert drawn >= 2 * 6, (name, drawn)  # every chart drawn (Plotly: 2+ SVGs each)
        assert "1 failed runs of 15" in dom or "2 failed runs of 15" in dom, name
        # The run tree names the runs of the slowest trace: a chat chain's prompt, or, when a
        # pause on a loaded machine made the failing chain the slowest, its failing step.
        assert "ChatPromptTemplate" in dom or "failing" in dom
