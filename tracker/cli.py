"""The ``tracker`` command (also ``python -m tracker``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from tracker.demo import print_report, run_demo

    report = asyncio.run(run_demo(args.chains, args.tokens, Path(args.offline_dir)))
    print_report(report)
    lost = report.stats["dropped"] + report.stats["pending"]
    return 1 if report.errors or lost else 0


def _inspect(args: argparse.Namespace) -> int:
    from tracker.inspect_archive import summarize

    status = 0
    for path in args.archives:
        try:
            print(summarize(path, trace=args.trace))
        except (OSError, ValueError) as exc:
            print(f"tracker inspect: {path}: {exc}", file=sys.stderr)
            status = 2
        print()
    return status


def _replay(args: argparse.Namespace) -> int:
    from tracker.replay import replay_spool

    try:
        report = replay_spool(
            Path(args.spool),
            offline_dir=args.offline_dir,
            project=args.project,
            name=args.name,
            backend=args.backend,
        )
    except (OSError, ValueError) as exc:
        print(f"tracker replay: {exc}", file=sys.stderr)
        return 2
    print(report.describe())
    return 0 if report.ok else 1


def _report(args: argparse.Namespace) -> int:
    from tracker.report import write_report

    try:
        path = write_report([Path(p) for p in args.archives], Path(args.output), args.trace)
    except (OSError, ValueError) as exc:
        print(f"tracker report: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path.resolve()}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    # Before the (slow) imports: a SIGTERM that comes while they run still stops it gracefully.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    from tracker.worker_command import run_worker

    return run_worker(args, stop)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per job."""
    parser = argparse.ArgumentParser(
        prog="tracker",
        description="Log LangChain runs to ClearML or Comet without slowing them down. "
        "Commands: demo (serve chains logged to both backends), inspect (read archives), replay "
        "(deliver a spool), report (an HTML page), worker (read a Redis stream into the backends).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log the tracker's steps")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="serve many concurrent chains logged to ClearML and Comet (offline), then flush",
    )
    demo.add_argument("--chains", type=int, default=500, help="concurrent chains (default 500)")
    demo.add_argument("--tokens", type=int, default=50, help="tokens each chain streams")
    demo.add_argument(
        "--offline-dir", default="tracker-offline", help="where the archives go (tracker-offline)"
    )
    demo.set_defaults(run=_demo)
    inspect = commands.add_parser(
        "inspect",
        help="summarize offline archives: runs, events by kind, tables, metrics, media",
        description="Print a readable summary of offline archives: ClearML session zips, Comet "
        "experiment zips (ours or the langchain_community handlers'), and tracker JSON-lines "
        "files.",
    )
    inspect.add_argument("archives", nargs="+", help="archive files (.zip or .jsonl)")
    inspect.add_argument(
        "--trace", default=None, help="also draw a trace's run tree: a root run id, or 'slowest'"
    )
    inspect.set_defaults(run=_inspect)
    replay = commands.add_parser(
        "replay",
        help="send a spool (batches a backend refused) to that backend now",
        description="Deliver what a spool directory holds (e.g. tracker-offline/spool/comet) "
        "to its backend, in order, once; the backend is the one the directory is named after, "
        "online when credentials are configured, else an offline archive in --offline-dir.",
    )
    replay.add_argument(
        "spool", help="a spool directory: .../spool/clearml, .../spool/comet, .../spool/overflow"
    )
    replay.add_argument("--offline-dir", default="tracker-offline", help="for offline archives")
    replay.add_argument("--project", default=None, help="project name for the new session")
    replay.add_argument("--name", default=None, help="task / experiment name")
    replay.add_argument(
        "--backend",
        choices=("clearml", "comet", "jsonl"),
        default=None,
        help="where an overflow spill (spool/overflow) goes; other spools name their backend",
    )
    replay.set_defaults(run=_replay)
    report = commands.add_parser(
        "report",
        help="one self-contained HTML report (runs, latency, tokens, errors, a run tree)",
        description="Write one HTML file, readable offline, from offline archives (ours or "
        "the langchain_community handlers') and JSON-lines files.",
    )
    report.add_argument("archives", nargs="+", help="archive files (.zip or .jsonl)")
    report.add_argument("-o", "--output", default="report.html", help="the HTML file")
    report.add_argument("--trace", default=None, help="the run id whose tree to draw")
    report.set_defaults(run=_report)
    worker = commands.add_parser(
        "worker",
        help="a tracker worker: read a Redis stream (consumer group) into ClearML/Comet/JSON lines",
        description="Read the batches applications send with transport='redis://…' (or "
        "TRACKER_TRANSPORT) in a consumer group, and write them in sessions of sinks. Any "
        "number of workers may share a stream. SIGTERM finishes the open session first.",
    )
    worker.add_argument("--from", dest="url", required=True, help="redis://host:port/db")
    worker.add_argument("--stream", default="langchain", help="stream name (langchain)")
    worker.add_argument("--group", default="tracker", help="consumer group (tracker)")
    worker.add_argument("--consumer", default=None, help="this worker's name (host-pid)")
    worker.add_argument(
        "--sink",
        action="append",
        choices=("clearml", "comet", "jsonl"),
        required=True,
        help="a backend (repeatable)",
    )
    worker.add_argument("--offline-dir", default="tracker-offline", help="offline archives")
    worker.add_argument("--project", default=None, help="ClearML / Comet project")
    worker.add_argument("--deployment", default="", help="a name tagged on every session")
    worker.add_argument("--tag", action="append", default=[], help="a session tag (repeatable)")
    worker.add_argument("--stream-logs", action="store_true", help="as the seed parameter")
    worker.add_argument("--complexity-metrics", action="store_true", help="textstat metrics")
    worker.add_argument("--visualize", action="store_true", help="spaCy visualisations")
    worker.add_argument(
        "--claim-idle",
        type=float,
        default=30.0,
        help="seconds before a silent worker's pending entries are taken (30)",
    )
    worker.add_argument("--session-events", type=int, default=50_000, help="events per session")
    worker.add_argument("--session-seconds", type=float, default=300.0, help="seconds per session")
    worker.add_argument(
        "--drain", action="store_true", help="write what the stream holds for the group, then exit"
    )
    worker.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    worker.set_defaults(run=_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return int(args.run(args))
