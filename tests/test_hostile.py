"""Hostile input through every callback: nothing raises into the chain, every event is logged.

A fixed corpus (objects whose repr/str/eq/hash/getattr raise, cycles, a 10 MB string, bytes,
lone surrogates, NaN and inf, 10**5000, None everywhere, missing keys, dict tool inputs, a
100 000-token stream) and hypothesis-generated payloads go through the real handlers into the
real SDKs' offline archives; then a normal chain must still be logged. Conversion-level
properties (``convert`` / ``to_jsonable`` never raise, give JSON, stay bounded) use hypothesis.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.agents import AgentAction, AgentFinish
from langchain_core.documents import Document
from langchain_core.language_models import FakeListLLM
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, Generation, LLMResult
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableLambda
from pydantic import SecretStr

from tracker import ClearMLCallbackHandler, CometCallbackHandler
from tracker.archive import read_clearml_archive, read_comet_archive
from workers.event import Event, Kind
from workers.records import convert
from workers.sanitize import MAX_RECORD_TEXT, TRUNCATED, to_jsonable

BIG_PREFIX = "BIGSTRING-START"
BIG = BIG_PREFIX + "x" * 10_000_000  # 10 MB
MARKER = TRUNCATED.split("{", 1)[0]  # "…[truncated "
SENTINEL = "SENTINEL-after-hostile-4f2a"
ANSWER = "Paris is the capital of France."
# Hypothesis inside a test that also builds handlers: modest example counts, no deadline (the
# handlers' background workers share two cores with the examples).
FEW = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the corpus ---------------------------------------------------------------------------------


class Hostile:
    """Everything Python may call on it raises: repr, str, eq, hash, bool, len, iter, getattr."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise ValueError("no str")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    def __hash__(self) -> int:
        raise RuntimeError("no hash")

    def __bool__(self) -> bool:
        raise RuntimeError("no bool")

    def __len__(self) -> int:
        raise RuntimeError("no len")

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("no iter")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no attribute {name}")


