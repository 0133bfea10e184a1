"""Counts that are true when the disk is not: a full disk and an unusable ``offline_dir``.

``written`` counts only what a backend stored; an archive counts as written only once it opens.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tracker import ClearMLCallbackHandler, CometCallbackHandler
from tracker.testing import FaultySink, wrap_sinks


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (needs root, as CI has); skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_truncated_comet_archive_is_an_error_not_written(small_disk: Path) -> None:
    handler = CometCallbackHandler(offline_dir=small_disk, spool=False)
    for i in range(3000):
        handler.on_text(f"{i:05d} " + "lorem ipsum dolor sit amet " * 40)
    result = handler.flush_tracker(finish=True, timeout=120)
    assert not result.ok
    assert result.written == 0, result
    assert any("comet" in e and "unreadable" in e for e in result.errors), result.errors
    assert not any("ended by another" in e for e in result.errors), result.errors
    assert handler.archive_path is None


def test_an_unusable_offline_dir_names_the_cause_and_clearmls_own_copy(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a regular file where the archives should go")
    handler = ClearMLCallbackHandler(
        task_name=f"unusable-{uuid.uuid4().hex[:6]}",
        stream_logs=True,
        offline_dir=not_a_folder,
        spool=False,
    )
    for i in range(300):
        handler.on_text(f"t{i}")
    result = handler.flush_tracker(finish=True, timeout=120)
    assert not result.ok and result.written == 0, result
    error = " ".join(result.errors)
    assert "clearml" in error and str(not_a_folder) in error, error
    assert "ClearML's own copy is at" in error, error
    copy = Path(error.split("ClearML's own copy is at ")[1].split(":")[0])
    assert copy.exists(), error


def test_a_spool_on_a_full_disk_counts_what_it_could_not_keep(small_disk: Path) -> None:
    """The backend is down and the spool's disk fills: what did not fit is lost and counted,
    never reported as written, and the flush names the cause."""
    wrappers: list[FaultySink] = []

    def down(sink: Any) -> FaultySink:
        wrappers.append(FaultySink(sink, down=True))
        return wrappers[0]

    # Comet, not ClearML: an in-process ClearML Task that cannot close on the full disk would
    # stay current in this process, and later handlers would reuse it, as the seed does.
    with wrap_sinks(down):
        handler = CometCallbackHandler(stream_logs=True, offline_dir=small_disk, batch_size=50)
    for i in range(3000):
        handler.on_text(f"{i:05d} " + "spool me " * 60)
    result = handler.flush_tracker(timeout=120)
    stats = handler.stats()
    assert not result.ok and result.written == 0, result
    assert result.lost > 0 and stats["lost"] == result.lost, (result, stats)
    assert stats["in_spool"] + stats["lost"] == 3000, stats
    assert any("spool" in error and "disk is full" in error for error in result.errors), result
    wrappers[0].down = False
    handler.flush_tracker(finish=True, timeout=120)
