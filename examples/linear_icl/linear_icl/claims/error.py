"""Prediction-error claims: the closed form at any test length M, and its order in N (README.md §5)."""
from __future__ import annotations

from verify.plugin import Claim, Resolution, needs_distinct, register
from linear_icl.claims.common import ASSUMPTIONS, DOCS, PAPER, decide
from linear_icl.claims.montecarlo import mc_rows, order_design, order_judge, tie, tie_inconclusive

__all__ = ["TEST_LENGTH", "ORDER_IN_N"]

TIE_TOLERANCE = 0.05  # relative: the Monte Carlo sizes below resolve it at α = 0.01 (else INCONCLUSIVE)


def _judge_test_length(configs, rows, params, ctx):
    factor, tol = float(params["error_factor"]), float(params["tolerance"])
    t = tie(configs, rows, factor, tol)
    w = t["worst"]
    summary = (f"MC error of the trained layer vs {factor:g} × closed form R(N, M, Λ): worst relative error "
               f"{t['relative_error'][w]:.3f} at {t['labels'][w]} (tolerance {tol:g}; MC resolves "
               f"±{max(t['resolvable']):.3f})")
    counter = {"config": configs[w], "label": t["labels"][w], "measured": t["measured"][w], "se": t["se"][w],
               "predicted": t["predicted"][w]}
    return decide({"closed_form": t["margin"]}, summary, t, {"max_relative_error": t["relative_error"][w]}, tol,
                  counter, inconclusive=tie_inconclusive(t, tol))


def _test_length_sweep(budget: str) -> list[dict]:
    cases = [([1, 1, 1], 0, 10, 10), ([1, 2, 4], 1, 10, 3), ([1, 2, 4], 1, 10, 30), ([1, 2, 4], 1, 10, None)]
    if budget == "full":
        cases += [([0.5, 1, 2], 2, 4, 16), ([1, 3], 3, 40, 5), ([1, 1, 1, 1, 1], 0, 5, 50)]
    # n: Monte Carlo prompts, enough that z × SE stays near 0.035 (relative SD of the squared error 2-4)
    return [{"spectrum": s, "rotation": r, "N": N, "M": M, "n": (120000 if M is not None and M < 5 else 60000)
             * (1 if budget == "quick" else 3), "init": i} for i, (s, r, N, M) in enumerate(cases)]


TEST_LENGTH = register(Claim(
    id="linear.error.test-length", paper=PAPER, location=f"prediction-error theorem (recalled form); {DOCS} §5",
    provenance="derived",
    statement="The trained layer's prediction error on test prompts of length M (any M, also M != N and M = ∞) "
              "is R = Σ_k λ_k (1 - λ_k/γ_k)^2 + (1/M) Σ_k λ_k^2 (λ_k + tr Λ)/γ_k^2, γ_k the eigenvalues of Γ: "
              "Monte Carlo over sampled prompts matches it.",
    latex=r"\mathbb E(\hat y - y)^2 = \sum_k \lambda_k\Big(1-\frac{\lambda_k}{\gamma_k}\Big)^2 + \frac1M\sum_k "
          r"\frac{\lambda_k^2(\lambda_k + \operatorname{tr}\Lambda)}{\gamma_k^2}",
    formula="linear_icl.theory.risk(Γ^{-1}, Λ, I, M); linear_icl.sims.mc_error",
    assumptions=ASSUMPTIONS, sweep=_test_length_sweep, measure=mc_rows, judge=_judge_test_length,
    params={"error_factor": 1.0, "tolerance": TIE_TOLERANCE},
    resolution=Resolution("error_factor", "relative", 2 * TIE_TOLERANCE,
                          f"the error to ±{2 * TIE_TOLERANCE:g} (relative): the MC must match within "
                          f"{TIE_TOLERANCE:g}, which it resolves at α = 0.01 (Bonferroni; else INCONCLUSIVE)"),
    design=needs_distinct("M", 3, "a check across test lengths"),
))


def _order_sweep(budget: str) -> list[dict]:
    Ns = (4, 8, 16, 32) if budget == "quick" else (4, 8, 16, 32, 64, 128)
    return [{"spectrum": [1, 2, 4], "rotation": 1, "N": N, "M": None, "n": 40000, "init": 20 + i}
            for i, N in enumerate(Ns)]


ORDER_IN_N = register(Claim(
    id="linear.error.order-in-N", paper=PAPER, location=f"{DOCS} §5", provenance="derived",
    statement="On long test prompts (M -> ∞) the trained layer's error decays like N^-2 in the training prompt "
              "length: the closed form's local log-log slope tends to -2 (sympy limit), and Monte Carlo matches the "
              "closed form along the sweep.",
    latex=r"R(N, M = \infty) = \sum_k \lambda_k \Big(\frac{\lambda_k + \operatorname{tr}\Lambda}{(N+1)\lambda_k + "
          r"\operatorname{tr}\Lambda}\Big)^2 = \Theta(N^{-2})",
    formula="linear_icl.theory.error_expr(M=None), asymptotic_loglog_slope",
    assumptions=ASSUMPTIONS, sweep=_order_sweep, measure=mc_rows,
    judge=order_judge("N", "long-prompt error vs N"),
    params={"exponent": -2.0, "exponent_tolerance": 0.05, "tie_tolerance": TIE_TOLERANCE},
    resolution=Resolution("exponent", "absolute", 0.1,
                          "the exponent ± 0.1: it must match the closed form's exact asymptotic slope within 0.05"),
    design=order_design(None),
))
