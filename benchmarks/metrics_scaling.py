"""Target 4, second half: complexity-metric throughput with 2 worker processes vs 1.

The tracker worker computes the 16 textstat metrics of every generation, fanning a batch of 32
texts or more out to metric processes of its own (``workers.metrics.Analyzer``, anyio worker
processes). Here the same texts go through an analyzer with one process and one with two, in
alternating rounds (each analyzer warmed up first: the processes import textstat and load the
syllable dictionary once); throughput is texts per second. The analyzers fan out every call
(``fan_out_at=1``), so that the warm-up starts their processes and every measured call uses
them.
"""

from __future__ import annotations

import statistics
import time

import anyio

from benchmarks.common import Sizes, Table, log

TARGET_RATIO = 1.7
SENTENCE = (
    "The capital of France is Paris, a city on the Seine that millions of visitors reach every "
    "year by train, plane or boat, and whose museums hold art from every century. "
)


def _texts(n: int, start: int = 0) -> list[str]:
    """``n`` different ~120-word generations, numbered from ``start``.

    textstat caches its results by text in each process, so no text may come back: every call
    of the benchmark takes numbers no earlier call used.
    """
    return [f"Answer {i}. " + SENTENCE * 4 for i in range(start, start + n)]


async def _measure(texts_per_round: int, rounds: int) -> dict[str, list[float]]:
    from workers.metrics import Analyzer

    # fan_out_at=1: every call goes to the processes (by default a call below 32 texts runs in
    # a thread of the calling process, and the 8-text warm-up would start no process).
    analyzers = {n: Analyzer(processes=n, fan_out_at=1) for n in (1, 2)}
    used = 0
    for analyzer in analyzers.values():  # warm-up: start the processes, load the dictionary
        await analyzer.complexity(_texts(8, used))
        used += 8
    rates: dict[str, list[float]] = {"1 process": [], "2 processes": []}
    for index in range(rounds):
        order = [1, 2] if index % 2 == 0 else [2, 1]
        for processes in order:
            texts = _texts(texts_per_round, used)
            used += texts_per_round
            started = time.perf_counter()
            results = await analyzers[processes].complexity(texts)
            seconds = time.perf_counter() - started
            assert len(results) == len(texts)
            key = "1 process" if processes == 1 else "2 processes"
            rates[key].append(len(texts) / seconds)
        log(f"metrics scaling: round {index + 1}/{rounds}")
    return rates


def run(sizes: Sizes) -> Table:
    """Measure and tabulate."""
    texts = 64 if sizes.capacity_events < 30_000 else 400
    rounds = 2 if sizes.capacity_events < 30_000 else 5
    rates = anyio.run(_measure, texts, rounds)
    one = statistics.median(rates["1 process"])
    two = statistics.median(rates["2 processes"])
    ratio = two / one
    table = Table(
        id="metrics_scaling",
        title="4. Complexity metrics: throughput with 2 worker processes vs 1",
        target="2 processes ≥ 1.7x one process",
        columns=["worker processes", "texts/s (median of rounds)", "per round", "ratio vs 1"],
    )
    for key, median in (("1 process", one), ("2 processes", two)):
        per_round = ", ".join(f"{r:.0f}" for r in rates[key])
        table.add(key, f"{median:.0f}", per_round, f"{median / one:.2f}x")
    check = "complexity metrics: 2 processes ≥ 1.7x one"
    table.verdicts[check] = ratio >= TARGET_RATIO
    table.measured[check] = f"{ratio:.2f}x ({two:.0f} vs {one:.0f} texts/s)"
    table.notes.append(
        f"{rounds} rounds of {texts} different ~120-word texts per analyzer (no text twice in "
        "the run: textstat caches by text), alternating which goes first; the 16 textstat "
        "metrics per text, as the tracker worker computes them for each "
        "generation. This machine has 2 cores shared with the rest of the run, so 2x is the "
        "ceiling."
    )
    table.raw = {"rates": rates}
    return table
