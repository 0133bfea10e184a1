"""Our handlers on real LangChain chains, into the real SDKs' offline archives."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import RunnableLambda

from tracker import ClearMLCallbackHandler, CometCallbackHandler
from tracker.archive import read_clearml_archive, read_comet_archive
from tracker.demo import ScriptedChatModel
from tracker.testing import wrap_sinks
from workers.testing import FaultySink

ANSWER = "The capital of France is Paris. It lies on the Seine. Many people visit it."


def text_chain() -> Any:
    """prompt | fake LLM | parser: the classic three-step LCEL chain."""
    llm = FakeListLLM(responses=[ANSWER])
    return PromptTemplate.from_template("Tell me about {topic}") | llm | StrOutputParser()


def chat_chain(tokens: int = 12) -> Any:
    """prompt | streaming chat model: messages with roles, streamed tokens."""
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    return prompt | ScriptedChatModel(answers=[ANSWER], tokens=tokens)


def actions_of(table: Any) -> list[str]:
    """The ``action`` column as a list."""
    return list(table["action"])


async def test_clearml_async_chain_lands_in_offline_archive(offline_dir: Path, no_network: list):
    handler = ClearMLCallbackHandler(
        task_name="async", stream_logs=True, complexity_metrics=True, offline_dir=offline_dir
    )
    chain = text_chain()
    for topic in ("France", "Paris", "Seine"):
        assert await chain.ainvoke({"topic": topic}, config={"callbacks": [handler]}) == ANSWER
    result = await handler.aflush_tracker(name="session-1", finish=True)

    assert result.ok, result
    assert result.written == 3 * 8  # per chain: 3 chain starts/ends pairs + LLM start and end
    assert handler.archive_path is not None and handler.archive_path.parent == offline_dir
    archive = read_clearml_archive(handler.archive_path)
    tables = archive.tables()
    actions = tables[("Action Records", "session-1")]
    assert len(actions) == 24
    assert actions_of(actions).count("on_chain_start") == 9  # LCEL inputs: the seed raises here
    assert list(actions["step"]) == list(range(1, 25))  # counters replayed in queue order
    session = tables[("Session Analysis", "session-1")]
    assert list(session["prompts"]) == [f"Tell me about {t}" for t in ("France", "Paris", "Seine")]
    assert list(session["output"]) == [ANSWER] * 3
    assert session["flesch_reading_ease"].notna().all()
    lines = archive.text_lines()
    assert sum("'action': 'on_llm_end'" in line for line in lines) == 3
    assert no_network == []


async def test_comet_async_chat_chain_lands_in_offline_archive(offline_dir: Path, no_network: list):
    handler = CometCallbackHandler(
        project_name="tests",
        name="chat",
        tags=["t1"],
        complexity_metrics=True,
        offline_dir=offline_dir,
    )
    chain = chat_chain(tokens=12)
    chunks = [c async for c in chain.astream({"q": "Where is Paris?"}, {"callbacks": [handler]})]
    assert len(chunks) >= 12
    result = await handler.aflush_tracker(finish=True)

    assert result.ok, result
    archive = read_comet_archive(handler.archive_path)
    assert archive.others()["Created from"] == "langchain"
    assert "t1" in archive.tags()
    texts = [text for text, _ in archive.texts()]
    assert any(text.startswith("System: Be brief.\nHuman: Where is Paris?") for text in texts)
    tables = archive.tables()
    session = tables["langchain-llm-session.csv"]
    assert len(session) == 1
    assert session["prompts"][0].startswith("System: Be brief.")
    assert session["text"][0].split()[:3] == ANSWER.split()[:3]
    records = json.loads(archive.assets()["langchain-action_records.json"][0])
    assert [r["action"] for r in records].count("on_llm_new_token") >= 12  # + a final chunk
    names = {m["name"] for m in archive.metrics()}
    assert (
        "flesch_reading_ease_mean" in names
        or "flesch_reading_ease.mean" in names
        or any(n.startswith("flesch_reading_ease") for n in names)
    )
    assert no_network == []


def test_a_comet_finish_does_not_wait_out_the_sdk_s_idle_writer(offline_dir: Path):
    """comet_ml's offline writer thread looks at its queue once a second when idle, and end()
    joins it: every finish (each worker session, each serving shutdown) took a second more."""
    handler = CometCallbackHandler(offline_dir=offline_dir)
    chain = PromptTemplate.from_template("Q {x}") | FakeListLLM(responses=["a", "b"])
    for x in range(2):
        chain.invoke({"x": x}, config={"callbacks": [handler]})
    assert handler.flush_tracker(timeout=60).ok  # the experiment is open and has the records
    result = handler.flush_tracker(finish=True, timeout=60)
    assert result.ok, result
    assert len(read_comet_archive(handler.archive_path).action_records()) == 2 * 6
    # ~0.06 s here; it was never under ~1 s (the writer's poll runs out after end()'s messages)
    assert result.seconds < 0.8, f"the finish took {result.seconds:.2f} s"


def test_sync_chains_from_threads_are_counted_exactly(offline_dir: Path):
    handler = CometCallbackHandler(stream_logs=False, offline_dir=offline_dir)
    chain = text_chain()

    def work() -> None:
        for _ in range(20):
            chain.invoke({"topic": "x"}, config={"callbacks": [handler]})

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = handler.flush_tracker(finish=True)
    chain.invoke({"topic": "late"}, config={"callbacks": [handler]})  # after finish: dropped
    stats = handler.stats()
    assert stats["dropped"] == 8 and stats["pending"] == 0
    stats["enqueued"] -= 8
    stats["dropped"] = 0
    assert stats["enqueued"] == 4 * 20 * 8
    assert stats["processed"] == stats["enqueued"] and stats["dropped"] == 0
    assert result.written == stats["enqueued"]
    assert handler.step == 4 * 20 * 8  # replayed counter (Comet resets only on reset=True)
    assert handler.get_custom_callback_meta()["llm_ends"] == 80


async def test_sync_flush_inside_running_loop_does_not_deadlock(offline_dir: Path):
    handler = CometCallbackHandler(stream_logs=False, offline_dir=offline_dir)
    await text_chain().ainvoke({"topic": "x"}, config={"callbacks": [handler]})
    result = handler.flush_tracker(timeout=30)  # blocks this loop, but the workers are elsewhere
    assert result.ok and result.written == 8
    assert (await handler.aflush_tracker(finish=True, timeout=30)).ok


async def test_flush_is_a_barrier_between_sessions(offline_dir: Path):
    handler = ClearMLCallbackHandler(task_name="barrier", offline_dir=offline_dir)
    chain = text_chain()
    await chain.ainvoke({"topic": "one"}, config={"callbacks": [handler]})
    first = await handler.aflush_tracker(name="first")
    assert handler.step == 0  # the ClearML seed resets its counters at each flush
    for _ in range(2):
        await chain.ainvoke({"topic": "two"}, config={"callbacks": [handler]})
    second = await handler.aflush_tracker(name="second", finish=True)
    assert (first.written, second.written) == (8, 16)
    tables = read_clearml_archive(handler.archive_path).tables()
    assert len(tables[("Action Records", "first")]) == 8
    assert len(tables[("Action Records", "second")]) == 16
    assert list(tables[("Action Records", "second")]["step"]) == list(range(1, 17))


class Hostile:
    """An object whose repr and str raise."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


