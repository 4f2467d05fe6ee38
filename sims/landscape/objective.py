"""Batched landscape quantities and first variations for C particle measures at once.

docs/attention_landscape.md §2-§5; Kim & Suzuki, arXiv 2402.01258, eqs. (2)-(3).
:mod:`theory.landscape.objective` is the source of truth and works on one measure at a time, raising
:class:`~theory.landscape.objective.SingularCovarianceError` after a host-side conditioning check.
A batched step loop can afford neither, so this module provides what theory does not export:

- the covariances from kernel means (S_mm = (1/M) sum_i a_i c_m(w_i)^T, S_mo = (1/M) sum_i a_i c_o(w_i)^T);
- a per-config conditioning mask (cond(S_mm) <= :data:`theory.landscape.objective.COND_MAX`, the same
  threshold as theory) instead of an exception, with S_mm replaced by I where it fails so that nothing
  downstream raises or produces NaN; callers mask those configs;
- B_mu, S_mu, L(mu), the saddle indicator, and the first-variation coefficients (G_mm, G_mo) of L and
  of L_TF(., W) at a fixed W, from which V(theta) = a^T (2 G_mm c_m(w) + G_mo c_o(w)).

L_TF and grad_W L_TF are theory's own functions (:func:`theory.landscape.objective.loss_tf`,
:func:`~theory.landscape.objective.grad_W_loss_tf`) mapped over the batch with ``torch.vmap``.
Every formula here is tested one-by-one against theory (tests/unit/test_sims_meanfield.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from theory.landscape.objective import COND_MAX, Covariances, grad_W_loss_tf, loss_tf

__all__ = ["BatchLandscape", "batch_landscape", "batched_loss_tf", "batched_grad_W", "variation_coefficients",
           "jacobi_sweeps", "symmetric_eigvals", "jacobi_eigvals"]


def jacobi_sweeps(n: int) -> int:
    """Fixed sweep count of :func:`jacobi_eigvals` for n x n matrices: 10 + n // 2 (no data-dependent
    exit). Measured against LAPACK on random and cond-1e12 spectra: n <= 10 reaches 5e-15 * lambda_max
    in 8 sweeps, n = 31 in 16, n = 64 needs ~16-20."""
    return 10 + n // 2


@lru_cache(maxsize=None)
def _rounds_on(n: int, device: torch.device) -> tuple[tuple[Tensor, Tensor], ...]:
    """Index tensors of :func:`_round_robin` on ``device``, built once (no per-step host copies)."""
    return tuple((torch.tensor(p, device=device), torch.tensor(q, device=device)) for p, q in _round_robin(n))


def _round_robin(n: int) -> list[tuple[list[int], list[int]]]:
    """Disjoint pairs for the n - 1 rounds of a round-robin tournament on n (even) players."""
    players = list(range(n))
    rounds = []
    for _ in range(n - 1):
        half = n // 2
        rounds.append((players[:half], players[half:][::-1]))
        players = [players[0], players[-1]] + players[1:-1]
    return rounds


def jacobi_eigvals(S: Tensor, sweeps: int | None = None) -> Tensor:
    """Ascending eigenvalues of symmetric (C, n, n) matrices by parallel cyclic Jacobi, in plain tensor ops.

    Each round applies n/2 disjoint rotations at once (round-robin ordering), A <- J^T A J, with the
    classical angle t = sign(tau) / (|tau| + sqrt(1 + tau^2)), tau = (a_qq - a_pp) / (2 a_pq), which
    zeroes a_pq (Golub & Van Loan, Matrix Computations, section 8.5). Unlike
    ``torch.linalg.eigvalsh`` it never synchronises a CUDA device with the host (no LAPACK info
    check), so the step loop can use it on GPUs. Odd n is padded with an isolated zero row/column,
    which no rotation touches (its off-diagonal entries stay 0), and dropped at the end.
    Provenance: classical numerical linear algebra (Jacobi 1846; parallel ordering of Brent & Luk
    1985); accuracy tested against LAPACK.

    Parameters
    ----------
    S : Tensor
        (C, n, n) symmetric.
    sweeps : int, optional
        Number of sweeps (default :func:`jacobi_sweeps`).

    Returns
    -------
    Tensor
        (C, n) ascending.
    """
    C, n, _ = S.shape
    if n == 1:
        return S[..., 0]  # (C, 1)
    sweeps = jacobi_sweeps(n) if sweeps is None else sweeps
    m = n + (n % 2)
    A = S.new_zeros(C, m, m)  # (C, m, m)
    A[:, :n, :n] = S
    eye = torch.eye(m, dtype=S.dtype, device=S.device)  # (m, m)
    rounds = _rounds_on(m, S.device)
    for _ in range(sweeps):
        for P, Q in rounds:
            a_pp, a_qq, a_pq = A[:, P, P], A[:, Q, Q], A[:, P, Q]  # (C, m/2) each
            zero = a_pq == 0
            tau = (a_qq - a_pp) / (2.0 * torch.where(zero, torch.ones_like(a_pq), a_pq))
            sign = torch.where(tau >= 0, 1.0, -1.0)
            t = torch.where(zero, 0.0, sign / (tau.abs() + torch.sqrt(1.0 + tau * tau)))  # (C, m/2)
            c = torch.rsqrt(1.0 + t * t)
            s = t * c
            J = eye.repeat(C, 1, 1)  # (C, m, m)
            J[:, P, P], J[:, Q, Q], J[:, P, Q], J[:, Q, P] = c, c, s, -s
            A = J.mT @ A @ J  # (C, m, m)
            A = 0.5 * (A + A.mT)
    diag = torch.diagonal(A, dim1=-2, dim2=-1)[:, :n]  # (C, n)
    return torch.sort(diag, dim=-1).values


def symmetric_eigvals(S: Tensor) -> Tensor:
    """Ascending eigenvalues of symmetric (C, n, n) matrices: LAPACK (``eigvalsh``) on the CPU,
    :func:`jacobi_eigvals` elsewhere (``eigvalsh`` synchronises CUDA devices with the host).
    Provenance: ours (performance policy: no host synchronisation inside step loops)."""
    if S.device.type == "cpu":
        return torch.linalg.eigvalsh(S)
    return jacobi_eigvals(S)


def _sym(S: Tensor) -> Tensor:
    return 0.5 * (S + S.mT)  # (C, k, k)


def _loss_tf_one(S_mm: Tensor, S_om: Tensor, S_oo: Tensor, W: Tensor, noise_var: Tensor) -> Tensor:
    return loss_tf(Covariances(S_mm, S_om, S_oo), W, noise_var)


def batched_loss_tf(S_mm: Tensor, S_om: Tensor, S_oo: Tensor, W: Tensor, noise_var: Tensor) -> Tensor:
    """L_TF(mu_c, W_c) + s_c^2 / 2 for every config: :func:`theory.landscape.objective.loss_tf` under vmap.

    L_TF = 1/2 tr S_oo - tr(S_om W S_mo) + 1/2 tr(W^T S_mo S_om W S_mm) (Kim & Suzuki, eq. (2);
    stated). Shapes: S_mm, W (C, k, k); S_om (C, k_o, k); S_oo (C, k_o, k_o); noise_var (C,) -> (C,).
    """
    return torch.vmap(_loss_tf_one)(S_mm, S_om, S_oo, W, noise_var)  # (C,)


def _grad_W_one(S_mm: Tensor, S_om: Tensor, S_oo: Tensor, W: Tensor) -> Tensor:
    return grad_W_loss_tf(Covariances(S_mm, S_om, S_oo), W)


def batched_grad_W(S_mm: Tensor, S_om: Tensor, S_oo: Tensor, W: Tensor) -> Tensor:
    """grad_W L_TF = S_mo S_om (W S_mm - I) per config (theory's function under vmap; derived).

    Returns (C, k, k).
    """
    return torch.vmap(_grad_W_one)(S_mm, S_om, S_oo, W)  # (C, k, k)


def _chol_solve(chol: Tensor, rhs: Tensor) -> Tensor:
    """(L L^T)^{-1} rhs by two triangular solves (unlike ``cholesky_solve``/``cholesky_inverse``,
    these never read a LAPACK info flag back to the host)."""
    y = torch.linalg.solve_triangular(chol, rhs, upper=False)  # (C, k, m)
    return torch.linalg.solve_triangular(chol.mT, y, upper=True)  # (C, k, m)


@dataclass
class BatchLandscape:
    """Landscape quantities of C measures (docs/attention_landscape.md §2-§5).

    Rows of failed configs are finite garbage.

    Attributes
    ----------
    S_mm, S_mo, S_oo : Tensor
        (C, k, k), (C, k, k_o), (C, k_o, k_o) covariances.
    lambda_min, cond : Tensor
        (C,) lowest eigenvalue and condition number of S_mm (cond = inf if lambda_min <= 0 or NaN).
    ok : Tensor
        (C,) bool: S_mm finite and cond <= COND_MAX.
    B : Tensor
        (C, k, k_o) B_mu = S_mm^{-1} S_mo.
    W_star : Tensor
        (C, k, k) S_mm^{-1}.
    S_mu : Tensor
        (C, k_o, k_o) Schur complement S_oo - S_om S_mm^{-1} S_mo (symmetrised).
    loss : Tensor
        (C,) L(mu) = 1/2 tr S_mu (without the label-noise shift).
    saddle : Tensor
        (C,) ||S_mo S_mu||_F.
    """

    S_mm: Tensor
    S_mo: Tensor
    S_oo: Tensor
    lambda_min: Tensor
    cond: Tensor
    ok: Tensor
    B: Tensor
    W_star: Tensor
    S_mu: Tensor
    loss: Tensor
    saddle: Tensor

    @property
    def S_om(self) -> Tensor:
        """(C, k_o, k) S_mo transposed."""
        return self.S_mo.mT


def batch_landscape(a: Tensor, c_m: Tensor, c_o: Tensor, S_oo: Tensor,
                    cond_max: float = COND_MAX) -> BatchLandscape:
    """Covariances, conditioning and the landscape for C uniform particle measures.

    S_mm = (1/M) sum_i a_i c_m(w_i)^T (symmetrised), S_mo = (1/M) sum_i a_i c_o(w_i)^T with the kernel
    means c_m(w) = (1/M) sum_j a_j K(w, w_j), c_o(w) = (1/M_o) sum_l a°_l K(w, w°_l)
    (docs/attention_landscape.md §1, §4; stated definitions). B = S_mm^{-1} S_mo by Cholesky;
    S_mu = S_oo - S_om B; L = 1/2 tr S_mu (Kim & Suzuki, eq. (3); stated); saddle indicator
    ||S_mo S_mu||_F (docs/attention_landscape.md §5; derived).
    Configs with non-finite S_mm or cond(S_mm) > ``cond_max`` get ``ok = False`` and are computed
    with S_mm := I (no exception, no NaN); the threshold is theory's :data:`COND_MAX`.

    Parameters
    ----------
    a : Tensor
        (C, M, k) output weights.
    c_m, c_o : Tensor
        (C, M, k) and (C, M, k_o) kernel means at the particles.
    S_oo : Tensor
        (C, k_o, k_o).
    """
    M = a.shape[1]
    S_mm = _sym(a.mT @ c_m / M)  # (C, k, k)
    S_mo = a.mT @ c_o / M  # (C, k, k_o)
    finite = torch.isfinite(S_mm).all(dim=(-2, -1)) & torch.isfinite(S_mo).all(dim=(-2, -1))  # (C,)
    eye = torch.eye(S_mm.shape[-1], dtype=S_mm.dtype, device=S_mm.device).expand_as(S_mm)  # (C, k, k)
    eig = symmetric_eigvals(torch.where(finite[:, None, None], S_mm, eye))  # (C, k)
    lam_min, lam_max = eig[:, 0], eig[:, -1]  # (C,), (C,)
    cond = torch.where(lam_min > 0, lam_max / lam_min, torch.full_like(lam_min, float("inf")))  # (C,)
    ok = finite & (cond <= cond_max)  # (C,)
    lam_min = torch.where(finite, lam_min, torch.full_like(lam_min, float("nan")))
    cond = torch.where(finite, cond, torch.full_like(cond, float("nan")))
    safe = torch.where(ok[:, None, None], S_mm, eye)  # (C, k, k)
    S_mo_safe = torch.where(ok[:, None, None], S_mo, torch.zeros_like(S_mo))  # (C, k, k_o)
    chol = torch.linalg.cholesky_ex(safe).L  # (C, k, k); safe is PD by construction; no error check
    B = _chol_solve(chol, S_mo_safe)  # (C, k, k_o)
    W_star = _chol_solve(chol, eye)  # (C, k, k)
    S_mu = _sym(S_oo - S_mo_safe.mT @ B)  # (C, k_o, k_o)
    loss = 0.5 * torch.diagonal(S_mu, dim1=-2, dim2=-1).sum(-1)  # (C,)
    saddle = torch.linalg.matrix_norm(S_mo_safe @ S_mu)  # (C,)
    return BatchLandscape(S_mm, S_mo, S_oo, lam_min, cond, ok, B, W_star, S_mu, loss, saddle)


def variation_coefficients(land: BatchLandscape, W: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(G_mm, G_mo) with V(theta) = a^T (2 G_mm c_m(w) + G_mo c_o(w)) the first variation.

    G_mm = dF/dS_mm and G_mo = dF/dS_mo for F = L_TF(., W) (derived: perturbing mu by eps delta_theta
    moves S_mm by eps (a c_m^T + c_m a^T) and S_mo by eps a c_o^T, so dF/deps = 2 a^T G_mm c_m +
    a^T G_mo c_o):

    - at a fixed W (joint training): G_mm = 1/2 W^T S_mo S_om W,
      G_mo = -(W + W^T) S_mo + W S_mm W^T S_mo;
    - for the landscape L = min_W L_TF (``W`` None; W = W* = S_mm^{-1} in the above): G_mm = 1/2 B B^T,
      G_mo = -B, so V = -a^T B (c_o - B^T c_m) = -E[sigma(w.x) a^T B zeta(x)] (docs/attention_landscape.md §4;
      theory's :func:`~theory.landscape.objective.first_variation`).

    Returns
    -------
    (Tensor, Tensor)
        (C, k, k) and (C, k, k_o).
    """
    if W is None:
        return 0.5 * land.B @ land.B.mT, -land.B  # (C, k, k), (C, k, k_o)
    S_mo = land.S_mo
    G_mm = _sym(0.5 * W.mT @ S_mo @ S_mo.mT @ W)  # (C, k, k)
    G_mo = -(W + W.mT) @ S_mo + W @ land.S_mm @ W.mT @ S_mo  # (C, k, k_o)
    return G_mm, G_mo
