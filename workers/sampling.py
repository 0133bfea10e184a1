"""Sampling by trace: keep or drop whole root runs, never half a trace.

The decision is made once per root run, from a hash of its run id, so every handler
and every process sampling at the same rate keeps the same traces. Child runs follow their
root: an event whose run (or parent) is not known yet follows its parent's decision, and runs
nobody announced (callbacks called directly) are kept.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from uuid import UUID

from workers.event import RUN_ENDS, RUN_STARTS, Event

_SCALE = 1 << 64
MAX_TRACKED_RUNS = 100_000


def keeps(run_id: UUID, rate: float) -> bool:
    """Whether a root run with this id is sampled in at ``rate`` (deterministic).

    A hash of the id, not its bits: LangChain's run ids are UUIDv7, whose leading bits are a
    clock and whose low 64 bits start with fixed variant bits.
    """
    digest = hashlib.blake2b(run_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * _SCALE


class TraceSampler:
    """Decides, event by event in queue order, whether it belongs to a kept trace."""

    def __init__(self, rate: float) -> None:
        """``rate`` in [0, 1]: the share of root runs kept."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, got {rate!r}")
        self.rate = rate
        # run id -> kept, for every run of an open trace (ordered: the oldest goes first, O(1))
        self._decision: OrderedDict[UUID, bool] = OrderedDict()
        self.dropped = 0

    def keep(self, event: Event) -> bool:
        """True when ``event`` should be logged."""
        if self.rate >= 1.0 or event.run_id is None:
            return True
        run, parent = event.run_id, event.parent_run_id
        decision = self._decision.get(run)
        if decision is None:
            if parent is None:
                decision = keeps(run, self.rate)
            else:
                decision = self._decision.get(parent, keeps(parent, self.rate))
            if event.kind in RUN_STARTS:
                if len(self._decision) >= MAX_TRACKED_RUNS:  # unended runs must not pile up
                    self._decision.popitem(last=False)
                self._decision[run] = decision
        if event.kind in RUN_ENDS:
            self._decision.pop(run, None)
        if not decision:
            self.dropped += 1
        return decision
