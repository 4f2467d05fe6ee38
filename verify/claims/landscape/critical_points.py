"""Attention-landscape claims checked on particle measures (docs/attention_landscape.md §2-8).

Identities are checked in units of their float64 rounding bound (the ``offset`` param is the predicted value
of each defect in those units, 0 for the identity); rates and constants against a stated relative resolution;
inequalities at points where they are not tight, with the reversed inequality as the planted false claim.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp
import torch

from sims.seeds import derive
from theory.landscape import objective as al
from theory.landscape import symbolic as als
from verify.claims.landscape.common import (BASE_ASSUMPTIONS, EPS64, PAPER, config, flow_critical_point,
                                            identity_outcome, label, measures)
from verify.fits import loglog_fit
from verify.registry import Assumption, Claim, Resolution, needs_distinct, register
from verify.verdicts import Outcome, Verdict

__all__ = ["LEMMA31", "W_RATE", "LANDSCAPE", "FIRST_VARIATION", "VELOCITY", "SADDLE", "LOWER_BOUND",
           "CURVATURE", "FINITE_N"]

DOC = "docs/attention_landscape.md"
IDENTITY_TEXT = ("identity: every defect predicted 0 +- 2 of its float64 rounding bounds (the check passes at "
                 "|defect - offset * bound| <= bound)")


def _random_sweep(budget: str) -> list[dict]:
    acts = ("erf", "probit", "relu", "sigmoid", "tanh")
    reps = 1 if budget == "quick" else 4
    return [config(act, k, 6, M, seed_offset=r) for act in acts for k, M in ((2, 8), (3, 20)) for r in range(reps)]


def _rounding(cov) -> float:
    """A float64 error scale for quantities built from S_mm^{-1}: cond(S_mm) * eps * ||S||."""
    lam = torch.linalg.eigvalsh(cov.S_mm)
    scale = float(max(torch.linalg.matrix_norm(cov.S_oo), 1.0))
    return float(lam[-1] / lam[0]) * EPS64 * scale


def _symbolic(identities: dict) -> Outcome | None:
    """REFUTED when a sympy residual (k = 2; one expression or a list) does not simplify to 0, else None."""
    failed = [name for name, exprs in identities.items()
              if any(sp.simplify(e) != 0 for e in (exprs if isinstance(exprs, (list, tuple)) else [exprs]))]
    if failed:
        return Outcome(Verdict.REFUTED, f"symbolic identity failed: {failed}", {"failed": failed},
                       counterexample={"symbolic identities (k=2)": failed}, tracked={"symbolic_failures": len(failed)})
    return None


# ---------------------------------------------------------------------------------------------------
# Lemma 3.1
# ---------------------------------------------------------------------------------------------------
def _measure_lemma31(configs, ctx) -> list[dict]:
    rows = []
    for cfg in configs:
        student, teacher = measures(cfg, ctx)
        cov = al.covariances(cfg["activation"], student, teacher)
        W_star = al.optimal_W(cov)
        gen = torch.Generator().manual_seed(derive(ctx.seed, 7))
        Ws = [W_star + 0.3 * torch.randn(W_star.shape, generator=gen, dtype=W_star.dtype) for _ in range(20)]
        gap = min(float(al.loss_tf(cov, W) - al.loss_tf(cov, W_star)) for W in Ws)
        bound = 64 * _rounding(cov)
        rows.append({"grad_norm_at_W_star": float(torch.linalg.matrix_norm(al.grad_W_loss_tf(cov, W_star))),
                     "bound": bound, "min_excess_over_random_W": gap})
    return rows


def _judge_lemma31(configs, rows, params, ctx) -> Outcome:
    sym = als.landscape_symbols(2)
    failed = _symbolic({"W* stationary": list(als.W_star_stationarity(sym)),
                        "grad_W L_TF identity": list(als.grad_W_identity(sym))})
    if failed:
        return failed
    worse = [i for i, r in enumerate(rows) if r["min_excess_over_random_W"] < -r["bound"]]
    if worse:
        i = worse[0]
        return Outcome(Verdict.REFUTED, f"a perturbed W beats W* at {label(configs[i])}",
                       {"min_excess_over_random_W": rows[i]["min_excess_over_random_W"]}, rows[i]["bound"],
                       counterexample={"config": configs[i], "label": label(configs[i]), **rows[i]},
                       tracked={"min_excess_over_random_W": rows[i]["min_excess_over_random_W"]})
    return identity_outcome("||grad_W L_TF(W*)||_F = 0 and L_TF(W*) <= L_TF(W) (20 perturbed W; sympy, k=2)",
                            configs, rows, [("||grad L_TF(W*)||", "grad_norm_at_W_star", "bound")],
                            params["offset"], {"sympy_identities (k=2)": "hold",
                                               "smallest L_TF(W) - L_TF(W*)": min(r["min_excess_over_random_W"]
                                                                                   for r in rows)})


LEMMA31 = register(Claim(
    id="landscape.lemma3.1.minimizers", paper=PAPER, location=f"Lemma 3.1; {DOC} §2", provenance="stated",
    statement="W* = S_mm^{-1} minimizes L_TF(mu, .) for every mu: its gradient S_mo S_om (W S_mm - I) vanishes "
              "(to float64 rounding) and no perturbed W does better (also derived symbolically, k=2).",
    latex=r"\nabla_W L_{TF} = S_{mo}S_{om}(W S_{mm} - I) = 0 \text{ at } W^* = S_{mm}^{-1}",
    formula="theory.landscape.objective.optimal_W / grad_W_loss_tf; attention_landscape_symbolic",
    assumptions=BASE_ASSUMPTIONS, sweep=_random_sweep, measure=_measure_lemma31, judge=_judge_lemma31,
    params={"offset": 0.0},
    resolution=Resolution("offset", "absolute", 2.0, IDENTITY_TEXT.replace("every defect", "||grad L_TF(W*)||"),
                          directions=(+1,)),  # a norm: only positive predictions are meaningful
))


def _measure_w_rate(configs, ctx) -> list[dict]:
    """Iterate Euler steps of dW/dt = -grad_W L_TF and read the asymptotic decay rate of ||W - W*||.

    The error E = W - W* obeys the linear Euler map E -> E - h S_mo S_om E S_mm, i.e. the matrix
    T = I - h (S_mm (x) S_mo S_om) on vec(E).  2^j steps are taken at once by repeated squaring of T
    (log-scale kept separately so nothing underflows); the rate is read from the last doubling. Rounding of
    T (relative eps) moves the slowest mode's rate by about eps / (h lambda_min) = 2 eps cond(Hessian):
    ``rounding_bound`` is 64 eps cond(Hessian).
    """
    rows = []
    for cfg in configs:
        student, teacher = measures(cfg, ctx)
        cov = al.covariances(cfg["activation"], student, teacher)
        k = cov.S_mm.shape[0]
        P = cov.S_mo @ cov.S_om  # (k, k)
        eig_P, eig_S = torch.linalg.eigvalsh(P), torch.linalg.eigvalsh(cov.S_mm)  # (k,), (k,)
        fastest = float(eig_P[-1] * eig_S[-1])
        h = 0.5 / fastest  # a stable Euler step
        T = torch.eye(k * k, dtype=torch.float64) - h * torch.kron(cov.S_mm, P)  # (k^2, k^2) on column-major vec
        v = -al.optimal_W(cov).T.reshape(-1)  # (k^2,) vec(E_0) for W_0 = 0, column-major
        v = v / v.norm()
        log_scale, steps, rate = 0.0, 1, float("nan")
        for _ in range(48):
            w = T @ v
            rate = -(math.log(float(w.norm())) + log_scale) / (steps * h)
            v = w / w.norm()
            norm = float(torch.linalg.matrix_norm(T))
            T, log_scale, steps = (T / norm) @ (T / norm), 2 * (log_scale + math.log(norm)), 2 * steps
        rows.append({"predicted_rate": float(al.w_flow_rate(cov)), "measured_rate": rate, "step": h,
                     "euler_steps": steps // 2,
                     "rounding_bound": 64 * EPS64 * fastest / float(eig_P[0] * eig_S[0])})
    return rows


def _judge_w_rate(configs, rows, params, ctx) -> Outcome:
    """Each config's measured rate must match the Euler-corrected prediction to its own rounding bound."""
    evidence = {}
    for cfg, r in zip(configs, rows):  # an exact Euler iteration of the slowest mode decays at -ln(1 - h lam) / h
        lam = params["rate_factor"] * r["predicted_rate"]
        euler = -math.log(1 - r["step"] * lam) / r["step"]
        r.update(euler_rate=euler, relative_error=abs(r["measured_rate"] - euler) / euler)
        evidence[label(cfg)] = {k: r[k] for k in ("predicted_rate", "euler_rate", "measured_rate", "relative_error",
                                                  "rounding_bound")}
    worst = max(range(len(rows)), key=lambda i: rows[i]["relative_error"] / rows[i]["rounding_bound"])
    err, tol = rows[worst]["relative_error"], rows[worst]["rounding_bound"]
    ok = err <= tol
    return Outcome(Verdict.VERIFIED if ok else Verdict.REFUTED,
                   f"W-flow rate lambda_min(S_mo S_om) lambda_min(S_mm) vs the measured Euler decay: worst relative "
                   f"error {err:.2e} against its rounding bound {tol:.1e} at {label(configs[worst])}", evidence, tol,
                   tol - err, None if ok else {"config": configs[worst], "label": label(configs[worst]), **rows[worst]},
                   tracked={"worst_relative_error": err, "its_bound": tol, "rate_first": rows[0]["predicted_rate"]})


