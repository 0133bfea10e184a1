"""RESULTS.md: the machine, the command, a summary of verdicts, and one table per target."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks.common import Table

PACKAGES = ("langchain-core", "langchain-community", "clearml", "comet_ml", "spacy", "textstat")


def machine() -> dict[str, Any]:
    """nproc, CPU model, Python, kernel, load average: what the numbers depend on."""
    nproc = None
    if shutil.which("nproc"):
        done = subprocess.run(["nproc"], capture_output=True, text=True, check=False)
        nproc = done.stdout.strip() or None
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    return {
        "code": _code_version(),
        "nproc": nproc or str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "load": load,
        "packages": packages,
    }


def _code_version() -> str:
    """The git commit measured, and whether tracker/ or workers/ had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    if not shutil.which("git"):
        return "unknown (no git)"
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    )
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "tracker", "workers"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    state = "with uncommitted changes in tracker/ or workers/" if dirty.stdout.strip() else "clean"
    return f"git {head.stdout.strip()} ({state})"


def _md_table(table: Table) -> list[str]:
    lines = [
        "| " + " | ".join(table.columns) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
    ]
    for row in table.rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return lines


def print_standalone(tables: list[Table], started: float, tmp: Path, keep: bool) -> None:
    """A phase module run on its own (``python -m benchmarks.X``): print its tables as
    Markdown, how long it took, and remove its temporary folder unless ``keep``."""
    import time

    for table in tables:
        print(f"\n## {table.title}\n\nTarget: {table.target}.\n")
        print("\n".join(_md_table(table)))
        if table.notes:
            print("\n" + "\n".join(f"- {note}" for note in table.notes))
    print(f"\n{time.perf_counter() - started:.0f}s; tmp {tmp}")
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)


def _summary_target(table: Table, check: str) -> str:
    """The Summary's target cell: the table's number and name ("2. Chain overhead").

    The chain table's sustained checks (issue 10: the background work on the clock, ≤ 1.10x)
    are a target of their own next to the per-invocation one (≤ 1.05x): "2. Chain overhead,
    sustained".
    """
    target = table.title.split(":")[0]
    if table.id == "chain" and "sustained" in check:
        return f"{target}, sustained"
    return target


def render(
    tables: list[Table],
    *,
    command: str,
    size: str,
    started: dt.datetime,
    seconds: float,
    host: dict[str, Any],
    failures: list[str],
) -> str:
    """The whole RESULTS.md."""
    packages = ", ".join(f"{k} {v}" for k, v in host["packages"].items())
    out = [
        "# Benchmark results",
        "",
        "Rewritten by `python -m benchmarks.run` (`make bench`) on every run. One run on a shared, "
        "noisy machine: variants are interleaved in rounds so noise hits them alike, but compare "
        "ratios rather than absolute times. Benchmarks, not tests: nothing asserts on these "
        "numbers.",
        "",
        f"- Date: {started.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- Machine: `nproc` = {host['nproc']}, CPU: {host['cpu']}, "
        f"{host['implementation']} {host['python']}, Linux {host['kernel']}, "
        f"load average at start: {host['load']}",
        f"- Command: `{command}` (size: {size}), total {seconds:.0f} s",
        f"- Code measured: {host['code']}",
        f"- Packages: {packages}",
        "",
        "## Summary",
        "",
        "| target | check | measured | met? |",
        "|---|---|---|---|",
    ]
    for table in tables:
        for what, ok in table.verdicts.items():
            numbers = table.measured.get(what, "")
            target = _summary_target(table, what)
            out.append(f"| {target} | {what} | {numbers} | {'yes' if ok else '**no**'} |")
    for failure in failures:
        out.append(f"| — | {failure} | | **error** |")
    analysis = Path(__file__).with_name("analysis.md")
    if analysis.is_file():  # the misses' causes, kept by hand next to the code
        out += ["", *analysis.read_text(encoding="utf-8").rstrip().splitlines()]
    for table in tables:
        out += ["", f"## {table.title}", "", f"Target: {table.target}.", ""]
        out += _md_table(table)
        if table.notes:
            out.append("")
            out += [f"- {note}" for note in table.notes]
    out.append("")
    return "\n".join(out)
