"""Target 1, the hot path: the caller-side cost of one callback, called directly.

Each sample times a batch of calls with ``time.perf_counter_ns`` and divides by the batch size;
the variants take turns in rounds (a different one first each round) so that the machine's noise
hits them alike. Round 0 is a warm-up and is not recorded. Our handlers are flushed after every
round (untimed) so their queues never fill up.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter_ns
from typing import Any

from benchmarks.common import (
    GcWatch,
    Sizes,
    Stopwatch,
    Summary,
    Table,
    describe_pauses,
    fmt_ns,
    fmt_ratio,
    log,
    met,
    rotated,
)
from benchmarks.subjects import ANSWER, TOKEN_USAGE, our_session

TARGET_MEDIAN_NS = 2_000
TARGET_P99_NS = 10_000
#: Issue 14: tail sampling, as benchmarks/serving.py's tail-sampling row sets it.
TAIL_SAMPLING: dict[str, Any] = {"sample_rate": 0.1, "keep_errors": True, "keep_slower_than": 2.0}
#: The twin handlers (tail sampling off / on): their labels and keys in the stats.
TWINS = (
    ("tail off", "ours: TrackerCallbackHandler([jsonl])", {}),
    (
        "tail on",
        "ours: TrackerCallbackHandler([jsonl]), tail sampling on",
        TAIL_SAMPLING,
    ),
)


@dataclass
class Variant:
    """One timed thing: ``sample()`` returns the nanoseconds of ``calls`` calls."""

    label: str
    callback: str
    kind: str  # "ours", "ours, information" (not in the summary), "seed", "peer", "floor"
    sample: Callable[[], int] | None
    calls: int
    samples_per_round: int
    values: list[float] = field(default_factory=list)
    handler: Any = None
    missing: str | None = None
    pauses: list[tuple[int, float, str]] = field(default_factory=list)
    stats_key: str = ""  # ours: the handler's key in the stats (its "dropped" column)


@dataclass
class Payloads:
    """Realistic callback arguments, passed as LangChain's run managers pass them."""

    result: Any
    token: str
    chunk: Any
    serialized: dict[str, Any]
    inputs: dict[str, Any]
    root_run: uuid.UUID
    llm_run: uuid.UUID
    chain_run: uuid.UUID

    @classmethod
    def build(cls) -> Payloads:
        """An LLMResult with a ~100-word generation and token usage, a token chunk, a chain."""
        from langchain_core.outputs import Generation, GenerationChunk, LLMResult

        return cls(
            result=LLMResult(
                generations=[[Generation(text=ANSWER, generation_info={"finish_reason": "stop"})]],
                llm_output={"token_usage": dict(TOKEN_USAGE), "model_name": "gpt-4o-mini"},
            ),
            token=" Paris",
            chunk=GenerationChunk(text=" Paris"),
            serialized={
                "lc": 1,
                "type": "constructor",
                "id": ["langchain", "prompts", "prompt", "PromptTemplate"],
                "kwargs": {"input_variables": ["question"], "template": "Answer: {question}"},
                "name": "PromptTemplate",
            },
            inputs={
                "question": "Why does water boil sooner in the mountains?",
                "context": "Air pressure falls with altitude.",
            },
            root_run=uuid.uuid4(),
            llm_run=uuid.uuid4(),
            chain_run=uuid.uuid4(),
        )


def _sampler(call: Callable[[], None], calls: int) -> Callable[[], int]:
    """Wrap a zero-argument caller into a timed batch (kept for one-off variants)."""
    rng = range(calls)

    def sample() -> int:
        start = perf_counter_ns()
        for _ in rng:
            call()
        return perf_counter_ns() - start

    return sample


def llm_end_sampler(handler: Any, p: Payloads, calls: int) -> Callable[[], int]:
    """``on_llm_end(result, run_id=…, parent_run_id=…, tags=[])`` x ``calls``."""
    call, result, run_id, parent, tags, rng = (
        handler.on_llm_end,
        p.result,
        p.llm_run,
        p.root_run,
        [],
        range(calls),
    )

    def sample() -> int:
        start = perf_counter_ns()
        for _ in rng:
            call(result, run_id=run_id, parent_run_id=parent, tags=tags)
        return perf_counter_ns() - start

    return sample


def new_token_sampler(handler: Any, p: Payloads, calls: int) -> Callable[[], int]:
    """``on_llm_new_token(token, run_id=…, parent_run_id=…, tags=[], chunk=…)`` x ``calls``."""
    call, token, chunk, run_id, parent, tags, rng = (
        handler.on_llm_new_token,
        p.token,
        p.chunk,
        p.llm_run,
        p.root_run,
        [],
        range(calls),
    )

    def sample() -> int:
        start = perf_counter_ns()
        for _ in rng:
            call(token, run_id=run_id, parent_run_id=parent, tags=tags, chunk=chunk)
        return perf_counter_ns() - start

    return sample