class BadStrSubclass(str):
    """A str whose own methods lie or raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
        raise RuntimeError("no encode")


class ReprReturnsInt:
    """repr returns a non-string (a TypeError inside repr())."""

    def __repr__(self) -> Any:
        return 42


class HugeRepr:
    """repr is 5 MB."""

    def __repr__(self) -> str:
        return "R" * 5_000_000


def cyclic_dict() -> dict[str, Any]:
    """A dict that contains itself, through a list."""
    d: dict[str, Any] = {"name": "loop"}
    d["self"] = d
    d["list"] = [d, [d]]
    return d


def nasty_values() -> dict[str, Any]:
    """One of everything hostile, as a chain input dict."""
    cyc: list[Any] = []
    cyc.append(cyc)
    return {
        "hostile": Hostile(),
        "bad_str": BadStrSubclass("bad"),
        "repr_int": ReprReturnsInt(),
        "huge_repr": HugeRepr(),
        "cycle": cyclic_dict(),
        "list_cycle": cyc,
        "bytes": b"\xff\x00\xfe" * 1000,
        "bytearray": bytearray(b"abc"),
        "memoryview": memoryview(b"x" * 500),
        "surrogate": "lone \ud800 surrogate \udfff",
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "huge_int": 10**5000,
        "neg_huge_int": -(10**5000),
        "big_int": 2**70,
        "none": None,
        "lock": threading.Lock(),
        "func": lambda x: x,
        "generator": (i for i in range(3)),
        "set": {1, 2, 3},
        "frozenset": frozenset({"a"}),
        "nested": [[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]],
        "wide": {f"k{i}": i for i in range(3_000)},
        "secret": SecretStr("hostile-secret"),
        10**5000: "huge int key",
        (1, 2): "tuple key",
        None: "none key",
        "\ud800key": "surrogate key",
    }


def drive_corpus(handler: Any) -> Counter[str]:
    """Every callback with hostile payloads, straight into the handler; returns kinds sent."""
    sent: Counter[str] = Counter()
    nasty = nasty_values()
    hostile = Hostile()
    run = uuid.uuid4
    serialized_cases: list[Any] = [None, {}, hostile, nasty, BIG, {"name": hostile}]

    def call(callback: str, /, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("run_id", run())
        assert getattr(handler, callback)(*args, **kwargs) is None
        sent[callback] += 1

    for serialized in serialized_cases:
        call("on_llm_start", serialized, [BIG, "\ud800", hostile, None, 10**5000])
        call("on_chain_start", serialized, nasty)
        call("on_tool_start", serialized, BIG, inputs={"query": nasty, "n": math.nan})
        call("on_retriever_start", serialized, hostile)
    call("on_llm_start", None, None)
    call("on_llm_start", hostile, hostile, tags=hostile, metadata=hostile, name=hostile)
    call("on_llm_start", {}, [], tags=[hostile, BIG], metadata=nasty, name=BIG)
    call("on_chat_model_start", None, None)
    call("on_chat_model_start", nasty, [[HumanMessage(BIG), AIMessage("hi"), hostile, None]])
    call("on_chat_model_start", {}, hostile)
    for token in (BIG, "\ud800", None, hostile, 10**5000, b"\xff", math.nan, ""):
        call("on_llm_new_token", token, chunk=hostile)
    for response in (
        None,
        hostile,
        LLMResult(generations=[]),
        LLMResult(generations=[[]], llm_output=None),
        LLMResult(
            generations=[[Generation(text=BIG, generation_info={"nan": math.nan, "h": 10**5000})]],
            llm_output={"token_usage": {"total_tokens": math.inf}, "model_name": hostile},
        ),
        LLMResult(generations=[[ChatGeneration(message=AIMessage("\ud800 chat"))]]),
    ):
        call("on_llm_end", response)
    for error in (RuntimeError(BIG), ValueError(hostile), hostile, None, KeyError(10**5000)):
        call("on_llm_error", error)
        call("on_chain_error", error)
        call("on_tool_error", error)
        call("on_retriever_error", error)
    for outputs in (None, {}, nasty, BIG, hostile, [1, 2, hostile], {"output": None}):
        call("on_chain_end", outputs)
    for output in (BIG, None, hostile, nasty, {"answer": 1}):
        call("on_tool_end", output)
    for text in (BIG, None, hostile, "\ud800"):
        call("on_text", text)
    for action in (
        AgentAction(tool="search", tool_input={"query": "q", "nested": {"n": math.nan}}, log=""),
        AgentAction(tool="calc", tool_input=BIG, log=BIG),
        hostile,
        None,
    ):
        call("on_agent_action", action)
    for finish in (
        AgentFinish(return_values={}, log="no output key"),
        AgentFinish(return_values={"answer": 42, "nan": math.nan}, log=""),
        AgentFinish(return_values={"output": BIG}, log="\ud800"),
        hostile,
        None,
    ):
        call("on_agent_finish", finish)
    for documents in (
        None,
        [],
        [Document(page_content=BIG, metadata={"source": hostile, "n": math.inf})],
        [hostile, None, "plain string"],
        hostile,
    ):
        call("on_retriever_end", documents)
    for state in (None, hostile, object()):
        call("on_retry", state)
    for name, data in ((BIG, nasty), (hostile, hostile), (None, None), ("ev", {"x": b"\x00"})):
        call("on_custom_event", name, data)
    return sent


def normal_chain(handler: Any) -> str:
    """The classic prompt | LLM | parser chain, with a sentinel in its prompt."""
    chain = (
        PromptTemplate.from_template("Tell me about {topic}")
        | FakeListLLM(responses=[ANSWER])
        | StrOutputParser()
    )
    return chain.invoke({"topic": SENTINEL}, config={"callbacks": [handler]})


def hostile_chains(handler: Any) -> None:
    """Real chains (LangChain's own callback manager) carrying hostile inputs and outputs."""
    config: Any = {"callbacks": [handler]}
    echo = RunnableLambda(lambda value: value)
    for value in (nasty_values(), Hostile(), BIG, None, cyclic_dict()):
        echo.invoke(value, config)

    def boom(_: Any) -> Any:
        raise ValueError(Hostile())

    with pytest.raises(ValueError):
        RunnableLambda(boom).invoke({"x": 1}, config)


def make(backend: str, offline_dir: Path, **kwargs: Any) -> Any:
    """A handler of ``backend`` writing its offline archive to ``offline_dir``."""
    kwargs.setdefault("stream_logs", True)
    if backend == "clearml":
        return ClearMLCallbackHandler(task_name="hostile", offline_dir=offline_dir, **kwargs)
    return CometCallbackHandler(name="hostile", offline_dir=offline_dir, **kwargs)


def archived_rows_and_texts(backend: str, path: Path, name: str) -> tuple[list[Any], list[str]]:
    """The action rows (as dicts) and every logged text of an archive."""
    if backend == "clearml":
        archive = read_clearml_archive(path)
        table = dict(archive.table_parts("Action Records"))[name]
        return table.to_dict("records"), archive.text_lines()
    comet = read_comet_archive(path)
    texts = [text for text, _ in comet.texts()]
    return comet.action_records(), texts


def check_stats(handler: Any) -> dict[str, Any]:
    """Every enqueued event processed, none dropped, no sink failed."""
    stats = handler.stats()
    assert stats["enqueued"] == stats["processed"], stats
    assert stats["dropped"] == 0 and stats["pending"] == 0, stats
    assert stats["sink_errors"] == 0, stats
    return stats


# -- through the real handlers into the real SDKs ------------------------------------------


@pytest.mark.parametrize("backend", ["clearml", "comet"])
def test_hostile_corpus_is_logged_and_the_tracker_keeps_working(backend: str, offline_dir: Path):
    handler = make(backend, offline_dir)
    sent = drive_corpus(handler)
    hostile_chains(handler)
    assert normal_chain(handler) == ANSWER  # the tracker did not break the chain
    result = (
        handler.flush_tracker(finish=True, timeout=120)
        if backend == "comet"
        else (handler.flush_tracker(name="hostile", finish=True, timeout=120))
    )
    assert result.ok, result
    stats = check_stats(handler)
    assert result.written == stats["processed"]

    rows, texts = archived_rows_and_texts(backend, handler.archive_path, "hostile")
    assert len(rows) >= stats["processed"]  # every event left at least one row
    actions = Counter(str(row.get("action")) for row in rows)
    for kind, count in sent.items():
        action = "on_llm_start" if kind == "on_chat_model_start" else kind
        assert actions[action] >= count, (kind, actions)
    text = "\n".join(texts)
    # The 10 MB string is in the archive, cut, with a visible marker saying by how much.
    assert BIG_PREFIX in text and MARKER in text
    assert max(len(t) for t in texts) < 3 * MAX_RECORD_TEXT
    assert "<unrepresentable Hostile" in text and "<cycle>" in text
    assert "\ud800" not in text  # lone surrogates were replaced before the SDKs saw them
    assert SENTINEL in text  # the normal chain after the hostile ones
    sentinel_rows = [r for r in rows if SENTINEL in json.dumps(r, default=str)]
    assert sentinel_rows, "the normal chain's rows are missing"
    assert any(ANSWER in json.dumps(r, default=str) for r in rows)


def test_stream_of_100k_tokens_into_both_backends(offline_dir: Path):
    handlers = {
        backend: make(backend, offline_dir, queue_size=200_000, batch_size=4_096, stream_logs=False)
        for backend in ("clearml", "comet")
    }
    run_id = uuid.uuid4()
    callbacks = list(handlers.values())
    for handler in callbacks:
        handler.on_llm_start({"name": "streamer"}, ["count"], run_id=run_id)
    for i in range(100_000):
        token = f"t{i} "
        for handler in callbacks:
            handler.on_llm_new_token(token, run_id=run_id)
    for handler in callbacks:
        handler.on_llm_end(LLMResult(generations=[[Generation(text="done")]]), run_id=run_id)
        assert normal_chain(handler) == ANSWER
    assert handlers["clearml"].flush_tracker(name="stream", finish=True, timeout=300).ok
    assert handlers["comet"].flush_tracker(finish=True, timeout=300).ok
    for backend, handler in handlers.items():
        stats = check_stats(handler)
        assert stats["processed"] == 100_002 + 8
        rows, _ = archived_rows_and_texts(backend, handler.archive_path, "stream")
        tokens = [r["token"] for r in rows if r.get("action") == "on_llm_new_token"]
        assert len(tokens) == 100_000 and tokens[-1] == "t99999 "
        assert any(SENTINEL in str(r.get("prompts")) for r in rows)
    # Past table_rows (10,000), the reports carry the first rows; the full tables are files.
    clearml = read_clearml_archive(handlers["clearml"].archive_path)
    assert len(clearml.tables()[("Action Records", "stream")]) == 10_000
    assert [a["key"] for a in clearml.artifacts()] == ["Action Records / stream"]
    comet = read_comet_archive(handlers["comet"].archive_path)
    shown, meta = comet.assets()["langchain-action_records.json"]
    assert len(json.loads(shown)) == 10_000 and meta["rows"] == 100_010
    assert "langchain-action_records.jsonl.gz" in comet.assets()


# -- hypothesis: arbitrary payloads --------------------------------------------------------

# Built by index: hypothesis reprs a sampled_from's elements, which these would break.
_HOSTILE_FACTORIES: list[Callable[[], Any]] = [
    Hostile,
    ReprReturnsInt,
    lambda: BadStrSubclass("x"),
    lambda: 10**5000,
    lambda: -(2**100),
    lambda: math.nan,
    lambda: math.inf,
    lambda: b"\xff\x00",
    lambda: bytearray(b"ab"),
    lambda: SecretStr("s"),
    object,
    threading.Lock,
    lambda: "\ud800",
    lambda: "a\udfffb",
]
_HOSTILE_LEAVES = st.integers(0, len(_HOSTILE_FACTORIES) - 1).map(lambda i: _HOSTILE_FACTORIES[i]())
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(exclude_categories=()), max_size=40),  # lone surrogates included
    st.binary(max_size=40),
    _HOSTILE_LEAVES,
)
_KEYS = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=20),
    st.integers(),
    st.none(),
    st.tuples(),
)


