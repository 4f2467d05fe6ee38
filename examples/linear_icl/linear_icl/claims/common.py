"""Shared pieces of the linear-ICL claims: configs, assumptions, tensors of a config, statistics, verdicts.

A config is a plain dict. Keys used across claims (each validated once, in :data:`ASSUMPTIONS`):

- ``spectrum``: eigenvalues of the training covariance Λ (d = its length); ``rotation``: 0 for Λ diagonal,
  otherwise the seed of a fixed random orthogonal basis Q (Λ = Q diag(spectrum) Q^T);
- ``N``: training prompt length; ``M``: test prompt length (None = infinitely long);
- ``test_spectrum``: eigenvalues of the test covariance Λ' (same basis; absent = Λ);
- ``task_mean``, ``task_scale``: the test task w ~ N(mean, diag(scale)^2) (absent = N(0, I));
- ``sigma``, ``eta``, ``steps``, ``init``: the structured start's scale, the step size, the number of
  steps and the counter of the seed that draws Θ; ``n``: Monte Carlo prompts.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from scipy.special import ndtri, stdtrit

from verify.plugin import Assumption, Outcome, RunContext, Verdict, derive_seed
from linear_icl import theory as th

__all__ = ["PAPER", "DOCS", "ALPHA", "CPU", "ASSUMPTIONS", "FLOW_ASSUMPTIONS", "label", "covariance", "test_covariance", "task_moments",
           "generator", "critical_z", "critical_t", "decide", "stable_step", "kappa_scale"]

PAPER = "linear"
DOCS = "examples/linear_icl/README.md"
ALPHA = 0.01  # family-wise level of every statistical check (Bonferroni over the configs it tests)
CPU = RunContext(device=torch.device("cpu"))  # judges and sweeps evaluate closed forms here, in float64


def _positive_list(cfg: Mapping, key: str) -> bool:
    values = cfg.get(key)
    if values is None:
        return True
    return (isinstance(values, (list, tuple)) and len(values) == len(cfg["spectrum"])
            and all(math.isfinite(float(v)) and float(v) > 0 for v in values))


def _optional_positive(cfg: Mapping, key: str, kind=float) -> bool:
    return key not in cfg or (cfg[key] is not None and kind(cfg[key]) == cfg[key] and cfg[key] > 0)


ASSUMPTIONS = (
    Assumption("spectrum: a non-empty list of positive eigenvalues of Λ", lambda c: len(c["spectrum"]) >= 1
               and _positive_list(c, "spectrum")),
    Assumption("rotation: an integer >= 0 (0 = Λ diagonal)", lambda c: int(c.get("rotation", 0)) == c.get("rotation", 0)
               and c.get("rotation", 0) >= 0),
    Assumption("N: an integer >= 1", lambda c: _optional_positive(c, "N", int)),
    Assumption("M: an integer >= 1 or null (an infinitely long test prompt)",
               lambda c: c.get("M") is None or _optional_positive(c, "M", int)),
    Assumption("test_spectrum: positive, one per eigenvalue of Λ", lambda c: _positive_list(c, "test_spectrum")),
    Assumption("task_scale: positive, one per dimension", lambda c: _positive_list(c, "task_scale")),
    Assumption("task_mean: one finite entry per dimension", lambda c: "task_mean" not in c or (
        len(c["task_mean"]) == len(c["spectrum"]) and all(math.isfinite(float(v)) for v in c["task_mean"]))),
    Assumption("sigma, eta > 0; steps, n, init integers (steps, n >= 1)", lambda c: all(
        _optional_positive(c, key) for key in ("sigma", "eta")) and all(
        _optional_positive(c, key, int) for key in ("steps", "n")) and int(c.get("init", 0)) == c.get("init", 0)),
)


def _hessian_max(cfg: Mapping) -> float:
    return float(torch.linalg.eigvalsh(th.reduced_hessian(covariance(cfg, CPU), int(cfg["N"]))).max())


FLOW_ASSUMPTIONS = ASSUMPTIONS + (
    Assumption("eta < 1/μ_max, μ_max the largest Hessian eigenvalue of the reduced loss at the limit (stable, "
               "monotone Euler steps)", lambda c: float(c["eta"]) * _hessian_max(c) < 1),
)


def _fmt(values: Sequence) -> str:
    return ",".join(f"{float(v):g}" for v in values)


def label(cfg: Mapping) -> str:
    """A short name of a config, built from the config itself (counterexamples carry it)."""
    parts = [f"Λ=diag({_fmt(cfg['spectrum'])})" + (f" rot{cfg['rotation']}" if cfg.get("rotation") else "")]
    if "N" in cfg:
        parts.append(f"N={cfg['N']}")
    if "M" in cfg:
        parts.append("M=inf" if cfg["M"] is None else f"M={cfg['M']}")
    if "test_spectrum" in cfg:
        parts.append(f"Λ'=diag({_fmt(cfg['test_spectrum'])})")
    if "task_mean" in cfg or "task_scale" in cfg:
        parts.append(f"w~N(({_fmt(cfg.get('task_mean', [0] * len(cfg['spectrum'])))}),"
                     f"diag({_fmt(cfg.get('task_scale', [1] * len(cfg['spectrum'])))})^2)")
    for key in ("sigma", "eta"):
        if key in cfg:
            parts.append(f"{key}={cfg[key]:g}")
    return " ".join(parts)


def _basis(cfg: Mapping, ctx: RunContext) -> torch.Tensor:
    """Q (d, d): the identity, or a fixed random orthogonal matrix (seeded by the config, not the run)."""
    d = len(cfg["spectrum"])
    if not cfg.get("rotation"):
        return torch.eye(d, dtype=ctx.dtype, device=ctx.device)
    gen = torch.Generator().manual_seed(int(cfg["rotation"]))
    Q, R = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return (Q * torch.sign(torch.diagonal(R))).to(ctx.dtype).to(ctx.device)


def _in_basis(cfg: Mapping, ctx: RunContext, values: Sequence) -> torch.Tensor:
    Q = _basis(cfg, ctx)
    return (Q * torch.tensor([float(v) for v in values], dtype=ctx.dtype, device=ctx.device)) @ Q.T  # (d, d)


def covariance(cfg: Mapping, ctx: RunContext) -> torch.Tensor:
    """Λ (d, d) of a config."""
    return _in_basis(cfg, ctx, cfg["spectrum"])


def test_covariance(cfg: Mapping, ctx: RunContext) -> torch.Tensor:
    """Λ' (d, d): the test covariance (Λ when the config has no covariate shift)."""
    return _in_basis(cfg, ctx, cfg.get("test_spectrum", cfg["spectrum"]))


