"""Simulations: Euler gradient flow on the population loss, gradient descent of the full LSA on sampled
prompts, and Monte Carlo prediction errors (README.md §6). Everything is batched over configs or replicates.

Random numbers come from ``torch.Generator`` objects seeded per config by the caller, so a config's
numbers never depend on the configs that share its batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from linear_icl import theory as th

__all__ = ["structured_init", "FlowRun", "euler_flow", "sample_prompts", "mc_error", "lsa_predict", "lsa_structured",
           "effective_G", "prompt_statistics", "empirical_moments", "train_lsa_gd"]


def normals(shape: tuple[int, ...], gen: torch.Generator, dtype: torch.dtype, device) -> torch.Tensor:
    """Standard normals of ``shape``, drawn in float32 (five times faster on CPUs) and returned in ``dtype``.

    float32 variates are exact normals up to a relative quantisation of 2^-24 and a tail cut beyond about
    5.8 standard deviations (probability < 1e-8): far below every Monte Carlo standard error used here.
    """
    return torch.randn(shape, generator=gen, dtype=torch.float32, device=device).to(dtype)


def structured_init(theta: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's small structured start, reduced: u(0) = σ, U(0) = σ ΘΘ^T/||ΘΘ^T||_F.

    theta (C, d, d), sigma (C,) -> (u (C,), U (C, d, d)); u^2 = ||U||_F^2 holds exactly, so the flow stays
    balanced.
    """
    P = theta @ theta.transpose(-1, -2)  # (C, d, d)
    P = P / torch.linalg.matrix_norm(P)[:, None, None]
    return sigma.clone(), sigma[:, None, None] * P


@dataclass(frozen=True)
class FlowRun:
    """An Euler run: distance (T, C) = ||u U^T - Γ^{-1}||_F after each step 0..T-1; G_kept (C, d, d) the
    matrix u U^T at each config's ``keep_at`` step; u (C,), U (C, d, d) at each config's last step."""

    distance: torch.Tensor
    G_kept: torch.Tensor
    u: torch.Tensor
    U: torch.Tensor


def euler_flow(lam: torch.Tensor, N: torch.Tensor, u: torch.Tensor, U: torch.Tensor, eta: torch.Tensor,
               steps: torch.Tensor, keep_at: torch.Tensor) -> FlowRun:
    """Explicit Euler steps θ <- θ - η ∇L(θ) of the reduced population loss (:func:`theory.reduced_gradients`).

    lam (C, d, d), N (C,), u (C,), U (C, d, d), eta (C,) step sizes, steps (C,) and keep_at (C,) integer
    step counts: config c takes steps[c] steps (then stays put) and its G is kept at step keep_at[c].
    The loop uses D = Λ G H_N - Λ^2 with the constant pieces computed once (tests tie it to the theory's
    gradient); the distance to Γ^{-1} is logged after every step.
    """
    target = th.minimiser(lam, N)  # (C, d, d)
    H = th.h_second_moment(lam, torch.eye(lam.shape[-1], dtype=lam.dtype, device=lam.device), N)  # (C, d, d)
    lam2 = lam @ lam  # (C, d, d)
    steps, keep_at = steps.to(lam.device), keep_at.to(lam.device)
    G_kept = torch.zeros_like(U)
    dist = []
    for step in range(int(steps.max()) + 1):
        G = u[:, None, None] * U.transpose(-1, -2)  # (C, d, d)
        dist.append(torch.linalg.matrix_norm(G - target))  # (C,)
        G_kept = torch.where((keep_at == step)[:, None, None], G, G_kept)
        D = lam @ G @ H - lam2  # (C, d, d)
        gu = (D * U.transpose(-1, -2)).sum((-1, -2))  # (C,) = tr(D U)
        live = torch.where(step < steps, eta, torch.zeros_like(eta))  # (C,) finished configs stay put
        u, U = u - live * gu, U - (live * u)[:, None, None] * D.transpose(-1, -2)
    return FlowRun(torch.stack(dist), G_kept, u, U)