W_RATE = register(Claim(
    id="landscape.lemma3.1.linear-rate", paper=PAPER, location=f"Lemma 3.1; {DOC} §2", provenance="derived",
    statement="Gradient flow in W converges linearly to the minimizer set with rate lambda_min(S_mo S_om) "
              "lambda_min(S_mm): the measured asymptotic decay rate of ||W - W*|| matches it (Euler-corrected) "
              "to float64 rounding, 64 eps cond(W Hessian) relative at each config.",
    latex=r"\|W_t - W^*\| \sim e^{-\lambda_{\min}(S_{mo}S_{om})\lambda_{\min}(S_{mm}) t}",
    formula="theory.landscape.objective.w_flow_rate", assumptions=BASE_ASSUMPTIONS,
    sweep=lambda budget: [c for c in _random_sweep(budget) if c["k"] == 2],
    measure=_measure_w_rate, judge=_judge_w_rate, params={"rate_factor": 1.0},
    resolution=Resolution("rate_factor", "relative", 8e-13,
                          "rate +- 8e-13 (relative): each config passes at a relative error <= its rounding bound "
                          "64 eps cond(W Hessian); the best-conditioned one (relu, cond 27, bound 3.8e-13) detects "
                          "changes beyond twice that"),
))


# ---------------------------------------------------------------------------------------------------
# the landscape L(mu) = min_W L_TF
# ---------------------------------------------------------------------------------------------------
def _measure_landscape(configs, ctx) -> list[dict]:
    rows = []
    for cfg in configs:
        act = cfg["activation"]
        student, teacher = measures(cfg, ctx)
        cov = al.covariances(act, student, teacher)
        L, tol = float(al.landscape_loss(cov)), 64 * _rounding(cov)
        gen = torch.Generator().manual_seed(derive(ctx.seed, 11))
        k = student.a.shape[1]
        R = torch.randn(k, k, generator=gen, dtype=torch.float64) + 2 * torch.eye(k, dtype=torch.float64)
        rows.append({"L": L, "half_trace_S_oo": 0.5 * float(torch.trace(cov.S_oo)),
                     "L_TF_at_W_star_minus_L": float(al.loss_tf(cov, al.optimal_W(cov))) - L, "bound": tol,
                     "L_at_teacher": float(al.attention_landscape(act, teacher, teacher)),
                     "teacher_bound": 64 * _rounding(al.covariances(act, teacher, teacher)),
                     "L_of_R_push_minus_L": float(al.attention_landscape(act, student.push(R), teacher)) - L,
                     "invariance_bound": tol * max(1.0, float(torch.linalg.cond(R)))})
    return rows


