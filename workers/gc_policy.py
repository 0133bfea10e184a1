"""Garbage collection in the tracker's own worker programs (never in the application's process).

A worker decodes a batch, converts it to records, builds rows and writes them: thousands of
containers a batch, nearly all acyclic, most of them alive until the batch is written. With
CPython's default thresholds (a young collection every 700 allocations, a middle one every 10 of
those) each batch is walked over and over while it is still in use, and whatever it holds
(session tables, the runs table, the SDKs' own state) is walked at every full collection. Measured
on 50 concurrent LangGraph agent sessions (ClearML + Comet + JSON lines): 440 µs of worker CPU
per event with the defaults, 285 µs with :data:`THRESHOLDS` (benchmarks/analysis.md).

Only the tracker's worker programs call :func:`tune`: the application's process, and its garbage
collector, belong to the user.
"""

from __future__ import annotations

import gc

#: (young, middle, old): a young collection every 50,000 net allocations (a batch or two), then
#: a middle one every 20 of those and the next generation's every 20.
THRESHOLDS = (50_000, 20, 20)


def tune() -> None:
    """Set the worker program's collection thresholds (call once, at its start)."""
    gc.set_threshold(*THRESHOLDS)
