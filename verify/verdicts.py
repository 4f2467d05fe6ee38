"""Verdicts and the outcome a claim's judge returns."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Verdict", "Outcome", "worst"]


class Verdict(str, enum.Enum):
    """VERIFIED: every config consistent within tolerance. REFUTED: a counterexample exists.
    INCONCLUSIVE: the run could not decide (reason given). ERROR: the check itself failed."""

    VERIFIED = "VERIFIED"
    INCONCLUSIVE = "INCONCLUSIVE"
    REFUTED = "REFUTED"
    ERROR = "ERROR"

    @property
    def rank(self) -> int:
        """Badness order used by ``worst`` and by ``verify diff`` (higher is worse)."""
        return {"VERIFIED": 0, "INCONCLUSIVE": 1, "REFUTED": 2, "ERROR": 3}[self.value]


def worst(verdicts) -> Verdict:
    """The worst verdict of an iterable (VERIFIED when empty)."""
    return max(verdicts, key=lambda v: v.rank, default=Verdict.VERIFIED)


@dataclass
class Outcome:
    """What a claim's judge returns.

    ``evidence`` holds plain numbers (JSON-able); ``tolerance`` and ``margin`` describe the decisive
    comparison (``margin > 0`` means inside the tolerance); ``counterexample`` names the config and the
    numbers that break the claim; ``tracked`` lists evidence keys that ``verify diff`` compares.
    """

    verdict: Verdict
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    tolerance: float | None = None
    margin: float | None = None
    counterexample: dict[str, Any] | None = None
    figures: list[str] = field(default_factory=list)
    tracked: dict[str, float] = field(default_factory=dict)
