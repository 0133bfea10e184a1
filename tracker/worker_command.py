"""``tracker worker``: the command that runs a :class:`~workers.stream_worker.StreamWorker`.

The sinks are built with :mod:`tracker.sinks` (the same builders as ``TrackerCallbackHandler``):
one session of them at a time, each named after the stream, the worker and its number, and
tagged with the worker's host, process, stream and deployment, so that every replica's runs can
be found (README: "Many hosts").
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from pathlib import Path

from tracker import sinks
from tracker.settings import resolve_offline_dir
from workers import gc_policy
from workers.link import NOT_INHERITED
from workers.options import SERVING_DEFAULTS, PipelineOptions
from workers.sinks.spec import SinkSpec
from workers.stream_worker import StreamWorker


def session_tags(args: argparse.Namespace, consumer: str) -> list[str]:
    """What each session is tagged with: the worker, its stream and the deployment."""
    tags = [
        "tracker-worker",
        f"host:{socket.gethostname()}",
        f"pid:{os.getpid()}",
        f"consumer:{consumer}",
        f"stream:{args.stream}",
    ]
    if args.deployment:
        tags.append(f"deployment:{args.deployment}")
    return [*tags, *args.tag]


def run_worker(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Build the worker from the command line, run it until ``stop`` is set (or drained)."""
    # A worker is a program of its own, not a subprocess of a ClearML Task that started it
    # (ClearML would hand it a stub Task).
    for name in NOT_INHERITED:
        os.environ.pop(name, None)
    consumer = args.consumer or f"{socket.gethostname()}-{os.getpid()}"
    offline_dir = resolve_offline_dir(args.offline_dir)
    tags = session_tags(args, consumer)

    def make_sinks(number: int) -> list[SinkSpec]:
        name = f"{args.stream} {consumer} #{number}"
        built: list[SinkSpec] = []
        for kind in args.sink:
            if kind == "clearml":
                built.append(
                    sinks.clearml(
                        project_name=args.project or "langchain_callback_demo",
                        task_name=name,
                        tags=tags,
                        stream_logs=args.stream_logs,
                        complexity_metrics=args.complexity_metrics,
                        visualize=args.visualize,
                        offline_dir=offline_dir,
                        sink_process=True,
                    )
                )
            elif kind == "comet":
                built.append(
                    sinks.comet(
                        project_name=args.project,
                        name=name,
                        tags=tags,
                        stream_logs=args.stream_logs,
                        complexity_metrics=args.complexity_metrics,
                        visualizations=["dep", "ent"] if args.visualize else None,
                        offline_dir=offline_dir,
                    )
                )
            else:
                session = f"{args.stream}-{consumer}-{number}"
                # .jsonl only once finished: a killed worker's entries are written again.
                built.append(sinks.jsonl(offline_dir, session=session, whole_sessions=True))
        return built

    # The serving defaults, but no rotation: a session is written whole when it ends.
    serving = {**SERVING_DEFAULTS, "rotate_events": None, "rotate_seconds": None}
    options = PipelineOptions(spool=offline_dir / "spool" / consumer, transport=None, **serving)
    worker = StreamWorker(
        args.url,
        args.stream,
        make_sinks,
        options,
        group=args.group,
        consumer=consumer,
        claim_idle=args.claim_idle,
        session_events=args.session_events,
        session_seconds=args.session_seconds,
        stop=stop,
    )
    gc_policy.tune()  # a program of ours: its collector is ours to set
    deadline = time.monotonic() + args.max_seconds if args.max_seconds else None
    stats = worker.run(drain=args.drain, deadline=deadline)
    print(
        f"tracker worker {consumer}: {stats.entries} entries ({stats.events} events), "
        f"{stats.duplicates} duplicates skipped, {stats.claimed} claimed from silent workers, "
        f"{stats.sessions} sessions, {stats.acked} acknowledged, {stats.trimmed} trimmed"
    )
    for path in stats.archives:
        print(f"  archive {Path(path)}")
    for error in stats.errors:
        print(f"error: {error}")
    return 1 if stats.errors else 0
