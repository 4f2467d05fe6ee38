"""Closed forms for one linear self-attention (LSA) layer on linear-regression prompts (README.md §1-§5).

Setting: covariates x_1..x_M, x_q ~ N(0, Λ) in R^d, a task w independent of them with E[w w^T] = S
(S = I_d in training), labels y_i = <w, x_i>. The statistic the layer uses is h = (1/M) Σ_i y_i x_i and
the reduced prediction is yhat = x_q^T G h (README.md §1: the full LSA's prediction is exactly this plus
a part even in w, which the structured initialisation keeps at zero).

Numeric functions take torch tensors and broadcast over leading batch axes (``...``); ``M = None`` means
an infinitely long prompt (h = Λ S-weighted population value, h = Λ w). Symbolic twins (sympy) serve the
asymptotic checks. Provenance is given per function: *recalled* = the paper's statement as we recall it,
*derived* = our own derivation (README.md).
"""
from __future__ import annotations

from typing import Sequence

import sympy as sp
import torch

__all__ = ["gamma", "fourth_moment", "h_second_moment", "risk", "risk_gradient", "minimiser", "reduced_loss",
           "reduced_gradients", "flow_limit", "reduced_hessian", "euler_contraction", "N_SYMBOL",
           "error_expr", "asymptotic_loglog_slope"]

N_SYMBOL = sp.Symbol("N", positive=True)


def _eye_like(lam: torch.Tensor) -> torch.Tensor:
    return torch.eye(lam.shape[-1], dtype=lam.dtype, device=lam.device).expand_as(lam)


def _trace(A: torch.Tensor) -> torch.Tensor:
    return A.diagonal(dim1=-2, dim2=-1).sum(-1)


def gamma(lam: torch.Tensor, N) -> torch.Tensor:
    """Γ = (1 + 1/N) Λ + (1/N) tr(Λ) I_d.   lam (..., d, d), N scalar or (...,) -> (..., d, d).

    Provenance: recalled (the matrix whose inverse the trained layer applies). Derived here as well:
    Γ Λ = E[h h^T] for prompts of length N with S = I (see :func:`h_second_moment`).
    """
    N = torch.as_tensor(N, dtype=lam.dtype, device=lam.device)[..., None, None]
    return (1 + 1 / N) * lam + _trace(lam)[..., None, None] / N * _eye_like(lam)


