"""Smoke test of the benchmark harness (``make bench``): a tiny run writes every table.

Benchmarks measure, they do not test: nothing here looks at a time or a ratio, only at whether
the harness ran its three phases and wrote RESULTS.md where it was told to.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_writes_every_table(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    default = ROOT / "benchmarks" / "RESULTS.md"
    before = default.stat().st_mtime_ns if default.exists() else None

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    text = out.read_text(encoding="utf-8")
    # The header: date, machine, the exact command.
    for needle in ("- Date: ", "`nproc` = ", "CPU: ", "Python 3.", "- Command: `", "--quick"):
        assert needle in text, needle
    # One section per target, each with its table.
    for heading in (
        "## 1. Hot path",
        "## 2. Chain overhead",
        "## 3. Pipeline capacity",
        "## Summary",
    ):
        assert heading in text, heading
    for header in (
        "| variant | callback | median | p99 | mean | ratio vs deque floor (median) | target |",
        "| mode | variant | median | p99 | mean | ratio vs no-op handlers (median) |",
        "| backend | events |",
    ):
        assert header in text, header
    for row in (
        "| ours: ClearML | on_llm_end |",
        "| ours: Comet | on_llm_new_token |",
        "| ours: Comet | on_chain_start |",
        "| seed: ClearML (stream_logs) | on_llm_end |",
        "| seed: Comet (stream_logs + complexity) | on_llm_end |",
        "| OpenTelemetry BatchSpanProcessor |",
        "| deque(maxlen=N).append (floor) |",
        "| async | ours: ClearML + Comet (all features) |",
        "| sync | 2 no-op sync run_inline handlers |",
        "| async | no handler |",
        "| sync | seed: Comet (defaults) |",
        "| ours: ClearML | 600 |",
        "| ours: Comet | 600 |",
    ):
        assert row in text, row
    # Every summary line says yes or no: each target was measured, none failed to run.
    assert "**error**" not in text
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert summary.count("| 1. Hot path |") == 6
    assert summary.count("| 2. Chain overhead |") == 2
    assert summary.count("| 3. Pipeline capacity |") == 2
    # --out was honoured: the checked-in results were left alone.
    after = default.stat().st_mtime_ns if default.exists() else None
    assert after == before
