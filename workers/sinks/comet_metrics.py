"""How the LLM ends' metric summaries (complexity, custom metrics) go to Comet as metrics.

The Comet seed logs ``pandas.DataFrame(metrics).describe()`` of each LLM end: 8 statistics per
metric. comet_ml makes each metric a message of its own, and each ``log_metrics`` call with a
step one more (its ``curr_step`` parameter); the SDK's Python and its offline writer take
~90 µs of the tracker worker's CPU a message (1,000 LLM ends x 16 metrics: 1.5 s). With the 16
textstat metrics that is 129 messages per LLM end the seed's way, which is what made the
Comet sink the worker's bottleneck under load (benchmarks/analysis.md, issue 15).

- ``"describe"``: the seed's way, every statistic of every LLM end, at its step.
- ``"mean"``: only ``<metric>_mean`` of each LLM end, at its step (for one generation the other
  seven statistics are copies, a count of 1 or NaN): 17 messages per LLM end.
- ``"batch_mean"``: ``<metric>_mean`` over the LLM ends of one batch the worker writes, each
  generation weighing one, at the step of the batch's last LLM end: 17 messages per batch.
  Under light load a batch holds one LLM end, and this is ``"mean"``; under load the series
  gets one point per batch and the worker keeps up with the application. Every generation's
  own values stay in the session table (``langchain-llm-session.csv``).
"""

from __future__ import annotations

import math
from typing import Any

#: The ways an LLM end's metric summaries go to Comet (see the module's docstring).
METRIC_SUMMARIES = ("describe", "mean", "batch_mean")

#: ``(metric, its describe() statistics, step)``, as :class:`workers.rows.comet.CometRows` gives.
Summary = tuple[str, dict[str, Any], int]
#: ``experiment.log_metrics(values, prefix=prefix, step=step)``'s arguments.
MetricCall = tuple[dict[str, Any], str | None, int]


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (NaN, infinities, anything not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def metric_calls(summaries: list[Summary], mode: str) -> list[MetricCall]:
    """The ``log_metrics`` calls that log ``summaries`` the ``mode`` way (in their order)."""
    if mode == "describe":
        return [(values, prefix, step) for prefix, values, step in summaries]
    if mode == "mean":
        means: dict[int, dict[str, Any]] = {}
        for prefix, values, step in summaries:
            if "mean" in values:
                means.setdefault(step, {})[f"{prefix}_mean"] = values["mean"]
        return [(values, None, step) for step, values in means.items()]
    if mode != "batch_mean":
        raise ValueError(f"metric_summary must be one of {METRIC_SUMMARIES}, got {mode!r}")
    # name -> [sum of mean x count, count]: the mean over every generation of the batch
    totals: dict[str, list[float]] = {}
    last: int | None = None
    for prefix, values, step in summaries:
        if "mean" not in values:
            continue
        last = step if last is None else max(last, step)
        total = totals.setdefault(f"{prefix}_mean", [0.0, 0.0])
        mean, count = _number(values["mean"]), _number(values.get("count", 1))
        if mean is not None and count:
            total[0] += mean * count
            total[1] += count
    if last is None:
        return []
    # No generation with a value (each mean NaN): NaN, as "mean" logs it for one LLM end.
    return [({name: s / n if n else math.nan for name, (s, n) in totals.items()}, None, last)]
