"""The handlers under test: ours (offline) and langchain_community's seeds (via tests.oracle).

Ours and the seeds never share a process: ClearML allows one live Task per process (a second
handler reuses ``Task.current_task()``), and comet_ml ends the previous experiment as soon as
another one is created, so whichever Comet handler came first would log into an ended experiment.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import log

if TYPE_CHECKING:
    from benchmarks.load import LoadControl

# A ~100-word LLM answer: several sentences with named entities, as the seeds' metrics expect.
ANSWER = (
    "Paris is the capital of France and its largest city, with about two million people "
    "living inside the historic boundary. The Seine river divides the city into the Left Bank "
    "and the Right Bank. Visitors come from every country to see the Louvre Museum, the Eiffel "
    "Tower and the cathedral of Notre Dame. The city has been home to painters such as Claude "
    "Monet and writers such as Victor Hugo since the nineteenth century. Its metro, opened in "
    "1900, carries millions of passengers every day, and its cafes and markets remain part of "
    "daily life."
)
# A shorter answer for the chain benchmark (two sentences, ~35 words).
SHORT_ANSWER = (
    "Water boils sooner in the Himalayas because the air pressure is much lower than at sea "
    "level. Climbers in Nepal therefore need more time to cook their rice and pasta."
)
TOKEN_USAGE = {"prompt_tokens": 24, "completion_tokens": 128, "total_tokens": 152}


@dataclass
class Handlers:
    """Everything a phase measures; ``None`` where a handler is not used."""

    clearml: Any
    comet: Any
    seed_clearml: Any = None
    seed_comet: Any = None
    errors: list[str] = field(default_factory=list)
    finish_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ours(self) -> list[Any]:
        """Our two handlers, as a LangChain callbacks list."""
        return [self.clearml, self.comet]


def _controlled_classes() -> tuple[type, type]:
    """The seed classes with their sink wrapped per ``control=`` (see :class:`LoadControl`).

    The seed classes build their own sink spec and hand it to ``SeedCompatibleHandler``; a class
    placed between the two in the method resolution order wraps that spec, so the handlers are
    otherwise exactly what users build. Imported lazily: the worker imports ``benchmarks.load``
    (for the wrapper) and must not import the tracker's handlers with it.
    """
    from tracker import ClearMLCallbackHandler, CometCallbackHandler
    from tracker.seed import SeedCompatibleHandler
    from workers.sinks.spec import SinkSpec

    class Controlled(SeedCompatibleHandler):
        def __init__(self, sink: Any, *, control: LoadControl | None = None, **kwargs: Any) -> None:
            if control is not None:
                sink = control.spec(sink) if isinstance(sink, SinkSpec) else control.wrap(sink)
            super().__init__(sink, **kwargs)

    class ControlledClearML(ClearMLCallbackHandler, Controlled):
        """``ClearMLCallbackHandler``, its sink wrapped per ``control=``."""

    class ControlledComet(CometCallbackHandler, Controlled):
        """``CometCallbackHandler``, its sink wrapped per ``control=``."""

    return ControlledClearML, ControlledComet


def our_handlers(
    offline_dir: Path,
    *,
    all_features: bool,
    queue_size: int,
    control: LoadControl | None = None,
    visualize: bool | None = None,
    label: str = "tracker benchmark",
    **extra: Any,
) -> tuple[Any, Any]:
    """Our ClearML and Comet handlers, offline, their sinks in the tracker worker by default.

    ``all_features``: stream_logs, complexity metrics and visualizations; else stream_logs only.
    ``visualize``: overrides whether visualizations are on (None: as ``all_features``).
    ``label``: the Task's and the experiment's name.
    ``control``: wrap each sink in a :class:`~benchmarks.load.ControlledSink` driven by it (built
    where the sink runs). ``extra``: more keyword arguments for both handlers
    (``sink_process=False`` runs everything in this process, the debugging mode).
    """
    from tracker import ClearMLCallbackHandler, CometCallbackHandler

    clearml_class: Any = ClearMLCallbackHandler
    comet_class: Any = CometCallbackHandler
    if control is not None:
        clearml_class, comet_class = _controlled_classes()
        extra["control"] = control
    pictures = all_features if visualize is None else visualize
    clearml = clearml_class(
        task_name=label,
        stream_logs=True,
        complexity_metrics=all_features,
        visualize=pictures,
        offline=True,
        offline_dir=offline_dir,
        queue_size=queue_size,
        **extra,
    )
    comet = comet_class(
        project_name="tracker-benchmark",
        name=label,
        stream_logs=True,
        complexity_metrics=all_features,
        visualizations=["dep", "ent"] if pictures else None,
        offline=True,
        offline_dir=offline_dir,
        queue_size=queue_size,
        **extra,
    )
    # Wait for the background start (the worker, Task / Experiment), so no phase times it.
    for handler in (clearml, comet):
        handler.flush_tracker(timeout=120)
    return clearml, comet


@contextlib.contextmanager
def our_session(
    tmp: Path,
    *,
    all_features: bool,
    queue_size: int,
    control: LoadControl | None = None,
) -> Iterator[Handlers]:
    """Our two handlers, live for the ``with`` block and finished on exit."""
    log("starting our handlers")
    clearml, comet = our_handlers(
        tmp / "offline", all_features=all_features, queue_size=queue_size, control=control
    )
    found = Handlers(clearml, comet)
    try:
        yield found
    finally:
        # An ended Comet experiment (comet_ml ends the previous one when another starts in the
        # same process) is reported by the sink as an error in the finish result below.
        for name, handler in (("clearml", clearml), ("comet", comet)):
            log(f"finishing our {name} handler")
            result = handler.flush_tracker(finish=True, timeout=300)
            found.finish_seconds[name] = result.seconds
            if not result.ok:
                found.errors.append(f"our {name} finish: {result}")


@contextlib.contextmanager
def seed_session(tmp: Path) -> Iterator[Handlers]:
    """langchain_community's two handlers, offline (``tests.oracle``), stream_logs on.

    They get a process of their own: ClearML allows one Task per process, and comet_ml ends the
    previous experiment when a new one starts, so they cannot share one with ours.
    """
    from tests.oracle import seed_clearml, seed_comet

    with contextlib.ExitStack() as stack:
        log("starting the seeds")
        seed_c = stack.enter_context(seed_clearml(tmp / "seed-clearml", stream_logs=True))
        seed_m = stack.enter_context(seed_comet(tmp / "seed-comet", stream_logs=True))
        yield Handlers(None, None, seed_c.handler, seed_m.handler)
        log("closing the seeds")


class CallbackErrorCounter(logging.Handler):
    """Counts the "Error in X.on_… callback" records LangChain logs for swallowed exceptions.

    Attached to ``langchain_core.callbacks.manager``'s logger, it also stops those records from
    reaching stderr (Python's last-resort handler), which would flood the output for the seeds.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.messages: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.messages) < 20:
            text = record.getMessage().split("\n")[0][:160]
            self.messages[text] = self.messages.get(text, 0) + 1

    def take(self) -> int:
        """The count since the last call."""
        count, self.count = self.count, 0
        return count


@contextlib.contextmanager
def counting_callback_errors() -> Iterator[CallbackErrorCounter]:
    """Count (and silence) LangChain's swallowed-callback-error warnings for the block."""
    counter = CallbackErrorCounter()
    target = logging.getLogger("langchain_core.callbacks.manager")
    target.addHandler(counter)
    try:
        yield counter
    finally:
        target.removeHandler(counter)
