"""What the application's process sends the worker to set up one handler's pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from workers.options import PipelineOptions
from workers.pipeline import Pipeline
from workers.sinks.spec import SinkSpec


@dataclass(frozen=True)
class PipelinePlan:
    """The sinks (described, see :class:`SinkSpec`) and the options of one pipeline."""

    sinks: tuple[SinkSpec, ...]
    options: PipelineOptions

    def build(self) -> Pipeline:
        """The pipeline, running on this process's background loop (in the worker)."""
        return Pipeline([spec.build() for spec in self.sinks], self.options)