def _judge_landscape(configs, rows, params, ctx) -> Outcome:
    sym = als.landscape_symbols(2)
    failed = _symbolic({"L = min_W L_TF (completed square)": als.completed_square_identity(sym),
                        "L = 1/2 tr(S_oo - S_om S_mm^-1 S_mo)": als.landscape_identity(sym),
                        "L(R#mu) = L(mu)": als.invariance_identity(sym)})
    if failed:
        return failed
    outside = [i for i, r in enumerate(rows) if not -r["bound"] <= r["L"] <= r["half_trace_S_oo"] + r["bound"]]
    if outside:
        i = outside[0]
        return Outcome(Verdict.REFUTED, f"L = {rows[i]['L']:.4g} outside [0, tr S_oo / 2] at {label(configs[i])}",
                       rows[i], rows[i]["bound"], counterexample={"config": configs[i], "label": label(configs[i]),
                                                                  **rows[i]}, tracked={"L": rows[i]["L"]})
    slack = min(min(r["L"], r["half_trace_S_oo"] - r["L"]) for r in rows)
    return identity_outcome("L = L_TF(W*), L(mu°) = 0, L(R#mu) = L(mu) (and 0 <= L <= tr S_oo / 2, sympy k=2)",
                            configs, rows, [("L_TF(W*) - L", "L_TF_at_W_star_minus_L", "bound"),
                                            ("L(teacher)", "L_at_teacher", "teacher_bound"),
                                            ("L(R#mu) - L", "L_of_R_push_minus_L", "invariance_bound")],
                            params["offset"], {"smallest slack of 0 <= L <= tr S_oo / 2": slack})


LANDSCAPE = register(Claim(
    id="landscape.landscape.min-over-W", paper=PAPER, location=f"eq. (3); {DOC} §3", provenance="stated",
    statement="The attention landscape L(mu) = min_W L_TF(mu, W) = 1/2 tr(S_oo - S_om S_mm^{-1} S_mo); "
              "0 <= L <= 1/2 tr S_oo, L(mu°) = 0 and L(R#mu) = L(mu) for invertible R (derived facts).",
    latex=r"L(\mu) = \min_W L_{TF}(\mu, W) = \tfrac12\operatorname{tr} S_\mu",
    formula="theory.landscape.objective.landscape_loss; attention_landscape_symbolic identities",
    assumptions=BASE_ASSUMPTIONS, sweep=_random_sweep, measure=_measure_landscape, judge=_judge_landscape,
    params={"offset": 0.0}, resolution=Resolution("offset", "absolute", 2.0, IDENTITY_TEXT),
))