def chain_start_sampler(handler: Any, p: Payloads, calls: int) -> Callable[[], int]:
    """``on_chain_start(serialized, inputs, run_id=…, parent_run_id=…, tags, metadata, name)``."""
    call, serialized, inputs, run_id, parent, tags, metadata, rng = (
        handler.on_chain_start,
        p.serialized,
        p.inputs,
        p.chain_run,
        p.root_run,
        ["seq:step:1"],
        {},
        range(calls),
    )

    def sample() -> int:
        start = perf_counter_ns()
        for _ in rng:
            call(
                serialized,
                inputs,
                run_id=run_id,
                parent_run_id=parent,
                tags=tags,
                metadata=metadata,
                name="PromptTemplate",
            )
        return perf_counter_ns() - start

    return sample


def deque_sampler(calls: int) -> Callable[[], int]:
    """The floor: ``collections.deque(maxlen=N).append`` of a small tuple."""
    append = deque(maxlen=100_000).append
    item = ("on_llm_new_token", 1, None)
    rng = range(calls)

    def sample() -> int:
        start = perf_counter_ns()
        for _ in rng:
            append(item)
        return perf_counter_ns() - start

    return sample


def otel_sampler(calls: int) -> tuple[Callable[[], int] | None, str | None]:
    """OpenTelemetry span start+end through a BatchSpanProcessor, if the SDK is installed."""
    # Import rather than find_spec: "opentelemetry" is a namespace package, so a spec can be
    # found while the SDK is missing or broken; the import error says which.
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError as exc:
        return None, f"not installed (opentelemetry-sdk: {exc})"

    class NullExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NullExporter()))
    tracer = provider.get_tracer("benchmarks")
    return _sampler(lambda: tracer.start_span("llm").end(), calls), None


def noop_handler_sampler(p: Payloads, calls: int) -> Callable[[], int]:
    """A ``BaseCallbackHandler`` whose ``on_llm_end`` is ``pass``: the cost of the call itself."""
    from langchain_core.callbacks import BaseCallbackHandler

    class Noop(BaseCallbackHandler):
        run_inline = True

        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            pass

    return llm_end_sampler(Noop(), p, calls)


CALLBACKS: tuple[tuple[str, Callable[[Any, Payloads, int], Callable[[], int]]], ...] = (
    ("on_llm_end", llm_end_sampler),
    ("on_llm_new_token", new_token_sampler),
    ("on_chain_start", chain_start_sampler),
)


def _floors(p: Payloads, batch: int, samples: int, suffix: str) -> list[Variant]:
    """The reference rows every process measures alongside its subjects."""
    return [
        Variant(
            f"no-op handler (call floor){suffix}",
            "on_llm_end",
            "floor",
            noop_handler_sampler(p, batch),
            batch,
            samples,
        ),
        Variant(
            f"deque(maxlen=N).append (floor){suffix}",
            "small tuple",
            "floor",
            deque_sampler(batch),
            batch,
            samples,
        ),
    ]


def _rounds(variants: list[Variant], rounds: int, between: Callable[[int], str]) -> dict[str, str]:
    """Run the interleaved rounds (round 0: warm-up, not recorded); returns crashes by label."""
    crashed: dict[str, str] = {}
    live = [v for v in variants if v.sample is not None]
    with GcWatch() as gcw:
        for round_no in range(rounds + 1):
            for v in rotated(live, round_no):
                sample = v.sample
                if sample is None:
                    continue
                gcw.take()
                try:
                    values = [sample() / v.calls for _ in range(v.samples_per_round)]
                except Exception as exc:  # a seed crashing is a result, not a harness failure
                    crashed[v.label] = f"{type(exc).__name__}: {exc}"
                    v.sample = None
                    continue
                if round_no > 0:
                    v.values.extend(values)
                    v.pauses += gcw.take()
            log(f"hot path round {round_no}/{rounds} done{between(round_no)}")
    return crashed


@contextlib.contextmanager
def _tail_twins(tmp: Path, queue_size: int, errors: list[str]) -> Iterator[dict[str, Any]]:
    """Two ``TrackerCallbackHandler([jsonl])``, tail sampling off and on; finished on exit.

    A JSON-lines sink, not ClearML or Comet: these pipelines share the tracker worker with the
    seed-class handlers' sinks, and a second Comet experiment in one process would end the
    first (ClearML would share its Task). The caller side is one queue append whatever the sink.
    """
    from tracker import TrackerCallbackHandler, sinks

    twins: dict[str, Any] = {}
    try:
        for key, _label, extra in TWINS:
            where = tmp / key.replace(" ", "-")
            twins[key] = TrackerCallbackHandler(
                [sinks.jsonl(where, session=key.replace(" ", "-"))],
                offline_dir=where,
                queue_size=queue_size,
                **extra,
            )
            twins[key].flush_tracker(timeout=120)  # the worker started before the rounds
        yield twins
    finally:
        for key, handler in twins.items():
            log(f"finishing our {key} twin")
            result = handler.flush_tracker(finish=True, timeout=300)
            if not result.ok:
                errors.append(f"our {key} twin finish: {result}")