def task_moments(cfg: Mapping, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The test task's mean (d,), the Cholesky factor of its covariance (d, d) and S = E[w w^T] (d, d),
    all in Λ's basis (the scale is diagonal in that basis)."""
    d = len(cfg["spectrum"])
    Q = _basis(cfg, ctx)
    mean = Q @ torch.tensor([float(v) for v in cfg.get("task_mean", [0.0] * d)], dtype=ctx.dtype, device=ctx.device)
    chol = Q * torch.tensor([float(v) for v in cfg.get("task_scale", [1.0] * d)], dtype=ctx.dtype, device=ctx.device)
    return mean, chol, chol @ chol.T + torch.outer(mean, mean)


def generator(ctx: RunContext, counter: int) -> torch.Generator:
    """The generator of one config's random numbers: seed ``derive_seed(run seed, counter)`` on the run's device."""
    return torch.Generator(device=ctx.device).manual_seed(derive_seed(ctx.seed, counter))


def critical_z(count: int, alpha: float = ALPHA) -> float:
    """Two-sided normal critical value at family-wise level ``alpha`` over ``count`` tests (Bonferroni)."""
    return float(ndtri(1 - alpha / (2 * count)))


def critical_t(count: int, dof: int, alpha: float = ALPHA) -> float:
    """Two-sided Student-t critical value with ``dof`` degrees of freedom, Bonferroni over ``count`` tests."""
    return float(stdtrit(dof, 1 - alpha / (2 * count)))


def stable_step(cfg: Mapping, fraction: float = 0.5) -> float:
    """A step size ``fraction / μ_max`` of the reduced loss's Hessian at the flow limit (Euler is stable
    near the limit for fractions below 2)."""
    return fraction / _hessian_max(cfg)


def kappa_scale(lam: torch.Tensor, N) -> torch.Tensor:
    """||∂Γ_κ^{-1}/∂κ||_F = ||Γ^{-1} (tr Λ / N) Γ^{-1}||_F with Γ_κ = (1 + 1/N) Λ + (κ/N) tr(Λ) I at κ = 1:
    a distance from Γ_κ^{-1} divided by it is, to first order, a distance in κ."""
    G = th.minimiser(lam, N)
    return torch.linalg.matrix_norm(G @ G) * lam.diagonal(dim1=-2, dim2=-1).sum(-1) / N


def decide(checks: Mapping[str, float], summary: str, evidence: dict, tracked: dict, tolerance,
           counterexample: dict | None, figures: list[str] | None = None, inconclusive: str | None = None) -> Outcome:
    """VERIFIED when every check's margin is >= 0, REFUTED (naming the failed checks and the counterexample)
    otherwise; INCONCLUSIVE with the reason when ``inconclusive`` is given and nothing refutes."""
    failed = [name for name, m in checks.items() if not m >= 0]
    margin = min(checks.values())
    evidence = {**evidence, **{f"margin_{name}": m for name, m in checks.items()}}
    if failed:
        return Outcome(Verdict.REFUTED, f"{summary} — fails: {', '.join(failed)}", evidence, tolerance, margin,
                       {"failed_checks": failed, **(counterexample or {})}, figures or [], tracked)
    if inconclusive:
        return Outcome(Verdict.INCONCLUSIVE, f"{summary} — {inconclusive}", evidence, tolerance, margin,
                       None, figures or [], tracked)
    return Outcome(Verdict.VERIFIED, summary, evidence, tolerance, margin, None, figures or [], tracked)