# ---------------------------------------------------------------------------------------------------
# first variation and velocity
# ---------------------------------------------------------------------------------------------------
def _measure_first_variation(configs, ctx) -> list[dict]:
    """Richardson-extrapolated central differences of L((1-s) mu + s delta_theta) at s = 0 minus V(theta).

    D(s) = (L(s) - L(-s)) / (2s) has error ~ s^2 |d3L/ds3| / 6; R = (4 D(s/2) - D(s)) / 3 has error O(s^4),
    so |D(s) - D(s/2)| (the observed truncation term) plus the rounding of the differences bounds |R - V|.
    """
    rows, s = [], 1e-3
    for cfg in configs:
        act = cfg["activation"]
        student, teacher = measures(cfg, ctx)
        gen = torch.Generator().manual_seed(derive(ctx.seed, 13))
        a = torch.randn(3, student.a.shape[1], generator=gen, dtype=torch.float64)  # (3, k) probe points
        w = torch.randn(3, student.w.shape[1], generator=gen, dtype=torch.float64) / 2  # (3, d)
        V = al.first_variation(act, student, teacher, a, w)  # (3,)
        rounding = 64 * _rounding(al.covariances(act, student, teacher)) / s

        def central(dirac, step):
            Lp = al.attention_landscape(act, al.mixture(student, dirac, step), teacher)
            Lm = al.attention_landscape(act, al.mixture(student, dirac, -step), teacher)
            return float((Lp - Lm) / (2 * step))

        errors, bounds = [], []
        for i in range(3):
            dirac = al.ParticleMeasure(a[i:i + 1], w[i:i + 1])
            d1, d2 = central(dirac, s), central(dirac, s / 2)
            errors.append((4 * d2 - d1) / 3 - float(V[i]))
            bounds.append(abs(d1 - d2) + rounding)
        rows.append({"extrapolated_minus_V": errors, "bound": bounds})
    return rows


FIRST_VARIATION = register(Claim(
    id="landscape.first-variation.finite-differences", paper=PAPER, location=f"{DOC} §4",
    provenance="derived",
    statement="The first variation V(theta) = -E[sigma(w.x) a^T B_mu zeta(x)] equals the derivative of "
              "L((1-s) mu + s delta_theta) at s = 0 (Richardson-extrapolated central differences, 3 probe points).",
    latex=r"V(\theta) = \frac{d}{ds} L((1-s)\mu + s\delta_\theta)\big|_{s=0}",
    formula="theory.landscape.objective.first_variation", assumptions=BASE_ASSUMPTIONS,
    sweep=_random_sweep, measure=_measure_first_variation,
    judge=lambda configs, rows, params, ctx: identity_outcome(
        "extrapolated finite difference - V", configs, rows, [("FD - V", "extrapolated_minus_V", "bound")],
        params["offset"]),
    params={"offset": 0.0},
    resolution=Resolution("offset", "absolute", 2.0,
                          "identity: FD - V predicted 0 +- 2 bounds, each bound the observed truncation term "
                          "|D(s) - D(s/2)| plus rounding"),
))


def _measure_velocity(configs, ctx) -> list[dict]:
    rows = []
    for cfg in configs:
        act = cfg["activation"]
        student, teacher = measures(cfg, ctx)
        va, vw = al.particle_velocity(act, student, teacher)  # (M, k), (M, d)
        a = student.a.clone().requires_grad_(True)
        w = student.w.clone().requires_grad_(True)
        L = al.attention_landscape(act, al.ParticleMeasure(a, w), teacher)
        ga, gw = torch.autograd.grad(L, (a, w))
        M = a.shape[0]
        defect = torch.cat([(va + M * ga).reshape(-1), (vw + M * gw).reshape(-1)])  # (M (k + d),)
        scale = max(1.0, float(va.abs().max()), float(vw.abs().max()))
        rows.append({"velocity_plus_M_grad_extremes": [float(defect.max()), float(defect.min())],
                     "bound": 64 * _rounding(al.covariances(act, student, teacher)) * scale})
    return rows


VELOCITY = register(Claim(
    id="landscape.flow.velocity-equals-autograd", paper=PAPER, location=f"{DOC} §4", provenance="derived",
    statement="The Wasserstein flow velocity -grad_theta V(theta_i) equals -M times the autograd gradient of "
              "L(theta_1..theta_M) with respect to particle i (mean-field time), entry by entry.",
    latex=r"-\nabla_\theta V(\theta_i) = -M \nabla_{\theta_i} L(\theta_1,\dots,\theta_M)",
    formula="theory.landscape.objective.particle_velocity", assumptions=BASE_ASSUMPTIONS,
    sweep=_random_sweep, measure=_measure_velocity,
    judge=lambda configs, rows, params, ctx: identity_outcome(
        "velocity + M grad L (largest and smallest entry)", configs, rows,
        [("velocity + M grad L", "velocity_plus_M_grad_extremes", "bound")], params["offset"]),
    params={"offset": 0.0}, resolution=Resolution("offset", "absolute", 2.0, IDENTITY_TEXT),
))


# ---------------------------------------------------------------------------------------------------
# critical points: the exact strict saddle, the lower bound, Theorem 3.3
# ---------------------------------------------------------------------------------------------------
def _unexplained(cfg) -> int:
    return int(cfg.get("unexplained", 1))


def _towards_unexplained(k: int, r: int) -> torch.Tensor:
    """R = the projector on the last r outputs: the mixture direction R#mu° adds the unexplained features."""
    R = torch.zeros(k, k, dtype=torch.float64)
    R[k - r:, k - r:] = torch.eye(r, dtype=torch.float64)
    return R


