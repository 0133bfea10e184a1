"""A sink described, not built: what the tracker worker builds in its own process.

The application's process never imports an SDK for a sink that runs in the worker: it holds a
:class:`SinkSpec` (the sink class's import path and its plain arguments), and the worker builds
the real :class:`~workers.sinks.base.Sink` from it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workers.sinks.base import Sink


@dataclass(frozen=True)
class SinkSpec:
    """How to build one sink: ``path`` is ``module.Class``, ``kwargs`` its (plain) arguments.

    ``custom_metrics`` (Comet's ``f(generation, prompt_idx, gen_idx) -> dict``) is the user's
    code: it runs in the application's process, on the original generations, and its results
    travel with the records. ``in_process``: the sink must run in the application's process
    (debugging, or a ClearML Task that is current there).
    """

    path: str
    kwargs: dict[str, Any]
    name: str
    needs_complexity: bool = False
    needs_pages: bool = False
    in_process: bool = False
    custom_metrics: Callable[..., dict[str, Any]] | None = field(default=None, compare=False)

    def build(self) -> Sink:
        """The real sink (imports its SDK)."""
        module, _, name = self.path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        kwargs = dict(self.kwargs)
        if self.custom_metrics is not None:
            kwargs["custom_metrics"] = self.custom_metrics
        sink: Sink = cls(**kwargs)
        return sink

    def portable(self) -> SinkSpec:
        """This spec as it crosses to the worker (the user's hook stays here)."""
        return SinkSpec(self.path, self.kwargs, self.name, self.needs_complexity, self.needs_pages)