def fourth_moment(lam: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """E[x x^T A x x^T] = Λ A Λ + Λ A^T Λ + tr(A Λ) Λ for x ~ N(0, Λ).   (..., d, d) -> (..., d, d).

    Provenance: derived (Isserlis: E x_i x_j x_k x_l = Λ_ij Λ_kl + Λ_ik Λ_jl + Λ_il Λ_jk, contracted with
    A_jk; README.md §2). Twins: exact Gaussian moments of polynomials (sympy) and Monte Carlo, in the tests.
    """
    return lam @ A @ lam + lam @ A.transpose(-1, -2) @ lam + _trace(A @ lam)[..., None, None] * lam


def h_second_moment(lam: torch.Tensor, S: torch.Tensor, M) -> torch.Tensor:
    """E[h h^T] = (1 + 1/M) Λ S Λ + (1/M) tr(S Λ) Λ for h = (1/M) Σ_i y_i x_i; M = None gives Λ S Λ.

    lam, S (..., d, d) -> (..., d, d). Provenance: derived: conditionally on w, the M(M-1) pairs i != j
    give Λ w w^T Λ and the M diagonal terms :func:`fourth_moment` with A = w w^T, which is linear in A, so
    averaging over w gives (1 - 1/M) Λ S Λ + fourth_moment(Λ, S)/M. Twin: Monte Carlo (tests).
    """
    outer = lam @ S @ lam
    if M is None:
        return outer
    M = torch.as_tensor(M, dtype=lam.dtype, device=lam.device)[..., None, None]
    return (1 - 1 / M) * outer + fourth_moment(lam, S) / M


def risk(G: torch.Tensor, lam: torch.Tensor, S: torch.Tensor, M) -> torch.Tensor:
    """Prediction error E[(x_q^T G h - y_q)^2] on prompts of length M (None: infinite).

    R(G) = tr(G H G^T Λ) - 2 tr(G Λ S Λ) + tr(Λ S) with H = E[h h^T] (:func:`h_second_moment`).
    G, lam, S (..., d, d) -> (...). Provenance: derived (x_q is independent of (h, w): average over it
    first, then E[h w^T] = Λ S and E[w^T Λ w] = tr(Λ S)). Twin: Monte Carlo over sampled prompts (tests).
    """
    H = h_second_moment(lam, S, M)
    return _trace(G @ H @ G.transpose(-1, -2) @ lam) - 2 * _trace(G @ lam @ S @ lam) + _trace(lam @ S)


def risk_gradient(G: torch.Tensor, lam: torch.Tensor, S: torch.Tensor, M) -> torch.Tensor:
    """Gradient of the population loss R(G)/2 in G: Λ G H - Λ S Λ.   (..., d, d) -> (..., d, d).

    Provenance: derived (differentiate the traces of :func:`risk`; H, Λ and S are symmetric). With S = I
    and M = N it is Λ (G Γ - I) Λ. Twin: central finite differences of :func:`risk` (tests).
    """
    return lam @ G @ h_second_moment(lam, S, M) - lam @ S @ lam


def minimiser(lam: torch.Tensor, N) -> torch.Tensor:
    """The unique global minimiser of the training loss (S = I, M = N): G* = Γ^{-1}.   (..., d, d).

    Provenance: derived (the loss is a convex quadratic in G, strictly convex when Λ > 0, and
    Λ (G Γ - I) Λ = 0 iff G = Γ^{-1}); the paper's limit as we recall it (recalled).
    """
    return torch.linalg.inv(gamma(lam, N))


def reduced_loss(u: torch.Tensor, U: torch.Tensor, lam: torch.Tensor, N) -> torch.Tensor:
    """Population loss of the LSA in its structured block: L(u, U) = R(u U^T)/2 with S = I, M = N.

    u (...,) is the value-output weight W^PV_{d+1,d+1}, U (..., d, d) the key-query block W^KQ_{11};
    yhat = u h^T U x_q = x_q^T (u U^T) h. Provenance: derived (README.md §1). -> (...).
    """
    I = _eye_like(lam)
    return risk(u[..., None, None] * U.transpose(-1, -2), lam, I, N) / 2


def reduced_gradients(u: torch.Tensor, U: torch.Tensor, lam: torch.Tensor, N) -> tuple[torch.Tensor, torch.Tensor]:
    """(dL/du, dL/dU) of :func:`reduced_loss`: (tr(D U), u D^T) with D = ∇_G (R/2) at G = u U^T.

    u (...,), U (..., d, d) -> ((...,), (..., d, d)). Provenance: derived (chain rule through G = u U^T).
    Twins: autograd of :func:`reduced_loss` and a Monte Carlo gradient of the full LSA (tests).
    """
    D = risk_gradient(u[..., None, None] * U.transpose(-1, -2), lam, _eye_like(lam), N)
    return _trace(D @ U), u[..., None, None] * D.transpose(-1, -2)


def flow_limit(lam: torch.Tensor, N, imbalance=0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimiser with u^2 - ||U||_F^2 = imbalance: u*^2 = (δ + sqrt(δ^2 + 4 ||Γ^{-1}||_F^2))/2, U* = Γ^{-1}/u*.

    Provenance: derived: d(u^2)/dt = -2 u tr(D U) = d(||U||_F^2)/dt, so δ = u^2 - ||U||_F^2 is conserved by
    the flow (δ = 0 from the structured start u(0) = σ, U(0) = σ ΘΘ^T with ||ΘΘ^T||_F = 1); with
    u* U*^T = Γ^{-1} (symmetric) it fixes the factors: u* = ||Γ^{-1}||_F^{1/2} at δ = 0, the form of the
    paper's limit weights as we recall them. Euler steps change δ by η^2 (g_u^2 - ||g_U||_F^2) per step.
    lam (..., d, d), imbalance (...,) -> ((...,), (..., d, d)).
    """
    G = minimiser(lam, N)
    delta = torch.as_tensor(imbalance, dtype=lam.dtype, device=lam.device)
    u = ((delta + (delta ** 2 + 4 * torch.linalg.matrix_norm(G) ** 2).sqrt()) / 2).sqrt()
    return u, G / u[..., None, None]


def reduced_hessian(lam: torch.Tensor, N, imbalance: float = 0.0) -> torch.Tensor:
    """Hessian of L(u, U) at :func:`flow_limit` (``imbalance``), in the coordinates θ = (u, vec_row(U)).   (d, d) -> (1+d², 1+d²).

    At a minimiser D = 0, so only the Gauss-Newton term remains: H = J^T K J, with J the Jacobian of
    θ -> vec_row(G) = vec_row(u U^T) and K the Hessian of R/2 in G: <δG, Λ δG H_N> with H_N = Γ Λ.
    Exactly one eigenvalue is 0 (the rescaling u -> c u, U -> U/c), and the flow never moves along it
    (it changes u^2 - ||U||_F^2). Provenance: derived. Twin: finite differences of
    :func:`reduced_gradients` (tests).
    """
    d = lam.shape[-1]
    u, U = flow_limit(lam, N, imbalance)
    # vec_row(A X B) = (A ⊗ B^T) vec_row(X); δG = δu U^T + u δU^T
    transpose = torch.eye(d * d, dtype=lam.dtype, device=lam.device).reshape(d, d, d, d).transpose(0, 1).reshape(d * d, d * d)
    J = torch.cat([U.T.reshape(d * d, 1), u * transpose], dim=1)  # (d², 1+d²)
    K = torch.kron(lam, lam @ gamma(lam, N))  # (d², d²): vec_row(Λ δG ΓΛ) = (Λ ⊗ (ΓΛ)^T) vec_row(δG), (ΓΛ)^T = ΛΓ
    return J.T @ K @ J


def euler_contraction(lam: torch.Tensor, N, eta: float, imbalance: float = 0.0) -> float:
    """Asymptotic per-step contraction of ||θ_t - θ*|| under Euler steps θ <- θ - η ∇L near the flow limit.

    max |1 - η μ| over the positive eigenvalues μ of :func:`reduced_hessian` (the linearised Euler map is
    I - η H; the zero mode moves only at second order in η). Provenance: derived.
    """
    mu = torch.linalg.eigvalsh(reduced_hessian(lam, N, imbalance))
    positive = mu[mu > mu.max() * 1e3 * torch.finfo(mu.dtype).eps]  # drop the one zero mode
    return float((1 - eta * positive).abs().max())


def error_expr(train_spectrum: Sequence, test_spectrum: Sequence, s_diag: Sequence, M) -> sp.Expr:
    """Symbolic prediction error of the trained layer G = Γ_N^{-1}, as a function of N (:data:`N_SYMBOL`).

    Λ = diag(train_spectrum) in training, Λ' = diag(test_spectrum) at test, S = E[w w^T] with diagonal
    s_diag in that basis (off-diagonal entries of S do not enter when Λ, Λ' are diagonal), M the test
    prompt length: a number, ``"N"`` (M = N) or ``None`` (M = ∞). With g_k = 1/((1+1/N) λ_k + tr Λ / N):

        R = Σ_k g_k² λ'_k [(1 + 1/M) λ'_k² s_k + tr(S Λ') λ'_k / M] - 2 Σ_k g_k λ'_k² s_k + Σ_k λ'_k s_k.

    Provenance: derived (:func:`risk` in the common eigenbasis). Twin: :func:`risk` (tests).
    """
    lam = [sp.nsimplify(v) for v in train_spectrum]
    lamt = [sp.nsimplify(v) for v in test_spectrum]
    s = [sp.nsimplify(v) for v in s_diag]
    N = N_SYMBOL
    inv_M = 0 if M is None else (1 / N if M == "N" else sp.Integer(1) / sp.nsimplify(M))
    t, ts = sum(lam), sum(si * li for si, li in zip(s, lamt))
    g = [1 / ((1 + 1 / N) * lk + t / N) for lk in lam]
    return sum(gk ** 2 * lt * ((1 + inv_M) * lt ** 2 * sk + ts * lt * inv_M) - 2 * gk * lt ** 2 * sk + lt * sk
               for gk, lt, sk in zip(g, lamt, s))


def asymptotic_loglog_slope(expr: sp.Expr) -> sp.Expr:
    """lim_{N -> ∞} d log R / d log N of a closed form R(N) (exact, sympy). Provenance: derived."""
    N = N_SYMBOL
    return sp.limit(sp.cancel(sp.together(N * sp.diff(expr, N) / expr)), N, sp.oo)