def _critical_measures(cfg, ctx):
    """(student, teacher, flow info) of a critical-point config: constructed exactly, or reached by the flow."""
    if cfg["kind"] == "flow":
        return flow_critical_point(cfg, ctx)
    student, teacher = measures(cfg, ctx)
    return student, teacher, {}


_CRITICAL_ASSUMPTIONS = BASE_ASSUMPTIONS + (
    Assumption("a flow-reached critical point needs an odd activation (erf, tanh), 1 <= unexplained < k and "
               "d >= k + 1", lambda c: c.get("kind") != "flow" or (c["activation"] in ("erf", "tanh")
                                                                   and 1 <= int(c["unexplained"]) < int(c["k"])
                                                                   and int(c["d"]) >= int(c["k"]) + 1)),
)


def _saddle_sweep(budget: str) -> list[dict]:
    base = [config("erf", 2, 3, 2, "saddle"), config("erf", 3, 5, 3, "saddle", seed_offset=1),
            config("erf", 4, 7, 4, "critical", unexplained=2, seed_offset=2)]
    return base if budget == "quick" else base + [config("erf", 5, 8, 5, "saddle", seed_offset=3)]


def _measure_saddle(configs, ctx) -> list[dict]:
    rows = []
    for cfg in configs:
        student, teacher = measures(cfg, ctx)
        k = student.a.shape[1]
        cov = al.covariances("erf", student, teacher)
        V = al.first_variation("erf", student, teacher, student.a, student.w)
        R = _towards_unexplained(k, _unexplained(cfg))
        rows.append({"max_abs_V": float(V.abs().max()), "saddle_indicator": float(al.saddle_indicator(cov)),
                     "L": float(al.landscape_loss(cov)),
                     "mixture_second_derivative": float(al.mixture_second_derivative("erf", student, teacher, R)),
                     "hessian_lambda_min": float(al.hessian_min_eigenvalue("erf", student, teacher))})
    return rows


def _judge_saddle(configs, rows, params, ctx) -> Outcome:
    tol, negative = params["zero_tolerance"], params["curvature"] == "negative"
    evidence = {label(c): r for c, r in zip(configs, rows)}
    curv = [("mixture d2L", "mixture_second_derivative"), ("particle Hessian lambda_min", "hessian_lambda_min")]
    for cfg, r in zip(configs, rows):
        problems = [p for p, bad in (("V != 0", r["max_abs_V"] > tol),
                                     ("saddle indicator != 0", r["saddle_indicator"] > tol),
                                     ("L not > 0", not r["L"] > tol)) if bad]
        problems += [f"{name} = {r[key]:.4g} is not {params['curvature']}" for name, key in curv
                     if (r[key] < -tol) != negative]
        if problems:
            return Outcome(Verdict.REFUTED, f"{label(cfg)}: {', '.join(problems)}", evidence, tol,
                           counterexample={"config": cfg, "label": label(cfg), **r},
                           tracked={"mixture_d2L_max": max(r["mixture_second_derivative"] for r in rows)})
    worst_curv = max(r["mixture_second_derivative"] for r in rows)
    worst_hess = max(r["hessian_lambda_min"] for r in rows)
    return Outcome(Verdict.VERIFIED, f"critical (V = 0, indicator 0 to {tol:g}) with L > 0 and negative curvature: "
                   f"mixture d2L <= {worst_curv:.4f}, particle Hessian lambda_min <= {worst_hess:.4f}",
                   evidence, tol, -max(worst_curv, worst_hess) - tol,
                   tracked={"mixture_d2L_max": worst_curv, "hessian_lambda_min_max": worst_hess})


SADDLE = register(Claim(
    id="landscape.saddle.exact-strict-saddle", paper=PAPER, location=f"{DOC} §6; Theorem 3.3",
    provenance="derived",
    statement="The constructed measure (erf, the teacher's neurons for all but the last 1 or 2 outputs, those carried "
              "by orthogonal neurons) is a critical point: V = 0 on the support and S_mo S_mu = 0 (to 1e-12, ~4500 ulps of "
              "these O(1) quantities; our tolerance, the paper states none), with L = 1/2 "
              "sum of the unexplained E[f°_j^2] > 0, and it is a strict saddle: negative second derivative towards "
              "R#mu° (R the projector on the unexplained outputs) and a negative particle-Hessian eigenvalue.",
    latex=r"V \equiv 0,\ S_{mo}S_\mu = 0,\ \tfrac{d^2}{ds^2}L(\mu_s) < 0,\ \lambda_{\min}(\nabla^2_\theta) < 0",
    formula="theory.landscape.objective.exact_strict_saddle / orthogonal_critical_point / mixture_second_derivative "
            "/ hessian_min_eigenvalue",
    assumptions=BASE_ASSUMPTIONS, sweep=_saddle_sweep, measure=_measure_saddle, judge=_judge_saddle,
    params={"zero_tolerance": 1e-12, "curvature": "negative"},  # O(1) quantities that vanish exactly: ~4500 ulps
    resolution=Resolution("curvature", "replace", None,
                          "sign: the planted claim 'the construction is a local minimum (curvature >= 0 along the "
                          "mixture and in the particle Hessian)' must be refuted", planted="nonnegative"),
))


