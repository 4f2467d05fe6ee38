"""A claim file as an auditor writes it (docs/plugins.md): its own paper and one claim, public API only."""
from verify.plugin import Claim, Outcome, Paper, Resolution, Verdict, register, register_paper

register_paper(Paper(id="note", title="An auditor's note", reference="unpublished"))


def _measure(configs, ctx):
    return [{"ratio": cfg["n"] / (cfg["n"] + 1.0)} for cfg in configs]  # approaches 1 like 1 - 1/n


def _judge(configs, rows, params, ctx):
    worst = max(range(len(rows)), key=lambda i: abs(rows[i]["ratio"] - params["limit"]))
    error = abs(rows[worst]["ratio"] - params["limit"])
    tol = 0.05
    ok = error <= tol
    return Outcome(Verdict.VERIFIED if ok else Verdict.REFUTED, f"ratio within {error:.3f} of {params['limit']}",
                   {"errors": [abs(r["ratio"] - params["limit"]) for r in rows]}, tol, tol - error,
                   None if ok else {"config": configs[worst], "ratio": rows[worst]["ratio"]},
                   tracked={"worst_error": error})


register(Claim(
    id="note.ratio-near-one", paper="note", location="the note, eq. 1", provenance="stated",
    statement="n/(n+1) is within 0.05 of 1 for n >= 20", latex=r"n/(n+1) \approx 1", formula="n/(n+1)",
    assumptions=(), sweep=lambda budget: [{"n": n} for n in (20, 40, 80)], measure=_measure, judge=_judge,
    params={"limit": 1.0}, resolution=Resolution("limit", "absolute", 0.1, "limit ± 0.1")))
