"""The tracker's background work runs in one program of its own, whatever the user's script is.

DESIGN.md: all background work (sinks, metrics, visualisations) runs in ONE tracker worker per
application process, started as ``[sys.executable, "-m", "workers.worker"]``, never by
multiprocessing's spawn or ``anyio.to_process`` from the application's process (those re-import
the user's ``__main__``: its top-level code runs again, once per worker).

Two behaviours, each checked in a fresh Python process (cwd = the test's folder, a clean env):

- ``test_unguarded_script_runs_once_and_logs_everything``: an unguarded user script
  (``tests/scripts/unguarded_script.py``, whose first statement appends a line to a file) runs
  chains with complexity metrics and visualisations on both seed classes. Run as a file, with
  ``-c``, from stdin and as a notebook cell (``__main__`` without ``__file__``), its side effect
  happens exactly once, it exits 0, and both offline archives hold the metrics and plots.
- ``test_one_worker_program_per_process``: seed classes and a ``TrackerCallbackHandler`` with
  two sinks in one process have exactly one child process between them: ``workers.worker``.

The whole module runs alone: ``pytest tests/test_worker_program.py``. Each test starts its child
with a deadline and kills the child's process group if it is not done by then.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tracker.archive import ClearMLArchive, CometArchive, read_archive
from workers.metrics import COMPLEXITY_METRICS

pytestmark = [pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "scripts" / "unguarded_script.py"
DEADLINE_S = 60.0  # a child still running by then is killed, with its process group
CHAINS = 3  # the script's chains: one LLM generation each
# The seed's 16 complexity metrics but text_standard (a string).
NUMERIC_TEXTSTAT_METRICS = tuple(m for m in COMPLEXITY_METRICS if m != "text_standard")

# Runs the script's code the way Jupyter/IPython does: in a fresh module named __main__ that has
# no __file__, installed as sys.modules["__main__"].
NOTEBOOK_DRIVER = textwrap.dedent(
    """
    import sys, types

    with open(sys.argv[1], encoding="utf-8") as file:
        source = file.read()
    cell = types.ModuleType("__main__")
    sys.modules["__main__"] = cell
    exec(compile(source, "<notebook cell>", "exec"), cell.__dict__)
    """
)


@dataclass
class Run:
    """What a child Python process left: exit status, output, and whether it hit the deadline."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool

    def report(self) -> dict[str, Any] | None:
        """The JSON of the last ``REPORT {...}`` line on stdout, if any."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("REPORT ")]
        return json.loads(lines[-1][len("REPORT ") :]) if lines else None

    def describe(self) -> str:
        """Exit status and the tails of both streams, for failure messages."""
        status = f"killed after {DEADLINE_S:.0f} s" if self.timed_out else f"{self.returncode}"
        return (
            f"exit status: {status}\n"
            f"--- stdout (tail) ---\n{self.stdout[-2000:]}\n"
            f"--- stderr (tail) ---\n{self.stderr[-4000:]}"
        )


def _child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a fresh program, as tests/conftest.py sets up this one.

    No CLEARML_*/TRAINS_* ids (a child inheriting them takes itself for a sub-process of a
    task), no Comet credentials or settings, no TRACKER_* settings of the calling process.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLEARML_", "TRAINS_", "COMET_", "TRACKER_"))
    }
    env["CLEARML_CACHE_DIR"] = str(tmp_path / "clearml-cache")
    env["COMET_ERROR_TRACKING_ENABLE"] = "false"
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _run(args: list[str], *, cwd: Path, env: dict[str, str], stdin_path: Path | None = None) -> Run:
    """Run ``python *args`` in its own process group; kill the group at the deadline.

    The group is killed afterwards in any case, so that no process the child left behind (a
    worker that did not exit) outlives the test.
    """
    stdin = stdin_path.open("rb") if stdin_path is not None else subprocess.DEVNULL
    try:
        child = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        timed_out = False
        try:
            out, err = child.communicate(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(child.pid)
            out, err = child.communicate()
        _kill_group(child.pid)
    finally:
        if stdin_path is not None:
            stdin.close()  # type: ignore[union-attr]
    return Run(
        returncode=None if timed_out else child.returncode,
        stdout=out.decode("utf-8", errors="replace"),
        stderr=err.decode("utf-8", errors="replace"),
        timed_out=timed_out,
    )


def _kill_group(pgid: int) -> None:
    """SIGKILL the process group the child leads (it was started in a session of its own)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------------------------
# 1. Script shapes
# --------------------------------------------------------------------------------------------


def _shape_args(shape: str, script: Path) -> tuple[list[str], Path | None]:
    """The interpreter arguments (and stdin file) that run ``script`` in the given shape."""
    source = script.read_text(encoding="utf-8")
    if shape == "file":
        return [str(script)], None
    if shape == "dash-c":
        return ["-c", source], None
    if shape == "stdin":
        return ["-"], script
    if shape == "notebook":
        return ["-c", NOTEBOOK_DRIVER, str(script)], None
    raise ValueError(shape)


