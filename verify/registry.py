"""The claim catalogue: what a claim is, and where claims are registered and looked up."""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from theory.errors import InputError
from verify.verdicts import Outcome

__all__ = ["PAPERS", "BUDGETS", "Assumption", "RunContext", "Claim", "register", "all_claims", "get", "select"]

PAPERS = {
    "softmax": "Huang, Cheng & Liang — In-Context Convergence of Transformers (arXiv 2310.05249, ICML 2024)",
    "landscape": "Kim & Suzuki — Transformers Learn Nonlinear Features In Context (arXiv 2402.01258, ICML 2024)",
}
BUDGETS = ("quick", "full")
PROVENANCES = ("stated", "derived", "recalled")


@dataclass(frozen=True)
class Assumption:
    """A predicate a config must satisfy before a claim may be run on it (e.g. ``K <= d``)."""

    text: str
    holds: Callable[[Mapping[str, Any]], bool]


@dataclass
class RunContext:
    """Everything a measurement may depend on besides its configs."""

    device: torch.device
    budget: str = "quick"
    seed: int = 0
    dtype: torch.dtype = torch.float64
    figure_dir: Any = None  # pathlib.Path or None (no figures)
    progress: Callable[[str], None] = lambda message: None


@dataclass(frozen=True)
class Claim:
    """One claim of one paper with its check.

    The check is split in two so that sweep chunks can run as separate tasks:
    ``measure(configs, ctx) -> rows`` (one row of plain numbers per config, batched inside) and
    ``judge(configs, rows, params, ctx) -> Outcome``.  ``params`` hold the prediction and tolerances the
    judge uses; planted false variants (tests/quality) change only ``params``.
    """

    id: str
    paper: str
    location: str
    provenance: str
    statement: str
    latex: str
    formula: str
    assumptions: tuple[Assumption, ...]
    sweep: Callable[[str], list[dict]]
    measure: Callable[[list[dict], RunContext], list[dict]]
    judge: Callable[[list[dict], list[dict], Mapping[str, Any], RunContext], Outcome]
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.paper not in PAPERS:
            raise ValueError(f"claim {self.id}: unknown paper {self.paper!r}")
        if self.provenance not in PROVENANCES:
            raise ValueError(f"claim {self.id}: provenance must be one of {PROVENANCES}")

    def variant(self, id: str, **params) -> "Claim":
        """The same check with some of its predictions/tolerances replaced (for planted false claims)."""
        unknown = set(params) - set(self.params)
        if unknown:
            raise KeyError(f"{self.id} has no params {sorted(unknown)}")
        return dataclasses.replace(self, id=id, params={**self.params, **params})

    def configs(self, budget: str, overrides: Mapping[str, Any] | None = None) -> list[dict]:
        """The sweep for ``budget`` with ``overrides`` applied, each config checked against the assumptions."""
        if budget not in BUDGETS:
            raise InputError(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
        configs = [{**cfg, **(overrides or {})} for cfg in self.sweep(budget)]
        for cfg in configs:
            for assumption in self.assumptions:
                try:
                    ok = bool(assumption.holds(cfg))
                except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                    raise InputError(f"claim {self.id}: config {cfg} cannot be checked against "
                                     f"assumption '{assumption.text}': {exc}") from None
                if not ok:
                    raise InputError(f"claim {self.id}: config {cfg} violates assumption '{assumption.text}'")
        return configs


_REGISTRY: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    """Add a claim to the catalogue (ids are unique)."""
    if claim.id in _REGISTRY:
        raise ValueError(f"duplicate claim id {claim.id}")
    _REGISTRY[claim.id] = claim
    return claim


def _load() -> None:
    import verify.claims  # noqa: F401  (registers every paper's claims on import)


def all_claims(paper: str | None = None) -> list[Claim]:
    """Every registered claim, optionally of one paper, in catalogue order."""
    _load()
    if paper is not None and paper not in PAPERS:
        raise InputError(f"unknown paper {paper!r}; choose from {', '.join(PAPERS)}")
    return [c for c in _REGISTRY.values() if paper is None or c.paper == paper]


def get(claim_id: str) -> Claim:
    """One claim by exact id; unknown ids raise InputError with the closest matches."""
    _load()
    if claim_id not in _REGISTRY:
        close = difflib.get_close_matches(claim_id, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `verify list`"
        raise InputError(f"unknown claim id {claim_id!r}{hint}")
    return _REGISTRY[claim_id]


def select(patterns: list[str]) -> list[Claim]:
    """Claims matching any of the ids or shell globs (all claims when ``patterns`` is empty)."""
    claims = all_claims()
    if not patterns:
        return claims
    chosen: list[Claim] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            hits = [c for c in claims if fnmatch.fnmatchcase(c.id, pattern)]
            if not hits:
                raise InputError(f"no claim matches {pattern!r}; see `verify list`")
        else:
            hits = [get(pattern)]
        chosen += [c for c in hits if c not in chosen]
    return chosen