def _with_cycle(value: Any) -> Any:
    holder: list[Any] = [value]
    holder.append(holder)
    return holder


PAYLOADS = st.recursive(
    _LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.tuples(children, children),
        st.dictionaries(_KEYS, children, max_size=6),
        st.frozensets(st.integers(), max_size=4),
        children.map(_with_cycle),
    ),
    max_leaves=25,
)
_DATA_KINDS = [kind for kind in Kind if not kind.is_control]
_ARITY = {
    Kind.LLM_START: 2,
    Kind.CHAT_MODEL_START: 2,
    Kind.CHAIN_START: 2,
    Kind.TOOL_START: 2,
    Kind.RETRIEVER_START: 2,
    Kind.CUSTOM_EVENT: 2,
}
RECORD_BOUND = 4 * MAX_RECORD_TEXT  # characters of JSON one record may take, at most


def _event(kind: Kind, payloads: list[Any], extra: Any) -> Event:
    data = tuple(payloads[: _ARITY.get(kind, 1)])
    return Event(kind, 0, 0.0, uuid.uuid4(), None, data, extra)


@FEW
@given(payload=PAYLOADS)
def test_to_jsonable_never_raises_and_gives_bounded_json(payload: Any):
    result = to_jsonable(payload)
    text = json.dumps(result, allow_nan=True)  # would raise on anything not JSON-safe
    text.encode("utf-8")  # no lone surrogate survived
    assert len(text) <= RECORD_BOUND


