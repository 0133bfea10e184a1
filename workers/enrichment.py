"""The enrichment budget: how many of a batch's generations get the expensive analyses.

spaCy visualisations cost ~20 ms per generation and textstat's metrics ~0.3 ms; under load they
are what makes the tracker fall behind the application, and the backlog then lands on the flush.
With a budget of B seconds, the tracker keeps its delay (how long the oldest event of a batch
waited) under B by giving visualisations only to as many of a batch's generations as fit in what
is left of B, at their measured cost per generation; the complexity metrics get
``COMPLEXITY_BUDGET_FACTOR`` x B the same way. Every generation that goes without is counted
per enrichment (``stats()``, ``FlushResult``).
"""

from __future__ import annotations

from collections import Counter

from workers.options import COMPLEXITY_BUDGET_FACTOR

ENRICHMENTS = ("visualizations", "complexity")
#: Seconds per generation assumed until measured (this machine: spaCy pages and sentence
#: renders ~20 ms each, textstat ~0.3 ms).
PRIOR_COST = {"visualizations": 0.04, "complexity": 0.001}
#: Weight of the newest measurement in the running cost per generation.
SMOOTHING = 0.3


class EnrichmentBudget:
    """Decides how many generations get each enrichment, and counts those that did not."""

    def __init__(self, budget: float | None) -> None:
        """``budget``: seconds of delay the visualisations may keep (None: never skipped)."""
        self.budget = budget
        self._cost = dict(PRIOR_COST)
        self._skipped: Counter[str] = Counter()
        self._at_flush: Counter[str] = Counter()

    def allowance(self, enrichment: str, waited: float, texts: int) -> int:
        """How many of ``texts`` generations may get ``enrichment`` after ``waited`` seconds.

        The rest are counted as skipped. Without a budget, all of them.
        """
        if self.budget is None:
            return texts
        limit = self.budget * (COMPLEXITY_BUDGET_FACTOR if enrichment == "complexity" else 1.0)
        room = limit - waited
        # At least one while on time: it keeps measuring, so one slow call (a metric process
        # starting) cannot price the enrichment out for good.
        allowed = 0 if room <= 0 else min(texts, max(1, int(room / self._cost[enrichment])))
        self._skipped[enrichment] += texts - allowed
        return allowed

    def measured(self, enrichment: str, seconds: float, texts: int) -> None:
        """``texts`` generations got ``enrichment`` in ``seconds`` (the running cost learns)."""
        if texts > 0:
            cost = seconds / texts
            self._cost[enrichment] += SMOOTHING * (cost - self._cost[enrichment])

    def total(self) -> dict[str, int]:
        """Generations skipped so far, per enrichment."""
        return {name: self._skipped[name] for name in ENRICHMENTS}

    def since_flush(self) -> dict[str, int]:
        """Generations skipped since the previous call (a flush's share), per enrichment."""
        out = {name: self._skipped[name] - self._at_flush[name] for name in ENRICHMENTS}
        self._at_flush = Counter(self._skipped)
        return {name: count for name, count in out.items() if count}
