"""Shared pieces of the softmax-paper claims: config dicts, assumptions, batched runs, judges.

The model, the closed forms and the phase boundaries the claims rely on are written out in
docs/softmax_dynamics.md; claim locations point to its sections.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from sims.seeds import derive
from sims.softmax.config import embedding_dim
from sims.softmax.counts import count_vector_number
from sims.softmax.dynamics import SoftmaxConfig, expectation_method, simulate_full, simulate_reduced
from theory.softmax import closed_form as th
from verify.figures import loglog_figure
from verify.fits import crossing_time, loglog_fit
from verify.registry import Assumption, RunContext
from verify import limits
from verify.claims.softmax.simulate import softmax_floats
from verify.verdicts import Outcome, Verdict

__all__ = ["PAPER", "DOCS", "BASE_ASSUMPTIONS", "dim", "fits_memory", "floats_needed", "balanced",
           "dominant", "sim_config", "run_sims", "target_attn", "query_loss", "crossing_steps", "log_every_for",
           "slope_outcome", "panel_indices", "is_balanced", "is_dominant",
           "has_other_offtarget", "closed_form_time", "probabilities", "curve"]

PAPER = "softmax"
DOCS = "docs/softmax_dynamics.md"  # where the derivations behind the claims are written out
MAX_LOG_POINTS = 2000  # logged points per trajectory: keeps (C, T, K, K) buffers small at K = 128


def dim(cfg: Mapping) -> int:
    """The embedding dimension d of a config dict (``sims.softmax.config.embedding_dim``: d defaults to K)."""
    return int(embedding_dim(int(cfg["K"]), cfg.get("d")))


def _p_sums_to_one(cfg) -> bool:
    p = probabilities(cfg)
    return len(p) == int(cfg["K"]) and abs(sum(p) - 1.0) <= 1e-9 and min(p) >= 0


def floats_needed(cfg: Mapping) -> int:
    """Upper estimate of the float64 values one simulated config allocates
    (:func:`verify.claims.softmax.simulate.softmax_floats`)."""
    K, steps, N = int(cfg["K"]), int(cfg["steps"]), cfg.get("N")
    support = sum(float(v) > 0 for v in cfg["p"]) if "p" in cfg else K  # dominant c < 1: every feature
    return softmax_floats(K, None if N is None else int(N), steps, int(cfg.get("log_every") or log_every_for(steps)),
                          support=support, full=cfg.get("model", "reduced") == "full", d=dim(cfg),
                          batch=int(cfg.get("batch", 512)))


def fits_memory(floats: Callable[[Mapping], int]) -> Assumption:
    """The resource assumption: ``floats(cfg)`` within the memory budget (:mod:`verify.limits`), checked
    before the config's other derived quantities (p has K entries) are built."""
    return Assumption("fits in memory (verify.limits budget; lower K, d, steps, batch or N, or raise log_every)",
                      lambda c: limits.assume_floats("one config", floats(c)))


BASE_ASSUMPTIONS = (
    Assumption("K >= 2", lambda c: int(c["K"]) >= 2),
    Assumption("K <= d (orthonormal features)", lambda c: int(c["K"]) <= dim(c)),
    Assumption("eta > 0", lambda c: float(c["eta"]) > 0 and math.isfinite(float(c["eta"]))),
    Assumption("N >= 1 or N = infinity", lambda c: c.get("N") is None or int(c["N"]) >= 1),
    Assumption("steps >= 1", lambda c: int(c["steps"]) >= 1),
    fits_memory(floats_needed),
    Assumption("p is a probability vector over the K features (K entries, nonnegative, sum 1)", _p_sums_to_one),
    Assumption("full model needs finite N", lambda c: c.get("model", "reduced") != "full" or c.get("N") is not None),
)
is_balanced = Assumption("balanced features (p_k = 1/K)", lambda c: c.get("kind") == "balanced")
is_dominant = Assumption("one dominant feature: 1/K < c < 1",
                         lambda c: c.get("kind") == "dominant" and 1.0 / int(c["K"]) < float(c["c"]) < 1.0)