@FEW
@given(
    kind=st.sampled_from(_DATA_KINDS),
    payloads=st.lists(PAYLOADS, min_size=2, max_size=2),
    extra=st.one_of(
        st.dictionaries(
            st.sampled_from(["name", "tags", "metadata", "inputs"]), PAYLOADS, max_size=4
        ),
        PAYLOADS,
    ),
)
def test_convert_never_raises_and_gives_bounded_json(kind: Kind, payloads: list[Any], extra: Any):
    record = convert(_event(kind, payloads, extra))
    wire = record.to_wire()
    text = json.dumps([wire[5], wire[6], wire[7], wire[8]], allow_nan=True)
    text.encode("utf-8")
    assert len(text) <= RECORD_BOUND
    assert record.kind is kind


@FEW
@given(shared=st.lists(PAYLOADS, min_size=1, max_size=3), picks=st.lists(st.integers(0, 2)))
def test_a_batch_memo_changes_no_record(shared: list[Any], picks: list[int]):
    """Events sharing payload objects (a graph state in every run of a node): the records a
    batch memo makes equal those made one by one, cuts, cycle markers and all."""
    big = ["z" * 90_000] * 7  # twice in a record is past its budget: the second is cut
    events = [
        _event(Kind.CHAIN_START, [None, {"s": shared[i % len(shared)], "a": big, "b": big}], {})
        for i in [0, *picks]
    ]
    memo: dict[Any, Any] = {}
    for event in events:
        alone, batched = convert(event), convert(event, memo)
        assert json.dumps(batched.fields, allow_nan=True) == json.dumps(
            alone.fields, allow_nan=True
        )


