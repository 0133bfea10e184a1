"""The Comet seed's per-LLM-end metric summary: ``pandas.DataFrame(metrics).describe()``."""

from __future__ import annotations

from typing import Any

import pandas as pd


def describe(metrics: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{column: {count, mean, std, min, 25%, 50%, 75%, max}}`` over the numeric columns.

    Exactly what the seed logs with ``log_metrics(value, prefix=column)``; it runs in the
    workers, never on the caller's path.
    """
    frame = pd.DataFrame(metrics)
    if frame.empty:
        return {}
    summary: dict[str, dict[str, Any]] = frame.describe().to_dict()
    return summary
