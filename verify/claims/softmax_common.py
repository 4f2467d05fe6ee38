"""Shared pieces of the softmax-paper claims: config dicts, assumptions, batched runs, judges."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from sims.softmax_icl import SoftmaxConfig, simulate_full, simulate_reduced
from theory import softmax_icl as th
from verify.figures import loglog_figure
from verify.fits import crossing_time, loglog_fit
from verify.registry import Assumption, RunContext
from verify.simulate import full_model_floats, logged_floats
from verify.verdicts import Outcome, Verdict

__all__ = ["PAPER", "BASE_ASSUMPTIONS", "MAX_FLOATS_PER_CONFIG", "fits_memory", "floats_needed", "balanced",
           "dominant", "sim_config", "run_sims", "target_attn",
           "query_loss", "crossing_steps", "log_every_for", "slope_outcome", "relative_error_outcome",
           "is_balanced", "is_dominant", "closed_form_time", "probabilities", "curve"]

PAPER = "softmax"
MAX_LOG_POINTS = 2000  # logged points per trajectory: keeps (C, T, K, K) buffers small at K = 128
MAX_FLOATS_PER_CONFIG = 200_000_000  # ~1.6 GB of float64: a config needing more is refused before allocating


def _p_sums_to_one(cfg) -> bool:
    p = probabilities(cfg)
    return len(p) == int(cfg["K"]) and abs(sum(p) - 1.0) <= 1e-9 and min(p) >= 0


def floats_needed(cfg: Mapping) -> int:
    """Upper estimate of the float64 values one simulated config allocates: its logged trajectory and,
    for the full model, its working values (:mod:`verify.simulate` estimates both)."""
    K, steps = int(cfg["K"]), int(cfg["steps"])
    logged = logged_floats(K, steps, int(cfg.get("log_every") or log_every_for(steps)))
    if cfg.get("model", "reduced") != "full":
        return logged
    return logged + full_model_floats(K, int(cfg.get("d") or K), int(cfg.get("batch", 512)), int(cfg["N"]))


def fits_memory(floats: Callable[[Mapping], int]) -> Assumption:
    """The resource assumption: ``floats(cfg)`` at most :data:`MAX_FLOATS_PER_CONFIG`."""
    return Assumption(f"fits in memory: at most {MAX_FLOATS_PER_CONFIG:.0e} float64 values per config "
                      "(lower K, d, steps, batch or N, or raise log_every)",
                      lambda c: floats(c) <= MAX_FLOATS_PER_CONFIG)


BASE_ASSUMPTIONS = (
    Assumption("K >= 2", lambda c: int(c["K"]) >= 2),
    Assumption("K <= d (orthonormal features)", lambda c: int(c["K"]) <= int(c.get("d") or c["K"])),
    Assumption("eta > 0", lambda c: float(c["eta"]) > 0 and math.isfinite(float(c["eta"]))),
    Assumption("N >= 1 or N = infinity", lambda c: c.get("N") is None or int(c["N"]) >= 1),
    Assumption("steps >= 1", lambda c: int(c["steps"]) >= 1),
    Assumption("p is a probability vector over the K features (K entries, nonnegative, sum 1)", _p_sums_to_one),
    Assumption("full model needs finite N", lambda c: c.get("model", "reduced") != "full" or c.get("N") is not None),
    fits_memory(floats_needed),
)
is_balanced = Assumption("balanced features (p_k = 1/K)", lambda c: c.get("kind") == "balanced")
is_dominant = Assumption("one dominant feature: 1/K < c < 1",
                         lambda c: c.get("kind") == "dominant" and 1.0 / int(c["K"]) < float(c["c"]) < 1.0)


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
    return SoftmaxConfig(K=int(cfg["K"]), d=int(cfg.get("d") or cfg["K"]), p=probabilities(cfg),
                         eta=float(cfg["eta"]), steps=steps, N=cfg.get("N"),
                         seed=ctx.seed + int(cfg.get("seed_offset", 0)), batch=int(cfg.get("batch", 512)),
                         log_every=int(cfg.get("log_every") or log_every_for(steps)))


def run_sims(configs: Sequence[Mapping], ctx: RunContext) -> list["One"]:
    """Simulate every config, batching those that share model, N, steps and log interval.

    Returns one single-config trajectory per input config, in order.
    """
    groups: dict[tuple, list[int]] = {}
    for i, cfg in enumerate(configs):
        key = (cfg.get("model", "reduced"), cfg.get("N"), int(cfg["steps"]), cfg.get("log_every"),
               cfg.get("batch", 512), int(cfg.get("d") or cfg["K"]) if cfg.get("model") == "full" else 0)
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
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    evidence = {"x": x, "y": y, **(extra or {})}
    if not np.all(np.isfinite(y)):
        missing = [configs[i] for i in np.flatnonzero(~np.isfinite(y))]
        return Outcome(Verdict.INCONCLUSIVE, f"{what} not reached within the step budget for {len(missing)} "
                       f"config(s), e.g. {missing[0]}", evidence)
    fit = loglog_fit(x, y)
    figures = loglog_figure(ctx.figure_dir, name, what, x, y, fit, predicted, xlabel, ylabel)
    margin = tol - (fit.slope - predicted if upper_only else abs(fit.slope - predicted))
    evidence.update(fitted_slope=fit.slope, slope_stderr=fit.stderr, predicted_slope=predicted)
    verdict = Verdict.VERIFIED if margin >= 0 else Verdict.REFUTED
    relation = "at most" if upper_only else "predicted"
    summary = f"{what}: log-log slope {fit.slope:.3f} ± {fit.stderr:.3f} vs {relation} {predicted:.3f} (tol {tol})"
    counter = None if margin >= 0 else {"configs": list(configs), "x": x, "y": y, "fitted_slope": fit.slope}
    return Outcome(verdict, summary, evidence, tol, margin, counter, figures,
                   tracked={"fitted_slope": fit.slope})


def relative_error_outcome(what: str, measured, predicted, tol: float, configs: Sequence[Mapping],
                           labels: Sequence[str], figures: list[str] | None = None,
                           extra: Mapping | None = None) -> Outcome:
    """Judge measured vs predicted values by the worst relative error (NaN measured -> INCONCLUSIVE)."""
    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    rel = np.abs(measured - predicted) / np.abs(predicted)
    evidence = {"labels": list(labels), "measured": measured, "predicted": predicted, "relative_error": rel,
                **(extra or {})}
    if not np.all(np.isfinite(measured)):
        i = int(np.flatnonzero(~np.isfinite(measured))[0])
        return Outcome(Verdict.INCONCLUSIVE, f"{what}: {labels[i]} not reached within the step budget",
                       evidence, tol, None, None, figures or [])
    worst = int(np.argmax(rel))
    margin = tol - float(rel[worst])
    summary = f"{what}: worst relative error {rel[worst]:.2%} at {labels[worst]} (tol {tol:.0%})"
    counter = None if margin >= 0 else {"config": configs[worst % len(configs)], "label": labels[worst],
                                        "measured": float(measured[worst]), "predicted": float(predicted[worst])}
    return Outcome(Verdict.VERIFIED if margin >= 0 else Verdict.REFUTED, summary, evidence, tol, margin,
                   counter, figures or [], tracked={"max_relative_error": float(rel[worst])})


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