def _lower_bound_sweep(budget: str) -> list[dict]:
    quick = [config("erf", 2, 3, 2, "critical", unexplained=1, norms=[1.0, 1.5]),
             config("tanh", 3, 5, 3, "critical", unexplained=1, seed_offset=1),
             config("erf", 3, 6, 6, "critical", unexplained=2, norms=[0.8, 1.0, 1.3], scale=0.5, copies=2,
                    seed_offset=2),
             config("erf", 2, 4, 2, "critical", unexplained=2, norms=[1.0, 1.5], seed_offset=3),
             config("erf", 2, 4, 4, "flow", unexplained=1, norms=[1.0, 1.5], lr=0.1, steps=1500, seed_offset=4)]
    full = [config("tanh", 4, 8, 8, "critical", unexplained=3, norms=[0.6, 0.9, 1.2, 1.5], copies=2, seed_offset=5),
            config("erf", 3, 5, 6, "flow", unexplained=1, norms=[1.2, 0.8, 1.0], lr=0.1, steps=3000, seed_offset=6)]
    return quick if budget == "quick" else quick + full


def _measure_critical(configs, ctx) -> list[dict]:
    """At each critical point: L, the bounds, the criticality defects (and, reached by the flow, how far the
    mean |grad V|^2 fell), and the curvature towards the unexplained outputs."""
    rows = []
    for cfg in configs:
        act = cfg["activation"]
        student, teacher, info = _critical_measures(cfg, ctx)
        cov = al.covariances(act, student, teacher)
        V = al.first_variation(act, student, teacher, student.a, student.w)  # (M,)
        d2 = al.mixture_second_derivative(act, student, teacher, al.free_output_direction(cov))
        rows.append({"L": float(al.landscape_loss(cov)), "bound": float(al.near_critical_lower_bound(cov)),
                     "exact_critical_bound": float(al.critical_point_lower_bound(cov)),
                     "saddle_indicator": float(al.saddle_indicator(cov)), "spread_of_V": float(V.max() - V.min()),
                     "mixture_second_derivative": float(d2),
                     "S_mu_eigenvalues": [float(x) for x in torch.linalg.eigvalsh(al.schur_complement(cov))],
                     **info})
    return rows


def _flow_not_critical(configs, rows, params) -> Outcome | None:
    """INCONCLUSIVE when a flow run did not get close to a critical point (|grad V|^2 fell too little)."""
    for cfg, r in zip(configs, rows):
        if cfg["kind"] == "flow" and r["grad_sq_end"] > params["critical_drop"] * r["grad_sq_start"]:
            return Outcome(Verdict.INCONCLUSIVE, f"{label(cfg)}: the flow did not reach a critical point (mean |grad "
                           f"V|^2 fell from {r['grad_sq_start']:.2e} to {r['grad_sq_end']:.2e} only)",
                           {label(c): q for c, q in zip(configs, rows)},
                           tracked={"grad_sq_end": r["grad_sq_end"]})
    return None


def _judge_lower_bound(configs, rows, params, ctx) -> Outcome:
    """relation '>=': L >= factor * bound - rounding at every critical point; '<=' (the reversed inequality):
    L <= factor * bound + rounding at every one. The bound is the near-critical form, equal to
    1/2 lambda_min(S_oo) rank(S_mu) at the exact critical points."""
    unfinished = _flow_not_critical(configs, rows, params)
    if unfinished:
        return unfinished
    sign = 1.0 if params["relation"] == ">=" else -1.0
    slack = [sign * (r["L"] - params["factor"] * r["bound"]) for r in rows]
    worst = int(np.argmin(slack))
    tol = params["rounding"]
    evidence = {label(c): {"L": r["L"], "bound": r["bound"], "L - bound": r["L"] - r["bound"],
                           "1/2 lambda_min(S_oo) rank(S_mu)": r["exact_critical_bound"],
                           "saddle_indicator": r["saddle_indicator"]}
                for c, r in zip(configs, rows)}
    ok = slack[worst] >= -tol
    tracked = {"smallest_slack": min(r["L"] - r["bound"] for r in rows),
               "largest_slack": max(r["L"] - r["bound"] for r in rows)}
    return Outcome(Verdict.VERIFIED if ok else Verdict.REFUTED,
                   f"L {params['relation']} {params['factor']:g} x (1/2 lambda_min(S_oo) rank(S_mu)) at every critical "
                   f"point: worst margin {slack[worst]:.3e} at {label(configs[worst])}; L - bound ranges over "
                   f"[{tracked['smallest_slack']:.2e}, {tracked['largest_slack']:.2e}]",
                   evidence, tol, slack[worst] + tol,
                   None if ok else {"config": configs[worst], "label": label(configs[worst]), **rows[worst]},
                   tracked=tracked)