@pytest.mark.parametrize(
    "make_payload",
    [
        lambda: ["y" * 2_000_000] * 50,  # 100 MB of text in one payload
        lambda: [[list(range(1_000)) for _ in range(1_000)] for _ in range(3)],  # 3M values
        lambda: {f"k{i}" * 50: "v" * 1_000 for i in range(1_000)},
    ],
)
def test_one_record_stays_bounded_whatever_the_payload(make_payload: Callable[[], Any]):
    payload = make_payload()
    record = convert(_event(Kind.CHAIN_START, [None, {"a": payload, "b": payload}], {}))
    text = json.dumps(record.fields, allow_nan=True, ensure_ascii=False)
    assert len(text) <= RECORD_BOUND
    assert MARKER in text or "more items" in text or "omitted" in text


def test_hypothesis_payloads_through_both_handlers(offline_dir: Path):
    clearml = make("clearml", offline_dir)
    comet = make("comet", offline_dir)
    handlers = [clearml, comet]
    sent = Counter[str]()

    @FEW
    @given(
        kind=st.sampled_from(_DATA_KINDS),
        payloads=st.lists(PAYLOADS, min_size=2, max_size=2),
        tags=st.one_of(st.none(), st.lists(_LEAVES, max_size=3)),
        metadata=st.one_of(st.none(), st.dictionaries(_KEYS, _LEAVES, max_size=3)),
    )
    def through(kind: Kind, payloads: list[Any], tags: Any, metadata: Any) -> None:
        args = payloads[: _ARITY.get(kind, 1)]
        kwargs = {"run_id": uuid.uuid4(), "tags": tags, "metadata": metadata}
        if kind is Kind.CUSTOM_EVENT:
            kwargs.pop("tags")
            kwargs.pop("metadata")
        for handler in handlers:
            assert getattr(handler, kind.value)(*args, **kwargs) is None
        sent[kind.value] += 1

    through()
    for handler in handlers:
        assert normal_chain(handler) == ANSWER
    assert clearml.flush_tracker(name="hyp", finish=True, timeout=120).ok
    assert comet.flush_tracker(finish=True, timeout=120).ok
    for backend, handler in (("clearml", clearml), ("comet", comet)):
        stats = check_stats(handler)
        assert stats["processed"] == sum(sent.values()) + 8
        rows, _ = archived_rows_and_texts(backend, handler.archive_path, "hyp")
        assert len(rows) >= stats["processed"]
        assert any(SENTINEL in json.dumps(r, default=str) for r in rows)
