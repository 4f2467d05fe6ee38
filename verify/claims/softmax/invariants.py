"""Softmax-paper claims: invariants of the dynamics (docs/softmax_dynamics.md §3) and the gradient identity (§2).

Identities are judged in units of a float64 rounding bound, ``rounding_factor * K * steps * eps * max(1, |x|)``
(an accumulated error of a few ulps per step and per summed term): the claim predicts the residual
``offset`` x bound (0), and passes when every residual lies within one bound of it.  An inequality is judged
by its worst violation against the same bound; its planted variant is the reversed inequality.
"""
from __future__ import annotations

import numpy as np
import sympy as sp
import torch

from sims.seeds import derive
from theory.softmax import closed_form as th
from verify.claims.softmax.common import (BASE_ASSUMPTIONS, DOCS, PAPER, balanced, dominant, fits_memory,
                                          is_balanced, run_sims)
from verify.registry import Assumption, Claim, Resolution, register
from verify.verdicts import Outcome, Verdict

__all__ = ["ROW_SUM", "MONOTONE", "SYMMETRY", "GRADIENT"]

EPS64 = float(np.finfo(np.float64).eps)
is_reduced = Assumption("reduced (population) dynamics", lambda c: c.get("model", "reduced") == "reduced")


def _invariant_sweep(budget: str) -> list[dict]:
    steps = 300 if budget == "quick" else 3000
    full = [dominant(4, 0.5, 100, N=16, model="full", d=6, batch=256)]
    if budget == "full":
        full.append(dominant(12, 0.7, 1000, N=24, model="full", d=16))
    return [balanced(4, steps), dominant(5, 0.6, steps), balanced(3, steps, N=8), dominant(4, 0.5, steps, N=16)] + full


def _bound(cfg, scale: float, params) -> float:
    """The float64 rounding bound of one config (steps = 1 for a single evaluation)."""
    return params["rounding_factor"] * int(cfg["K"]) * int(cfg.get("steps", 1)) * EPS64 * max(1.0, scale)


IDENTITY = Resolution("offset", "absolute", 2.0, "the identity to ±2 float64 rounding bounds (a predicted residual "
                      "offset, in units of the bound, moved by more than 2 is refuted)")


def _judge_identity(label: str):
    """Judge: every residual within one rounding bound of the predicted ``offset`` x bound (0)."""
    def judge(configs, rows, params, ctx) -> Outcome:
        bounds = [_bound(c, r["max_abs_value"], params) for c, r in zip(configs, rows)]
        off = params["offset"]
        ratios = [max(abs(r["max_residual"] / b - off), abs(r["min_residual"] / b - off)) for r, b in zip(rows, bounds)]
        worst = int(np.argmax(ratios))
        evidence = {f"residual range [{i}]": [r["min_residual"], r["max_residual"]] for i, r in enumerate(rows)}
        evidence["worst_distance_in_rounding_bounds"] = ratios[worst]
        ok = ratios[worst] <= 1.0
        summary = (f"{label}: residuals within {ratios[worst]:.3f} float64 rounding bounds of the predicted "
                   f"{off:g} bounds (worst config {worst}: [{rows[worst]['min_residual']:.2e}, "
                   f"{rows[worst]['max_residual']:.2e}], bound {bounds[worst]:.2e}), over {len(configs)} configs")
        return Outcome(Verdict.VERIFIED if ok else Verdict.REFUTED, summary, evidence, 1.0, 1.0 - ratios[worst],
                       None if ok else {"config": configs[worst], **rows[worst], "bound": bounds[worst]},
                       tracked={"worst_distance_in_rounding_bounds": ratios[worst]})
    return judge


def _residual_row(residual: torch.Tensor, scale: torch.Tensor) -> dict:
    """Signed extremes of an identity's residual and the magnitude that sets its rounding bound."""
    return {"max_residual": float(residual.max()), "min_residual": float(residual.min()),
            "max_abs_value": float(scale.abs().max())}


def _measure_row_sum(configs, ctx) -> list[dict]:
    return [_residual_row(traj.scores.sum(-1), traj.scores) for traj in run_sims(configs, ctx)]  # (T, K) row sums


