"""How LLM ends' complexity metrics go to Comet: per LLM end, or once per batch the worker writes.

``metric_summary="batch_mean"`` (TrackerCallbackHandler's default) must log, per batch, the mean
over the batch's generations at the step of its last LLM end, and under light load (a batch per
LLM end) exactly what ``"mean"`` logs. Real chains, the real tracker worker, comet_ml's offline
archive.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import PromptTemplate

from tracker import TrackerCallbackHandler, sinks
from tracker.archive import read_comet_archive
from tracker.testing import always_busy, hold_while_busy
from workers.sinks.comet_metrics import metric_calls

#: Three answers of different readability, one per chain.
ANSWERS = [
    "The cat sat on the mat. It was warm.",
    "Notwithstanding considerable institutional heterogeneity, comparative constitutional "
    "jurisprudence demonstrates remarkable convergence.",
    "Paris is the capital of France. It lies on the Seine, and many people visit it.",
]
METRIC = "flesch_reading_ease_mean"


def test_metric_calls_per_mode() -> None:
    summaries = [
        ("ease", {"count": 1.0, "mean": 10.0, "max": 10.0}, 4),
        ("grade", {"count": 1.0, "mean": 2.0}, 4),
        ("ease", {"count": 3.0, "mean": 30.0, "max": 40.0}, 9),
        ("grade", {"count": 0.0, "mean": math.nan}, 9),  # no generation had a value
    ]
    assert metric_calls(summaries, "describe") == [(v, p, s) for p, v, s in summaries]
    means = metric_calls(summaries, "mean")
    assert means[0] == ({"ease_mean": 10.0, "grade_mean": 2.0}, None, 4)
    assert means[1][0]["ease_mean"] == 30.0 and math.isnan(means[1][0]["grade_mean"])
    # One call: each generation weighs one (1 x 10 + 3 x 30) / 4; a NaN mean adds nothing.
    assert metric_calls(summaries, "batch_mean") == [
        ({"ease_mean": 25.0, "grade_mean": 2.0}, None, 9)
    ]
    (only_nan,) = metric_calls([summaries[3]], "batch_mean")
    assert math.isnan(only_nan[0]["grade_mean"]) and only_nan[2] == 9
    assert metric_calls([], "batch_mean") == []
    with pytest.raises(ValueError, match="batch_mean"):
        metric_calls(summaries, "median")
    with pytest.raises(ValueError, match="metric_summary"):
        sinks.comet(metric_summary="median")


def _points(offline_dir: Path, summary: str, *, flush_each: bool) -> list[tuple[int, float]]:
    """(step, value) of ``METRIC`` after three chains: their events in one batch to the worker
    (held until the final flush), or each chain flushed on its own (light load)."""
    handler = TrackerCallbackHandler(
        [
            sinks.comet(
                complexity_metrics=True,
                stream_logs=False,
                metric_summary=summary,
                offline_dir=offline_dir,
            )
        ],
        offline_dir=offline_dir,
    )
    assert handler.flush_tracker(timeout=120).ok
    chain: Any = (
        PromptTemplate.from_template("Say {n}") | FakeListLLM(responses=ANSWERS) | StrOutputParser()
    )
    with hold_while_busy(600), always_busy():
        for n in range(len(ANSWERS)):
            chain.invoke({"n": n}, config={"callbacks": [handler]})
            if flush_each:
                assert handler.flush_tracker(timeout=120).ok
        if not flush_each:
            assert handler.stats()["processed"] == 0, "the chains' events were not held"
    result = handler.flush_tracker(finish=True, timeout=120)
    assert result.ok and not result.skipped, result
    (path,) = result.archives
    metrics = read_comet_archive(path).metrics()
    return [(m["step"], m["value"]) for m in metrics if m["name"] == METRIC]


def test_batch_mean_logs_one_point_per_batch_and_mean_one_per_llm_end(offline_dir: Path) -> None:
    per_end = _points(offline_dir / "mean", "mean", flush_each=False)
    assert len(per_end) == len(ANSWERS), per_end
    values = [value for _, value in per_end]
    assert len(set(values)) == len(ANSWERS), f"the answers read alike: {values}"
    # One batch: one point, the mean of the three generations, at the last LLM end's step.
    batched = _points(offline_dir / "batch", "batch_mean", flush_each=False)
    assert batched == [(per_end[-1][0], pytest.approx(sum(values) / len(values)))]
    # Light load, a batch per LLM end: what "mean" logs, point for point.
    light = _points(offline_dir / "light", "batch_mean", flush_each=True)
    assert light == [(step, pytest.approx(value)) for step, value in per_end]
