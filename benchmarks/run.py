"""``python -m benchmarks.run``: measure the tracker against its targets, rewrite RESULTS.md.

Each phase runs in a child process (ClearML allows one live Task per process, and the phases
need differently configured handlers):

- ``hotpath``: target 1, the caller-side cost of one callback (ours, the seeds, peers, floors);
- ``pipeline``: target 2, chain overhead (async and sync), then target 3, pipeline capacity,
  with the same handlers (all features on);
- ``seeds``: langchain_community's handlers for targets 1 and 2, with that process's own
  baselines (they cannot share a process with ours: one ClearML Task per process, and comet_ml
  ends the previous experiment when a new one starts);
- ``serving``: target 3 under many concurrent chains, each variant in a process of its own;
- ``flush``: target 5, aflush_tracker empty, after a backlog, and finish=True;
- ``memory``: target 6, RSS under overload (slow sinks) and over 1,000,000 events unflushed;
- ``parent_cpu``: the application process's own CPU per callback event while serving, over a
  no-op handler's (each variant in a process of its own);
- ``short_script``: a 5-chain script's flush_tracker(finish=True) against the SDK's own close;
- ``stream``: the Redis transport (issue 13): the application's CPU per event against the pipe,
  events/s through the stream with 1 and 2 workers, and serving 2,000 chains;
- ``agents``: 50 concurrent LangGraph ReAct-agent sessions (issue 15), ``ainvoke`` and
  ``astream_events``: no handler, a no-op handler, one TrackerCallbackHandler (ClearML + Comet +
  JSON lines) and the seed classes, each (variant, mode) in a process of its own.

The parent merges the tables of the same target.

Within a phase the variants are interleaved in rounds. Options: ``--quick`` (tiny sizes, for the
smoke test), ``--out PATH`` (default ``benchmarks/RESULTS.md``), ``--only PHASE[,PHASE…]``
(repeatable or comma-separated), ``--keep`` (keep the temporary folder with the phases' logs and
offline archives).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"
PHASES = (
    "hotpath",
    "pipeline",
    "seeds",
    "serving",
    "flush",
    "memory",
    "parent_cpu",
    "short_script",
    "stream",
    "agents",
)
PHASE_TIMEOUT = 900
# The memory phase pushes a million events through both handlers and then finishes them (Comet's
# end() first writes its offline streamer's backlog): about 15 minutes on a 2-core machine.
PHASE_TIMEOUTS = {"memory": 1800, "stream": 1500, "agents": 2400}


def _phase_list(value: str) -> list[str]:
    """``--only`` value: one phase or a comma-separated list of them."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in PHASES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown phase {', '.join(unknown) or repr(value)} (choose from {', '.join(PHASES)})"
        )
    return names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where RESULTS.md goes")
    parser.add_argument(
        "--only",
        action="append",
        type=_phase_list,
        metavar="PHASE[,PHASE…]",
        help=f"run only these phases (repeatable or comma-separated: {', '.join(PHASES)})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    # Internal: run one phase in this process (what the parent spawns).
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--size", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    return parser


def run_phase(name: str, size: str, result: Path, tmp: Path) -> None:
    """Child side: run one phase and write its tables as JSON to ``result``."""
    from benchmarks.common import Sizes, log, prepare_environment

    tmp.mkdir(parents=True, exist_ok=True)
    prepare_environment(tmp)  # before anything imports an SDK
    sizes = Sizes.named(size)
    started = time.perf_counter()
    if name == "hotpath":
        from benchmarks import hotpath

        tables = hotpath.run(sizes, tmp)
    elif name == "pipeline":
        from benchmarks import capacity, chain
        from benchmarks.subjects import our_session

        with our_session(tmp, all_features=True, queue_size=100_000 + sizes.capacity_events) as h:
            tables = [chain.run(sizes, h), capacity.run(sizes, h)]
        finish = ", ".join(f"{name} {sec:.1f}s" for name, sec in h.finish_seconds.items())
        tables[-1].notes.append(
            f"At the end of the phase, flush_tracker(finish=True) took: {finish} (ClearML: "
            "close and zip the Task; Comet: end(), which first writes what the SDK's offline "
            "streamer thread still holds, then zips)."
        )
        tables[-1].notes += [f"finish: {error}" for error in h.errors]
        from benchmarks import metrics_scaling

        tables.append(metrics_scaling.run(sizes))
    elif name == "serving":
        from benchmarks import serving

        tables = [serving.run(sizes, tmp)]
    elif name == "flush":
        from benchmarks import flush

        tables = [flush.run(sizes, tmp)]
    elif name == "memory":
        from benchmarks import memory

        tables = memory.run(sizes, tmp)
    elif name == "stream":
        from benchmarks import stream

        tables = stream.run(sizes, tmp)
    elif name == "agents":
        from benchmarks import agents

        tables = agents.run(sizes, tmp)
    elif name in ("parent_cpu", "short_script"):
        from benchmarks import parent_cpu

        tables = parent_cpu.run(name, size, tmp)
    else:
        from benchmarks import chain, hotpath
        from benchmarks.subjects import seed_session

        with seed_session(tmp) as seeds:
            tables = [*hotpath.run_seeds(sizes, seeds), chain.run_seeds(sizes, seeds)]
    log(f"phase {name} took {time.perf_counter() - started:.0f}s")
    result.write_text(json.dumps([t.to_json() for t in tables], indent=1), encoding="utf-8")


def _spawn(name: str, size: str, tmp: Path) -> tuple[list[dict[str, object]] | None, str]:
    """Run one phase in a child process; echo its progress lines; return its tables or None."""
    result = tmp / f"{name}.json"
    log_path = tmp / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--phase",
        name,
        "--size",
        size,
        "--result",
        str(result),
        "--tmp",
        str(tmp / name),
    ]
    tail: list[str] = []
    with log_path.open("w", encoding="utf-8") as log_file:
        # stdout to /dev/null: the ClearML seed prints every record it reports.
        child = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        assert child.stderr is not None
        deadline = time.monotonic() + PHASE_TIMEOUTS.get(name, PHASE_TIMEOUT)
        for line in child.stderr:
            log_file.write(line)
            tail = [*tail[-39:], line.rstrip()]
            if line.startswith("bench:"):
                print(line.rstrip(), flush=True)
            if time.monotonic() > deadline:
                child.kill()
                break
        code = child.wait()
    if code != 0 or not result.exists():
        print(f"phase {name} failed (exit {code}); last lines of {log_path}:", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)
        return None, f"phase {name} failed (exit {code}), see {log_path}"
    return json.loads(result.read_text(encoding="utf-8")), ""