ROW_SUM = register(Claim(
    id="softmax.invariant.row-sums-zero", paper=PAPER, location=f"{DOCS} §3", provenance="derived",
    statement="Every row of scores sums to zero at all times, sum_n s_{k,n}(t) = 0: reduced dynamics (N infinite "
              "or finite) and the full model with sampled w, tokens and finite N; to within one float64 rounding "
              "bound.",
    latex=r"\sum_n s_{k,n}(t) = 0", formula="softmax shift invariance: sum_n d l_k / d s_{k,n} = 0",
    assumptions=BASE_ASSUMPTIONS, sweep=_invariant_sweep, measure=_measure_row_sum,
    judge=_judge_identity("row sums"), params={"rounding_factor": 16.0, "offset": 0.0}, resolution=IDENTITY,
))

DIRECTIONS = {"non-decreasing": "max_decrease", "non-increasing": "max_increase"}  # inequality -> its violation


def _measure_monotone(configs, ctx) -> list[dict]:
    rows = []
    for traj in run_sims(configs, ctx):
        A = torch.diagonal(traj.scores, dim1=-2, dim2=-1)  # (T, K)
        step = A[1:] - A[:-1]  # (T-1, K)
        rows.append({"max_decrease": float((-step).clamp(min=0).max()), "max_increase": float(step.clamp(min=0).max()),
                     "max_abs_value": float(A.abs().max())})
    return rows


def _judge_monotone(configs, rows, params, ctx) -> Outcome:
    """The worst violation of the claimed direction must stay within one rounding bound."""
    key = DIRECTIONS[params["direction"]]
    bounds = [_bound(c, r["max_abs_value"], params) for c, r in zip(configs, rows)]
    ratios = [r[key] / b for r, b in zip(rows, bounds)]
    worst = int(np.argmax(ratios))
    evidence = {f"{key}[{i}]": r[key] for i, r in enumerate(rows)}
    evidence["worst_ratio_to_rounding_bound"] = ratios[worst]
    ok = ratios[worst] <= 1.0
    summary = (f"A_k {params['direction']}: worst violation ({key.replace('_', ' ')}) {rows[worst][key]:.2e} = "
               f"{ratios[worst]:.3f} x the float64 rounding bound, over {len(configs)} configs")
    return Outcome(Verdict.VERIFIED if ok else Verdict.REFUTED, summary, evidence, 1.0, 1.0 - ratios[worst],
                   None if ok else {"config": configs[worst], **rows[worst], "bound": bounds[worst]},
                   tracked={"worst_ratio_to_rounding_bound": ratios[worst]})


MONOTONE = register(Claim(
    id="softmax.invariant.target-score-monotone", paper=PAPER, location=f"{DOCS} §3", provenance="derived",
    statement="The target score A_k = s_{k,k} never decreases under GD on the population loss (N infinite or "
              "finite), to within one float64 rounding bound.",
    latex=r"A_k(t+1) \ge A_k(t)", formula="theory.softmax.closed_form.update_rule_exprs: A_k += eta p_k E[a_k 2 l_k] >= 0",
    assumptions=BASE_ASSUMPTIONS + (is_reduced,),
    sweep=lambda budget: [c for c in _invariant_sweep(budget) if c.get("model", "reduced") == "reduced"],
    measure=_measure_monotone, judge=_judge_monotone,
    params={"rounding_factor": 16.0, "direction": "non-decreasing"},
    resolution=Resolution("direction", "replace", None, "the direction of the inequality (reversed: A_k never "
                          "increases)", planted="non-increasing"),
))


def _measure_symmetry(configs, ctx) -> list[dict]:
    rows = []
    for cfg, traj in zip(configs, run_sims(configs, ctx)):
        K = int(cfg["K"])
        s = traj.scores  # (T, K, K)
        A = torch.diagonal(s, dim1=-2, dim2=-1)  # (T, K)
        off = ~torch.eye(K, dtype=torch.bool)
        b_residual = (s + A.unsqueeze(-1) / (K - 1))[:, off]  # (T, K(K-1)) B_{k,n} + A_k/(K-1)
        a_residual = A - A[:, :1]  # (T, K) A_k - A_1
        rows.append(_residual_row(torch.cat([b_residual, a_residual], 1), s))
    return rows


