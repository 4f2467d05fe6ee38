"""Softmax-paper claims for imbalanced features: four phases of an under-represented query, stage-wise
order, regime exponents (spec 5) and the off-target rise threshold (spec 4.4)."""
from __future__ import annotations

import numpy as np

from theory import softmax_icl as th
from verify.claims.softmax_common import (BASE_ASSUMPTIONS, PAPER, crossing_steps, dominant, is_dominant, run_sims,
                                          slope_outcome)
from verify.figures import trajectory_figure
from verify.fits import crossing_time
from verify.registry import Claim, register
from verify.verdicts import Outcome, Verdict

__all__ = ["FOUR_PHASES", "STAGEWISE", "REGIME_EXPONENTS", "RISE_THRESHOLD", "EVENTS"]

EVENTS = ("peak", "cross", "half", "eps")  # ends of regimes 1..4 of an under-represented query
UNDER, OTHER = 1, 2  # an under-represented query k and an off-target n not in {dominant 0, k}
EPS = 0.01


def _under_steps(K: int, c: float, factor: float) -> int:
    """Step budget for an under-represented query: ``factor`` x the exchangeable closed form at its p_k.

    No closed form exists for these queries (spec 4.6); the budget is a generous multiple of the
    closed-form time a query of the same p_k would need, recorded in the config.
    """
    p_k = (1 - c) / (K - 1)
    return int(factor * th.time_to_attention(th.attention_for_loss(EPS, K), K, p_k, 1.0))


def _events(traj, eps: float = EPS) -> dict:
    """Interpolated steps of the four regime ends of query UNDER, and the dominant query's convergence."""
    t = traj.t.numpy()
    b_other = traj.scores[:, UNDER, OTHER].numpy()  # (T,) B_{k,n}, n not in {1, k}
    attn = traj.attn.numpy()  # (T, K, K)
    lead = attn[:, UNDER, UNDER] - attn[:, UNDER, 0]  # (T,) Attn_k - Attn_1 (dominant) for query k
    peak = int(np.argmax(b_other))
    return {"peak": float(t[peak]) if peak < len(t) - 1 else float("nan"),
            "b_rise": float(b_other.max() - b_other[0]),
            "cross": crossing_time(t, lead, 0.0),
            "half": crossing_steps(traj, UNDER, attn_level=0.5),
            "eps": crossing_steps(traj, UNDER, eps=eps),
            "dominant_eps": crossing_steps(traj, 0, eps=eps)}


