"""Planted false variants of real softmax claims must come out REFUTED (a check that cannot fail is a defect).

Each variant runs the real claim's measurement and judge with one prediction changed: a wrong exponent,
a swapped phase order, or a flipped sign.
"""
import pytest
import torch

from verify.registry import RunContext, get
from verify.runner import run_claim

PLANTED = [
    ("softmax.balanced.phase1-scaling-K", {"predicted_slope": 1.0}, "wrong exponent (K^1 instead of the closed form)"),
    ("softmax.balanced.quadratic-in-K", {"predicted_slope": 3.0}, "wrong exponent (cubic in K)"),
    ("softmax.balanced.phase1-scaling-eta", {"predicted_slope": -2.0}, "wrong exponent in eta"),
    ("softmax.balanced.phase1-scaling-eta", {"predicted_slope": 1.0}, "sign flip of the eta exponent"),
    ("softmax.balanced.phase2-scaling-eps", {"predicted_slope": -0.5}, "wrong exponent in eps"),
    ("softmax.balanced.two-phases", {"order": ("II", "I")}, "swapped phase order"),
    ("softmax.imbalanced.four-phases", {"order": ("cross", "peak", "half", "eps")}, "swapped regimes 1 and 2"),
    ("softmax.imbalanced.offtarget-rise-threshold", {"rise_above": False}, "sign flip: rise below the threshold"),
    ("softmax.imbalanced.dominant-time-independent-of-K", {"predicted_slope": 2.0}, "dominant time quadratic in K"),
]


@pytest.mark.parametrize("claim_id,params,why", PLANTED, ids=[f"{c}:{w}" for c, _, w in PLANTED])
def test_planted_false_claim_is_refuted(claim_id, params, why):
    ctx = RunContext(device=torch.device("cpu"), budget="quick", seed=0)
    planted = get(claim_id).variant(f"planted.{claim_id}", **params)
    result = run_claim(planted, ctx)
    assert result["verdict"] == "REFUTED", (why, result["summary"])
    assert result["counterexample"], "a refutation must name its counterexample"
