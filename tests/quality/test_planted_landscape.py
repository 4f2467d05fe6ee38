"""Planted false variants of real landscape claims must come out REFUTED."""
import pytest
import torch

from verify.registry import RunContext, get
from verify.runner import run_claim

PLANTED = [
    ("landscape.theorem3.3.curvature-sign", {"sign": 1.0}, "sign flip: positive curvature at the saddle"),
    ("landscape.critical.lower-bound", {"factor": 2.0}, "wrong constant: L >= lambda_min(S_oo) rank(S_mu)"),
    ("landscape.lemma3.1.linear-rate", {"rate_factor": 2.0}, "wrong constant: twice the W-flow rate"),
    ("landscape.flow.monotone-decrease", {"dissipation_factor": 2.0}, "wrong constant: dL/dt = -2 int |grad V|^2"),
    ("landscape.saddle.plateau-log-delta", {"rate_factor": 2.0}, "wrong exponent: plateau log(1/delta) / (2|lambda|)"),
    ("landscape.saddle.noise-escapes", {"escaping_modes": ("flow", "noise")}, "swapped: plain flow leaves the saddle"),
]


@pytest.mark.parametrize("claim_id,params,why", PLANTED, ids=[f"{c}:{w}" for c, _, w in PLANTED])
def test_planted_false_claim_is_refuted(claim_id, params, why):
    ctx = RunContext(device=torch.device("cpu"), budget="quick", seed=0)
    result = run_claim(get(claim_id).variant(f"planted.{claim_id}", **params), ctx)
    assert result["verdict"] == "REFUTED", (why, result["summary"])
    assert result["counterexample"], "a refutation must name its counterexample"


def test_the_refuting_attention_check_can_also_verify():
    """landscape.attention.tracks-static is REFUTED on the real run; with a factor above the measured ratios
    (121-237) the same rows must verify, so the refutation comes from the numbers, not from the check."""
    ctx = RunContext(device=torch.device("cpu"), budget="quick", seed=0)
    claim = get("landscape.attention.tracks-static")
    assert run_claim(claim, ctx)["verdict"] == "REFUTED"
    assert run_claim(claim.variant("control.tracks-static", ratio=1e3), ctx)["verdict"] == "VERIFIED"