def _archives(offline_dir: Path) -> tuple[list[ClearMLArchive], list[CometArchive], list[str]]:
    """Every archive in ``offline_dir`` (top level), by kind, and the names of unreadable ones."""
    clearml: list[ClearMLArchive] = []
    comet: list[CometArchive] = []
    unreadable: list[str] = []
    for path in sorted(offline_dir.glob("*.zip")):
        try:
            archive = read_archive(path)
        except ValueError as error:
            unreadable.append(f"{path.name}: {error}")
            continue
        if isinstance(archive, ClearMLArchive):
            clearml.append(archive)
        else:
            comet.append(archive)
    return clearml, comet, unreadable


def _clearml_problems(archive: ClearMLArchive) -> list[str]:
    """What is missing from the ClearML archive: complexity metrics and displaCy plots."""
    problems = []
    tables = archive.tables()
    titles = sorted({title for title, _ in tables})
    # The series is the flush's name: "" for flush_tracker(finish=True).
    session = next((t for (title, _), t in tables.items() if title == "Session Analysis"), None)
    if session is None:
        problems.append(f"ClearML: no 'Session Analysis' table (tables: {titles})")
    elif "flesch_reading_ease" not in session.columns:
        problems.append(
            "ClearML: 'Session Analysis' has no flesch_reading_ease column (complexity metrics "
            f"missing); columns: {list(session.columns)}"
        )
    else:
        values = list(session["flesch_reading_ease"])
        finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
        if len(finite) != CHAINS:
            problems.append(
                f"ClearML: expected {CHAINS} finite flesch_reading_ease values in 'Session "
                f"Analysis', got {values}"
            )
    media = archive.media()
    for title in ("Dependencies Plot", "Entities Plot"):
        pages = [m for m in media if m["title"] == title]
        good = [m for m in pages if (m["content"] or b"").startswith(b"<!DOCTYPE html>")]
        if len(good) != CHAINS:
            problems.append(
                f"ClearML: expected {CHAINS} '{title}' displaCy pages (visualize=True), got "
                f"{len(good)} of {len(pages)} media items titled so; all media: "
                f"{[(m['title'], m['series']) for m in media]}"
            )
    return problems


def _comet_problems(archive: CometArchive) -> list[str]:
    """What is missing from the Comet archive: complexity metrics and the dep pages."""
    problems = []
    metrics = {m["name"]: m["value"] for m in archive.metrics()}
    missing = [f"{m}_mean" for m in NUMERIC_TEXTSTAT_METRICS if f"{m}_mean" not in metrics]
    if missing:
        problems.append(
            f"Comet: complexity metric summaries missing: {missing}; metrics logged: "
            f"{sorted(metrics)}"
        )
    elif not math.isfinite(float(metrics["flesch_reading_ease_mean"])):
        problems.append(f"Comet: flesch_reading_ease_mean = {metrics['flesch_reading_ease_mean']}")
    assets = archive.assets()
    expected = [f"langchain-viz-dep-{i}.html" for i in range(CHAINS)]
    pages = [
        name for name in expected if assets.get(name, (b"",))[0].startswith(b"<!DOCTYPE html>")
    ]
    if pages != expected:
        problems.append(
            f"Comet: expected the displaCy assets {expected} (visualizations=['dep']), got "
            f"{pages}; assets: {sorted(assets)}"
        )
    return problems


@pytest.mark.parametrize("shape", ["file", "dash-c", "stdin", "notebook"])
def test_unguarded_script_runs_once_and_logs_everything(tmp_path: Path, shape: str) -> None:
    """An unguarded script's top level runs once, in its own process, and everything is logged.

    Shapes: ``python script.py``, ``python -c "<code>"``, ``python - < script.py``, and a
    notebook cell (code exec'd in a ``__main__`` module without ``__file__``). A tracker worker
    started by spawn/``anyio.to_process`` re-imports the main file as ``__mp_main__``: the side
    effect repeats, and the re-run script builds handlers and archives of its own. The three
    shapes without a main file check that the worker program logs everything there too.
    """
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.read_text(encoding="utf-8"), encoding="utf-8")
    side_effects = tmp_path / "side-effects.txt"
    offline_dir = tmp_path / "offline"
    offline_dir.mkdir()
    env = _child_env(
        tmp_path,
        TRACKER_TEST_SIDE_EFFECT_FILE=str(side_effects),
        TRACKER_TEST_OFFLINE_DIR=str(offline_dir),
    )
    args, stdin_path = _shape_args(shape, script)
    run = _run(args, cwd=tmp_path, env=env, stdin_path=stdin_path)

    problems: list[str] = []
    lines = side_effects.read_text(encoding="utf-8").splitlines() if side_effects.exists() else []
    if len(lines) != 1:
        problems.append(
            f"the script's top-level side effect ran {len(lines)} times, expected once "
            f"(the main module re-imported by a background process?): {lines}"
        )
    if run.timed_out or run.returncode != 0:
        problems.append(f"the script did not exit 0: {run.describe().splitlines()[0]}")
    report = run.report()
    if report is None:
        problems.append("the script printed no REPORT line (it did not reach its end)")
    else:
        for name, result in report.items():
            if not result["ok"]:
                problems.append(f"{name}: flush_tracker(finish=True) not ok: {result}")
    clearml, comet, unreadable = _archives(offline_dir)
    problems += [f"unreadable archive {text}" for text in unreadable]
    if len(clearml) != 1 or len(comet) != 1:
        problems.append(
            f"expected one ClearML and one Comet archive in {offline_dir}, found "
            f"{len(clearml)} ClearML {[a.path.name for a in clearml]} and {len(comet)} Comet "
            f"{[a.path.name for a in comet]} (extra ones come from re-runs of the script)"
        )
    ours = {
        name: Path(result["archive"]).name
        for name, result in (report or {}).items()
        if result.get("archive")
    }
    for archive in clearml:
        if archive.path.name == ours.get("clearml", archive.path.name):
            problems += _clearml_problems(archive)
    for archive in comet:
        if archive.path.name == ours.get("comet", archive.path.name):
            problems += _comet_problems(archive)

    assert not problems, f"shape {shape!r}: " + "\n- ".join(["", *problems]) + "\n" + run.describe()