LOWER_BOUND = register(Claim(
    id="landscape.critical.lower-bound", paper=PAPER, location=f"Sec. 4 ('L >= r_/2'); {DOC} §5",
    provenance="derived",
    statement="At critical points with S_mo S_mu = 0 and S_mu != 0, every nonzero eigenvalue of S_mu is >= "
              "lambda_min(S_oo), so L >= 1/2 lambda_min(S_oo) rank(S_mu). Tested at exact critical points of rank "
              "1 and 2 with isotropic (tight) and anisotropic (slack) teachers, erf and tanh, and at a critical point "
              "reached by the two-timescale flow (near-critical form of the bound).",
    latex=r"L(\mu) \ge \tfrac12 \lambda_{\min}(S_{oo})\,\operatorname{rank}(S_\mu)",
    formula="theory.landscape.objective.near_critical_lower_bound / critical_point_lower_bound / "
            "orthogonal_critical_point", assumptions=_CRITICAL_ASSUMPTIONS,
    sweep=_lower_bound_sweep, measure=_measure_critical, judge=_judge_lower_bound,
    params={"relation": ">=", "factor": 1.0, "rounding": 1e-12, "critical_drop": 1e-4},
    resolution=Resolution("relation", "replace", None,
                          "inequality: the reversed 'L <= 1/2 lambda_min(S_oo) rank(S_mu)' must be refuted (the "
                          "anisotropic and flow-reached points have slack > 0); a stronger constant is refuted "
                          "at the isotropic points, where the bound is tight", planted="<="),
))


def _curvature_sweep(budget: str) -> list[dict]:
    quick = [config("tanh", 2, 4, 4, "critical", unexplained=1, copies=2, seed_offset=11),
             config("erf", 3, 6, 3, "critical", unexplained=1, norms=[0.7, 1.0, 1.4], scale=2.0, seed_offset=12),
             config("erf", 2, 4, 2, "critical", unexplained=2, seed_offset=13),
             config("erf", 2, 4, 3, "flow", unexplained=1, norms=[1.3, 1.0], lr=0.1, steps=1000, seed_offset=14)]
    full = [config("tanh", 4, 7, 4, "critical", unexplained=2, norms=[1.0, 0.5, 1.5, 1.0], seed_offset=15),
            config("erf", 5, 8, 10, "critical", unexplained=1, copies=2, seed_offset=16)]
    return quick if budget == "quick" else quick + full


def _judge_curvature(configs, rows, params, ctx) -> Outcome:
    """Theorem 3.3 in sign: d2/ds2 L(mu_s) < 0 towards R#mu° at every non-global critical point. The largest
    R_1 compatible with the measured curvature, sqrt(4 L^2 / (k |d2L|)), is reported, never checked (the paper's
    R_1 is a feature bound we could not confirm)."""
    unfinished = _flow_not_critical(configs, rows, params)
    if unfinished:
        return unfinished
    negative, tol = params["curvature"] == "negative", params["rounding"]
    evidence = {}
    for cfg, r in zip(configs, rows):
        d2, L = r["mixture_second_derivative"], r["L"]
        evidence[label(cfg)] = {"d2L": d2, "L": L, "saddle_indicator": r["saddle_indicator"],
                                "largest R_1 compatible (reported only)": math.sqrt(4 * L * L / (cfg["k"] * abs(d2)))}
    sign = -1.0 if negative else 1.0  # the predicted sign of d2L
    margins = [sign * r["mixture_second_derivative"] - (tol if negative else -tol) for r in rows]
    worst = int(np.argmin(margins))
    d2 = rows[worst]["mixture_second_derivative"]
    ok = margins[worst] > 0
    return Outcome(Verdict.VERIFIED if ok else Verdict.REFUTED,
                   f"curvature along (1-s) mu + s R#mu° is {params['curvature']} at every non-global critical point "
                   f"tested ({len(rows)}: tanh, anisotropic, all outputs unexplained, split particles, flow-reached)"
                   if ok else f"{label(configs[worst])}: d2L = {d2:.4g} is not {params['curvature']}",
                   evidence, tol, margins[worst],
                   None if ok else {"config": configs[worst], "label": label(configs[worst]), **rows[worst]},
                   tracked={"d2L_closest_to_zero": d2})


CURVATURE = register(Claim(
    id="landscape.theorem3.3.curvature-sign", paper=PAPER, location=f"Theorem 3.3; {DOC} §7",
    provenance="stated",
    statement="Non-global critical points are strict saddles: along mu_s = (1-s) mu + s R#mu°, "
              "d2/ds2 L(mu_s) <= -(4/(k R_1^2)) L(mu)^2 < 0. Checked in sign at its own critical points (tanh, "
              "anisotropic teachers, scaled and split neurons, all outputs unexplained, one reached by the flow); "
              "the largest R_1 compatible with each curvature is reported, not checked.",
    latex=r"\tfrac{d^2}{ds^2} L(\mu_s) \le -\tfrac{4}{k R_1^2} L(\mu)^2",
    formula="theory.landscape.objective.mixture_second_derivative / orthogonal_critical_point",
    assumptions=_CRITICAL_ASSUMPTIONS, sweep=_curvature_sweep, measure=_measure_critical, judge=_judge_curvature,
    params={"curvature": "negative", "rounding": 1e-12, "critical_drop": 1e-4},
    resolution=Resolution("curvature", "replace", None,
                          "sign: the planted 'non-global critical points are local minima along the mixture "
                          "(d2L >= 0)' must be refuted", planted="nonnegative"),
))


