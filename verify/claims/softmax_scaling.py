"""Softmax-paper scaling claims: phase times in K, eta and eps (spec 5), checked by fitted log-log slopes.

Derived claims compare the fitted slope with the secant slope of the closed form over the same range
(so lower-order terms such as 3 K ln K are accounted for exactly); stated/recalled claims compare it with
the asymptotic exponent, with a tolerance that adds the closed form's own distance from that asymptote
over the swept range (computed from theory, not chosen; the ``asymptote`` param, which planted variants
leave alone) to a fit allowance.
"""
from __future__ import annotations

import numpy as np

from theory import softmax_icl as th
from verify.claims.softmax_common import (BASE_ASSUMPTIONS, PAPER, balanced, crossing_steps, dominant, is_balanced,
                                          is_dominant, run_sims, slope_outcome)
from verify.registry import Claim, register

__all__ = ["PHASE1_K", "QUADRATIC_K", "PHASE1_ETA", "PHASE2_EPS", "DOMINANT_K", "THEOREM_ORDER"]

FIT_ALLOWANCE = 0.05  # slope slack for GD-vs-flow discretisation and interpolation of logged crossings


def _Ks(budget: str) -> tuple[int, ...]:
    return (8, 16, 32, 64) if budget == "quick" else (8, 16, 32, 64, 128)


def _phase1_sweep(budget: str) -> list[dict]:
    return [balanced(K, int(1.15 * th.phase_times_balanced(K, 1.0, 0.01)[0])) for K in _Ks(budget)]


def _measure_time(level_key: str):
    """Measure the interpolated step where query 0 reaches ``cfg[level_key]`` (attention level or eps)."""
    def measure(configs, ctx) -> list[dict]:
        out = []
        for cfg, traj in zip(configs, run_sims(configs, ctx)):
            if level_key == "eps":
                out.append({"time": crossing_steps(traj, 0, eps=float(cfg["eps"])),
                            "phase_I_end": crossing_steps(traj, 0, attn_level=0.5)})
            else:
                out.append({"time": crossing_steps(traj, 0, attn_level=0.5)})
        return out
    return measure


def _closed_form_secant(configs, var: str, level: str = "phase1") -> float:
    """Secant log-log slope of the closed-form time over the swept values of ``var`` (derived prediction)."""
    def time(cfg):
        K, eta = int(cfg["K"]), float(cfg["eta"])
        if level == "dominant":
            return th.dominant_time(K, float(cfg["c"]), eta, float(cfg["eps"]))
        t_I, t_II = th.phase_times_balanced(K, eta, float(cfg.get("eps", 0.01)))
        return t_I if level == "phase1" else t_II - t_I
    xs = [float(c[var]) for c in configs]
    lo, hi = int(np.argmin(xs)), int(np.argmax(xs))
    return float(np.log(time(configs[hi]) / time(configs[lo])) / np.log(xs[hi] / xs[lo]))


def _slope_judge(var: str, name: str, what: str, xlabel: str, y_of=lambda r: r["time"]):
    def judge(configs, rows, params, ctx):
        predicted = params["predicted_slope"]
        if predicted == "closed-form":
            predicted = _closed_form_secant(configs, var, params["level"])
        tol = params["tolerance"]
        if tol == "asymptotic":  # distance of the exact closed form from its own asymptote, plus the fit allowance
            tol = abs(_closed_form_secant(configs, var, params["level"]) - params["asymptote"]) + FIT_ALLOWANCE
        return slope_outcome(ctx, name, [float(c[var]) for c in configs], [y_of(r) for r in rows], predicted,
                             round(tol, 4), xlabel=xlabel, ylabel="steps", what=what, configs=configs)
    return judge


PHASE1_K = register(Claim(
    id="softmax.balanced.phase1-scaling-K", paper=PAPER, location="spec 5", provenance="derived",
    statement="The balanced phase-I time (target attention reaches 1/2) grows with K as the closed form "
              "t(1/2) ~ (K^2 + 3 K ln K)/eta: the fitted log-log slope matches the closed form's secant slope.",
    latex=r"t_I(K) = \frac{K (K-1)^2}{K^2 \eta}[F(1/2) - F(1/K)] \sim (K^2 + 3K\ln K)/\eta",
    formula="theory.softmax_icl.phase_times_balanced; asymptotic_orders()['balanced.phase1']",
    assumptions=BASE_ASSUMPTIONS + (is_balanced,), sweep=_phase1_sweep, measure=_measure_time("attn"),
    judge=_slope_judge("K", "phase1_time_vs_K", "phase-I time vs K", "K"),
    params={"predicted_slope": "closed-form", "level": "phase1", "tolerance": FIT_ALLOWANCE},
))

QUADRATIC_K = register(Claim(
    id="softmax.balanced.quadratic-in-K", paper=PAPER, location="paper (reviews): 'T* depends quadratically on K'",
    provenance="stated",
    statement="The convergence time depends quadratically on the number of features K (phase I, which carries "
              "the K dependence): log-log slope 2, up to the lower-order K ln K term.",
    latex=r"T^* = \Theta(K^2)", formula="asymptotic exponent 2; tolerance = |closed-form secant - 2| + 0.05",
    assumptions=BASE_ASSUMPTIONS + (is_balanced,), sweep=_phase1_sweep, measure=_measure_time("attn"),
    judge=_slope_judge("K", "quadratic_in_K", "phase-I time vs K (quadratic?)", "K"),
    params={"predicted_slope": 2.0, "asymptote": 2.0, "level": "phase1", "tolerance": "asymptotic"},
))


