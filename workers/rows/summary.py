"""The Comet seed's per-LLM-end metric summary: ``pandas.DataFrame(metrics).describe()``.

It runs in the workers, but it holds the GIL: pandas takes ~15 ms per call here, which an async
app serving chains feels. Almost every LLM end has one generation, where the summary is exact
without pandas (count 1, std NaN, every quantile the value); other shapes go through pandas.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

STATS = ("count", "mean", "std", "min", "25%", "50%", "75%", "max")


def _single(row: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """``describe()`` of one row, or None when pandas' dtype rules would need pandas."""
    out: dict[str, dict[str, float]] = {}
    for column, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if value is None or isinstance(value, str):
                continue  # object columns: describe() leaves them out when any column is numeric
            return None
        number = float(value)
        if math.isnan(number):
            out[column] = dict.fromkeys(STATS, math.nan) | {"count": 0.0}
        else:
            out[column] = dict.fromkeys(STATS, number) | {"count": 1.0, "std": math.nan}
    return out or None


def describe(metrics: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{column: {count, mean, std, min, 25%, 50%, 75%, max}}`` over the numeric columns.

    Exactly what the seed logs with ``log_metrics(value, prefix=column)``.
    """
    if len(metrics) == 1:
        fast = _single(metrics[0])
        if fast is not None:
            return fast
    frame = pd.DataFrame(metrics)
    if frame.empty:
        return {}
    summary: dict[str, dict[str, Any]] = frame.describe().to_dict()
    return summary