# ---------------------------------------------------------------------------------------------------
# finite prompt length
# ---------------------------------------------------------------------------------------------------
def _finite_n_sweep(budget: str) -> list[dict]:
    ns = (2, 8, 32) if budget == "quick" else (2, 4, 8, 16, 32, 64)
    prompts = 40_000 if budget == "quick" else 400_000
    return [config("erf", 2, 3, 2, "saddle", n=n, prompts=prompts, noise=0.25) for n in ns]


def _measure_finite_n(configs, ctx) -> list[dict]:
    rows = []
    for cfg in configs:
        student, teacher = measures(cfg, ctx)
        cov = al.covariances("erf", student, teacher)
        W = al.optimal_W(cov)
        n, s2 = int(cfg["n"]), float(cfg["noise"])
        exact = float(al.finite_n_loss("erf", student, teacher, W, n, noise_var=s2))
        gen = torch.Generator().manual_seed(derive(ctx.seed, n))
        mc = al.mc_finite_n_loss("erf", student, teacher, W, n, int(cfg["prompts"]), gen, noise_var=s2)
        at_infinity = float(al.loss_tf(cov, W, noise_var=s2))
        rows.append({"formula": exact, "at_n_infinity": at_infinity, "correction": exact - at_infinity,
                     "monte_carlo": float(mc.mean), "standard_error": float(mc.stderr),
                     "L": float(al.landscape_loss(cov)),
                     "noise_shift_at_n_inf": at_infinity - float(al.loss_tf(cov, W))})
    return rows


def _judge_finite_n(configs, rows, params, ctx) -> Outcome:
    """z = |L_TF + factor * correction - Monte Carlo| / its standard error <= z_max for every n (the correction is
    the formula's finite-n part); the label-noise shift at n = inf must be s^2 / 2 to rounding."""
    z_max, factor = params["z_max"], params["correction_factor"]
    for r in rows:
        r["z"] = abs(r["at_n_infinity"] + factor * r["correction"] - r["monte_carlo"]) / r["standard_error"]
    evidence = {f"n={c['n']}": r for c, r in zip(configs, rows)}
    shift_err = max(abs(r["noise_shift_at_n_inf"] - c["noise"] / 2) for c, r in zip(configs, rows))
    gaps = [r["formula"] - r["L"] - c["noise"] / 2 for c, r in zip(configs, rows)]
    evidence["log-log slope of L^n - L - s^2/2 in n (paper: |L^n - L| <~ sqrt(log k / n))"] = \
        loglog_fit([c["n"] for c in configs], gaps).slope if all(g > 0 for g in gaps) else "non-positive gap"
    worst = max(range(len(rows)), key=lambda i: rows[i]["z"])
    z = rows[worst]["z"]
    tracked = {"max_z": z, "noise_shift_error": shift_err}
    if z > z_max or shift_err > 1e-12:
        return Outcome(Verdict.REFUTED, f"finite-n formula vs sampled prompts: max |z| {z:.2f} (limit {z_max}) at "
                       f"n={configs[worst]['n']}; noise shift error {shift_err:.1e}", evidence, z_max, z_max - z,
                       counterexample={"config": configs[worst], "label": label(configs[worst]), **rows[worst]},
                       tracked=tracked)
    return Outcome(Verdict.VERIFIED, f"L^n_TF formula matches the attention model on sampled prompts (max |z| "
                   f"{z:.2f} <= {z_max}); label noise shifts L by s^2/2 at n = inf", evidence, z_max, z_max - z,
                   tracked=tracked)


FINITE_N = register(Claim(
    id="landscape.finite-n.formula-and-noise", paper=PAPER, location=f"{DOC} §8 (derived); Sec. 3 (stated bound)",
    provenance="derived",
    statement="For finite prompt length n, L^n_TF = L_TF + (1/(2n)) E||(f° h^T - S_om) W h(x_q)||^2 (+ label-noise "
              "terms) matches the attention model on sampled prompts; label noise N(0, s^2) adds s^2/2 at n = inf.",
    latex=r"L^n_{TF} = L_{TF} + \frac{1}{2n}\mathbb{E}\|(f^\circ h^\top - S_{om})W h(x_q)\|^2",
    formula="theory.landscape.objective.finite_n_loss vs mc_finite_n_loss", assumptions=BASE_ASSUMPTIONS,
    sweep=_finite_n_sweep, measure=_measure_finite_n, judge=_judge_finite_n,
    design=needs_distinct("n", 2, "the slope of the finite-n gap"),
    params={"z_max": 3.9, "correction_factor": 1.0},  # Bonferroni over <= 6 comparisons at two-sided alpha = 1e-3
    resolution=Resolution("correction_factor", "relative", 0.14,
                          "constant: the finite-n correction's factor 1/(2n) +- 14%: the z-test at z_max = 3.9 decides "
                          "at n = 2, where correction / standard error = 57 with 40 000 prompts (quick), so it "
                          "detects changes beyond 2 x 3.9 / 57 = 13.7% (about 4.5% with the full budget's 400 000)"),
))