has_other_offtarget = Assumption("K >= 3 (an under-represented query has an off-target feature besides the "
                                 "dominant one)", lambda c: int(c["K"]) >= 3)


def balanced(K: int, steps: int, eta: float = 1.0, **extra) -> dict:
    """A balanced config dict (reduced dynamics, N = infinity unless overridden)."""
    return {"kind": "balanced", "K": K, "d": K, "eta": eta, "steps": int(steps), "N": None, **extra}


def dominant(K: int, c: float, steps: int, eta: float = 1.0, **extra) -> dict:
    """An imbalanced config dict with p_1 = c and the rest (1-c)/(K-1)."""
    return {"kind": "dominant", "K": K, "c": c, "d": K, "eta": eta, "steps": int(steps), "N": None, **extra}


def probabilities(cfg: Mapping) -> tuple[float, ...]:
    K = int(cfg["K"])
    if "p" in cfg:
        return tuple(float(v) for v in cfg["p"])
    if cfg.get("kind") == "dominant":
        c = float(cfg["c"])
        return (c,) + ((1.0 - c) / (K - 1),) * (K - 1)
    return (1.0 / K,) * K


def log_every_for(steps: int) -> int:
    """Log interval that keeps at most ``MAX_LOG_POINTS`` points."""
    return max(1, math.ceil(steps / MAX_LOG_POINTS))


def sim_config(cfg: Mapping, ctx: RunContext, steps: int | None = None) -> SoftmaxConfig:
    """The simulator config for a claim config dict; the run seed plus the config's ``seed_offset``."""
    steps = int(steps if steps is not None else cfg["steps"])
    return SoftmaxConfig(K=int(cfg["K"]), d=dim(cfg), p=probabilities(cfg),
                         eta=float(cfg["eta"]), steps=steps, N=cfg.get("N"),
                         seed=derive(ctx.seed, int(cfg.get("seed_offset", 0))), batch=int(cfg.get("batch", 512)),
                         log_every=int(cfg.get("log_every") or log_every_for(steps)))


ALONE_ABOVE = 1000  # full-model configs logging an exact expectation over more count vectors run one by one


def _runs_alone(cfg: Mapping) -> bool:
    """A full-model config whose logged expectation enumerates many count vectors: batched with others, its
    reductions over those vectors round differently in the last bits, so it runs alone (chunking must not
    change a number)."""
    if cfg.get("model", "reduced") != "full":
        return False
    sim = SoftmaxConfig(K=int(cfg["K"]), d=dim(cfg), p=probabilities(cfg), N=cfg.get("N"))
    return expectation_method(sim) == "exact" and count_vector_number(int(cfg["N"]), int(cfg["K"])) > ALONE_ABOVE


def run_sims(configs: Sequence[Mapping], ctx: RunContext) -> list["One"]:
    """Simulate every config, batching those that share model, N, steps and log interval (except
    :func:`_runs_alone` configs).

    Returns one single-config trajectory per input config, in order.
    """
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        key = (cfg.get("model", "reduced"), cfg.get("N"), int(cfg["steps"]), cfg.get("log_every"),
               cfg.get("batch", 512), dim(cfg) if cfg.get("model") == "full" else 0,
               i if _runs_alone(cfg) else None)
        groups.setdefault(key, []).append(i)
    out: list[Any] = [None] * len(configs)
    for (model, *_), idx in groups.items():
        steps = max(int(configs[i]["steps"]) for i in idx)
        sims = [sim_config(configs[i], ctx, steps) for i in idx]
        simulate = simulate_full if model == "full" else simulate_reduced
        traj = simulate(sims, device=ctx.device, dtype=ctx.dtype)
        for j, i in enumerate(idx):
            out[i] = One.of(traj.select(j))
    return out


@dataclass(frozen=True)
class One:
    """One config's trajectory without the batch axis: t (T,), scores/attn (T, K, K), loss_per_query (T, K), loss (T,)."""

    t: Any
    scores: Any
    attn: Any
    loss_per_query: Any
    loss: Any

    @classmethod
    def of(cls, single) -> "One":
        return cls(single.t, single.scores[0], single.attn[0], single.loss_per_query[0], single.loss[0])