# --------------------------------------------------------------------------------------------
# 2. One worker program per application process
# --------------------------------------------------------------------------------------------

ONE_WORKER = textwrap.dedent(
    """
    import json, sys

    import psutil
    from langchain_core.language_models import FakeListLLM
    from langchain_core.prompts import PromptTemplate

    from tracker import (
        ClearMLCallbackHandler, CometCallbackHandler, TrackerCallbackHandler, sinks,
    )

    out = sys.argv[1]
    handlers = {
        "clearml": ClearMLCallbackHandler(
            task_name="one-worker", complexity_metrics=True, offline=True, offline_dir=out
        ),
        "comet": CometCallbackHandler(complexity_metrics=True, offline=True, offline_dir=out),
        "multi": TrackerCallbackHandler(
            [
                sinks.clearml(
                    task_name="one-worker-multi",
                    complexity_metrics=True,
                    offline=True,
                    offline_dir=out,
                ),
                sinks.comet(complexity_metrics=True, offline=True, offline_dir=out),
            ],
            offline_dir=out,
        ),
    }
    answers = ["Paris is the capital of France.", "Kathmandu is the capital of Nepal."]
    chain = PromptTemplate.from_template("Tell me about {topic}.") | FakeListLLM(
        responses=answers
    )
    for topic in ("France", "Nepal"):
        chain.invoke({"topic": topic}, config={"callbacks": list(handlers.values())})
    flushed = {}
    for name, handler in handlers.items():
        result = handler.flush_tracker(timeout=20)
        flushed[name] = {"ok": result.ok, "written": result.written, "errors": result.errors}

    def describe(process):
        try:
            return {"pid": process.pid, "ppid": process.ppid(), "cmdline": process.cmdline()}
        except psutil.Error as error:
            return {"pid": process.pid, "error": repr(error)}

    me = psutil.Process()
    report = {
        "flushed": flushed,
        "children": [describe(p) for p in me.children()],
        "descendants": [describe(p) for p in me.children(recursive=True)],
    }
    report["count"] = len(report["descendants"])
    sys.stdout.write("REPORT " + json.dumps(report, default=str) + "\\n")
    sys.stdout.flush()
    for handler in handlers.values():
        handler.flush_tracker(finish=True, timeout=20)
    """
)


def test_one_worker_program_per_process(tmp_path: Path) -> None:
    """Both seed classes and a two-sink TrackerCallbackHandler share one worker program.

    After a flush (metrics computed, sinks open), the application's process has exactly one
    direct child, ``python -m workers.worker``; whatever else runs belongs to that worker.
    """
    offline_dir = tmp_path / "offline"
    offline_dir.mkdir()
    run = _run(["-c", ONE_WORKER, str(offline_dir)], cwd=tmp_path, env=_child_env(tmp_path))
    report = run.report()
    assert report is not None, f"the program printed no REPORT line\n{run.describe()}"

    def cmdlines(processes: list[dict[str, Any]]) -> str:
        return "\n".join(
            f"  pid {p['pid']} (parent {p.get('ppid')}): "
            + " ".join(p.get("cmdline") or [p.get("error", "?")])
            for p in processes
        )

    context = (
        f"{len(report['children'])} direct children, {report['count']} descendants:\n"
        f"{cmdlines(report['descendants'])}\nflush results: {report['flushed']}"
    )
    not_ok = {name: r for name, r in report["flushed"].items() if not r["ok"]}
    assert not not_ok, f"a flush failed, so the process count means little: {not_ok}\n{context}"
    children = report["children"]
    assert len(children) == 1, (
        f"expected exactly one child process (the tracker worker program), got {len(children)}\n"
        f"{context}"
    )
    cmdline = " ".join(children[0].get("cmdline") or [])
    assert "workers.worker" in cmdline, (
        f"the only child is not `python -m workers.worker`: {cmdline!r}\n{context}"
    )
    assert run.returncode == 0, f"the program failed after the count\n{run.describe()}"
