"""Data parity: langchain_community's handlers (the oracle) and ours on the same workload.

Both run offline on :func:`tests.oracle.drive_workload` through LangChain's real callback
managers; the archives their SDKs wrote are compared. Every deliberate difference is asserted
here by name and listed in the README ("Differences from the seeds").
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.oracle import drive_workload, seed_clearml, seed_comet
from tracker import ClearMLCallbackHandler, CometCallbackHandler
from tracker.archive import read_clearml_archive, read_comet_archive

MODE = "per_prompt"  # each LLM run ends with its own result, as BaseLLM does


def _record_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("{'action': ")]


def test_clearml_parity(tmp_path: Path) -> None:
    options = {"stream_logs": True, "complexity_metrics": True, "visualize": True}
    with seed_clearml(tmp_path / "seed", task_name="parity", **options) as seed:
        drive_workload(seed.handler, llm_end=MODE)
        seed.handler.flush_tracker(name="session", finish=True)
        theirs = read_clearml_archive(seed.archive_path())

    ours_handler = ClearMLCallbackHandler(
        task_name="parity", offline_dir=tmp_path / "ours", **options
    )
    drive_workload(ours_handler, llm_end=MODE)
    assert ours_handler.flush_tracker(name="session", finish=True).ok
    ours = read_clearml_archive(ours_handler.archive_path)

    # Action Records: same rows, same columns, same values.
    their_actions = theirs.tables()[("Action Records", "session")]
    our_actions = ours.tables()[("Action Records", "session")]
    assert list(our_actions.columns) == list(their_actions.columns)
    pd.testing.assert_frame_equal(our_actions, their_actions, check_dtype=False)

    # Streamed records: the same str(record) lines, in the same order.
    assert _record_lines(ours.text_lines()) == _record_lines(theirs.text_lines())

    # Session Analysis: the seed's columns all there with the same outputs...
    their_session = theirs.tables()[("Session Analysis", "session")]
    our_session = ours.tables()[("Session Analysis", "session")]
    assert set(their_session.columns) <= set(our_session.columns)
    assert list(our_session["output"]) == list(their_session["output"])
    for metric in ("flesch_reading_ease", "smog_index", "text_standard", "osman"):
        assert list(our_session[metric]) == list(their_session[metric])
    # ...plus the prompts the seed loses, paired by run id, and the prompt's own step.
    assert "prompts" not in their_session
    from tests.oracle import WORKLOAD

    assert list(our_session["prompts"]) == list(WORKLOAD.prompts)
    assert (our_session["prompt_step"] < our_session["output_step"]).all()

    # Visualizations: a dependency and an entity page per generation, same titles and series.
    def plots(archive: object) -> list[tuple[str, str]]:
        return [(m["title"], m["series"]) for m in archive.media()]  # type: ignore[attr-defined]

    assert sorted(plots(ours)) == sorted(plots(theirs))


def test_comet_parity(tmp_path: Path) -> None:
    options = {
        "stream_logs": True,
        "complexity_metrics": True,
        "visualizations": ["dep", "ent"],
        "tags": ["parity"],
        "name": "parity",
    }
    with seed_comet(tmp_path / "seed", project_name="parity", **options) as seed:
        drive_workload(seed.handler, llm_end=MODE)
        seed.handler.flush_tracker(finish=True)
        theirs = read_comet_archive(seed.archive_path())

    ours_handler = CometCallbackHandler(
        project_name="parity", offline_dir=tmp_path / "ours", **options
    )
    drive_workload(ours_handler, llm_end=MODE)
    assert ours_handler.flush_tracker(finish=True).ok
    ours = read_comet_archive(ours_handler.archive_path)

    assert ours.others()["Created from"] == theirs.others()["Created from"] == "langchain"
    assert ours.tags() == theirs.tags()

    # Streamed texts: same texts, same metadata, same order.
    assert ours.texts() == theirs.texts()

    # Metric summaries: same names, values and steps; ours adds the LLM runs' latency and
    # tokens and the tracker's health (prefixes llm_run_ and tracker_, README "Beyond the
    # seeds").
    def metrics(archive: object) -> list[tuple[str, object, object]]:
        return sorted(
            (m["name"], m["value"], m["step"])
            for m in archive.metrics()  # type: ignore[attr-defined]
            if m["name"] != "process duration"
            and not m["name"].startswith(("llm_run_", "tracker_"))
        )

    assert metrics(ours) == metrics(theirs)
    ours_only = {m["name"] for m in ours.metrics() if m["name"].startswith("llm_run_")}
    assert "llm_run_latency_s" in ours_only and "llm_run_total_tokens" in ours_only

    # Session table: same columns and values (the seed pairs by position, ours by run id,
    # which agree on a sequential workload).
    their_session = theirs.tables()["langchain-llm-session.csv"]
    our_session = ours.tables()["langchain-llm-session.csv"]
    pd.testing.assert_frame_equal(our_session, their_session, check_dtype=False)

    # Action records asset: the same records; the version is langchain-core's, not
    # langchain-community's (we do not depend on it).
    our_records, our_meta = ours.assets()["langchain-action_records.json"]
    their_records, their_meta = theirs.assets()["langchain-action_records.json"]
    assert json.loads(our_records) == json.loads(their_records)
    assert set(our_meta) == set(their_meta) == {"langchain_version"}

    # Visualizations: the same asset names with the same prompt metadata.
    def viz(archive: object) -> dict[str, object]:
        return {
            name: meta
            for name, (_, meta) in archive.assets().items()  # type: ignore[attr-defined]
            if name.startswith("langchain-viz-")
        }

    assert viz(ours) == viz(theirs)