async def test_odd_inputs_never_raise_and_become_records(offline_dir: Path):
    handler = ClearMLCallbackHandler(task_name="odd", stream_logs=True, offline_dir=offline_dir)
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic

    def echo(value: Any) -> Any:
        return value

    chain = RunnableLambda(echo)
    config = {"callbacks": [handler]}
    assert chain.invoke(Hostile(), config) is not None
    chain.invoke(cyclic, config)
    chain.invoke({"input": 5, "human_input": b"\xff"}, config)
    chain.invoke({"surrogate": "\ud800", "big": "x" * 300_000, "nan": float("nan")}, config)
    handler.on_agent_finish(object())  # no return_values at all
    handler.on_chat_model_start(None, 5)  # not even iterable: a degraded record, counted
    result = handler.flush_tracker(name="odd", finish=True)
    assert result.ok, result
    assert handler.stats()["processed"] == 10 and handler.stats()["degraded"] == 1
    actions = read_clearml_archive(handler.archive_path).tables()[("Action Records", "odd")]
    assert len(actions) == 10
    assert "conversion_error" in actions
    text = " ".join(read_clearml_archive(handler.archive_path).text_lines())
    assert "<unrepresentable Hostile" in text
    assert "<cycle>" in text
    assert "truncated" in text


def test_flush_timeout_reports_pending_then_completes(offline_dir: Path):
    slow: list[FaultySink] = []

    def wrap(sink: Any) -> FaultySink:
        slow.append(FaultySink(sink, delay=0.2))
        return slow[0]

    with wrap_sinks(wrap):
        handler = CometCallbackHandler(stream_logs=True, offline_dir=offline_dir, batch_size=4)
    for i in range(40):
        handler.on_text(f"text {i}")
    early = handler.flush_tracker(timeout=0.1)
    assert early.timed_out and early.pending > 0 and not early.ok
    final = handler.flush_tracker(finish=True, timeout=60)
    assert final.ok and handler.stats()["processed"] == 40
    texts = [t for t, _ in read_comet_archive(handler.archive_path).texts()]
    assert [t for t in texts if t.startswith("text ")] == [f"text {i}" for i in range(40)]