def run(sizes: Sizes, tmp: Path) -> list[Table]:
    """Our handlers (stream_logs only; the tail-sampling twins), OpenTelemetry, the floors."""
    p = Payloads.build()
    batch, samples = sizes.hot_batch, sizes.hot_samples
    per_round_events = samples * batch * len(CALLBACKS)
    queue_size = max(100_000, 4 * per_round_events)
    drains: list[float] = []
    twin_errors: list[str] = []
    with (
        our_session(tmp, all_features=False, queue_size=queue_size) as h,
        _tail_twins(tmp, queue_size, twin_errors) as twins,
    ):
        variants: list[Variant] = []
        subjects = [
            ("ours: ClearML", "clearml", "ours", h.clearml),
            ("ours: Comet", "comet", "ours", h.comet),
            *((label, key, "ours, information", twins[key]) for key, label, _ in TWINS),
        ]
        for label, key, kind, handler in subjects:
            for callback, make in CALLBACKS:
                v = Variant(label, callback, kind, make(handler, p, batch), batch, samples)
                v.handler = handler
                v.stats_key = key
                variants.append(v)
        otel, missing = otel_sampler(batch)
        variants.append(
            Variant(
                "OpenTelemetry BatchSpanProcessor",
                "span start+end",
                "peer",
                otel,
                batch,
                samples,
                missing=missing,
            )
        )
        variants += _floors(p, batch, samples, "")

        def drain(_round: int) -> str:
            with Stopwatch() as sw:
                h.clearml.flush_tracker(timeout=300)
                h.comet.flush_tracker(timeout=300)
                for twin in twins.values():
                    twin.flush_tracker(timeout=300)
            drains.append(sw.seconds)
            return f" (our handlers drained in {sw.seconds:.2f}s, untimed)"

        crashed = _rounds(variants, sizes.hot_rounds, drain)
        stats = {"clearml": h.clearml.stats(), "comet": h.comet.stats()}
        stats.update((key, twin.stats()) for key, twin in twins.items())
    table = _table(variants, crashed, stats)
    events = {name: s["enqueued"] for name, s in stats.items()}
    table.raw["drain_seconds"] = drains
    table.notes += [
        f"{sizes.hot_rounds} rounds (+1 warm-up round, discarded); per round each of our "
        f"(handler, callback) pairs takes {samples} samples of {batch} calls. Values are per "
        "call: sample time / calls. The loop and the two perf_counter_ns reads are inside "
        "every sample; the deque row is that harness plus the append.",
        "Payloads as LangChain's run managers pass them: on_llm_end(LLMResult with one "
        "~100-word generation and llm_output.token_usage, run_id=, parent_run_id=, tags=); "
        "on_llm_new_token(token, run_id=, parent_run_id=, tags=, chunk=GenerationChunk); "
        "on_chain_start(serialized dict, 2-key inputs dict, run_id=, parent_run_id=, tags=, "
        "metadata=, name=).",
        "Our handlers here run with stream_logs only: the callback code is the same whatever "
        "the features (tracker/handler.py: every on_* is one EventQueue.put), and with "
        "complexity metrics on, the tracker worker spends ~25 ms per on_llm_end on Comet's "
        "metrics, so draining this phase's on_llm_end calls would take many minutes. Targets "
        "2 and 3 run with all features on.",
        f"Our handlers run in their default mode: this process's background thread (which "
        f"takes a batch at 512 queued events and pickles it to the tracker worker) is live "
        f"during the rounds, so its GIL use and garbage collections land in these samples; "
        f"the worker (conversion, SDKs) is another process, at niceness 10, sharing the "
        f"machine's cores. Events enqueued: {events}; dropped: "
        f"{ {n: s['dropped'] for n, s in stats.items()} }. Untimed drain after each round: "
        f"{', '.join(f'{d:.2f}s' for d in drains)}.",
    ]
    table.notes += _tail_notes(variants, stats)
    table.notes += [f"finish: {error}" for error in [*h.errors, *twin_errors]]
    return [table]


