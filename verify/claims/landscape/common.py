"""Shared pieces of the attention-landscape claims: config dicts, assumptions, measures, judges."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from sims.landscape.config import activation_problem
from sims.landscape.flow import MeanFieldConfig, simulate
from sims.seeds import derive
from theory.landscape import objective as al
from theory.landscape.gaussian import ACTIVATIONS
from verify import limits
from verify.claims.landscape.evaluate import evaluation_floats
from verify.registry import Assumption, RunContext
from verify.claims.landscape.simulate import config_floats
from verify.verdicts import Outcome, Verdict

__all__ = ["PAPER", "BASE_ASSUMPTIONS", "EPS64", "config", "label", "measures", "identity_outcome"]

PAPER = "landscape"
EPS64 = float(np.finfo(np.float64).eps)
#: The particle Wasserstein Hessian (autograd, dense, one backward pass per row) of the saddle claims: refused
#: above 2.5e7 entries (0.2 GB, and minutes of backward passes); memory otherwise follows verify.limits.
MAX_HESSIAN_FLOATS = 25_000_000
#: Activations for which orthogonal directions give uncorrelated features under x ~ N(0, I) (odd ones).
ODD_ACTIVATIONS = ("erf", "tanh")

BASE_ASSUMPTIONS = (
    Assumption(f"activation in {', '.join(ACTIVATIONS)}", lambda c: activation_problem(c["activation"]) is None),
    Assumption("k >= 1, M >= 1", lambda c: int(c["k"]) >= 1 and int(c["M"]) >= 1),
    Assumption("d >= k (orthonormal teacher directions)", lambda c: int(c["d"]) >= int(c["k"])),
    Assumption("saddle needs an odd activation (erf) and d >= k + 1",
               lambda c: c.get("kind") != "saddle" or (c["activation"] == "erf" and int(c["d"]) >= int(c["k"]) + 1)),
    Assumption("a critical point needs an odd activation (erf, tanh), 1 <= unexplained <= k, d >= k + unexplained, "
               "M = k copies and k norms",
               lambda c: c.get("kind") != "critical" or (c["activation"] in ODD_ACTIVATIONS
                                                          and 1 <= int(c["unexplained"]) <= int(c["k"])
                                                          and int(c["d"]) >= int(c["k"]) + int(c["unexplained"])
                                                          and int(c["M"]) == int(c["k"]) * int(c.get("copies", 1))
                                                          and len(c.get("norms") or [0] * int(c["k"])) == int(c["k"]))),
    Assumption("steps and log_every, where given, are integers >= 1",
               lambda c: all(isinstance(c.get(key, 1), int) and c.get(key, 1) >= 1 for key in ("steps", "log_every"))),
    Assumption("fits in memory (verify.limits budget): the landscape of the particles and, for dynamics, the run",
               lambda c: limits.assume_floats("one config", config_floats(c) if "steps" in c else evaluation_floats(
                   int(c["M"]), int(c["k"]), int(c["k"]), int(c["d"]), c["activation"]))),
    Assumption(f"saddle claims form the particle Hessian: (M (k + d))^2 <= {MAX_HESSIAN_FLOATS:.1e} floats",
               lambda c: c.get("kind") not in ("saddle", "critical") or (int(c["M"]) * (int(c["k"]) + int(c["d"]))) ** 2
               <= MAX_HESSIAN_FLOATS),
)


def config(activation: str, k: int, d: int, M: int, kind: str = "random", **extra) -> dict:
    """A landscape config dict. ``kind``: 'random' (random student vs orthonormal teacher), 'saddle' (the exact
    strict saddle) or 'critical' (an orthogonal critical point: extra keys ``unexplained``, ``norms``,
    ``scale``, ``copies``; docs/attention_landscape.md §6)."""
    return {"activation": activation, "k": k, "d": d, "M": M, "kind": kind, **extra}


def label(cfg: Mapping) -> str:
    """A counterexample label built from the config itself (every key but the common ones spelled out)."""
    head = f"{cfg['activation']} k={cfg['k']} d={cfg['d']} M={cfg['M']} {cfg.get('kind', '')}".strip()
    rest = " ".join(f"{key}={value}" for key, value in cfg.items()
                    if key not in ("activation", "k", "d", "M", "kind"))
    return f"{head} {rest}".strip()


def measures(cfg: Mapping, ctx: RunContext) -> tuple[al.ParticleMeasure, al.ParticleMeasure]:
    """(student, teacher) for a config: deterministic in the run seed and the config's ``seed_offset``.

    random: student a ~ N(0, I_k), w ~ N(0, I_d / d) (M particles); teacher f°_j = sigma(e_j . x).
    saddle: the exact strict saddle (theory.landscape.objective.exact_strict_saddle), random frame.
    critical: theory.landscape.objective.orthogonal_critical_point, random frame
    (docs/attention_landscape.md §6).
    """
    k, d, M = int(cfg["k"]), int(cfg["d"]), int(cfg["M"])
    gen = torch.Generator().manual_seed(derive(ctx.seed, int(cfg.get("seed_offset", 0))))
    if cfg.get("kind") == "saddle":
        student, teacher = al.exact_strict_saddle(k, d, generator=gen)
    elif cfg.get("kind") == "critical":
        student, teacher = al.orthogonal_critical_point(
            k, d, int(cfg["unexplained"]), norms=cfg.get("norms"), scale=float(cfg.get("scale", 1.0)),
            copies=int(cfg.get("copies", 1)), generator=gen)
    else:
        eye = torch.eye(d, dtype=torch.float64)
        teacher = al.ParticleMeasure(k * torch.eye(k, dtype=torch.float64), eye[:k])
        student = al.ParticleMeasure(torch.randn(M, k, generator=gen, dtype=torch.float64),  # (M, k)
                                     torch.randn(M, d, generator=gen, dtype=torch.float64) / d ** 0.5)  # (M, d)
    dev = ctx.device
    return (al.ParticleMeasure(student.a.to(dev), student.w.to(dev)),
            al.ParticleMeasure(teacher.a.to(dev), teacher.w.to(dev)))


def flow_critical_point(cfg: Mapping, ctx: RunContext) -> tuple[al.ParticleMeasure, al.ParticleMeasure, dict]:
    """A critical point reached by the two-timescale flow (docs/attention_landscape.md §5).

    The teacher is that of kind 'critical' in the unit frame: f°_j = sigma(r_j e_j . x). The student's M
    particles start at a ~ N(0, I_k), w ~ N(0, I_d / d) with the coordinates of the last ``unexplained``
    teacher directions set to 0: for an odd activation that set is invariant under the flow (those outputs stay
    uncorrelated with every feature), exactly so in floating point in the unit frame (every kernel term that
    could move those coordinates is an exact 0), so the flow converges to a non-global critical point rather
    than escaping it through rounding.
    Runs ``steps`` explicit Euler steps of size ``lr`` (sims.landscape.flow.simulate). Returns (student, teacher,
    {"grad_sq_start", "grad_sq_end"}): the mean |grad V|^2 over the particles at the first and last step.
    """
    k, d, M, r = int(cfg["k"]), int(cfg["d"]), int(cfg["M"]), int(cfg["unexplained"])
    _, teacher = al.orthogonal_critical_point(k, d, r, norms=cfg.get("norms"))
    gen = torch.Generator().manual_seed(derive(ctx.seed, 1_000 + int(cfg.get("seed_offset", 0))))
    a = torch.randn(M, k, generator=gen, dtype=torch.float64)  # (M, k)
    w = torch.randn(M, d, generator=gen, dtype=torch.float64) / d ** 0.5  # (M, d)
    w[:, k - r:k] = 0.0  # no component along the unexplained teacher directions e_{k-r+1..k}
    sim = MeanFieldConfig(d=d, k=k, M=M, activation=cfg["activation"], lr=float(cfg["lr"]), steps=int(cfg["steps"]),
                          log_every=int(cfg["steps"])).validate()
    traj = simulate(sim, device=ctx.device, init=[al.ParticleMeasure(a, w)], teachers=[teacher])
    student = traj.student(0)
    dev = ctx.device
    return (al.ParticleMeasure(student.a.to(dev), student.w.to(dev)),
            al.ParticleMeasure(teacher.a.to(dev), teacher.w.to(dev)),
            {"grad_sq_start": float(traj.grad_sq[0, 0]), "grad_sq_end": float(traj.grad_sq[0, -1])})


def _pairs(row: Mapping, key: str, tol_key: str) -> list[tuple[float, float]]:
    """(defect, bound) pairs of one identity of one row: a defect may be a list, its bound a list or one number."""
    values = row[key] if isinstance(row[key], list) else [row[key]]
    tols = row[tol_key] if isinstance(row[tol_key], list) else [row[tol_key]] * len(values)
    return list(zip(values, tols))


def identity_outcome(what: str, configs: Sequence[Mapping], rows: Sequence[Mapping],
                     checks: Sequence[tuple[str, str, str]], offset: float, extra: Mapping | None = None) -> Outcome:
    """Identities checked in units of their rounding bound: for each ``(name, defect_key, tol_key)`` every
    defect of every row must satisfy |defect - offset * bound| <= bound (a defect may be a list of signed
    values, its bound a list or one number). ``offset`` is the predicted value of every defect in units of
    its bound: 0 for the identity itself; a planted variant moves it. A check that passes at
    |defect - predicted| <= bound detects every change of the prediction beyond 2 bounds (resolution 2).
    VERIFIED when all hold; REFUTED names the worst config and identity."""
    worst, where, evidence = -1.0, None, {}
    for i, (cfg, row) in enumerate(zip(configs, rows)):
        entry = {}
        for name, key, tol_key in checks:
            pairs = _pairs(row, key, tol_key)
            ratio, defect, tol = max((abs(v - offset * t) / t, v, t) for v, t in pairs)
            entry[name] = {"defect": defect, "bound": tol}
            if ratio > worst:
                worst, where = ratio, (i, name, defect, tol)
        evidence[label(cfg)] = entry
    evidence.update(extra or {})
    i, name, defect, tol = where
    ok = worst <= 1.0
    summary = (f"{what}: worst {name} {defect:.3e} vs predicted {offset * tol:.3e} (bound {tol:.1e}) at "
               f"{label(configs[i])}, over {len(rows)} configs")
    return Outcome(Verdict.VERIFIED if ok else Verdict.REFUTED, summary, evidence, float(tol),
                   float(tol - abs(defect - offset * tol)),
                   None if ok else {"config": configs[i], "label": label(configs[i]), "identity": name, **rows[i]},
                   tracked={"worst_defect": float(defect), "its_bound": float(tol)})
