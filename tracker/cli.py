"""The ``tracker`` command (also ``python -m tracker``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from tracker.demo import print_report, run_demo

    report = asyncio.run(run_demo(args.chains, args.tokens, Path(args.offline_dir)))
    print_report(report)
    lost = sum(s["dropped"] + s["pending"] for s in report.stats.values())
    return 1 if report.errors or lost else 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per job."""
    parser = argparse.ArgumentParser(
        prog="tracker",
        description="Log LangChain runs to ClearML or Comet without slowing them down.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log the tracker's steps")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="serve many concurrent chains with both handlers (offline) and flush at shutdown",
    )
    demo.add_argument("--chains", type=int, default=500, help="concurrent chains (default 500)")
    demo.add_argument("--tokens", type=int, default=50, help="tokens each chain streams")
    demo.add_argument(
        "--offline-dir", default="tracker-offline", help="where the archives go (tracker-offline)"
    )
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return int(args.run(args))