def _tail_notes(variants: list[Variant], stats: dict[str, Any]) -> list[str]:
    """Tail sampling on against off (the twins), per callback, and what the worker counted."""
    by = {(v.stats_key, v.callback): Summary.of(v.values) for v in variants if v.values}
    ratios = [
        f"{callback} median {fmt_ratio(on.median / off.median)}, p99 {fmt_ratio(on.p99 / off.p99)}"
        for callback, _ in CALLBACKS
        if (off := by.get(("tail off", callback))) and (on := by.get(("tail on", callback)))
    ]
    traces = (stats.get("tail on") or {}).get("traces") or {}
    return [
        "Issue 14, tail sampling: the two TrackerCallbackHandler([jsonl]) rows are twins (the "
        "handler's defaults, the same queue_size) but for tail sampling "
        f"({', '.join(f'{k}={v}' for k, v in TAIL_SAMPLING.items())}) on the second; they "
        "take their turns in the same rounds as the other rows. Information rows: not in the "
        "summary. By construction the caller side is the same (every on_* is one queue put; "
        "traces are held and decided in the tracker worker). Tail sampling on / off: "
        + ("; ".join(ratios) or "not measured")
        + ". These payloads never start their root run, so the worker's tail sampler passes "
        "their records through as it does for runs it never saw start (stats()['traces'] of "
        f"the tail-sampling twin: {traces or 'none'}); what holding traces costs the worker is "
        "in the serving table's tail-sampling row."
    ]


def run_seeds(sizes: Sizes, seeds: Any) -> list[Table]:
    """The seeds' on_llm_end (in their own process), with that process's floors."""
    p = Payloads.build()
    batch, samples = sizes.hot_batch, sizes.hot_samples
    seeds.seed_comet.complexity_metrics = True
    variants = [
        Variant(
            "seed: ClearML (stream_logs)",
            "on_llm_end",
            "seed",
            llm_end_sampler(seeds.seed_clearml, p, 1),
            1,
            sizes.seed_clearml_calls,
        ),
        Variant(
            "seed: Comet (stream_logs + complexity)",
            "on_llm_end",
            "seed",
            llm_end_sampler(seeds.seed_comet, p, 1),
            1,
            sizes.seed_comet_calls,
        ),
        *_floors(p, batch, samples, " [seeds' process]"),
    ]
    crashed = _rounds(variants, sizes.hot_rounds, lambda _round: " (seeds)")
    seeds.seed_comet.complexity_metrics = False
    table = _table(variants, crashed, {})
    table.notes += [
        "Seed rows and the rows marked [seeds' process] come from a separate process (ClearML "
        "allows one Task per process; comet_ml ends the previous experiment when a new one "
        f"starts), interleaved the same way: {sizes.seed_clearml_calls} (ClearML) and "
        f"{sizes.seed_comet_calls} (Comet) single-call samples per round; their ratio is "
        "against that process's deque floor.",
        "The ClearML seed echoes every record to stdout (report_text's print_console default); "
        "the phase's stdout goes to /dev/null.",
    ]
    return [table]


def _table(variants: list[Variant], crashed: dict[str, str], stats: dict[str, Any]) -> Table:
    table = Table(
        id="hotpath",
        title="1. Hot path: one callback called directly (caller-side cost per call)",
        target="median ≤ 2 µs and p99 ≤ 10 µs per callback",
        columns=[
            "variant",
            "callback",
            "median",
            "p99",
            "mean",
            "ratio vs deque floor (median)",
            "target",
            "met?",
            "samples x calls",
            "GC pauses ≥ 5 ms in its turns",
            "dropped",
        ],
    )
    floor = next(v for v in variants if v.label.startswith("deque"))
    floor_median = Summary.of(floor.values).median
    raw: dict[str, Any] = {}
    for v in variants:
        if not v.values:
            reason = v.missing or crashed.get(v.label, "not measured")
            table.add(v.label, v.callback, reason, "", "", "", "—", "—", "", "", "")
            continue
        s = Summary.of(v.values)
        ok: bool | None = None
        target = "—"
        dropped = ""
        if v.kind.startswith("ours"):
            ok = s.median <= TARGET_MEDIAN_NS and s.p99 <= TARGET_P99_NS
            target = "≤ 2 µs / ≤ 10 µs"
            dropped = str(stats[v.stats_key]["dropped"]) if v.stats_key in stats else ""
        if v.kind == "ours":
            check = f"{v.label} {v.callback}: median ≤ 2 µs, p99 ≤ 10 µs"
            table.verdicts[check] = bool(ok)
            table.measured[check] = f"median {fmt_ns(s.median)}, p99 {fmt_ns(s.p99)}"
        table.add(
            v.label,
            v.callback,
            fmt_ns(s.median),
            fmt_ns(s.p99),
            fmt_ns(s.mean),
            fmt_ratio(s.median / floor_median),
            target,
            met(ok),
            f"{s.n} x {v.calls}",
            describe_pauses(v.pauses),
            dropped,
        )
        raw[f"{v.label} {v.callback}"] = vars(s)
    for label, error in crashed.items():
        table.notes.append(f"{label} raised and was dropped from the rounds: {error}")
    table.raw = {"summaries": raw, "stats": stats}
    return table