def _measure_events(configs, ctx) -> list[dict]:
    rows = []
    for cfg, traj in zip(configs, run_sims(configs, ctx)):
        row = _events(traj, float(cfg["eps"]))
        stride = max(1, len(traj.t) // 300)
        row["curve"] = {"t": traj.t[::stride].tolist(), "A": traj.scores[::stride, UNDER, UNDER].tolist(),
                        "B_dom": traj.scores[::stride, UNDER, 0].tolist(),
                        "B_other": traj.scores[::stride, UNDER, OTHER].tolist()}
        rows.append(row)
    return rows


def _phase_sweep(budget: str) -> list[dict]:
    Ks = (5, 10, 20) if budget == "quick" else (5, 10, 20, 40, 80)
    return [dominant(K, 0.6, _under_steps(K, 0.6, 1.5), eps=EPS) for K in Ks]


STAGE_EPS = 0.1  # K^2 (not the K/(eta eps) tail) dominates the gap over the swept K at this eps


def _stagewise_sweep(budget: str) -> list[dict]:
    Ks = (10, 20, 40) if budget == "quick" else (10, 20, 40, 80)
    return [dominant(K, 0.6, _under_steps(K, 0.6, 1.5), eps=STAGE_EPS) for K in Ks]


def _measure_stagewise(configs, ctx) -> list[dict]:
    rows = []
    for traj in run_sims(configs, ctx):
        row = {f"{key}@eps={eps}": crossing_steps(traj, k, eps=eps) for eps in (STAGE_EPS, EPS)
               for key, k in (("dominant", 0), ("under", UNDER))}
        rows.append(row)
    return rows


def _figure(ctx, configs, rows, name):
    panels = [{"t": r["curve"]["t"], "series": {"A_k": r["curve"]["A"], "B_{k,1}": r["curve"]["B_dom"],
                                                 "B_{k,n}": r["curve"]["B_other"]},
               "vlines": {f"end of regime {i + 1}": r[e] for i, e in enumerate(EVENTS)},
               "ylabel": f"scores of query k=2, K={c['K']}"} for c, r in list(zip(configs, rows))[:3]]
    return trajectory_figure(ctx.figure_dir, name, "under-represented query: four regimes", panels)


def _judge_order(configs, rows, params, ctx) -> Outcome:
    order = params["order"]
    figures = _figure(ctx, configs, rows, "imbalanced_four_phases")
    evidence = {f"K={c['K']}:{e}": r[e] for c, r in zip(configs, rows) for e in EVENTS}
    for cfg, r in zip(configs, rows):
        times = [r[e] for e in order]
        if not np.all(np.isfinite(times)):
            return Outcome(Verdict.INCONCLUSIVE, f"not every regime ended within the budget at K={cfg['K']}: "
                           f"{dict(zip(order, times))}", evidence, figures=figures)
        if not np.all(np.diff(times) > 0):
            return Outcome(Verdict.REFUTED, f"regime ends out of order {order} at K={cfg['K']}: "
                           f"{dict(zip(order, times))}", evidence, counterexample={"config": cfg, **dict(zip(order, times))},
                           figures=figures)
    gaps = min(float(np.min(np.diff([r[e] for e in order]))) for r in rows)
    return Outcome(Verdict.VERIFIED, f"regime ends in order {' < '.join(order)} for K = "
                   f"{', '.join(str(c['K']) for c in configs)} (smallest gap {gaps:.1f} steps)",
                   evidence, margin=gaps, figures=figures)


FOUR_PHASES = register(Claim(
    id="softmax.imbalanced.four-phases", paper=PAPER, location="abstract; spec 5", provenance="stated",
    statement="An under-represented query converges through four regimes in order: (1) B_{k,1} falls while the "
              "other B_{k,n} rise, until their peak; (2) all off-target weights fall, until Attn_k > Attn_1; "
              "(3) Attn_k rises to 1/2; (4) convergence to l_k <= eps.",
    latex=r"t_{\mathrm{peak}} < t_{\mathrm{Attn}_k > \mathrm{Attn}_1} < t_{\mathrm{Attn}_k = 1/2} < t_{l_k = \epsilon}",
    formula="operational boundaries of spec 5 (ours; the paper's exact boundaries are recalled)",
    assumptions=BASE_ASSUMPTIONS + (is_dominant,), sweep=_phase_sweep, measure=_measure_events,
    judge=_judge_order, params={"order": EVENTS},
))


def _judge_stagewise(configs, rows, params, ctx) -> Outcome:
    """Dominant first at every eps measured; the gap at STAGE_EPS must scale with the predicted exponent."""
    for cfg, row in zip(configs, rows):
        for eps in (STAGE_EPS, EPS):
            dom, under = row[f"dominant@eps={eps}"], row[f"under@eps={eps}"]
            if np.isfinite(dom) and np.isfinite(under) and not dom < under:
                return Outcome(Verdict.REFUTED, f"dominant query not first at K={cfg['K']}, eps={eps}", {},
                               counterexample={"config": cfg, **row})
    Ks = [c["K"] for c in configs]
    gaps = {eps: np.array([r[f"under@eps={eps}"] - r[f"dominant@eps={eps}"] for r in rows]) for eps in (STAGE_EPS, EPS)}
    small_eps_slopes = (np.diff(np.log(gaps[EPS])) / np.diff(np.log(Ks))).tolist()
    return slope_outcome(ctx, "stagewise_gap_vs_K", Ks, gaps[STAGE_EPS], params["predicted_slope"],
                         params["tolerance"], xlabel="K", ylabel=f"t(under) - t(dominant) to l <= {STAGE_EPS}",
                         what=f"stage-wise gap vs K (eps={STAGE_EPS})", configs=configs,
                         extra={"rows": rows, f"local slopes of the gap at eps={EPS} (K/eps tail)": small_eps_slopes})


STAGEWISE = register(Claim(
    id="softmax.imbalanced.stagewise-order", paper=PAPER, location="abstract; spec 5", provenance="stated",
    statement="Stage-wise convergence: the dominant query reaches l <= eps long before any under-represented "
              "query (checked at eps = 0.1 and 0.01), and the gap grows like K^2 (log-log slope 2, fitted at "
              "eps = 0.1 where K^2 rather than the K/(eta eps) tail dominates the swept K; eps = 0.01 slopes reported).",
    latex=r"T_{\mathrm{dom}} < T_{\mathrm{under}},\ T_{\mathrm{under}} - T_{\mathrm{dom}} = \Theta(K^2)",
    formula="order claim without a closed form: slope 2 +- 0.3 (our order tolerance for K ln K-type terms)",
    assumptions=BASE_ASSUMPTIONS + (is_dominant,), sweep=_stagewise_sweep, measure=_measure_stagewise,
    judge=_judge_stagewise, params={"predicted_slope": 2.0, "tolerance": 0.3},
))


def _regime_sweep(budget: str) -> list[dict]:
    Ks = (10, 20, 40) if budget == "quick" else (10, 20, 40, 80)
    return [dominant(K, 0.6, _under_steps(K, 0.6, 0.6), eps=EPS) for K in Ks]  # regime 3 ends well before


def _judge_regimes(configs, rows, params, ctx) -> Outcome:
    Ks = [c["K"] for c in configs]
    durations = {"regime 1": [r["peak"] for r in rows],
                 "regime 2": [r["cross"] - r["peak"] for r in rows],
                 "regime 3": [r["half"] - r["cross"] for r in rows]}
    outcomes = {name: slope_outcome(ctx, f"regime_{i + 1}_vs_K", Ks, d, params["predicted_slope"],
                                    params["tolerance"], xlabel="K", ylabel="steps", what=f"{name} duration vs K",
                                    configs=configs) for i, (name, d) in enumerate(durations.items())}
    evidence = {f"{n}: slope": o.evidence.get("fitted_slope") for n, o in outcomes.items()}
    evidence.update({f"{n}: durations": d for n, d in durations.items()})
    figures = [f for o in outcomes.values() for f in o.figures]
    firsts = [outcomes["regime 1"], outcomes["regime 2"]]
    if any(o.verdict is Verdict.INCONCLUSIVE for o in outcomes.values()):
        return Outcome(Verdict.INCONCLUSIVE, "a regime did not end within the budget", evidence, figures=figures)
    s1, s2, s3 = (o.evidence["fitted_slope"] for o in outcomes.values())
    summary = f"regime slopes in K: {s1:.2f}, {s2:.2f}, {s3:.2f} (regimes 1, 2 predicted {params['predicted_slope']} " \
              f"+- {params['tolerance']}; regime 3 slower than regime 1)"
    bad = [o for o in firsts if o.verdict is Verdict.REFUTED]
    if bad or not s3 < s1:
        return Outcome(Verdict.REFUTED, summary, evidence, params["tolerance"],
                       min(o.margin for o in firsts), {"configs": configs, "slopes": [s1, s2, s3]}, figures)
    return Outcome(Verdict.VERIFIED, summary, evidence, params["tolerance"], min(o.margin for o in firsts),
                   figures=figures, tracked={"slope_regime_1": s1, "slope_regime_2": s2, "slope_regime_3": s3})


REGIME_EXPONENTS = register(Claim(
    id="softmax.imbalanced.regime-exponents", paper=PAPER, location="spec 5 (our numerics)", provenance="derived",
    statement="Regimes 1 and 2 of an under-represented query each last about K^2/eta (slope 2 in K), while "
              "regime 3 grows more slowly than regime 1; the fitted exponents are reported as findings.",
    latex=r"\Delta t_1, \Delta t_2 \propto K^2,\ \Delta t_3 \ll K^2",
    formula="spec 5 numerics (no closed form); order tolerance +- 0.3",
    assumptions=BASE_ASSUMPTIONS + (is_dominant,), sweep=_regime_sweep, measure=_measure_events,
    judge=_judge_regimes, params={"predicted_slope": 2.0, "tolerance": 0.3},
))


# ---------------------------------------------------------------------------------------------------
def _threshold_sweep(budget: str) -> list[dict]:
    Ks = (4, 9, 16) if budget == "quick" else (4, 9, 16, 25, 49)
    rel = 0.05  # bracket: 5% below and above the symbolic threshold
    return [dominant(K, round(th.rise_threshold(K) * (1 + side * rel), 6), _under_steps(K, 0.5, 0.3),
                     side=side) for K in Ks for side in (-1, 1)]


def _measure_threshold(configs, ctx) -> list[dict]:
    return [{"b_rise": _events(traj)["b_rise"], "threshold": th.rise_threshold(int(c["K"]))}
            for c, traj in zip(configs, run_sims(configs, ctx))]


def _judge_threshold(configs, rows, params, ctx) -> Outcome:
    symbolic = str(th.rise_threshold_expr())
    floor = params["rise_floor"]
    evidence = {f"K={c['K']} c={c['c']} ({'above' if c['side'] > 0 else 'below'})": r["b_rise"]
                for c, r in zip(configs, rows)}
    evidence["symbolic_threshold"] = symbolic
    for cfg, row in zip(configs, rows):
        rises = row["b_rise"] > floor
        expected = (cfg["side"] > 0) == params["rise_above"]
        if rises != expected:
            return Outcome(Verdict.REFUTED, f"K={cfg['K']}, c={cfg['c']} ({'above' if cfg['side'] > 0 else 'below'} "
                           f"c*={row['threshold']:.4f}): max rise of B_kn {row['b_rise']:.3e}", evidence, floor,
                           counterexample={"config": cfg, **row})
    return Outcome(Verdict.VERIFIED, f"threshold c* = {symbolic} bracketed: B_kn rises just above it and never "
                   f"just below it, for K = {sorted({c['K'] for c in configs})}", evidence, floor)


RISE_THRESHOLD = register(Claim(
    id="softmax.imbalanced.offtarget-rise-threshold", paper=PAPER, location="spec 4.4", provenance="derived",
    statement="For an under-represented query, an off-target score B_{k,n} (n not dominant) first rises iff the "
              "dominant probability c exceeds the root of 2q - c^2 - (K-1)q^2 = 0, q = (1-c)/(K-1), i.e. "
              "c* = 1/sqrt(K); bracketed 5% below (no rise) and 5% above (a rise).",
    latex=r"c^* = 1/\sqrt{K}", formula="theory.softmax_icl.rise_threshold_expr (sympy solve)",
    assumptions=BASE_ASSUMPTIONS + (is_dominant,), sweep=_threshold_sweep, measure=_measure_threshold,
    judge=_judge_threshold,
    # a "rise" must exceed float64 noise of O(1) scores over the run: 1e-12
    params={"rise_above": True, "rise_floor": 1e-12},
))