def target_attn(traj, k: int) -> np.ndarray:
    """(T,) expected attention of query k on its own feature."""
    return traj.attn[:, k, k].cpu().numpy()


def query_loss(traj, k: int) -> np.ndarray:
    """(T,) expected per-query loss of query k."""
    return traj.loss_per_query[:, k].cpu().numpy()


def crossing_steps(traj, k: int, attn_level: float | None = None, eps: float | None = None) -> float:
    """Interpolated step at which query k's target attention reaches ``attn_level`` or its loss ``eps``."""
    t = traj.t.cpu().numpy()
    if attn_level is not None:
        return crossing_time(t, target_attn(traj, k), attn_level, rising=True)
    return crossing_time(t, query_loss(traj, k), eps, rising=False)


def slope_outcome(ctx: RunContext, name: str, x, y, predicted: float, tol: float, *, xlabel: str,
                  ylabel: str, what: str, configs: Sequence[Mapping], extra: Mapping | None = None,
                  upper_only: bool = False) -> Outcome:
    """Judge a scaling claim: the fitted log-log slope of ``y`` in ``x`` must be within ``tol`` of ``predicted``.

    With ``upper_only`` (an O() bound) only a slope above ``predicted + tol`` refutes.
    NaN entries (event not reached within the budget) make the verdict INCONCLUSIVE.
    The figure draws every point, so the refuting configs (all of the fit) are in it.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    evidence = {"x": x, "y": y, **(extra or {})}
    if not np.all(np.isfinite(y)):
        missing = [configs[i] for i in np.flatnonzero(~np.isfinite(y))]
        return Outcome(Verdict.INCONCLUSIVE, f"{what} not reached within the step budget for {len(missing)} "
                       f"config(s), e.g. {missing[0]}", evidence, tracked={"configs_not_reached": len(missing)})
    fit = loglog_fit(x, y)
    figures = loglog_figure(ctx.figure_dir, name, what, x, y, fit, predicted, xlabel, ylabel)
    margin = tol - (fit.slope - predicted if upper_only else abs(fit.slope - predicted))
    evidence.update(fitted_slope=fit.slope, slope_stderr=fit.stderr, predicted_slope=predicted)
    verdict = Verdict.VERIFIED if margin >= 0 else Verdict.REFUTED
    relation = "at most" if upper_only else "predicted"
    summary = f"{what}: log-log slope {fit.slope:.3f} ± {fit.stderr:.3f} vs {relation} {predicted:.3f} (tol {tol})"
    counter = None if margin >= 0 else {"configs": list(configs), "x": x, "y": y, "fitted_slope": fit.slope}
    return Outcome(verdict, summary, evidence, tol, margin, counter, figures,
                   tracked={"fitted_slope": fit.slope, "predicted_slope": float(predicted)})


def panel_indices(n: int, focus: int | None = None, limit: int = 3) -> list[int]:
    """Indices of the configs drawn as figure panels: the first ``limit``, with ``focus`` (a refuting
    config) always among them."""
    chosen = list(range(min(n, limit)))
    if focus is not None and focus not in chosen:
        chosen[-1] = focus
    return chosen


def closed_form_time(cfg: Mapping, k: int, *, attn_level: float | None = None, eps: float | None = None) -> float:
    """Closed-form (gradient-flow) time of an exchangeable query (balanced, or dominant k = 0)."""
    p_k = probabilities(cfg)[k]
    level = attn_level if attn_level is not None else th.attention_for_loss(eps, int(cfg["K"]))
    return float(th.time_to_attention(level, int(cfg["K"]), p_k, float(cfg["eta"])))


def curve(traj, k: int, max_points: int = 300) -> dict:
    """Down-sampled plain-list copy of query k's trajectory (t, target attention, loss) for figures.

    Rows returned by ``measure`` must stay plain data (they cross process boundaries), so figures are
    drawn by the judge from these curves rather than from tensors.
    """
    stride = max(1, len(traj.t) // max_points)
    return {"t": traj.t[::stride].tolist(), "attn": target_attn(traj, k)[::stride].tolist(),
            "loss": query_loss(traj, k)[::stride].tolist()}