def _eta_sweep(budget: str) -> list[dict]:
    etas = (0.25, 0.5, 1.0, 2.0) if budget == "quick" else (0.125, 0.25, 0.5, 1.0, 2.0)
    return [balanced(10, int(1.15 * th.phase_times_balanced(10, eta, 0.01)[0]), eta=eta) for eta in etas]


PHASE1_ETA = register(Claim(
    id="softmax.balanced.phase1-scaling-eta", paper=PAPER, location="spec 5", provenance="derived",
    statement="The balanced phase-I time scales as 1/eta (log-log slope -1 in the learning rate).",
    latex=r"t_I \propto \eta^{-1}", formula="theory.softmax_icl.time_to_attention (t proportional to 1/eta)",
    assumptions=BASE_ASSUMPTIONS + (is_balanced,), sweep=_eta_sweep, measure=_measure_time("attn"),
    judge=_slope_judge("eta", "phase1_time_vs_eta", "phase-I time vs eta", "eta"),
    params={"predicted_slope": -1.0, "level": "phase1", "tolerance": FIT_ALLOWANCE},
))


def _eps_sweep(budget: str) -> list[dict]:
    epss = (0.02, 0.01, 0.005, 0.0025) if budget == "quick" else (0.02, 0.01, 0.005, 0.0025, 0.00125, 0.000625)
    return [balanced(10, int(1.1 * th.phase_times_balanced(10, 1.0, eps)[1]), eps=eps) for eps in epss]


PHASE2_EPS = register(Claim(
    id="softmax.balanced.phase2-scaling-eps", paper=PAPER, location="spec 5", provenance="derived",
    statement="The balanced phase-II duration (attention 1/2 to l_k <= eps) scales as (K-1)/(4 eta eps): "
              "log-log slope -1 in eps, up to the closed form's finite-eps correction.",
    latex=r"t_{II} - t_I \sim \frac{K-1}{4\eta\epsilon}", formula="asymptotic_orders()['balanced.phase2']",
    assumptions=BASE_ASSUMPTIONS + (is_balanced,), sweep=_eps_sweep, measure=_measure_time("eps"),
    judge=_slope_judge("eps", "phase2_time_vs_eps", "phase-II duration vs eps", "eps",
                       y_of=lambda r: r["time"] - r["phase_I_end"]),
    params={"predicted_slope": -1.0, "asymptote": -1.0, "level": "phase2", "tolerance": "asymptotic"},
))


def _dominant_sweep(budget: str) -> list[dict]:
    Ks = (4, 8, 16, 32) if budget == "quick" else (4, 8, 16, 32, 64, 128)
    return [dominant(K, 0.5, int(1.15 * th.dominant_time(K, 0.5, 1.0, 0.01)), eps=0.01) for K in Ks]


DOMINANT_K = register(Claim(
    id="softmax.imbalanced.dominant-time-independent-of-K", paper=PAPER, location="abstract; spec 5",
    provenance="stated",
    statement="Imbalanced features: the dominant query converges in one phase, reaching l_1 <= eps after "
              "~1/(4 eta p_1 eps) steps, independent of K (log-log slope 0 in K).",
    latex=r"T_1 \sim \frac{1}{4\eta p_1 \epsilon} = O(K^0)", formula="asymptotic_orders()['dominant']",
    assumptions=BASE_ASSUMPTIONS + (is_dominant,), sweep=_dominant_sweep, measure=_measure_time("eps"),
    judge=_slope_judge("K", "dominant_time_vs_K", "dominant query time to eps vs K", "K"),
    params={"predicted_slope": 0.0, "asymptote": 0.0, "level": "dominant", "tolerance": "asymptotic"},
))


def _theorem_sweep(budget: str) -> list[dict]:
    return [balanced(K, int(1.1 * th.phase_times_balanced(K, 1.0, 0.01)[1]), eps=0.01) for K in _Ks(budget)]


def _judge_theorem(configs, rows, params, ctx):
    """O() upper bound: T*(K) / bound(K) must not grow with K (slope <= tolerance)."""
    bound = [float(th.asymptotic_orders()["balanced.theorem"][0].subs(
        {th.K: c["K"], th.eta: c["eta"], th.eps: c["eps"]})) for c in configs]
    ratio = [r["time"] / b for r, b in zip(rows, bound)]
    return slope_outcome(ctx, "theorem_order_ratio", [c["K"] for c in configs], ratio, params["predicted_slope"],
                         params["tolerance"], xlabel="K", ylabel="T* / (K^2 ln K + K/eps)",
                         what="T*/(K^2 ln K/eta + K/(eta eps)) vs K", configs=configs, upper_only=True)


THEOREM_ORDER = register(Claim(
    id="softmax.balanced.theorem-order", paper=PAPER, location="Theorem (balanced), recalled form", provenance="recalled",
    statement="Balanced convergence time T* = O(K^2 log K / eta + K/(eta eps)): the ratio of the measured T* to "
              "this bound does not grow with K.",
    latex=r"T^* = O\!\left(\frac{K^2\log K}{\eta} + \frac{K}{\eta\epsilon}\right)",
    formula="asymptotic_orders()['balanced.theorem'] (order only)",
    assumptions=BASE_ASSUMPTIONS + (is_balanced,), sweep=_theorem_sweep, measure=_measure_time("eps"),
    judge=_judge_theorem, params={"predicted_slope": 0.0, "tolerance": FIT_ALLOWANCE},
))
