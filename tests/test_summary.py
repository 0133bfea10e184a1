"""The one-row fast path of the metric summary equals pandas' describe()."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from workers.rows.summary import describe


def _pandas(rows: list[dict]) -> dict:
    return pd.DataFrame(rows).describe().to_dict()


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for column in a:
        for stat, value in a[column].items():
            other = b[column][stat]
            if not (value == other or (math.isnan(value) and math.isnan(other))):
                return False
    return True


@pytest.mark.parametrize(
    "row",
    [
        {"flesch_reading_ease": 71.2, "difficult_words": 3, "text_standard": "7th and 8th grade"},
        {"a": 1, "b": float("nan"), "c": None, "d": "x"},
        {"a": -5, "b": 2.5e300},
    ],
)
def test_one_row_matches_pandas(row: dict) -> None:
    assert _same(describe([row]), _pandas([row]))


def test_other_shapes_go_through_pandas() -> None:
    rows = [{"a": 1, "b": 2.0}, {"a": 3, "b": 5.5}, {"a": 4, "b": None}]
    assert _same(describe(rows), _pandas(rows))
    only_text = [{"t": "x"}]
    assert describe(only_text) == _pandas(only_text)
    flags = [{"ok": True, "n": 2}]
    assert _same(describe(flags), _pandas(flags))