def merge(tables: list[Any], table: Any) -> None:
    """Add ``table``, or append its rows, notes and verdicts to the table of the same target."""
    same = next((t for t in tables if t.id == table.id), None)
    if same is None:
        tables.append(table)
        return
    same.rows += table.rows
    same.notes += table.notes
    same.verdicts.update(table.verdicts)
    same.measured.update(table.measured)
    same.raw = {**same.raw, f"+{len(same.raw)}": table.raw}
    if same.columns and same.columns[0] == "mode":  # keep each mode's rows together
        order = {mode: i for i, mode in enumerate(dict.fromkeys(r[0] for r in same.rows))}
        same.rows.sort(key=lambda row: order[row[0]])


def main(argv: list[str] | None = None) -> int:
    """Parent side: run the phases, write RESULTS.md, print it."""
    args = _parser().parse_args(argv)
    if args.phase:
        run_phase(args.phase, args.size, args.result, args.tmp)
        return 0

    from benchmarks.common import Table
    from benchmarks.report import machine, render

    size = "quick" if args.quick else "full"
    shown_args = sys.argv[1:] if argv is None else argv
    python = Path(sys.executable)
    try:
        python = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python
    except ValueError:
        pass
    command = shlex.join([str(python), "-m", "benchmarks.run", *shown_args])
    host = machine()
    started_at = dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tracker-bench-"))
    tables: list[Table] = []
    failures: list[str] = []
    chosen = [name for names in args.only for name in names] if args.only else PHASES
    for name in dict.fromkeys(chosen):  # in the order given, once each
        print(f"== phase {name} ({size})", flush=True)
        found, failure = _spawn(name, size, tmp)
        if found is None:
            failures.append(failure)
            continue
        for data in found:
            merge(tables, Table.from_json(data))
    seconds = time.perf_counter() - started
    text = render(
        tables,
        command=command,
        size=size,
        started=started_at,
        seconds=seconds,
        host=host,
        failures=failures,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print()
    print(text)
    print(f"written to {args.out} in {seconds:.0f}s")
    if args.keep or failures:
        print(f"logs and offline archives kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