SYMMETRY = register(Claim(
    id="softmax.invariant.balanced-symmetry", paper=PAPER, location=f"{DOCS} §3", provenance="derived",
    statement="Balanced features: all target scores A_k are equal and every off-target score is B_{k,n} = -A_k/(K-1), "
              "to within one float64 rounding bound.",
    latex=r"B_{k,n} = -A_k/(K-1),\ A_1 = \dots = A_K", formula="exchangeability of balanced features",
    assumptions=BASE_ASSUMPTIONS + (is_balanced, is_reduced),
    sweep=lambda budget: [balanced(K, 300 if budget == "quick" else 3000, N=N)
                          for K, N in ((3, None), (8, None), (3, 6))],
    measure=_measure_symmetry, judge=_judge_identity("balanced symmetry"),
    params={"rounding_factor": 16.0, "offset": 0.0}, resolution=IDENTITY,
))


# ---------------------------------------------------------------------------------------------------
def _gradient_rows(K: int, seed: int, symbolic: bool) -> dict:
    """Three routes to d l_k / d s_{k,n} at random scores and weights: the signed extremes of their differences."""
    gen = torch.Generator().manual_seed(seed)
    scores = 3.0 * torch.randn(K, K, generator=gen, dtype=torch.float64)  # (K, K) rows = queries
    weights = torch.rand(K, generator=gen, dtype=torch.float64) + 0.05  # (K,) counts or probabilities
    attn = th.attention(scores, weights)  # (K, K)
    rule = th.score_gradient(attn)  # (K, K) the lambdified symbolic rule
    leaf = scores.clone().requires_grad_(True)
    losses = th.per_query_loss(th.attention(leaf, weights), torch.arange(K))  # (K,)
    auto, = torch.autograd.grad(losses.sum(), leaf)  # (K, K) row k only feeds l_k
    differences = [(rule - auto).flatten()]  # (K*K,)
    if symbolic:  # direct sympy differentiation of the loss, evaluated in plain float math
        direct = np.zeros((K, K))
        for k in range(K):
            loss, s, w = th.per_query_loss_expr(K, k)
            f = sp.lambdify((s, w), list(th.score_gradient_exprs(K, k)), modules="math")
            direct[k] = np.array(f(scores[k].tolist(), weights.tolist()), dtype=float)
        differences.append((torch.from_numpy(direct) - rule).flatten())  # (K*K,)
    return _residual_row(torch.cat(differences), auto)


def _measure_gradient(configs, ctx) -> list[dict]:
    return [_gradient_rows(int(c["K"]), derive(ctx.seed, int(c.get("seed_offset", 0))), bool(c["symbolic"]))
            for c in configs]


GRADIENT = register(Claim(
    id="softmax.gradient.symbolic-equals-autograd", paper=PAPER, location=f"{DOCS} §2", provenance="derived",
    statement="The A/B update rule (d l_k/d s_{k,k} = -a_k 2 l_k, d l_k/d s_{k,n} = a_n (a_n + a_k - S)) equals "
              "direct symbolic differentiation of the per-query loss and torch autograd, at random scores/weights, "
              "to within one float64 rounding bound (16 K eps max(1, |gradient|)).",
    latex=r"\partial l_k/\partial s_{k,n} = a_n(a_n + a_k - S) - \delta_{nk} a_k",
    formula="theory.softmax.closed_form.update_rule_exprs / score_gradient_exprs / score_gradient",
    assumptions=(Assumption("K >= 2", lambda c: int(c["K"]) >= 2),
                 fits_memory(lambda c: 8 * int(c["K"]) ** 2)),  # a handful of (K, K) matrices
    sweep=lambda budget: [{"K": K, "symbolic": K <= 5, "seed_offset": i}
                          for i, K in enumerate((2, 3, 4, 5, 8, 32) if budget == "quick" else (2, 3, 4, 5, 6, 8, 32, 128))],
    measure=_measure_gradient, judge=_judge_identity("symbolic rule == sympy diff == autograd"),
    params={"rounding_factor": 16.0, "offset": 0.0}, resolution=IDENTITY,
))