def sample_prompts(lam_chol: torch.Tensor, mu: torch.Tensor, sw_chol: torch.Tensor, M: int, n: int,
                   gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """n prompts of length M: x ~ N(0, L L^T), w ~ N(mu, C C^T), y = <w, x>.

    lam_chol (d, d), mu (d,), sw_chol (d, d) -> X (n, M, d), y (n, M), x_q (n, d), y_q (n,), w (n, d).
    """
    d, kw = lam_chol.shape[-1], dict(gen=gen, dtype=lam_chol.dtype, device=lam_chol.device)
    X = normals((n, M + 1, d), **kw) @ lam_chol.T  # (n, M+1, d), the last row is the query
    w = mu + normals((n, d), **kw) @ sw_chol.T  # (n, d)
    y = (X @ w[:, :, None])[..., 0]  # (n, M+1)
    return X[:, :M], y[:, :M], X[:, M], y[:, M], w


def mc_error(G: torch.Tensor, lam_chol: torch.Tensor, mu: torch.Tensor, sw_chol: torch.Tensor, M: int | None,
             n: int, gen: torch.Generator, chunk: int = 4096) -> tuple[float, float]:
    """Monte Carlo mean and standard error of (x_q^T G h - y_q)^2 over n sampled prompts of length M.

    G (d, d). M = None: the infinite prompt, whose h = Λ w exactly (no context is sampled).
    """
    total, total_sq, done = 0.0, 0.0, 0
    while done < n:
        m = min(chunk, n - done)
        X, y, xq, yq, w = sample_prompts(lam_chol, mu, sw_chol, 0 if M is None else M, m, gen)
        h = w @ (lam_chol @ lam_chol.T) if M is None else (y[:, :, None] * X).mean(1)  # (m, d)
        sq = (((xq @ G) * h).sum(-1) - yq) ** 2  # (m,)
        total, total_sq, done = total + float(sq.sum()), total_sq + float((sq ** 2).sum()), done + m
    mean = total / n
    var = max(total_sq / n - mean ** 2, 0.0) * n / (n - 1)
    return mean, (var / n) ** 0.5


def lsa_predict(Wpv: torch.Tensor, Wkq: torch.Tensor, X: torch.Tensor, y: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
    """The full LSA's prediction: the (d+1, N+1) entry of E + W^PV E (E^T W^KQ E)/N, E = [[X^T, x_q], [y^T, 0]].

    Wpv, Wkq (..., d+1, d+1); X (..., n, N, d); y (..., n, N); xq (..., n, d) -> (..., n).
    The query column enters the sum too (its label slot is 0).
    """
    N = X.shape[-2]
    Z = torch.cat([torch.cat([X, y[..., None]], -1), torch.cat([xq, torch.zeros_like(xq[..., :1])], -1)[..., None, :]],
                  -2)  # (..., n, N+1, d+1): the columns z_i of E, the query last
    value = (Z * Wpv[..., None, None, -1, :]).sum(-1)  # (..., n, N+1): last row of W^PV times z_i
    query = (Wkq[..., None, :, :] @ Z[..., -1, :, None])[..., 0]  # (..., n, d+1): W^KQ z_q
    key = (Z @ query[..., None])[..., 0]  # (..., n, N+1): z_i^T W^KQ z_q
    return (value * key).sum(-1) / N


def lsa_structured(u: torch.Tensor, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The structured LSA weights: W^PV = [[0, 0], [0, u]] (its last row p = (0, u)) and W^KQ = [[U, 0], [0, 0]].

    u (C,), U (C, d, d) -> p (C, d+1), W^KQ (C, d+1, d+1).
    """
    d = U.shape[-1]
    p = U.new_zeros(U.shape[0], d + 1)
    W = U.new_zeros(U.shape[0], d + 1, d + 1)
    p[:, d] = u
    W[:, :d, :d] = U
    return p, W


def effective_G(p: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """The matrix of the part of the LSA prediction that is odd in w: yhat_odd = x_q^T G h.

    G = (w_22 W^KQ_11 + w_21 k^T)^T with (w_21, w_22) = p the last row of W^PV and k^T the first d entries
    of the last row of W^KQ (README.md §1). p (..., d+1), W (..., d+1, d+1) -> (..., d, d).
    """
    d = p.shape[-1] - 1
    M = p[..., d, None, None] * W[..., :d, :d] + p[..., :d, None] * W[..., d, None, :d]  # (..., d, d)
    return M.transpose(-1, -2)


def prompt_statistics(lam_chol: torch.Tensor, N: int, shape: tuple[int, ...], gen: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fresh training prompts (S = I) reduced to what the LSA prediction uses.

    Returns A = (1/N) Σ_{i=1}^{N+1} z_i z_i^T (..., d+1, d+1) (the query column z_q = (x_q, 0) included),
    z_q (..., d+1) and y_q (...), for prompts of batch shape ``shape``.
    """
    d, kw = lam_chol.shape[-1], dict(gen=gen, dtype=lam_chol.dtype, device=lam_chol.device)
    X = normals((*shape, N + 1, d), **kw) @ lam_chol.T  # (..., N+1, d), the last row is the query
    w = normals((*shape, d, 1), **kw)  # (..., d, 1)
    y = X @ w  # (..., N+1, 1)
    yq = y[..., N, 0].clone()  # (...)
    y[..., N, 0] = 0  # the query's label slot
    Z = torch.cat([X, y], -1)  # (..., N+1, d+1)
    A = Z.transpose(-1, -2) @ Z / N  # (..., d+1, d+1)
    return A, Z[..., N, :], yq


def empirical_moments(lam_chol: torch.Tensor, N: int, n: int, replicates: int, gen: torch.Generator,
                      chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The empirical loss of the full LSA on n sampled prompts (per replicate) as a quadratic form.

    yhat = p^T A W z_q = <v, F> with v = p ⊗ W[:, :d] and F = A ⊗ x_q (z_q = (x_q, 0), so the last column
    of W^KQ never enters), both of length P = (d+1)^2 d; the loss (1/2n) Σ (yhat - y_q)^2 is
    (1/2) (v^T K v - 2 c^T v + m) with K = mean F F^T (R, P, P), c = mean y_q F (R, P), m = mean y_q^2 (R,).
    Twin: :func:`lsa_predict` on the same prompts (tests).
    """
    d = lam_chol.shape[-1]
    K = c = m = 0
    for start in range(0, n, chunk):
        A, zq, yq = prompt_statistics(lam_chol, N, (replicates, min(chunk, n - start)), gen)
        F = (A[..., :, :, None] * zq[..., None, None, :d]).flatten(-3)  # (R, b, P): F[a, b, c] = A_ab x_q,c
        K = K + F.transpose(-1, -2) @ F  # (R, P, P)
        c = c + (yq[..., None] * F).sum(-2)  # (R, P)
        m = m + (yq ** 2).sum(-1)  # (R,)
    return K / n, c / n, m / n


def train_lsa_gd(p: torch.Tensor, W: torch.Tensor, K: torch.Tensor, c: torch.Tensor, eta: torch.Tensor,
                 steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-batch gradient descent of the full LSA on its empirical loss (:func:`empirical_moments`).

    p (R, d+1), W (R, d+1, d+1), K (R, P, P), c (R, P), eta (R,). With g = K v - c (v = p ⊗ W[:, :d]):
    dL/dp_a = Σ_bc g_abc W_bc and dL/dW_bc = Σ_a g_abc p_a (0 in W's last column, which never reaches the
    prediction). Returns the final p, W and the norm of the last gradient (R,).
    """
    R, d1 = p.shape
    e = eta[:, None]
    V = W[:, :, :d1 - 1]  # (R, d+1, d): the part of W^KQ that reaches the prediction
    for _ in range(steps):
        v = (p[:, :, None, None] * V[:, None]).flatten(1)  # (R, P)
        g = ((K @ v[..., None])[..., 0] - c).view(R, d1, d1, d1 - 1)  # (R, d+1, d+1, d)
        gp, gV = (g * V[:, None]).sum((-1, -2)), (g * p[:, :, None, None]).sum(1)  # (R, d+1), (R, d+1, d)
        p, V = p - e * gp, V - e[:, :, None] * gV
    W = torch.cat([V, W[:, :, d1 - 1:]], -1)
    return p, W, torch.sqrt((gp ** 2).sum(-1) + (gV ** 2).sum((-1, -2)))
