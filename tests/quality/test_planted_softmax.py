"""Planted false variants of real softmax claims, far beyond their resolution, must come out REFUTED with a
counterexample, and the real claims they are built from must be VERIFIED (a check that cannot fail, or that
cannot pass, is a defect).

Each variant judges the real claim's quick measurement with one prediction changed: a wrong exponent or
order, a swapped order of events, a reversed inequality, a moved threshold, constant or identity offset.
Each claim is measured once and judged with its real and its planted params (planted params never reach
``measure``).
"""
import functools

import pytest
import torch

from verify.registry import RunContext, get
from verify.runner import measure_rows

PLANTED = [
    ("softmax.balanced.quadratic-in-K", {"exponent": 1.0}, "phase-I time linear in K"),
    ("softmax.balanced.quadratic-in-K", {"exponent": 1.5}, "phase-I time ~ K^1.5"),
    ("softmax.balanced.quadratic-in-K", {"exponent": 3.0}, "phase-I time cubic in K"),
    ("softmax.balanced.phase1-scaling-K", {"slope_offset": 0.3}, "slope 0.3 steeper than the closed form"),
    ("softmax.balanced.phase1-scaling-eta", {"exponent": -2.0}, "wrong exponent in eta"),
    ("softmax.balanced.phase1-scaling-eta", {"exponent": 1.0}, "sign flip of the eta exponent"),
    ("softmax.balanced.phase2-scaling-eps", {"exponent": -0.5}, "wrong exponent in eps"),
    ("softmax.balanced.phase2-scaling-eps", {"exponent": 1.0}, "phase II ~ eps^+1"),
    ("softmax.imbalanced.dominant-time-independent-of-K", {"exponent": 1.0}, "dominant time linear in K"),
    ("softmax.imbalanced.dominant-time-independent-of-K", {"exponent": 2.0}, "dominant time quadratic in K"),
    ("softmax.balanced.theorem-order", {"bound_K_exponent": 1.0}, "T* = O(K log K + K/eps): too strong"),
    ("softmax.balanced.two-phases", {"order": ("II", "I")}, "swapped phase order"),
    ("softmax.imbalanced.four-phases", {"order": ("cross", "peak", "half", "eps")}, "swapped regimes 1 and 2"),
    ("softmax.imbalanced.stagewise-order", {"predicted_slope": 1.0}, "gap linear in K"),
    ("softmax.imbalanced.stagewise-order", {"predicted_slope": 3.0}, "gap cubic in K"),
    ("softmax.imbalanced.regime-exponents", {"predicted_slope": 1.0}, "regimes 1, 2 linear in K"),
    ("softmax.imbalanced.offtarget-rise-threshold", {"rise_above": False}, "sign flip: rise below the threshold"),
    ("softmax.imbalanced.offtarget-rise-threshold", {"threshold_scale": 1.2}, "threshold 20% higher"),
    ("softmax.imbalanced.offtarget-rise-threshold", {"threshold_scale": 0.8}, "threshold 20% lower"),
    ("softmax.closed-form.gd-tracks-flow", {"order": 2.0}, "GD error of order eta^2"),
    ("softmax.closed-form.gd-tracks-flow", {"order": 0.5}, "GD error of order eta^1/2"),
    ("softmax.closed-form.full-model", {"time_scale": 1.5}, "full model 1.5x slower than t(a)"),
    ("softmax.convergence.attention-to-target", {"limit": 0.01}, "loss converges to 0.01, not 0"),
    ("softmax.full-model.tracks-reduced", {"scale": 1.05}, "full model 5% ahead of the reduced dynamics"),
    ("softmax.finite-N.matches-infinite", {"order": 2.0}, "deviation from N = infinity ~ 1/N^2"),
    ("softmax.finite-N.matches-infinite", {"order": 0.5}, "deviation from N = infinity ~ 1/sqrt(N)"),
    ("softmax.finite-N.loss-floor", {"rate_scale": 0.5}, "floor of order (1 - p_k)^(N/2)"),
    ("softmax.invariant.row-sums-zero", {"offset": 5.0}, "row sums 5 rounding bounds off zero"),
    ("softmax.invariant.target-score-monotone", {"direction": "non-increasing"}, "reversed inequality"),
    ("softmax.invariant.balanced-symmetry", {"offset": -5.0}, "B + A/(K-1) 5 rounding bounds below zero"),
    ("softmax.gradient.symbolic-equals-autograd", {"offset": 3.0}, "routes 3 rounding bounds apart"),
]
CLAIMS = sorted({claim_id for claim_id, _, _ in PLANTED})


@functools.lru_cache(maxsize=None)
def _measured(claim_id: str):
    """(claim, configs, rows, ctx) of one claim's quick sweep, measured once per test session."""
    ctx = RunContext(device=torch.device("cpu"), budget="quick", seed=0)
    claim = get(claim_id)
    configs = claim.configs(ctx.budget)
    return claim, configs, measure_rows(claim.measure, configs, ctx), ctx


@pytest.mark.parametrize("claim_id", CLAIMS)
def test_real_claim_is_verified(claim_id):
    claim, configs, rows, ctx = _measured(claim_id)
    outcome = claim.judge(configs, rows, claim.params, ctx)
    assert outcome.verdict.value == "VERIFIED", outcome.summary


@pytest.mark.parametrize("claim_id,params,why", PLANTED, ids=[f"{c}:{w}" for c, _, w in PLANTED])
def test_planted_false_claim_is_refuted(claim_id, params, why):
    claim, configs, rows, ctx = _measured(claim_id)
    outcome = claim.judge(configs, rows, {**claim.params, **params}, ctx)
    assert outcome.verdict.value == "REFUTED", (why, outcome.summary)
    assert outcome.counterexample, "a refutation must name its counterexample"
