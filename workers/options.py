"""The pipeline's settings, declared once: every handler class takes them by these names.

Defaults and argument checks live here and nowhere else (the handlers pass ``**settings``
through, the pipeline and the queue read them from one frozen object).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

OVERFLOW_POLICIES = ("drop_newest", "drop_oldest", "block", "spill")
STREAM_TOKEN_MODES = ("each", "aggregate")
DEFAULT_QUEUE_SIZE = 100_000
DEFAULT_TABLE_ROWS = 10_000
#: LangChain metadata keys users set to group runs: a column each in the runs table.
DEFAULT_SESSION_KEYS = ("session_id", "thread_id", "user_id", "conversation_id")
#: What TrackerCallbackHandler sets unless told otherwise (the seed classes keep the seeds' way).
SERVING_DEFAULTS: dict[str, Any] = {
    "stream_tokens": "aggregate",
    "rotate_events": 10_000,
    "rotate_seconds": 60.0,
    "enrichment_budget": 2.0,
}
#: Environment variables: where every handler of a process sends its batches (a broker URL)
#: and the stream's name, so that the seed classes can use a broker without code changes.
TRANSPORT_ENV = "TRACKER_TRANSPORT"
STREAM_ENV = "TRACKER_STREAM"
DEFAULT_STREAM = "langchain"
#: Past this multiple of ``enrichment_budget``, the complexity metrics are skipped too.
COMPLEXITY_BUDGET_FACTOR = 3.0
#: Environment variable: seconds the exit drain waits for the handlers' finish (default 10).
EXIT_DRAIN_ENV = "TRACKER_EXIT_DRAIN_SECONDS"
EXIT_DRAIN_SECONDS = float(os.environ.get(EXIT_DRAIN_ENV, "10"))
#: Environment variable: seconds a batch may wait in the application's process while the
#: process is busy (0 sends every batch at once). See :mod:`workers.outbox`.
HOLD_WHILE_BUSY_ENV = "TRACKER_HOLD_WHILE_BUSY_SECONDS"
#: A trade: a longer hold keeps the worker off the CPU through longer bursts (a worker working
#: alongside cost 2 s LangGraph bursts ~10% of their time on two cores), but whatever it held is
#: the worker's backlog at the next flush. It counts from the start of the busy spell, and a
#: spell that outlasts it sends everything as it comes (workers/outbox.py): so a load sustained
#: past the hold reaches its flush with no backlog. Measured (benchmarks/analysis.md, issue 15):
#: the flush after ~9 s of serving took 4.2 s held 2 s or 5 s this way (issue 12's target:
#: 5 s), against 4.6 s and 7.1 s (held 2 s and 10 s) when each batch waited a hold of its own;
#: 5 s covers both LangGraph bursts of the benchmark (~2 s and ~4 s).
DEFAULT_HOLD_WHILE_BUSY_SECONDS = 5.0


def hold_while_busy_seconds() -> float:
    """The hold in force (read when a process starts its tracker worker)."""
    raw = os.environ.get(HOLD_WHILE_BUSY_ENV)
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_HOLD_WHILE_BUSY_SECONDS
    except ValueError:
        raise ValueError(
            f"{HOLD_WHILE_BUSY_ENV} must be a number of seconds, got {raw!r}"
        ) from None


def default_metric_processes() -> int:
    """All cores but one (at least one): the application keeps a core to itself."""
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass(frozen=True)
class PipelineOptions:
    """How a handler queues, batches, spools and analyses its events.

    - ``queue_size``: events the application's queue holds before the ``overflow`` policy
      applies: ``"drop_newest"`` (default; counted), ``"drop_oldest"``, ``"block"`` (the
      caller waits up to ``block_timeout`` seconds, then drops) or ``"spill"`` (to the
      worker's disk spool, replayed in order; needs a spool).
    - ``batch_size``: events per batch, and the queue depth that wakes the background thread.
    - ``flush_interval``: seconds between batches when the queue is quiet.
    - ``metric_processes``: at most this many processes compute the text metrics and
      visualisations when the worker falls behind (default: the cores but one); below that
      load they run in the worker itself.
    - ``spool``: the root of the durable spools (None: none; what cannot be delivered is lost
      and counted).
    - ``sample_rate``: the share of root runs (whole traces) logged.
    - ``stream_tokens``: ``"each"`` logs a record per streamed token (the seeds' way),
      ``"aggregate"`` puts a run's tokens on its end record.
    - ``table_rows``: a session table up to this many rows is reported as the seeds report it;
      a longer one shows its first ``table_rows`` rows and is written in full as a compressed
      file (a ClearML artifact, a Comet asset) that the report names.
    - ``rotate_events`` / ``rotate_seconds``: write the session tables every N events / T
      seconds without waiting for a flush (None: only at flushes, the seeds' way), so that a
      flush has little left to write.
    - ``enrichment_budget``: seconds an event may wait in the tracker before its expensive
      enrichments are skipped (and counted): spaCy visualisations past the budget, text
      complexity metrics past three times it. None: always computed, however late.
    - ``keep_errors`` / ``keep_slower_than``: tail sampling (:mod:`workers.tail_sampling`):
      a trace is decided when its root run ends, kept whole if a run in it failed, if the root
      took longer than ``keep_slower_than`` seconds, or if it is in the ``sample_rate`` share;
      ``trace_buffer`` bounds the events held meanwhile, and ``open_traces`` (``"keep"`` or
      ``"drop"``) says what happens to the oldest open traces past it and at the finish.
    - ``session_keys``: the LangChain ``metadata`` keys that become columns of the runs table
      (default ``session_id``, ``thread_id``, ``user_id``, ``conversation_id``).
    - ``transport``: None (default: the local tracker worker, through a pipe) or a broker URL
      (``redis://host:6379/0``): batches go to a stream there, read by ``tracker worker``
      processes on any host; nothing of the sinks runs in this process. Default: the
      ``TRACKER_TRANSPORT`` environment variable.
    - ``stream``: the stream's name (default ``TRACKER_STREAM``, else ``"langchain"``).
    """

    queue_size: int = DEFAULT_QUEUE_SIZE
    batch_size: int = 512
    flush_interval: float = 0.5
    metric_processes: int = 0  # 0: default_metric_processes()
    overflow: str = "drop_newest"
    block_timeout: float = 1.0
    spool: Path | None = None
    sample_rate: float = 1.0
    stream_tokens: str = "each"
    table_rows: int = DEFAULT_TABLE_ROWS
    rotate_events: int | None = None
    rotate_seconds: float | None = None
    enrichment_budget: float | None = None
    keep_errors: bool = False
    keep_slower_than: float | None = None
    trace_buffer: int = 100_000
    open_traces: str = "keep"
    session_keys: tuple[str, ...] = DEFAULT_SESSION_KEYS
    transport: str | None = field(default_factory=lambda: os.environ.get(TRANSPORT_ENV) or None)
    stream: str = field(default_factory=lambda: os.environ.get(STREAM_ENV) or DEFAULT_STREAM)

    def __post_init__(self) -> None:
        """Check every value once, with an error that names the setting."""
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {self.queue_size!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size!r}")
        if not self.flush_interval > 0:
            raise ValueError(f"flush_interval must be > 0 seconds, got {self.flush_interval!r}")
        if self.metric_processes < 0:
            raise ValueError(f"metric_processes must be >= 1, got {self.metric_processes!r}")
        if self.metric_processes == 0:
            object.__setattr__(self, "metric_processes", default_metric_processes())
        if self.overflow not in OVERFLOW_POLICIES:
            raise ValueError(
                f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {self.overflow!r}"
            )
        if not self.block_timeout >= 0:
            raise ValueError(f"block_timeout must be >= 0 seconds, got {self.block_timeout!r}")
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, got {self.sample_rate!r}")
        if self.stream_tokens not in STREAM_TOKEN_MODES:
            raise ValueError(
                f"stream_tokens must be 'each' or 'aggregate', got {self.stream_tokens!r}"
            )
        if self.table_rows < 1:
            raise ValueError(f"table_rows must be at least 1, got {self.table_rows!r}")
        if self.rotate_events is not None and self.rotate_events < 1:
            raise ValueError(
                f"rotate_events must be at least 1 (or None), got {self.rotate_events!r}"
            )
        if self.rotate_seconds is not None and not self.rotate_seconds > 0:
            raise ValueError(
                f"rotate_seconds must be > 0 seconds (or None), got {self.rotate_seconds!r}"
            )
        if self.enrichment_budget is not None and not self.enrichment_budget >= 0:
            raise ValueError(
                f"enrichment_budget must be >= 0 seconds (or None), got {self.enrichment_budget!r}"
            )
        if self.keep_slower_than is not None and not self.keep_slower_than >= 0:
            raise ValueError(
                f"keep_slower_than must be >= 0 seconds (or None), got {self.keep_slower_than!r}"
            )
        if self.trace_buffer < 1:
            raise ValueError(f"trace_buffer must be at least 1, got {self.trace_buffer!r}")
        if self.open_traces not in ("keep", "drop"):
            raise ValueError(f"open_traces must be 'keep' or 'drop', got {self.open_traces!r}")
        if isinstance(self.session_keys, str) or not all(
            isinstance(key, str) and key for key in self.session_keys
        ):
            raise ValueError(
                f"session_keys must be a sequence of metadata key names, got {self.session_keys!r}"
            )
        object.__setattr__(self, "session_keys", tuple(self.session_keys))
        if self.transport is not None and not self.transport.startswith(("redis://", "rediss://")):
            raise ValueError(
                f"transport must be a redis:// or rediss:// URL (or None), got {self.transport!r}"
            )
        if not self.stream:
            raise ValueError("stream must be a non-empty name")
        if self.overflow == "spill" and self.spool is None:
            raise ValueError(
                "overflow='spill' needs a spool to spill to: pass spool=True (the default) or "
                "a directory, or choose another overflow policy"
            )

    @property
    def tail_sampling(self) -> bool:
        """Whether traces are decided at their end (``keep_errors`` or ``keep_slower_than``)."""
        return self.keep_errors or self.keep_slower_than is not None

    @classmethod
    def names(cls) -> frozenset[str]:
        """The settings' names (what a handler accepts as ``**settings``)."""
        return frozenset(f.name for f in fields(cls))

    @classmethod
    def from_settings(cls, settings: dict[str, Any], **defaults: Any) -> PipelineOptions:
        """Options from a handler's keyword arguments; an unknown name is a TypeError."""
        unknown = sorted(set(settings) - cls.names())
        if unknown:
            raise TypeError(
                f"unknown setting(s) {', '.join(unknown)}; the settings are: "
                f"{', '.join(sorted(cls.names()))}"
            )
        return cls(**{**defaults, **settings})