def test_failed_write_is_retried_once_and_delivered_once(offline_dir: Path):
    with wrap_sinks(lambda sink: FaultySink(sink, fail_every=2)):
        handler = ClearMLCallbackHandler(
            task_name="faulty", stream_logs=True, offline_dir=offline_dir, batch_size=2
        )
    results = []
    for i in range(2):
        handler.on_text(f"a{i}")
        results.append(handler.flush_tracker(name="probe"))  # one batch each: 2nd write fails
    assert all(r.ok for r in results), results  # the retry delivered it
    result = handler.flush_tracker(name="end", finish=True)
    assert result.ok and handler.stats()["spooled"] == 0
    lines = read_clearml_archive(handler.archive_path).text_lines()
    assert [line for line in lines if "'on_text'" in line and "'a" in line].__len__() == 2


@pytest.mark.parametrize("finish", [True])
def test_langchain_asset_is_saved_offline(offline_dir: Path, finish: bool):
    chain = text_chain()
    clearml = ClearMLCallbackHandler(task_name="asset", offline_dir=offline_dir)
    comet = CometCallbackHandler(name="asset-model", offline_dir=offline_dir)
    chain.invoke({"topic": "x"}, config={"callbacks": [clearml, comet]})
    assert clearml.flush_tracker(name="m", langchain_asset=chain, finish=finish).ok
    assert comet.flush_tracker(langchain_asset=chain, finish=finish).ok

    task_archive = read_clearml_archive(clearml.archive_path)
    model_files = [name for name in task_archive.files if name.endswith("model.json")]
    assert model_files, sorted(task_archive.files)
    saved = json.loads(task_archive.files[model_files[0]])
    assert saved["id"][-1] == "RunnableSequence"  # LCEL: serialized with langchain_core
    registered = task_archive.task["offline_output_models"][0]["init"]["config_dict"]
    assert registered == saved  # the OutputModel's configuration (the seed crashes offline)
    comet_archive = read_comet_archive(comet.archive_path)
    assert any(
        m.get("name") == "asset-model" or "asset-model" in json.dumps(m)
        for m in comet_archive.models()
    )


@pytest.mark.parametrize("sink_process", [False, True])
def test_another_comet_experiment_in_the_process(offline_dir: Path, sink_process: bool):
    import comet_ml

    from workers.sinks.comet import AUTO_LOGGING_OFF

    handler = CometCallbackHandler(offline_dir=offline_dir, sink_process=sink_process)
    handler.on_text("before")
    assert handler.flush_tracker(timeout=30).ok
    other = comet_ml.OfflineExperiment(offline_directory=str(offline_dir), **AUTO_LOGGING_OFF)
    handler.on_text("after")
    result = handler.flush_tracker(timeout=30)
    if sink_process:  # ours lives in the child process: untouched
        assert result.ok
        assert handler.flush_tracker(finish=True, timeout=30).ok
        texts = [t for t, _ in read_comet_archive(handler.archive_path).texts()]
        assert texts == ["before", "after"]
    else:  # comet_ml ended ours when `other` started: reported, not silently lost
        assert not result.ok and any("ended by another experiment" in e for e in result.errors)
        assert handler.stats()["sink_errors"] >= 1
        assert not handler.flush_tracker(finish=True, timeout=30).ok  # closes the pipeline
    other.end()


def test_clearml_console_lines_are_never_cut(offline_dir: Path):
    """Rows go to ClearML's console a few calls at a time, never one text past its event size.

    ClearML cuts a log text at 1 MiB wherever that falls; 30 rows of ~90 KB each (2.7 MB) sent
    as one text would come back with lines cut in two.
    """
    handler = ClearMLCallbackHandler(task_name="console", stream_logs=True, offline_dir=offline_dir)
    texts = [f"<{i}>" + chr(ord("a") + i % 26) * 90_000 for i in range(30)]
    for text in texts:
        handler.on_text(text)
    result = handler.flush_tracker(finish=True, timeout=120)
    assert result.ok and result.written == 30, result

    lines = read_clearml_archive(handler.archive_path).text_lines()
    rows = [line for line in lines if line.startswith("{'action': 'on_text'")]
    assert len(rows) == 30
    for text, row in zip(texts, rows, strict=True):
        assert f"'text': '{text}'," in row and row.endswith("}"), row[:60]
