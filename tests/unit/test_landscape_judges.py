"""Decision logic of landscape judges on synthetic rows (no simulation): the robust three-way verdict of the
attention-vs-static claim, the criticality gate of the flow-reached points, and the sweep designs that refuse
``--set`` overrides which break a fit."""
import math

import numpy as np
import pytest
import torch

from theory.errors import InputError
from verify.claims.landscape.dynamics import ALTERNATIVES, TRACKS_STATIC
from verify.claims.landscape.critical_points import LOWER_BOUND
from verify.registry import RunContext, get

CTX = RunContext(device=torch.device("cpu"))
T = 20


def _curve(level: float, wiggle: float = 0.0) -> list[float]:
    t = np.arange(T)
    return (np.exp(-0.2 * t) * level * np.exp(wiggle * np.sin(t))).tolist()


def _tracks_rows(gap_of):
    """One seed; static curve, two spread seeds at log-distance 0.3, every alternative at log-distance
    gap_of(name, W step) (None: the run failed)."""
    joint = []
    for name, _, _, steps in ALTERNATIVES:
        for step in steps:
            gap = gap_of(name, step)
            loss = [math.nan] * T if gap is None else _curve(math.exp(gap))
            joint.append({"alternative": name, "step": step, "loss_tf": loss, "failed_at": -1 if gap is not None
                          else 3})
    spread = [_curve(math.exp(0.3)), _curve(math.exp(-0.3))]
    row = {"time": list(range(T)), "static": _curve(1.0), "spread_static": spread, "joint": joint}
    return [{**TRACKS_STATIC.configs("quick")[0], "spread_seeds": 2}], [row]


def _judge(gap_of, **params):
    configs, rows = _tracks_rows(gap_of)
    return TRACKS_STATIC.judge(configs, rows, {**TRACKS_STATIC.params, **params}, CTX)


def test_every_optimiser_tracking_verifies():
    out = _judge(lambda name, step: 0.01 / step)
    assert out.verdict.value == "VERIFIED", out.summary


def test_no_optimiser_tracking_refutes_with_the_closest_as_counterexample():
    out = _judge(lambda name, step: 2.0 if name.startswith("natural") else 5.0)
    assert out.verdict.value == "REFUTED", out.summary
    assert out.counterexample["alternative"].startswith("natural")


def test_mixed_outcome_is_inconclusive_and_names_the_choice():
    out = _judge(lambda name, step: 0.1 if name.startswith("natural") else 5.0)
    assert out.verdict.value == "INCONCLUSIVE"
    assert "depends on the W optimiser" in out.summary and "natural" in out.summary.split("does not with")[0]


def test_a_gap_that_grows_with_the_w_step_does_not_track():
    out = _judge(lambda name, step: 0.1 * step)  # all within the spread, but wider at the larger steps
    assert out.verdict.value == "REFUTED", out.summary
    assert "grows with the W step" in out.counterexample["why"]


def test_unstable_largest_step_falls_back_to_the_largest_stable_one():
    out = _judge(lambda name, step: None if step == max(s for n, _, _, ss in ALTERNATIVES if n == name for s in ss)
                 else 0.001 / step)
    assert out.verdict.value == "VERIFIED", out.summary
    res = out.evidence["seed+0: GD (W_0 = 0)"]
    assert res["largest_stable_step"] == 0.3 and res["unstable_steps"] == [1.0]


def test_planted_offset_below_static_is_refuted_even_when_every_optimiser_tracks():
    out = _judge(lambda name, step: 0.01 / step, offset=-2.2)
    assert out.verdict.value == "REFUTED"


def test_flow_point_that_is_not_yet_critical_makes_the_bound_inconclusive():
    configs = [dict(activation="erf", k=2, d=4, M=4, kind="flow", unexplained=1)]
    rows = [{"L": 0.3, "bound": 0.2, "exact_critical_bound": 0.2, "saddle_indicator": 1e-3, "grad_sq_start": 1.0,
             "grad_sq_end": 1e-2}]
    out = LOWER_BOUND.judge(configs, rows, LOWER_BOUND.params, CTX)
    assert out.verdict.value == "INCONCLUSIVE" and "did not reach a critical point" in out.summary


@pytest.mark.parametrize("claim_id,overrides,why", [
    ("landscape.saddle.plateau-log-delta", {"delta": 1e-3}, "3 distinct delta"),
    ("landscape.flow.monotone-decrease", {"lr": 0.01}, "2 distinct values of lr"),
    ("landscape.attention.tracks-static", {"spread_seeds": 1}, "spread_seeds >= 2"),
    ("landscape.finite-n.formula-and-noise", {"n": 4}, "2 distinct values of n"),
])
def test_overrides_that_break_a_fit_are_refused(claim_id, overrides, why):
    with pytest.raises(InputError, match=why):
        get(claim_id).configs("quick", overrides)


@pytest.mark.parametrize("budget", ["quick", "full"])
def test_tracks_sweep_steps_keep_static_a_flow_and_seed0_ladder_tops_stable(budget):
    """The attention-vs-static sweep sizes its particle step per budget: over the first 40 steps of its first
    config the static loss of two seeds never rises beyond rounding, and at seed 0 every W optimiser at the top
    of its ladder keeps S_mm well conditioned (with lr = 0.1 on the full shape seed 0's loss rises by 0.39 in
    one step, and GD from W*, GD from 0 and the natural step fail at their ladder tops within 16 steps)."""
    from verify.claims.landscape.dynamics import _joint_runs, _run_batch
    cfg = {**TRACKS_STATIC.configs(budget)[0], "steps": 40, "log_every": 1}
    runs = [{"seed_offset": r, "dynamics": "two-timescale"} for r in (0, 1)]
    runs += [run for *_, run in _joint_runs(cfg, lambda steps: steps[-1:])]  # every ladder's top, seed 0
    traj = _run_batch(cfg, runs, RunContext(device=torch.device("cpu"), budget=budget))
    for i in (0, 1):
        loss = traj.loss[i].numpy()  # (41,)
        assert np.diff(loss).max() <= 64 * np.finfo(float).eps * loss.max() * len(loss), (budget, i)
    assert (traj.failed_at == -1).all(), traj.failed_at


def test_inner_rungs_run_only_for_a_ladder_with_an_unstable_end(monkeypatch):
    """The measure runs the two ends of each ladder, and the inner rungs only of an alternative whose end
    failed (here GD from W* with a top step of 30, far beyond its stable 1)."""
    from verify.claims.landscape import dynamics
    monkeypatch.setattr(dynamics, "ALTERNATIVES", (("GD (W_0 = W*)", "gd", "optimal", (0.1, 0.3, 30.0)),
                                                   ("natural gradient (W_0 = 0)", "natural", "zero", (0.05, 0.1, 0.2))))
    cfg = {**TRACKS_STATIC.configs("quick")[0], "steps": 40, "spread_seeds": 2}
    row, = TRACKS_STATIC.measure([cfg], CTX)
    ran = {(j["alternative"], j["step"]): j["failed_at"] for j in row["joint"]}
    assert sorted(ran) == [("GD (W_0 = W*)", 0.1), ("GD (W_0 = W*)", 0.3), ("GD (W_0 = W*)", 30.0),
                           ("natural gradient (W_0 = 0)", 0.05), ("natural gradient (W_0 = 0)", 0.2)]
    assert ran[("GD (W_0 = W*)", 30.0)] >= 0 and ran[("GD (W_0 = W*)", 0.3)] == -1
    assert len(row["spread_static"]) == 2
