"""The claim catalogue: what a claim is, and where claims are registered and looked up."""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from theory.errors import InputError
from verify.papers import Paper, claim_files, discover, file_record, load_claim_file
from verify.verdicts import Outcome

__all__ = ["PAPERS", "BUDGETS", "Assumption", "Resolution", "RunContext", "Claim", "register", "all_claims", "get",
           "select", "needs_distinct", "register_paper", "load_claim_paths", "BROKEN"]

#: The registered papers by id (filled from the entry points on first use, and by claim files).
PAPERS: dict[str, Paper] = {}
#: One line per installed paper plugin that failed to load (the others still run).
BROKEN: list[str] = []
BUDGETS = ("quick", "full")
PROVENANCES = ("stated", "derived", "recalled")


@dataclass(frozen=True)
class Assumption:
    """A predicate a config must satisfy before a claim may be run on it (e.g. ``K <= d``)."""

    text: str
    holds: Callable[[Mapping[str, Any]], bool]


RESOLUTION_KINDS = ("absolute", "relative", "replace")
BEYOND = 1.1  # planted predictions move 1.1 resolutions away: just beyond, must be REFUTED
INSIDE = 0.1  # ... and 0.1 resolution away: well inside, must keep a VERIFIED verdict


@dataclass(frozen=True)
class Resolution:
    """The smallest change of a claim's prediction its check is built to detect.

    ``param`` names the entry of ``Claim.params`` that holds the prediction (an exponent, a threshold, a
    constant, a predicted value in units of a rounding bound, an inequality's direction...). The planted
    variants of the quality tier are derived from it:

    - ``absolute``: ``p ± BEYOND * step`` must be REFUTED and ``p ± INSIDE * step`` must not change a
      VERIFIED verdict (``directions`` lists the meaningful signs: +1, -1 or both);
    - ``relative``: the same with ``p * (1 ± ...)``;
    - ``replace``: the prediction is not a number (an inequality, an order of events): ``planted`` holds the
      false value (the reversed inequality, the swapped order) that must be REFUTED; there is no "inside".

    A check that passes with ``|measured - predicted| <= tol`` detects every change beyond ``2 tol``, so
    ``step`` is at most twice the tolerance unless the judge says why it is finer.
    """

    param: str
    kind: str
    step: float | None
    text: str
    directions: tuple[int, ...] = (+1, -1)
    planted: Any = None

    def __post_init__(self):
        if self.kind not in RESOLUTION_KINDS:
            raise ValueError(f"resolution kind must be one of {RESOLUTION_KINDS}, not {self.kind!r}")
        if self.kind == "replace" and self.planted is None:
            raise ValueError("a 'replace' resolution needs the planted false value")
        if self.kind != "replace" and not (self.step and self.step > 0 and self.directions):
            raise ValueError(f"a {self.kind!r} resolution needs a positive step and directions")

    def _moved(self, value: float, distance: float) -> list[float]:
        if self.kind == "absolute":
            return [value + sign * distance * self.step for sign in self.directions]
        return [value * (1 + sign * distance * self.step) for sign in self.directions]

    def beyond(self, params: Mapping[str, Any]) -> list[dict]:
        """Planted params just beyond the resolution: each must be REFUTED."""
        if self.kind == "replace":
            return [{self.param: self.planted}]
        return [{self.param: v} for v in self._moved(float(params[self.param]), BEYOND)]

    def inside(self, params: Mapping[str, Any]) -> list[dict]:
        """Planted params well inside the resolution: each must keep a VERIFIED verdict."""
        if self.kind == "replace":
            return []
        return [{self.param: v} for v in self._moved(float(params[self.param]), INSIDE)]

    def as_json(self) -> dict:
        return {"param": self.param, "kind": self.kind, "step": self.step, "text": self.text,
                "directions": list(self.directions), "planted": self.planted}


@dataclass
class RunContext:
    """Everything a measurement may depend on besides its configs."""

    device: torch.device
    budget: str = "quick"
    seed: int = 0
    dtype: torch.dtype = torch.float64
    figure_dir: Any = None  # pathlib.Path or None (no figures)
    claim_paths: tuple[str, ...] = ()  # --claims files/folders loaded for this run (in reproduce lines)
    progress: Callable[[str], None] = lambda message: None


