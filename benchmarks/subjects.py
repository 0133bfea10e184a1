"""The handlers under test: ours (offline) and langchain_community's seeds (via tests.oracle).

One ClearML Task per process: the ClearML seed is started first (``tests.oracle.seed_clearml``
creates a Task with ClearML's slow parts off) and our ClearML handler reuses it, as the seed does
with ``Task.current_task()``. Our handler finishes that Task at the end of the phase.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import log

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

    @property
    def ours(self) -> list[Any]:
        """Our two handlers, as a LangChain callbacks list."""
        return [self.clearml, self.comet]


def our_handlers(offline_dir: Path, *, all_features: bool, queue_size: int) -> tuple[Any, Any]:
    """Our ClearML and Comet handlers, offline.

    ``all_features``: stream_logs, complexity metrics and visualizations; else stream_logs only.
    """
    from tracker import ClearMLCallbackHandler, CometCallbackHandler

    clearml = ClearMLCallbackHandler(
        task_name="tracker benchmark",
        stream_logs=True,
        complexity_metrics=all_features,
        visualize=all_features,
        offline=True,
        offline_dir=offline_dir,
        queue_size=queue_size,
    )
    comet = CometCallbackHandler(
        project_name="tracker-benchmark",
        name="tracker benchmark",
        stream_logs=True,
        complexity_metrics=all_features,
        visualizations=["dep", "ent"] if all_features else None,
        offline=True,
        offline_dir=offline_dir,
        queue_size=queue_size,
    )
    # Wait for the background start (Task / Experiment), so no phase times it.
    clearml.task  # noqa: B018
    comet.experiment  # noqa: B018
    return clearml, comet


@contextlib.contextmanager
def handlers(
    tmp: Path,
    *,
    all_features: bool,
    queue_size: int,
    seed_clearml_kwargs: dict[str, Any],
    seed_comet_kwargs: dict[str, Any],
) -> Iterator[Handlers]:
    """Seeds and ours, live for the ``with`` block; ours are finished on exit."""
    from tests.oracle import seed_clearml, seed_comet

    with contextlib.ExitStack() as stack:
        log("starting the ClearML seed (and the process's one ClearML Task)")
        seed_c = stack.enter_context(seed_clearml(tmp / "seed-clearml", **seed_clearml_kwargs))
        log("starting our handlers")
        clearml, comet = our_handlers(
            tmp / "offline", all_features=all_features, queue_size=queue_size
        )
        log("starting the Comet seed")
        seed_m = stack.enter_context(seed_comet(tmp / "seed-comet", **seed_comet_kwargs))
        found = Handlers(clearml, comet, seed_c.handler, seed_m.handler)
        try:
            yield found
        finally:
            # Ours first: our ClearML handler closes the shared Task, the seed's close is a no-op.
            for name, handler in (("clearml", clearml), ("comet", comet)):
                log(f"finishing our {name} handler")
                result = handler.flush_tracker(finish=True, timeout=300)
                if not result.ok:
                    found.errors.append(f"our {name} finish: {result}")
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
