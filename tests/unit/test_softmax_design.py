"""Softmax claims: overrides that break a sweep's design are refused with the reason, and counterexample labels
come from the refuting config itself (judged on synthetic rows: no simulation)."""
import numpy as np
import pytest
import torch

from theory.softmax import closed_form as th
from theory.errors import InputError
from verify.claims.softmax.common import balanced, dominant
from verify.cli import main
from verify.registry import RunContext, get

BROKEN = [
    ("softmax.balanced.phase1-scaling-K", {"K": 8}, "at least 3 distinct values of K"),
    ("softmax.balanced.quadratic-in-K", {"K": 8}, "at least 3 distinct values of K"),
    ("softmax.imbalanced.dominant-time-independent-of-K", {"K": 4}, "at least 3 distinct values of K"),
    ("softmax.balanced.theorem-order", {"K": 8}, "at least 3 distinct values of K"),
    ("softmax.imbalanced.stagewise-order", {"K": 10}, "at least 3 distinct values of K"),
    ("softmax.imbalanced.regime-exponents", {"K": 10}, "at least 3 distinct values of K"),
    ("softmax.balanced.phase1-scaling-eta", {"eta": 0.5}, "at least 3 distinct values of eta"),
    ("softmax.balanced.phase2-scaling-eps", {"eps": 0.01}, "at least 3 distinct values of eps"),
    ("softmax.closed-form.gd-tracks-flow", {"eta": 0.5}, "at least 3 distinct eta"),
    ("softmax.imbalanced.offtarget-rise-threshold", {"c": 0.9}, "both sides of c*"),
    ("softmax.finite-N.matches-infinite", {"N": 200}, "N = infinity reference"),
    ("softmax.finite-N.loss-floor", {"N": 6}, "at least 3 distinct N"),
    ("softmax.closed-form.full-model", {"seed_offset": 1}, "at least 3 distinct seed_offset"),
    ("softmax.full-model.tracks-reduced", {"model": "reduced"}, "exactly one reduced reference"),
]


@pytest.mark.parametrize("claim_id,overrides,reason", BROKEN, ids=[f"{c}:{o}" for c, o, _ in BROKEN])
def test_override_that_breaks_the_design_is_refused(claim_id, overrides, reason):
    with pytest.raises(InputError, match="break the sweep's design") as info:
        get(claim_id).configs("quick", overrides)
    assert reason in str(info.value)


def test_cli_refuses_a_one_point_slope_fit(capsys):
    assert main(["run", "softmax.balanced.quadratic-in-K", "--set", "K=8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at least 3 distinct values of K" in err


def test_bracket_override_that_still_straddles_is_accepted():
    configs = get("softmax.imbalanced.offtarget-rise-threshold").configs("quick", {"K": 9, "d": 16})
    assert {c["K"] for c in configs} == {9}


CTX = RunContext(device=torch.device("cpu"))


def test_threshold_labels_come_from_the_configs_c():
    """--set K=9 moves every config to K=9: whether c is above c* = 1/3 decides the label, not the sweep position."""
    claim = get("softmax.imbalanced.offtarget-rise-threshold")
    configs = claim.configs("quick", {"K": 9, "d": 16})
    curve = {"t": [0.0, 1.0], "B_other": [0.0, 0.0]}
    rows = [{"b_rise": 1e-3 if c["c"] > 1 / 3 else 0.0, "threshold": th.rise_threshold(9), "curve": curve}
            for c in configs]
    assert claim.judge(configs, rows, claim.params, CTX).verdict.value == "VERIFIED"
    wrong = next(i for i, c in enumerate(configs) if c["c"] > 1 / 3)  # the first above c*: no rise
    rows[wrong] = {**rows[wrong], "b_rise": 0.0}
    outcome = claim.judge(configs, rows, claim.params, CTX)
    assert outcome.verdict.value == "REFUTED"
    assert outcome.counterexample["config"] == configs[wrong]
    assert f"c={configs[wrong]['c']} (above" in outcome.counterexample["label"]


def test_gd_order_counterexample_is_the_series_that_fails():
    """Errors ~ eta for the balanced series and ~ eta^2 for the dominant one: the dominant configs refute."""
    claim = get("softmax.closed-form.gd-tracks-flow")
    configs = claim.configs("quick")
    rows = []
    for c in configs:
        power = 2 if c["kind"] == "dominant" else 1
        predicted = [100.0 / c["eta"]] * len(c["levels"])
        rows.append({"measured": [p * (1 + 0.01 * c["eta"] ** power) for p in predicted], "predicted": predicted,
                     "curve": {"t": [0.0, 1.0], "attn": [0.1, 0.9], "loss": [0.4, 0.1]}})
    outcome = claim.judge(configs, rows, claim.params, CTX)
    assert outcome.verdict.value == "REFUTED"
    assert {c["kind"] for c in outcome.counterexample["configs"]} == {"dominant"}
    assert outcome.counterexample["fitted_order"] == pytest.approx(2.0, abs=1e-9)


def test_full_model_counterexample_names_its_level():
    claim = get("softmax.closed-form.full-model")
    configs = claim.configs("quick")
    predicted = [10.0, 20.0, 100.0]
    curve = {"t": [0.0, 1.0], "attn": [0.4, 0.9], "loss": [0.4, 0.1]}
    rows = [{"measured": [10.1, 20.1, 100.5], "predicted": predicted, "curve": curve}]
    rows += [{"measured": [10.0 + s, 20.0 + s, 130.0 + s], "predicted": predicted, "curve": curve}
             for s in np.linspace(-0.1, 0.1, len(configs) - 1)]
    outcome = claim.judge(configs, rows, claim.params, CTX)
    assert outcome.verdict.value == "REFUTED" and outcome.counterexample["level"] == 0.9


def test_configs_of_the_helpers_carry_what_labels_need():
    assert balanced(5, 10)["kind"] == "balanced" and dominant(5, 0.5, 10)["c"] == 0.5