@dataclass(frozen=True)
class Claim:
    """One claim of one paper with its check.

    The check is split in two so that sweep chunks can run as separate tasks:
    ``measure(configs, ctx) -> rows`` (one row of plain numbers per config, batched inside) and
    ``judge(configs, rows, params, ctx) -> Outcome``.  ``params`` hold the prediction and tolerances the
    judge uses; planted false variants (tests/quality) change only ``params``.

    ``resolution`` states the smallest change of the prediction the check is built to detect; the quality
    tier derives planted variants from it for every claim. ``design(configs)`` returns why a config list
    (after ``--set`` overrides) no longer supports the check (too few points for a fit, a bracket whose
    sides no longer straddle the prediction), or None.
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
    resolution: Resolution | None = None
    design: Callable[[list[dict]], str | None] = lambda configs: None

    def __post_init__(self):
        if self.provenance not in PROVENANCES:
            raise ValueError(f"claim {self.id}: provenance must be one of {PROVENANCES}")
        if self.resolution is not None and self.resolution.param not in self.params:
            raise ValueError(f"claim {self.id}: resolution names {self.resolution.param!r}, not one of its params")

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
        sweep = self.sweep(budget)
        known = {key for cfg in sweep for key in cfg}
        unknown = sorted(set(overrides or {}) - known)
        if unknown:
            raise InputError(f"claim {self.id}: unknown --set key(s) {', '.join(unknown)}; "
                             f"its configs have {', '.join(sorted(known))}")
        configs = [{**cfg, **(overrides or {})} for cfg in sweep]
        for cfg in configs:
            for assumption in self.assumptions:
                try:
                    ok = bool(assumption.holds(cfg))
                except InputError as exc:  # an assumption that names its own numbers (verify.limits)
                    raise InputError(f"claim {self.id}: config {cfg} violates assumption '{assumption.text}': "
                                     f"{exc}") from None
                except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
                    raise InputError(f"claim {self.id}: config {cfg} cannot be checked against "
                                     f"assumption '{assumption.text}': {exc}") from None
                if not ok:
                    raise InputError(f"claim {self.id}: config {cfg} violates assumption '{assumption.text}'")
        broken = self.design(configs)
        if broken:
            raise InputError(f"claim {self.id}: the overrides break the sweep's design: {broken}")
        return configs


def needs_distinct(key: str, count: int, what: str = "a fit") -> Callable[[list[dict]], str | None]:
    """A sweep design that needs at least ``count`` distinct values of ``key`` (e.g. 3 K values for a slope)."""
    def design(configs: list[dict]) -> str | None:
        values = {json.dumps(cfg.get(key), sort_keys=True) for cfg in configs}
        if len(values) < count:
            return f"{what} needs at least {count} distinct values of {key}, the sweep has {len(values)}"
        return None
    return design


_REGISTRY: dict[str, Claim] = {}
_LOADED: list[bool] = []


def register_paper(paper: Paper) -> Paper:
    """Add a paper to the catalogue (ids are unique); its claims are registered with :func:`register`."""
    if paper.id in PAPERS:
        raise ValueError(f"duplicate paper id {paper.id!r} ({paper.source or 'claim file'}; "
                         f"already registered by {PAPERS[paper.id].source or 'a claim file'})")
    PAPERS[paper.id] = paper
    return paper


def register(claim: Claim) -> Claim:
    """Add a claim of a registered paper to the catalogue (ids are unique).

    A claim module imported before the catalogue is loaded (``from verify.claims... import X``) loads it
    first, so that its paper is registered."""
    if claim.paper not in PAPERS:
        _load()
    if claim.paper not in PAPERS:
        raise ValueError(f"claim {claim.id}: unknown paper {claim.paper!r}; register_paper() it first")
    if claim.id in _REGISTRY:
        raise ValueError(f"duplicate claim id {claim.id}")
    _REGISTRY[claim.id] = claim
    return claim


def _load_paper(paper: Paper) -> None:
    """Register an installed paper and import its claim modules; on any failure undo it and record why."""
    try:
        register_paper(paper)
        for module in paper.claim_modules:
            importlib.import_module(module)
    except Exception as exc:  # a plugin may fail in any way: the other papers still run
        if PAPERS.get(paper.id) is paper:
            del PAPERS[paper.id]
            for cid in [cid for cid, c in _REGISTRY.items() if c.paper == paper.id]:
                del _REGISTRY[cid]
        BROKEN.append(f"paper plugin {paper.id!r} ({paper.source}) failed to load: {type(exc).__name__}: {exc}")


def _load() -> None:
    """Discover the installed papers once (entry points) and register their claims."""
    if _LOADED:
        return
    _LOADED.append(True)
    papers, broken = discover()
    BROKEN.extend(broken)
    for paper in papers:
        if PAPERS.get(paper.id) != paper:  # (equal: registered already, e.g. by an earlier discovery)
            _load_paper(paper)


def load_claim_paths(paths: list[Path]) -> list[dict]:
    """Load ``--claims`` files or folders (after the installed papers); returns each file's path and hash.

    A file that fails to import, or registers a duplicate paper or claim id, is a one-line InputError.
    """
    _load()
    records = []
    for path in paths:
        for file in claim_files(path):
            load_claim_file(file)
            records.append(file_record(file))
    return records


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
