"""The seeds' public surface, checked against langchain_community's classes themselves."""

from __future__ import annotations

import inspect

import pytest
from langchain_community.callbacks import clearml_callback, comet_ml_callback

from tracker import ClearMLCallbackHandler, CometCallbackHandler

PAIRS = [
    (clearml_callback.ClearMLCallbackHandler, ClearMLCallbackHandler),
    (comet_ml_callback.CometCallbackHandler, CometCallbackHandler),
]


def _params(func: object) -> list[tuple[str, object]]:
    return [
        (p.name, p.default)
        for p in inspect.signature(func).parameters.values()  # type: ignore[arg-type]
        if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"
    ]


@pytest.mark.parametrize(("seed", "ours"), PAIRS)
@pytest.mark.parametrize("method", ["__init__", "flush_tracker"])
def test_same_parameters_and_defaults(seed: type, ours: type, method: str) -> None:
    assert _params(getattr(ours, method)) == _params(getattr(seed, method))


@pytest.mark.parametrize(("seed", "ours"), PAIRS)
def test_every_public_seed_method_exists(seed: type, ours: type) -> None:
    public = {name for name in dir(seed) if not name.startswith("_")}
    missing = {name for name in public if not hasattr(ours, name)}
    # Per-kind record lists of the seeds (on_llm_start_records, …) are not kept: rows live in
    # the workers' session store; action_records is available.
    assert {m for m in missing if not m.endswith("_records")} == set()


@pytest.mark.parametrize(("seed", "ours"), PAIRS)
def test_flags_and_class_attributes(seed: type, ours: type) -> None:
    assert ours.run_inline is True  # called directly by both managers (see tracker/handler.py)
    assert ours.raise_error is False
    for flag in ("ignore_llm", "ignore_chain", "ignore_agent", "always_verbose"):
        assert isinstance(getattr(ours, flag), property)


def test_aflush_takes_the_same_parameters() -> None:
    for ours in (ClearMLCallbackHandler, CometCallbackHandler):
        assert _params(ours.aflush_tracker) == _params(ours.flush_tracker)
        assert "timeout" in inspect.signature(ours.aflush_tracker).parameters
