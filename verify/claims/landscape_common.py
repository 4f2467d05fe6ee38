"""Shared pieces of the attention-landscape claims: config dicts, assumptions, measures, judges."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from theory import attention_landscape as al
from theory.gaussian import ACTIVATIONS
from verify.registry import Assumption, RunContext
from verify.verdicts import Outcome, Verdict

__all__ = ["PAPER", "BASE_ASSUMPTIONS", "EPS64", "config", "measures", "worst_outcome"]

PAPER = "landscape"
EPS64 = float(np.finfo(np.float64).eps)
#: Refused before anything is allocated (``--set M=...``): 1e8 float64 = 0.8 GB of particles; the particle
#: Wasserstein Hessian (autograd, dense) of the saddle claims at 2.5e7 entries = 0.2 GB.
MAX_PARTICLE_FLOATS = 100_000_000
MAX_HESSIAN_FLOATS = 25_000_000

BASE_ASSUMPTIONS = (
    Assumption("activation in erf, probit, relu, sigmoid, tanh", lambda c: c["activation"] in ACTIVATIONS),
    Assumption("k >= 1, M >= 1", lambda c: int(c["k"]) >= 1 and int(c["M"]) >= 1),
    Assumption("d >= k (orthonormal teacher directions)", lambda c: int(c["d"]) >= int(c["k"])),
    Assumption("saddle needs an odd activation (erf) and d >= k + 1",
               lambda c: c.get("kind") != "saddle" or (c["activation"] == "erf" and int(c["d"]) >= int(c["k"]) + 1)),
    Assumption(f"particles fit in memory: M (k + d) <= {MAX_PARTICLE_FLOATS:.0e} floats",
               lambda c: int(c["M"]) * (int(c["k"]) + int(c["d"])) <= MAX_PARTICLE_FLOATS),
    Assumption(f"saddle claims form the particle Hessian: (M (k + d))^2 <= {MAX_HESSIAN_FLOATS:.1e} floats",
               lambda c: c.get("kind") != "saddle" or (int(c["M"]) * (int(c["k"]) + int(c["d"]))) ** 2
               <= MAX_HESSIAN_FLOATS),
)


def config(activation: str, k: int, d: int, M: int, kind: str = "random", **extra) -> dict:
    """A landscape config dict: ``kind`` is 'random' (random student vs orthonormal teacher) or 'saddle'."""
    return {"activation": activation, "k": k, "d": d, "M": M, "kind": kind, **extra}


def measures(cfg: Mapping, ctx: RunContext) -> tuple[al.ParticleMeasure, al.ParticleMeasure]:
    """(student, teacher) for a config: deterministic in the run seed and the config's ``seed_offset``.

    random: student a ~ N(0, I_k), w ~ N(0, I_d / d) (M particles); teacher f°_j = sigma(e_j . x).
    saddle: the exact strict saddle of spec section 5 (theory.attention_landscape.exact_strict_saddle).
    """
    k, d, M = int(cfg["k"]), int(cfg["d"]), int(cfg["M"])
    gen = torch.Generator().manual_seed(ctx.seed * 1_000_003 + int(cfg.get("seed_offset", 0)))
    if cfg.get("kind") == "saddle":
        student, teacher = al.exact_strict_saddle(k, d, generator=gen)
    else:
        eye = torch.eye(d, dtype=torch.float64)
        teacher = al.ParticleMeasure(k * torch.eye(k, dtype=torch.float64), eye[:k])
        student = al.ParticleMeasure(torch.randn(M, k, generator=gen, dtype=torch.float64),  # (M, k)
                                     torch.randn(M, d, generator=gen, dtype=torch.float64) / d ** 0.5)  # (M, d)
    dev = ctx.device
    return (al.ParticleMeasure(student.a.to(dev), student.w.to(dev)),
            al.ParticleMeasure(teacher.a.to(dev), teacher.w.to(dev)))


def worst_outcome(what: str, configs: Sequence[Mapping], rows: Sequence[Mapping], key: str, tol_key: str,
                  extra: Mapping | None = None) -> Outcome:
    """VERIFIED when every row's ``key`` is within its ``tol_key``; REFUTED names the worst config."""
    ratios = [r[key] / r[tol_key] for r in rows]
    worst = int(np.argmax(ratios))
    evidence = {f"{i}: {c['activation']} k={c['k']} M={c['M']} {c.get('kind', '')}": rows[i][key]
                for i, c in enumerate(configs)}
    evidence.update(extra or {})
    ok = ratios[worst] <= 1.0
    summary = f"{what}: worst {rows[worst][key]:.3e} (tolerance {rows[worst][tol_key]:.1e}) over {len(rows)} configs"
    return Outcome(Verdict.VERIFIED if ok else Verdict.REFUTED, summary, evidence, float(rows[worst][tol_key]),
                   float(rows[worst][tol_key] - rows[worst][key]),
                   None if ok else {"config": configs[worst], **rows[worst]})
