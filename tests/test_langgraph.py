"""LangGraph agents (issue 15): a ReAct agent through ``ainvoke``, ``astream`` and
``astream_events``, into ClearML, Comet and JSON lines; every backend's archive holds the run
tree, the tokens, the tool errors with their tracebacks and run ids, the thread ids and the
graph nodes, and the model's tool-call decisions as its output."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.langgraph_agent import USAGE, agent
from tracker import TrackerCallbackHandler, sinks
from tracker.archive import read_clearml_archive, read_comet_archive
from tracker.inspect_archive import summarize

SESSIONS = 9  # every third one asks the fragile tool, which fails the session


async def run_sessions(handler: Any, mode: str) -> int:
    graph = agent()

    async def one(i: int) -> bool:
        question = f"please fail {i}" if i % 3 == 2 else f"what is {i}?"
        config = {"configurable": {"thread_id": f"thread-{i}"}, "callbacks": [handler]}
        inputs = {"messages": [("human", question)]}
        try:
            if mode == "ainvoke":
                await graph.ainvoke(inputs, config=config)
            elif mode == "astream":
                async for _ in graph.astream(inputs, config=config, stream_mode="updates"):
                    pass
            else:
                async for _ in graph.astream_events(inputs, config=config, version="v2"):
                    pass
        except RuntimeError:
            return False
        return True

    results = await asyncio.gather(*(one(i) for i in range(SESSIONS)))
    return sum(1 for ok in results if not ok)


def check_runs(runs: pd.DataFrame, failed: int) -> None:
    ids = set(runs["run_id"].astype(str))
    parents = runs["parent_run_id"].dropna().astype(str)
    parents = parents[~parents.isin(["None", "nan", ""])]
    assert set(parents) <= ids, "a run's parent is missing"  # no dangling parents
    roots = runs[runs["parent_run_id"].isna() | runs["parent_run_id"].astype(str).isin(["None"])]
    assert len(roots) == SESSIONS  # one root per invocation
    assert set(roots["thread_id"].astype(str)) == {f"thread-{i}" for i in range(SESSIONS)}
    nodes = set(runs["node"].dropna().astype(str))
    assert {"agent", "tools"} <= nodes, nodes
    chat = runs[runs["run_type"] == "chat_model"]
    ok = SESSIONS - failed
    assert len(chat) == 2 * ok + failed  # a tool call, then the answer; failed: the call only
    assert chat["total_tokens"].astype(float).sum() == len(chat) * USAGE["total_tokens"]
    decisions = chat[chat["output"].astype(str).str.contains('"name": "lookup"')]
    assert len(decisions) == ok  # the tool-call decision is the empty-text turn's output
    tools = runs[runs["run_type"] == "tool"]
    assert sorted(tools["status"]) == ["error"] * failed + ["ok"] * ok


def error_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if str(r.get("action")) == "on_tool_error"]


@pytest.mark.parametrize("mode", ["ainvoke", "astream", "astream_events"])
def test_a_react_agent_in_every_backend(offline_dir: Path, mode: str):
    handler = TrackerCallbackHandler(
        [
            sinks.clearml(task_name=f"agent {mode}", offline_dir=offline_dir),
            sinks.comet(name=f"agent {mode}", offline_dir=offline_dir),
            sinks.jsonl(offline_dir),
        ],
        offline_dir=offline_dir,
    )
    failed = asyncio.run(run_sessions(handler, mode))
    assert failed == SESSIONS // 3
    result = handler.flush_tracker(name="s", finish=True, timeout=120)
    assert result.ok, result
    stats = handler.stats()
    assert stats["enqueued"] == stats["processed"] and stats["dropped"] == 0, stats
    paths = handler.archive_paths

    clearml = read_clearml_archive(paths["clearml"])
    check_runs(clearml.tables()[("Runs", "s")], failed)
    rows = clearml.tables()[("Action Records", "s")].to_dict("records")
    comet = read_comet_archive(paths["comet"])
    check_runs(comet.tables()["langchain-runs.csv"], failed)
    for errors in (error_rows(rows), error_rows(comet.action_records())):
        assert len(errors) == failed
        for row in errors:  # the traceback, the failing tool's name and run id
            assert "Traceback" in row["traceback"] and "fragile tool broke" in row["traceback"]
            assert row["name"] == "fragile" and row["run_id"]
    session = comet.tables()["langchain-llm-session.csv"]
    assert session["text"].astype(str).str.contains('"name": "lookup"').sum() == SESSIONS - failed

    lines = [json.loads(line) for line in paths["jsonl"].open()]
    runs = pd.DataFrame([r for line in lines if line["type"] == "runs" for r in line["runs"]])
    check_runs(runs, failed)
    tree = summarize(paths["clearml"], trace="slowest").split("trace:")[1]
    assert "[node agent]" in tree and "[node tools]" in tree, tree  # nodes named
    assert "(tool)" in tree and "(chat_model)" in tree, tree  # the tools and the model


def test_inspect_reads_every_flush_of_an_archive(offline_dir: Path):
    """Several flushes, then a finish with nothing new: ``tracker inspect`` counts the runs
    and events of all of them, and the flushes."""
    handler = TrackerCallbackHandler(
        [
            sinks.clearml(task_name="flushes", offline_dir=offline_dir),
            sinks.comet(name="flushes", offline_dir=offline_dir),
            sinks.jsonl(offline_dir),
        ],
        offline_dir=offline_dir,
    )
    for name in ("first", "second"):
        asyncio.run(run_sessions(handler, "ainvoke"))
        assert handler.flush_tracker(name=name, timeout=120).ok
    assert handler.flush_tracker(name="last", finish=True, timeout=120).ok
    runs = {}
    for backend, path in handler.archive_paths.items():
        text = summarize(path)
        # ClearML's archive keeps nothing of a flush with nothing new (no table to report).
        flushes = "flushes with tables: 2" if backend == "clearml" else "flushes: 3"
        assert flushes in text, (backend, text)
        assert "events by kind:\n  (none)" not in text, (backend, text)
        runs[backend] = next(line for line in text.splitlines() if line.endswith(" runs"))
    assert len(set(runs.values())) == 1, runs  # every backend counts every flush's runs


def queued_events(mode: str = "ainvoke") -> list[Any]:
    """The events one session of each kind queues, the tracker's hot path in front of a queue
    nothing takes from: what the background thread would read once the agent is done."""
    from types import SimpleNamespace

    from tracker.handler import QueueingCallbackHandler
    from workers.queue import EventQueue

    queue = EventQueue(100_000)
    handler = QueueingCallbackHandler(SimpleNamespace(queue=queue))  # type: ignore[arg-type]

    async def the_callers_own_frame() -> None:
        await run_sessions(handler, mode)

    asyncio.run(the_callers_own_frame())
    return queue.take(100_000)


def test_an_error_traceback_is_the_one_its_run_saw():
    """Read after the agent returned, an exception's traceback holds every frame it went up
    through, the caller's too; each error record shows the frames from its run down to the
    raise, as they were at its callback."""
    from workers.records import convert

    records = [convert(e) for e in queued_events() if e.kind.value.endswith("_error")]
    tool_errors = [r for r in records if r.kind.value == "on_tool_error"]
    assert len(tool_errors) == SESSIONS // 3
    for record in records:
        text = record.fields["traceback"]
        assert text.startswith("Traceback (most recent call last):"), text
        assert "in fragile" in text and "RuntimeError: the fragile tool broke" in text, text
        assert "the_callers_own_frame" not in text, text  # not the frames above the run
    for record in tool_errors:  # the tool's own run: its frames only, not the graph's
        assert "pregel" not in record.fields["traceback"], record.fields["traceback"]


def test_graph_routing_objects_cross_as_their_fields():
    """LangGraph's ``Send`` (a slotted class the worker does not import) crosses as its
    node and argument, converted in the worker as the application would have converted it."""
    from langgraph.types import Send

    from workers import snapshot
    from workers.records import convert
    from workers.sanitize import TYPE_KEY

    routed = [  # the routing function's end: its output is a list of Send
        e
        for e in queued_events()
        if e.kind.value == "on_chain_end"
        and isinstance(e.data[0], list)
        and any(isinstance(item, Send) for item in e.data[0])
    ]
    assert routed, "the agent routes its tool calls with Send"
    crossed = snapshot.decode(snapshot.encode(routed))
    for before, after in zip(routed, crossed, strict=True):
        assert convert(after).fields == convert(before).fields
    sent = json.dumps(convert(crossed[0]).fields)
    assert f'"{TYPE_KEY}": "langgraph.types.Send"' in sent and '"node": "tools"' in sent, sent
    assert "Send(node=" not in sent  # fields, not a repr


@pytest.mark.parametrize("mode", ["ainvoke", "astream_events"])
def test_the_forwarding_thread_encodes_the_queue_s_records_as_their_events(mode: str):
    """The forwarding thread encodes the records it takes without making an ``Event`` of each
    (``encode_raw``): the bytes are the ``Event``s' encoding, for every kind an agent records
    (chains, chat models, streamed tokens, tools, captured tool errors), for a payload of the
    user's own class (converted here) and with a custom-metrics hook (LLM ends converted)."""
    from types import SimpleNamespace

    from tracker.handler import QueueingCallbackHandler
    from workers.event import Kind
    from workers.queue import EventQueue, event_of
    from workers.snapshot import decode, encode, encode_raw

    class Mine:  # the user's class: the worker may not import it, so it is converted here
        def __init__(self) -> None:
            self.value = 7

    queue = EventQueue(maxsize=100_000)
    handler = QueueingCallbackHandler(SimpleNamespace(queue=queue))  # type: ignore[arg-type]
    asyncio.run(run_sessions(handler, mode))
    handler.on_custom_event("mine", Mine(), run_id=uuid.uuid4())
    raws = queue.take_raw(100_000)
    kinds = {raw[0] for raw in raws}
    expected = {Kind.CHAIN_START, Kind.CHAIN_END, Kind.CHAT_MODEL_START, Kind.LLM_END}
    expected |= {Kind.TOOL_START, Kind.TOOL_ERROR, Kind.CUSTOM_EVENT}
    if mode == "astream_events":
        expected.add(Kind.LLM_NEW_TOKEN)
    assert expected <= kinds, kinds
    events = [event_of(raw) for raw in raws]
    assert encode_raw(raws) == encode(events)
    assert encode_raw(raws, lambda record: None) == encode(events, lambda record: None)
    assert [event.kind for event in decode(encode_raw(raws))] == [raw[0] for raw in raws]
