"""Target 3, serving: many concurrent async chains streaming tokens on one loop.

Each variant runs in a process of its own (ClearML allows one Task per process and comet_ml one
running experiment), the variants taking turns; the no-handler baseline runs first and last so
drift shows. Per variant: completed chains per second, the event loop's lag (a ticker task
measuring its own lateness every 5 ms), and after the flush whether every event reached the
archives. The chain is tracker.demo's: retriever → prompt → streaming chat model (native
``_astream``) → tool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Sizes, Table, log

# (name, handlers, sink_process); handlers: which of ours, "noop" or none.
VARIANTS: list[tuple[str, str, bool]] = [
    ("no handler", "none", False),
    ("2 no-op run_inline handlers", "noop", False),
    ("ours, both, SDKs in this process", "both", False),
    ("ours, both, SDKs in child processes", "both", True),
    ("ours, ClearML only, child process", "clearml", True),
    ("ours, Comet only, child process", "comet", True),
    ("ours, one TrackerCallbackHandler, both sinks, child processes", "multi", True),
    ("no handler (again)", "none", False),
]


def _handlers(kind: str, sink_process: bool, out: Path) -> list[Any]:
    from langchain_core.callbacks import BaseCallbackHandler

    from tracker import ClearMLCallbackHandler, CometCallbackHandler

    class Noop(BaseCallbackHandler):
        run_inline = True

    features: dict[str, Any] = {"stream_logs": True, "complexity_metrics": True}
    make = {
        "clearml": lambda: ClearMLCallbackHandler(
            visualize=True, offline=True, offline_dir=out, sink_process=sink_process, **features
        ),
        "comet": lambda: CometCallbackHandler(
            visualizations=["dep", "ent"],
            offline=True,
            offline_dir=out,
            sink_process=sink_process,
            **features,
        ),
    }
    if kind == "none":
        return []
    if kind == "noop":
        return [Noop(), Noop()]
    if kind == "both":
        return [make["clearml"](), make["comet"]()]
    if kind == "multi":  # one queue, one conversion, both backends
        from tracker import TrackerCallbackHandler, sinks

        return [
            TrackerCallbackHandler(
                [
                    sinks.clearml(
                        visualize=True,
                        offline=True,
                        offline_dir=out,
                        sink_process=sink_process,
                        **features,
                    ),
                    sinks.comet(
                        visualizations=["dep", "ent"],
                        offline=True,
                        offline_dir=out,
                        sink_process=sink_process,
                        **features,
                    ),
                ],
                offline_dir=out,
            )
        ]
    return [make[kind]()]


async def _serve(kind: str, sink_process: bool, chains: int, out: Path) -> dict[str, Any]:
    from tracker.demo import build_chain

    handlers = _handlers(kind, sink_process, out)
    ours = [h for h in handlers if hasattr(h, "aflush_tracker")]
    for handler in ours:  # started (sink process, Task, Experiment) before the clock runs
        await handler.aflush_tracker(timeout=120)
    chain = build_chain(50)
    lags: list[float] = []
    running = True

    async def ticker() -> None:
        while running:
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - start - 0.005)

    async def one(i: int) -> None:
        question = f"What about France? (request {i})"
        async for _ in chain.astream({"question": question}, {"callbacks": handlers}):
            pass

    tick = asyncio.ensure_future(ticker())
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(chains)))
    seconds = time.perf_counter() - started
    running = False
    await tick
    lags.sort()
    flushed = time.perf_counter()
    results = [await h.aflush_tracker(finish=True, timeout=600) for h in ours]
    complete = all(
        r.ok
        and h.stats()["processed"] == h.stats()["enqueued"]
        and (getattr(h, "archive_path", None) or len(getattr(h, "archive_paths", {})) == 2)
        for h, r in zip(ours, results, strict=True)
    )
    return {
        "chains_per_s": chains / seconds,
        "lag_p50_ms": lags[len(lags) // 2] * 1e3,
        "lag_p99_ms": lags[int(len(lags) * 0.99)] * 1e3,
        "flush_s": time.perf_counter() - flushed if ours else 0.0,
        "events": sum(h.stats()["enqueued"] for h in ours),
        "complete": complete if ours else None,
    }


def run(sizes: Sizes, tmp: Path) -> Table:
    """Run every variant in its own process and tabulate them against the no-handler run."""
    chains = 2000 if sizes.capacity_events >= 30_000 else 30
    measured: list[tuple[str, dict[str, Any]]] = []
    for index, (name, kind, sink_process) in enumerate(VARIANTS):
        log(f"serving: {name}")
        out = tmp / f"serving-{index}"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.serving",
                kind,
                str(int(sink_process)),
                str(chains),
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            measured.append((name, {"error": done.stderr[-300:]}))
            continue
        measured.append((name, json.loads(lines[-1])))
    baselines = [
        m["chains_per_s"] for n, m in measured if n.startswith("no handler") and "error" not in m
    ]
    base = sum(baselines) / len(baselines) if baselines else float("nan")
    base_lag = min(
        (m["lag_p99_ms"] for n, m in measured if n.startswith("no handler") and "error" not in m),
        default=float("nan"),
    )
    table = Table(
        id="serving",
        title=f"3. Serving: {chains} concurrent async chains, 50 streamed tokens each, one loop",
        target="chains/s ≥ 0.85x no handler; loop lag p99 ≤ no-handler p99 + 2 ms; "
        "every event in the archives",
        columns=[
            "variant",
            "chains/s",
            "ratio vs no handler",
            "loop lag p50",
            "loop lag p99",
            "events (ours)",
            "flush",
            "all in archives",
            "met?",
        ],
    )
    for name, m in measured:
        if "error" in m:
            table.add(
                name, "**error**", m["error"].replace("\n", " ")[:120], "", "", "", "", "", ""
            )
            continue
        ratio = m["chains_per_s"] / base
        ours = m["complete"] is not None
        met = ours and ratio >= 0.85 and m["lag_p99_ms"] <= base_lag + 2 and m["complete"]
        if ours and "both" in name:
            table.verdicts[name] = bool(met)
            table.measured[name] = f"{ratio:.2f}x, lag p99 {m['lag_p99_ms']:.0f} ms"
        table.add(
            name,
            f"{m['chains_per_s']:.1f}",
            f"{ratio:.2f}x",
            f"{m['lag_p50_ms']:.0f} ms",
            f"{m['lag_p99_ms']:.0f} ms",
            m["events"] or "—",
            f"{m['flush_s']:.1f} s" if ours else "—",
            {True: "yes", False: "**no**", None: "—"}[m["complete"]],
            ("yes" if met else "**no**") if ours else "—",
        )
    table.notes += [
        "All features on for ours (stream_logs, complexity metrics, visualizations). The "
        "no-handler baseline is the mean of its two runs (first and last).",
        "Loop lag: with thousands of chains the loop itself is saturated, so even the baseline's "
        "ticker runs hundreds of ms late; compare the rows, not the absolute values.",
        "Each of our handlers converts every event itself and, in the child-process design, ships "
        "it to its own sink process: two handlers double that work, and on 2 cores their child "
        "processes compete with the serving loop for CPU.",
    ]
    return table


def main() -> None:
    """Child side: ``python -m benchmarks.serving KIND SINK_PROCESS CHAINS OUT`` → one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("kind")
    parser.add_argument("sink_process", type=int)
    parser.add_argument("chains", type=int)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    from benchmarks.common import prepare_environment

    args.out.mkdir(parents=True, exist_ok=True)
    prepare_environment(args.out)
    result = asyncio.run(_serve(args.kind, bool(args.sink_process), args.chains, args.out))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
