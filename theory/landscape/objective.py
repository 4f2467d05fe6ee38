"""The attention landscape of Kim & Suzuki, "Transformers Learn Nonlinear Features In Context:
Nonconvex Mean-field Dynamics on the Attention Landscape" (arXiv 2402.01258, ICML 2024).

Derivations: docs/attention_landscape.md §1-§8 (the project's own write-up). Conventions:

- x ~ N(0, I_d). A particle measure mu is M particles theta_i = (a_i, w_i), a_i in R^k, w_i in R^d,
  with weights p_i (uniform 1/M unless given; signed weights describe perturbations chi);
  h_mu(x) = sum_i p_i a_i sigma(w_i.x). The teacher mu° gives f°(x) = h_{mu°}(x) (realizable case).
- Covariances S_mm = E[h h^T], S_om = E[f° h^T], S_mo = S_om^T, S_oo = E[f° f°^T] come from the
  tiled Gaussian kernel contraction of :mod:`theory.landscape.gaussian`.
- Every function that needs S_mm^{-1} first checks cond(S_mm) <= :data:`COND_MAX` and raises
  :class:`SingularCovarianceError` otherwise.
- Velocities and the particle Hessian use autograd through the kernels (closed forms, or the Hermite series
  for sigmoid/tanh).

Provenance tags (stated / derived / recalled) are those of docs/attention_landscape.md; every docstring
carries its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from theory.landscape.gaussian import DEFAULT_TILE, MCEstimate, activation_fn, contract, gauss_hermite, \
    kernel_matvec

__all__ = [
    "COND_MAX",
    "Covariances",
    "FINITE_N_ORDER",
    "ParticleMeasure",
    "SingularCovarianceError",
    "attention_landscape",
    "b_matrix",
    "check_conditioning",
    "covariances",
    "critical_point_lower_bound",
    "dissipation",
    "exact_strict_saddle",
    "features",
    "finite_n_loss",
    "first_variation",
    "free_output_direction",
    "grad_W_loss_tf",
    "hessian_min_eigenvalue",
    "landscape_loss",
    "loss_tf",
    "mc_finite_n_loss",
    "minimizer_residual",
    "mixture",
    "mixture_derivative",
    "mixture_second_derivative",
    "near_critical_lower_bound",
    "optimal_W",
    "orthogonal_critical_point",
    "particle_velocity",
    "saddle_indicator",
    "schur_complement",
    "second_variation",
    "validate_measure",
    "w_flow_rate",
    "wasserstein_hessian",
]

#: Largest accepted condition number of S_mm. A Cholesky solve with S_mm has relative forward error
#: up to about cond * eps = 1e12 * 2.2e-16 = 2.2e-4 in float64; beyond that L(mu), W* and B_mu would
#: carry no reliable digit in the directions of the small eigenvalues.
COND_MAX = 1e12

#: Default Gauss-Hermite order per dimension for the finite-n fourth moments (:func:`finite_n_loss`).
#: Measured on the exact saddle (erf, unit directions, a 3-dimensional span): error 2e-9 at order 60,
#: 1e-13 at order 96 (about 1e5 pruned nodes). Steeper features (|w| > 1) need more.
FINITE_N_ORDER = 96

_PRUNE = 1e-22  # drop tensor-grid nodes with product weight below this (dropped mass ~ 1e-19 r)


class SingularCovarianceError(ValueError):
    """S_mm is (numerically) singular: cond(S_mm) > cond_max, so S_mm^{-1} is not formed."""

    def __init__(self, lambda_min: float, cond: float, cond_max: float):
        self.lambda_min, self.cond, self.cond_max = lambda_min, cond, cond_max
        super().__init__(
            f"S_mm is numerically singular: lambda_min(S_mm) = {lambda_min:.3e}, condition number "
            f"{cond:.3e} > {cond_max:.1e}; the learned features are (nearly) linearly dependent")


# --------------------------------------------------------------------------- particle measures


@dataclass(frozen=True)
class ParticleMeasure:
    """A finite (possibly signed) particle measure mu = sum_i p_i delta_(a_i, w_i).

    Attributes
    ----------
    a : Tensor
        (M, k) output weights.
    w : Tensor
        (M, d) input directions.
    p : Tensor or None
        (M,) particle weights; None means uniform 1/M (a probability measure). Signed weights are
        allowed (perturbations chi, mixtures at s < 0 for central differences).
    """

    a: Tensor
    w: Tensor
    p: Tensor | None = None

    def __post_init__(self):
        if (self.a.ndim != 2 or self.w.ndim != 2 or self.a.shape[0] != self.w.shape[0]
                or self.a.shape[0] == 0):
            raise ValueError(f"particles need a (M, k) and w (M, d) with the same M >= 1; got a "
                             f"{tuple(self.a.shape)} and w {tuple(self.w.shape)}")
        if self.p is not None and self.p.shape != (self.a.shape[0],):
            raise ValueError(f"weights p must have shape ({self.a.shape[0]},), got "
                             f"{tuple(self.p.shape)}")

    @property
    def weights(self) -> Tensor:
        """(M,) particle weights (uniform 1/M when ``p`` is None)."""
        if self.p is not None:
            return self.p
        M = self.a.shape[0]
        return torch.full((M,), 1.0 / M, dtype=self.a.dtype, device=self.a.device)

    def push(self, R: Tensor) -> "ParticleMeasure":
        """R#mu: every particle (a, w) -> (R a, w); R is (k', k), and h_{R#mu} = R h_mu.

        docs/attention_landscape.md §3 (Kim & Suzuki, arXiv 2402.01258, section 3). Provenance: derived.
        """
        return ParticleMeasure(self.a @ R.T, self.w, self.p)  # a: (M, k')


def validate_measure(mu: ParticleMeasure, probability: bool = True) -> None:
    """Reject non-finite particles and, for probability measures, weights that are negative or do
    not sum to 1 (within 1e-9, far above the M * eps rounding of a float64 sum for M <= 1e6).
    Meant for user input (particle files); it synchronises the device.
    No formula: input policy (bad input gets a one-line error naming the problem).

    Raises
    ------
    ValueError
        Naming the offending array.
    """
    for name, t in (("a", mu.a), ("w", mu.w), ("p", mu.weights)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"particle array {name!r} contains NaN or inf")
    total = float(mu.weights.sum())
    if probability and (bool((mu.weights < 0).any()) or abs(total - 1.0) > 1e-9):
        raise ValueError(f"particle weights must be >= 0 and sum to 1 (sum = {total!r})")


def _union(mu: ParticleMeasure, nu: ParticleMeasure, c_mu: float, c_nu: float) -> ParticleMeasure:
    """c_mu * mu + c_nu * nu as one particle list (weights scaled, particles concatenated)."""
    return ParticleMeasure(torch.cat([mu.a, nu.a]), torch.cat([mu.w, nu.w]),
                           torch.cat([c_mu * mu.weights, c_nu * nu.weights]))  # (M1 + M2, .)


def mixture(mu: ParticleMeasure, nu: ParticleMeasure, s: float) -> ParticleMeasure:
    """The mixture (1 - s) mu + s nu: the union of both particle lists, weights (1-s) p and s p'.

    docs/attention_landscape.md §5 (mixture direction; Kim & Suzuki, arXiv 2402.01258, Theorem 3.3 uses
    mu_s = (1-s) mu + s R#mu°). Provenance: derived (h is linear in the measure). Any real s is
    allowed (s < 0 gives a signed measure, used for central differences).
    """
    return _union(mu, nu, 1.0 - s, s)


def features(name: str, mu: ParticleMeasure, x: Tensor) -> Tensor:
    """The mean-field MLP h_mu(x) = sum_i p_i a_i sigma(w_i.x).

    docs/attention_landscape.md §1 (stated; Kim & Suzuki, arXiv 2402.01258, section 2).

    Parameters
    ----------
    x : Tensor
        (..., d) inputs.

    Returns
    -------
    Tensor
        (..., k).
    """
    return activation_fn(name)(x @ mu.w.T) @ (mu.weights.unsqueeze(-1) * mu.a)  # (..., M) @ (M, k)


# --------------------------------------------------------------------------- covariances, L_TF, W*


@dataclass(frozen=True)
class Covariances:
    """Feature covariances for x ~ N(0, I_d) (docs/attention_landscape.md §1; stated).

    Attributes
    ----------
    S_mm : Tensor
        (k, k) E[h h^T].
    S_om : Tensor
        (k_o, k) E[f° h^T].
    S_oo : Tensor
        (k_o, k_o) E[f° f°^T].
    """

    S_mm: Tensor
    S_om: Tensor
    S_oo: Tensor

    @property
    def S_mo(self) -> Tensor:
        """(k, k_o) E[h f°^T] = S_om^T."""
        return self.S_om.T


def covariances(name: str, student: ParticleMeasure, teacher: ParticleMeasure, *,
                tile: int = DEFAULT_TILE, order: int | None = None) -> Covariances:
    """S_mm, S_om, S_oo by the tiled kernel contraction.

    S_mm = sum_ij p_i p_j a_i a_j^T K(w_i, w_j), S_om = sum_ji p°_j p_i a°_j a_i^T K(w°_j, w_i),
    S_oo = sum_jl p°_j p°_l a°_j a°_l^T K(w°_j, w°_l), K the Gaussian pair kernel.
    docs/attention_landscape.md §1 (stated definitions; Kim & Suzuki, arXiv 2402.01258, section 3). Differentiable.
    """
    def cov(m1: ParticleMeasure, m2: ParticleMeasure) -> Tensor:
        return contract(name, m1.a, m1.w, m2.a, m2.w, m1.weights, m2.weights, tile=tile,
                        order=order)

    def sym(S: Tensor) -> Tensor:  # exact symmetry (the contraction is symmetric to rounding)
        return 0.5 * (S + S.T)

    return Covariances(sym(cov(student, student)), cov(teacher, student),
                       sym(cov(teacher, teacher)))


def loss_tf(cov: Covariances, W: Tensor, noise_var: float = 0.0) -> Tensor:
    """The n = infinity in-context loss L_TF(mu, W).

    L_TF = 1/2 tr S_oo - tr(S_om W S_mo) + 1/2 tr(W^T S_mo S_om W S_mm) (+ s^2 / 2 with label noise
    N(0, s^2)). Kim & Suzuki, arXiv 2402.01258, eq. (2); docs/attention_landscape.md §2. Provenance: stated (the
    noise shift is stated too).
    """
    P = cov.S_mo @ cov.S_om  # (k, k)
    return (0.5 * torch.trace(cov.S_oo) - torch.trace(cov.S_om @ W @ cov.S_mo)
            + 0.5 * torch.trace(W.T @ P @ W @ cov.S_mm) + 0.5 * noise_var)


def grad_W_loss_tf(cov: Covariances, W: Tensor) -> Tensor:
    """grad_W L_TF = S_mo S_om (W S_mm - I).

    docs/attention_landscape.md §2 (Kim & Suzuki, arXiv 2402.01258, eq. (2) differentiated). Provenance: derived.
    """
    eye = torch.eye(W.shape[0], dtype=W.dtype, device=W.device)
    return cov.S_mo @ cov.S_om @ (W @ cov.S_mm - eye)  # (k, k)


def check_conditioning(S_mm: Tensor, cond_max: float = COND_MAX) -> tuple[float, float]:
    """Return (lambda_min, cond) of the symmetric S_mm, raising if it is numerically singular.

    cond = lambda_max / lambda_min (inf when lambda_min <= 0). Provenance: ours (numerics policy).

    Raises
    ------
    SingularCovarianceError
        When cond > ``cond_max`` (default :data:`COND_MAX`, tied to float64: see there).
    """
    eig = torch.linalg.eigvalsh(S_mm.detach())  # (k,)
    lam_min, lam_max = float(eig[0]), float(eig[-1])
    cond = lam_max / lam_min if lam_min > 0 else math.inf
    if not cond <= cond_max:
        raise SingularCovarianceError(lam_min, cond, cond_max)
    return lam_min, cond


def _solve(S_mm: Tensor, rhs: Tensor, cond_max: float) -> Tensor:
    """S_mm^{-1} rhs by Cholesky, after the conditioning check."""
    check_conditioning(S_mm, cond_max)
    return torch.cholesky_solve(rhs, torch.linalg.cholesky(S_mm))


def optimal_W(cov: Covariances, cond_max: float = COND_MAX) -> Tensor:
    """W* = S_mm^{-1}, a minimizer of L_TF(mu, .) for every mu.

    Kim & Suzuki, arXiv 2402.01258, Lemma 3.1; docs/attention_landscape.md §2. Provenance: stated.
    """
    eye = torch.eye(cov.S_mm.shape[0], dtype=cov.S_mm.dtype, device=cov.S_mm.device)
    return _solve(cov.S_mm, eye, cond_max)  # (k, k)


def minimizer_residual(cov: Covariances, W: Tensor, cond_max: float = COND_MAX) -> Tensor:
    """||S_om W - S_om S_mm^{-1}||_F: zero exactly when W minimizes L_TF(mu, .).

    Every minimizer satisfies S_om W = S_om S_mm^{-1} (Kim & Suzuki, arXiv 2402.01258, Lemma 3.1;
    docs/attention_landscape.md §2). Provenance: stated.
    """
    return torch.linalg.matrix_norm(cov.S_om @ (W - optimal_W(cov, cond_max)))


def w_flow_rate(cov: Covariances) -> Tensor:
    """Linear rate of the W gradient flow dW/dt = -grad_W L_TF: lambda_min(S_mo S_om) lambda_min(S_mm).

    W - W* evolves as dE/dt = -S_mo S_om E S_mm, whose slowest mode decays at this rate (so L_TF - L
    decays at twice it). If S_om is rank deficient (e.g. at the exact saddle) the rate is 0 and W
    need not reach W*, yet L_TF - L = 1/2 tr(E^T S_mo S_om E S_mm) still decays at twice the
    smallest *positive* eigenvalue of S_mo S_om times lambda_min(S_mm): the null-space part of E
    never enters L_TF (derived; tests/unit/test_attention_landscape.py checks both).
    Kim & Suzuki, arXiv 2402.01258, Lemma 3.1; docs/attention_landscape.md §2. Provenance: derived.
    """
    return torch.linalg.eigvalsh(cov.S_mo @ cov.S_om)[0] * torch.linalg.eigvalsh(cov.S_mm)[0]


# --------------------------------------------------------------------------- the landscape


def b_matrix(cov: Covariances, cond_max: float = COND_MAX) -> Tensor:
    """B_mu = S_mm^{-1} S_mo, (k, k_o): the least-squares map with f° ~ B_mu^T h_mu.

    docs/attention_landscape.md §4 (derived; Kim & Suzuki, arXiv 2402.01258, section 3).
    """
    return _solve(cov.S_mm, cov.S_mo, cond_max)


def schur_complement(cov: Covariances, cond_max: float = COND_MAX) -> Tensor:
    """S_mu = S_oo - S_om S_mm^{-1} S_mo (PSD), the residual covariance E[zeta zeta^T].

    Kim & Suzuki, arXiv 2402.01258, eq. (3); docs/attention_landscape.md §3. Provenance: stated.
    """
    S_mu = cov.S_oo - cov.S_om @ b_matrix(cov, cond_max)  # (k_o, k_o)
    return 0.5 * (S_mu + S_mu.T)


def landscape_loss(cov: Covariances, cond_max: float = COND_MAX) -> Tensor:
    """The attention landscape L(mu) = min_W L_TF(mu, W) = 1/2 tr S_mu.

    L = 1/2 tr S_oo - 1/2 tr(S_om S_mm^{-1} S_mo) = 1/2 E||zeta||^2, zeta = f° - S_om S_mm^{-1} h.
    Kim & Suzuki, arXiv 2402.01258, eq. (3); docs/attention_landscape.md §3. Provenance: stated. Facts (derived):
    0 <= L <= 1/2 tr S_oo, L(mu°) = 0, L(R#mu) = L(mu).

    Raises
    ------
    SingularCovarianceError
        When cond(S_mm) > ``cond_max``.
    """
    return 0.5 * torch.trace(schur_complement(cov, cond_max))


def attention_landscape(name: str, student: ParticleMeasure, teacher: ParticleMeasure, *,
                        tile: int = DEFAULT_TILE, order: int | None = None,
                        cond_max: float = COND_MAX) -> Tensor:
    """L(mu) = 1/2 tr S_mu straight from the particles (differentiable in them).

    Kim & Suzuki, arXiv 2402.01258, eq. (3); docs/attention_landscape.md §3. Provenance: stated.
    """
    return landscape_loss(covariances(name, student, teacher, tile=tile, order=order), cond_max)


def saddle_indicator(cov: Covariances, cond_max: float = COND_MAX) -> Tensor:
    """||S_mo S_mu||_F: nonzero means some mixture direction R#mu° decreases L at first order.

    docs/attention_landscape.md §5 (derived; Kim & Suzuki, arXiv 2402.01258, section 4).
    """
    return torch.linalg.matrix_norm(cov.S_mo @ schur_complement(cov, cond_max))


def mixture_derivative(cov: Covariances, R: Tensor, cond_max: float = COND_MAX) -> Tensor:
    """d/ds L((1-s) mu + s R#mu°) at s = 0, which equals -tr(R^T B_mu S_mu).

    R is (k, k_o). docs/attention_landscape.md §5 (derived; Kim & Suzuki, arXiv 2402.01258, proof of Theorem 3.3).
    """
    return -torch.trace(R.T @ b_matrix(cov, cond_max) @ schur_complement(cov, cond_max))


def critical_point_lower_bound(cov: Covariances, rtol: float = 1e-8,
                               cond_max: float = COND_MAX) -> Tensor:
    """1/2 lambda_min(S_oo) rank(S_mu): a lower bound on L at critical points with S_mo S_mu = 0.

    There every nonzero eigenvalue of S_mu is an eigenvalue of S_oo, so L = 1/2 tr S_mu >= this.
    rank(S_mu) counts eigenvalues above ``rtol * lambda_max(S_oo)`` (rounding in S_mu is about
    cond(S_mm) * eps * ||S_oo||, far below the default 1e-8 for accepted conditioning up to ~1e6).
    docs/attention_landscape.md §5 (derived; the paper's "L >= r_/2", Kim & Suzuki, arXiv 2402.01258, section 4,
    is stated in that form with r_ unconfirmed).
    """
    eig_oo = torch.linalg.eigvalsh(cov.S_oo)  # (k_o,)
    eig_mu = torch.linalg.eigvalsh(schur_complement(cov, cond_max))  # (k_o,)
    rank = (eig_mu > rtol * eig_oo[-1]).sum()
    return 0.5 * eig_oo[0] * rank


def free_output_direction(cov: Covariances, rtol: float = 1e-8, cond_max: float = COND_MAX) -> Tensor:
    """R = (I - B B^+) Pi, the mixture direction R#mu° that adds the unexplained teacher outputs to the student
    outputs the least-squares fit does not use.

    B = S_mm^{-1} S_mo (k, k_o); I - B B^+ projects R^k onto ker(B^T) (student outputs that carry no weight in
    the fit f° ~ B^T h); Pi projects R^{k_o} onto the eigenvectors of S_mu with eigenvalue above
    ``rtol * lambda_max(S_oo)`` (the unexplained part of f°); singular values of B below
    ``rtol * sqrt(lambda_max(S_oo) / lambda_min(S_mm))`` (B's largest possible norm) count as 0.
    At the orthogonal critical points (:func:`orthogonal_critical_point`) it is the projector on the
    unexplained outputs. Returns (k, k_o).
    docs/attention_landscape.md §7. Provenance: ours (a choice of R for Theorem 3.3, whose R we could
    not read).
    """
    B = b_matrix(cov, cond_max)  # (k, k_o)
    eye = torch.eye(B.shape[0], dtype=B.dtype, device=B.device)
    lam_oo = torch.linalg.eigvalsh(cov.S_oo)[-1]
    largest = torch.sqrt(lam_oo / torch.linalg.eigvalsh(cov.S_mm)[0])  # ||B|| <= this, as B^T S_mm B <= S_oo
    free = eye - B @ torch.linalg.pinv(B, atol=float(rtol * largest))  # (k, k)
    eig, vec = torch.linalg.eigh(schur_complement(cov, cond_max))  # (k_o,), (k_o, k_o)
    U = vec[:, eig > rtol * lam_oo]  # (k_o, r)
    return free @ U @ U.T  # (k, k_o)


def near_critical_lower_bound(cov: Covariances, rtol: float = 1e-8,
                              cond_max: float = COND_MAX) -> Tensor:
    """The lower bound of :func:`critical_point_lower_bound` corrected for an inexact critical point.

    With eta = ||S_mo S_mu||_F (the saddle indicator), every eigenpair S_mu e = s e has
    ||S_mo e|| <= eta / s, and s = e^T S_oo e - ||S_mm^{-1/2} S_mo e||^2, so
    s >= b(s) = lambda_min(S_oo) - eta^2 / (s^2 lambda_min(S_mm)). Hence
    L = 1/2 sum_i s_i >= 1/2 sum_i max(0, b(s_i)), the sum over eigenvalues above
    ``rtol * lambda_max(S_oo)`` (smaller ones are rounding of zero and contribute 0). At eta = 0 this is
    1/2 lambda_min(S_oo) rank(S_mu); it is what can be checked at a critical point reached by a flow,
    where eta is small but not 0. docs/attention_landscape.md §5. Provenance: derived (ours).
    """
    eig_oo = torch.linalg.eigvalsh(cov.S_oo)  # (k_o,)
    S_mu = schur_complement(cov, cond_max)  # (k_o, k_o)
    eig_mu = torch.linalg.eigvalsh(S_mu)  # (k_o,)
    eta = torch.linalg.matrix_norm(cov.S_mo @ S_mu)
    lam_mm = torch.linalg.eigvalsh(cov.S_mm)[0]
    kept = eig_mu > rtol * eig_oo[-1]
    safe = torch.where(kept, eig_mu, torch.ones_like(eig_mu))  # (k_o,)
    b = (eig_oo[0] - eta ** 2 / (safe ** 2 * lam_mm)).clamp_min(0.0)  # (k_o,)
    return 0.5 * torch.where(kept, b, torch.zeros_like(b)).sum()


# --------------------------------------------------------------------------- variations, flow


def _detached(mu: ParticleMeasure) -> ParticleMeasure:
    return ParticleMeasure(mu.a.detach(), mu.w.detach(), None if mu.p is None else mu.p.detach())


def _kernel_mean(name: str, w: Tensor, mu: ParticleMeasure, tile: int,
                 order: int | None) -> Tensor:
    """E[sigma(w.x) h_mu(x)] = sum_i p_i a_i K(w, w_i) for every row of w: (P, k)."""
    return kernel_matvec(name, w, mu.w, mu.weights.unsqueeze(-1) * mu.a, tile=tile, order=order)


def first_variation(name: str, student: ParticleMeasure, teacher: ParticleMeasure, a: Tensor,
                    w: Tensor, *, tile: int = DEFAULT_TILE, order: int | None = None,
                    cond_max: float = COND_MAX) -> Tensor:
    """First variation V(theta) = dL/dmu (theta) at arbitrary points theta = (a, w).

    V(theta) = -E[sigma(w.x) a^T B_mu zeta(x)] = -a^T B_mu (c_o(w) - B_mu^T c_m(w)), with the kernel
    means c_o(w) = E[sigma(w.x) f°(x)] = sum_j p°_j a°_j K(w, w°_j) and c_m(w) = sum_i p_i a_i
    K(w, w_i). Normal equations give sum_i p_i V(theta_i) = 0. docs/attention_landscape.md §4 (derived; Kim &
    Suzuki, arXiv 2402.01258, section 3). Differentiable in (a, w) and in the measures.

    Parameters
    ----------
    a, w : Tensor
        (P, k) and (P, d) evaluation points.

    Returns
    -------
    Tensor
        (P,).
    """
    cov = covariances(name, student, teacher, tile=tile, order=order)
    B = b_matrix(cov, cond_max)  # (k, k_o)
    xi = (_kernel_mean(name, w, teacher, tile, order)
          - _kernel_mean(name, w, student, tile, order) @ B)  # (P, k_o): E[sigma(w.x) zeta]
    return -(a * (xi @ B.T)).sum(-1)  # (P,)


def particle_velocity(name: str, student: ParticleMeasure, teacher: ParticleMeasure,
                      a: Tensor | None = None, w: Tensor | None = None, *,
                      tile: int = DEFAULT_TILE, order: int | None = None,
                      cond_max: float = COND_MAX) -> tuple[Tensor, Tensor]:
    """Wasserstein gradient-flow velocity -grad_theta V(theta), the measure held fixed.

    da/dt = E[sigma(w.x) B_mu zeta(x)], dw/dt = E[sigma'(w.x) (a^T B_mu zeta(x)) x], computed by
    autograd of :func:`first_variation` in the evaluation point. At the particles of a uniform
    measure it equals -M grad_{theta_i} L(theta_1..theta_M) (mean-field time; -grad / p_i for
    weights p). docs/attention_landscape.md §4 (derived; Kim & Suzuki, arXiv 2402.01258, section 3).

    Parameters
    ----------
    a, w : Tensor, optional
        (P, k), (P, d) evaluation points; default the student's particles.

    Returns
    -------
    (Tensor, Tensor)
        Velocities (P, k) and (P, d), detached.
    """
    mu, mu_o = _detached(student), _detached(teacher)
    a = (mu.a if a is None else a).detach().requires_grad_()  # (P, k)
    w = (mu.w if w is None else w).detach().requires_grad_()  # (P, d)
    with torch.enable_grad():
        V = first_variation(name, mu, mu_o, a, w, tile=tile, order=order, cond_max=cond_max)
        grad_a, grad_w = torch.autograd.grad(V.sum(), (a, w))
    return -grad_a, -grad_w


def dissipation(name: str, student: ParticleMeasure, teacher: ParticleMeasure, *,
                tile: int = DEFAULT_TILE, order: int | None = None,
                cond_max: float = COND_MAX) -> Tensor:
    """int ||grad_theta V||^2 dmu = -dL/dt along the Wasserstein gradient flow.

    dL/dt = -int ||grad V||^2 dmu = -sum_i p_i ||v_i||^2 with v_i = :func:`particle_velocity`.
    docs/attention_landscape.md §4 (derived; Kim & Suzuki, arXiv 2402.01258, section 3).
    """
    v_a, v_w = particle_velocity(name, student, teacher, tile=tile, order=order, cond_max=cond_max)
    return student.weights @ ((v_a * v_a).sum(-1) + (v_w * v_w).sum(-1))


def second_variation(name: str, student: ParticleMeasure, teacher: ParticleMeasure,
                     chi: ParticleMeasure, *, tile: int = DEFAULT_TILE, order: int | None = None,
                     cond_max: float = COND_MAX) -> Tensor:
    """Second variation d2L[g] = d^2/ds^2 L(mu + s chi) at s = 0, with g = h_chi.

    d2L[g] = E||B_mu^T g||^2 - tr(Q(g)^T S_mm^{-1} Q(g)),
    Q(g) = E[g f°^T] - (E[h g^T] + E[g h^T]) B_mu. ``chi`` is a signed particle measure.
    docs/attention_landscape.md §5 (derived; Kim & Suzuki, arXiv 2402.01258, proof of Theorem 3.3).
    """
    def cov(m1: ParticleMeasure, m2: ParticleMeasure) -> Tensor:
        return contract(name, m1.a, m1.w, m2.a, m2.w, m1.weights, m2.weights, tile=tile,
                        order=order)

    base = covariances(name, student, teacher, tile=tile, order=order)
    B = b_matrix(base, cond_max)  # (k, k_o)
    E_hg = cov(student, chi)  # (k, k)
    Q = cov(chi, teacher) - (E_hg + E_hg.T) @ B  # (k, k_o)
    return (torch.trace(B.T @ cov(chi, chi) @ B)
            - torch.trace(Q.T @ _solve(base.S_mm, Q, cond_max)))


def mixture_second_derivative(name: str, student: ParticleMeasure, teacher: ParticleMeasure,
                              R: Tensor, *, tile: int = DEFAULT_TILE, order: int | None = None,
                              cond_max: float = COND_MAX) -> Tensor:
    """d^2/ds^2 L((1-s) mu + s R#mu°) at s = 0, which equals d2L[h_{R#mu°} - h_mu].

    docs/attention_landscape.md §5 (derived); Theorem 3.3 of Kim & Suzuki (arXiv 2402.01258) bounds it by
    -(4 / (k R_1^2)) L(mu)^2 at non-global critical points (stated in form, R_1 unconfirmed).
    """
    chi = _union(teacher.push(R), student, 1.0, -1.0)  # R#mu° - mu
    return second_variation(name, student, teacher, chi, tile=tile, order=order,
                            cond_max=cond_max)


def wasserstein_hessian(name: str, student: ParticleMeasure, teacher: ParticleMeasure, *,
                        tile: int = DEFAULT_TILE, order: int | None = None,
                        cond_max: float = COND_MAX) -> Tensor:
    """Particle Wasserstein Hessian P^{-1/2} (d^2 L / d theta^2) P^{-1/2}, P = diag(p_i) (x) I.

    theta stacks the particles row-wise, theta_i = (a_i, w_i) (k + d entries each); for uniform
    weights this is M times the Hessian of L(theta_1..theta_M), the linearisation of the mean-field
    flow. Its lowest eigenvalue is negative at a strict saddle. Autograd Hessian: small M only.
    docs/attention_landscape.md §6 (derived; Kim & Suzuki, arXiv 2402.01258, section 4).

    Returns
    -------
    Tensor
        (M (k + d), M (k + d)).
    """
    p = student.weights.detach()
    if bool((p <= 0).any()):
        raise ValueError("the Wasserstein Hessian needs positive particle weights")
    mu_o = _detached(teacher)
    M, k = student.a.shape

    def loss(theta: Tensor) -> Tensor:  # theta: (M * (k + d),)
        rows = theta.view(M, -1)  # (M, k + d)
        mu = ParticleMeasure(rows[:, :k], rows[:, k:], p)
        return attention_landscape(name, mu, mu_o, tile=tile, order=order, cond_max=cond_max)

    theta = torch.cat([student.a, student.w], dim=1).detach().reshape(-1)  # (M (k + d),)
    H = torch.autograd.functional.hessian(loss, theta)  # (M (k + d), M (k + d))
    scale = p.rsqrt().repeat_interleave(k + student.w.shape[1])  # (M (k + d),)
    return scale[:, None] * H * scale[None, :]


def hessian_min_eigenvalue(name: str, student: ParticleMeasure, teacher: ParticleMeasure,
                           **kwargs) -> Tensor:
    """lambda_min of :func:`wasserstein_hessian` (negative at a strict saddle; docs/attention_landscape.md §6,
    derived). Keyword arguments go to :func:`wasserstein_hessian`."""
    return torch.linalg.eigvalsh(wasserstein_hessian(name, student, teacher, **kwargs))[0]


# --------------------------------------------------------------------------- the exact saddle


def exact_strict_saddle(k: int, d: int, *, generator: torch.Generator | None = None,
                        dtype: torch.dtype = torch.float64,
                        device: torch.device | str = "cpu") -> tuple[ParticleMeasure, ParticleMeasure]:
    """The exact strict saddle of docs/attention_landscape.md §6 (use with the erf activation).

    Teacher: k particles (k e_j, u_j), so f°_j(x) = erf(u_j.x), u_1..u_k orthonormal. Student: k
    particles reproducing f°_1..f°_{k-1} exactly, plus (k e_k, v) with v orthogonal to every u_j.
    With erf and x ~ N(0, I_d): S_mm = S_oo = c I, S_om = diag(c,..,c,0), c = (2/pi) arcsin(2/3),
    V = 0 identically, L = c/2 = 1/2 E[f°_k^2], saddle indicator 0, negative curvature towards
    R = e_k e_k^T. Provenance: derived (docs/attention_landscape.md §6; Kim & Suzuki, arXiv 2402.01258, section 4).

    Parameters
    ----------
    k, d : int
        Output dimension and input dimension; needs d >= k + 1.
    generator : torch.Generator, optional
        If given, (u_1..u_k, v) are the first k+1 rows of a random orthogonal matrix (QR of a
        Gaussian matrix drawn on the generator's device); otherwise e_1..e_k, e_{k+1}.

    Returns
    -------
    (ParticleMeasure, ParticleMeasure)
        (student, teacher), uniform weights 1/k.
    """
    if k < 1 or d < k + 1:
        raise ValueError(f"the exact saddle needs k >= 1 and d >= k + 1; got k = {k}, d = {d}")
    return orthogonal_critical_point(k, d, generator=generator, dtype=dtype, device=device)


def orthogonal_critical_point(k: int, d: int, unexplained: int = 1, *, norms: Sequence[float] | None = None,
                              scale: float = 1.0, copies: int = 1,
                              generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                              device: torch.device | str = "cpu") -> tuple[ParticleMeasure, ParticleMeasure]:
    """A family of exact non-global critical points (use with an odd activation: erf, tanh).

    Teacher: k particles (k e_j, r_j u_j), f°_j(x) = sigma(r_j u_j.x), u_j orthonormal, r_j = ``norms``
    (an anisotropic teacher when they differ). Student: the teacher's particles for the first
    k - ``unexplained`` outputs, and for each remaining output j the particle (k ``scale`` e_j, r_j v_j),
    v_j orthonormal and orthogonal to every u. Each student particle is split into ``copies`` particles at
    the same w whose output weights are multiplied by 1 + t_i, t = linspace(-1/2, 1/2, copies) (summing
    to 0, so h is unchanged while the particle Hessian is not). For an odd activation and x ~ N(0, I_d),
    orthogonal directions give uncorrelated features, so B_mu zeta = 0: V = 0 identically, S_mo S_mu = 0,
    L = 1/2 sum over unexplained j of E[f°_j^2], rank(S_mu) = ``unexplained``.
    With unexplained = 1, norms 1, scale 1, copies 1 this is :func:`exact_strict_saddle`.
    docs/attention_landscape.md §6. Provenance: derived.

    Raises
    ------
    ValueError
        Unless 1 <= unexplained <= k, d >= k + unexplained, copies >= 1, len(norms) == k.
    """
    r = k if norms is None else len(norms)
    if not (1 <= unexplained <= k and d >= k + unexplained and copies >= 1 and r == k):
        raise ValueError(f"orthogonal critical point needs 1 <= unexplained <= k, d >= k + unexplained, "
                         f"copies >= 1 and k norms; got k = {k}, d = {d}, unexplained = {unexplained}, "
                         f"copies = {copies}, {r} norms")
    frame = torch.eye(d, dtype=dtype, device=device)  # (d, d), orthonormal rows
    if generator is not None:
        gauss = torch.randn(d, d, generator=generator, dtype=dtype, device=generator.device).to(device)
        frame = torch.linalg.qr(gauss).Q.T
    radii = torch.ones(k, dtype=dtype, device=device) if norms is None else \
        torch.tensor([float(n) for n in norms], dtype=dtype, device=device)  # (k,)
    a = k * torch.eye(k, dtype=dtype, device=device)  # (k, k)
    teacher = ParticleMeasure(a, frame[:k] * radii[:, None])  # w: (k, d)
    kept = k - unexplained
    w = torch.cat([frame[:kept], frame[k:k + unexplained]]) * radii[:, None]  # (k, d)
    a_s = a.clone()
    a_s[kept:] *= scale
    split = 1.0 + torch.linspace(-0.5, 0.5, copies, dtype=dtype, device=device) if copies > 1 else \
        torch.ones(1, dtype=dtype, device=device)  # (copies,)
    student = ParticleMeasure((a_s[:, None, :] * split[None, :, None]).reshape(k * copies, k),
                              w.repeat_interleave(copies, 0))  # (k copies, k), (k copies, d)
    return student, teacher


# --------------------------------------------------------------------------- finite n


def _span_basis(*Ws: Tensor) -> Tensor:
    """Orthonormal basis (d, r) of the span of all rows of the given direction matrices."""
    stacked = torch.cat(Ws)  # (M_total, d)
    _, s, Vh = torch.linalg.svd(stacked, full_matrices=False)
    tol = max(stacked.shape) * torch.finfo(stacked.dtype).eps * (float(s[0]) if len(s) else 0.0)
    return Vh[: int((s > tol).sum())].T  # (d, r)


def _tensor_grid(r: int, order: int, max_nodes: int, dtype: torch.dtype,
                 device: torch.device) -> tuple[Tensor, Tensor]:
    """Pruned r-dimensional tensor Gauss-Hermite grid for N(0, I_r): nodes (N, r), weights (N,)."""
    z, wt = gauss_hermite(order, dtype, device)
    nodes, weights = torch.zeros(1, 0, dtype=dtype, device=device), torch.ones(1, dtype=dtype,
                                                                              device=device)
    for _ in range(r):
        weights = (weights[:, None] * wt[None, :]).reshape(-1)  # (N * order,)
        nodes = torch.cat([nodes.repeat_interleave(order, 0), z.repeat(nodes.shape[0])[:, None]], 1)
        keep = weights > _PRUNE
        nodes, weights = nodes[keep], weights[keep]
        if nodes.shape[0] > max_nodes:
            raise ValueError(f"finite-n quadrature over a {r}-dimensional span needs more than "
                             f"{max_nodes} nodes at order {order}; use mc_finite_n_loss")
    return nodes, weights


def finite_n_loss(name: str, student: ParticleMeasure, teacher: ParticleMeasure, W: Tensor, n: int,
                  *, noise_var: float = 0.0, grid_order: int = FINITE_N_ORDER,
                  max_nodes: int = 4_000_000, tile: int = DEFAULT_TILE,
                  order: int | None = None) -> Tensor:
    """Finite-prompt-length loss L^n_TF, exact up to quadrature.

    L^n_TF = L_TF + (1/(2n)) E_{x, x_q} ||(f°(x) h(x)^T - S_om) W h(x_q)||^2
             [+ s^2/2 + (s^2/(2n)) tr(W S_mm W^T S_mm) with label noise N(0, s^2)],
    and E_{x,x_q}||(f° h^T - S_om) W h_q||^2 = E[(h^T N h)(f°^T f°)] - tr(S_om N S_mo),
    N = W S_mm W^T. The fourth moment has no closed form for these activations: it is integrated by
    a tensor Gauss-Hermite rule (``grid_order`` nodes per axis, pruned) over the r-dimensional span
    of all particle directions (x enters only through its projection there), so it is meant for
    small r (r <= 4 or so); beyond ``max_nodes`` it raises and :func:`mc_finite_n_loss` is the
    route. ``order`` is the pair-kernel order used for L_TF and the covariances.
    docs/attention_landscape.md §8 (derived; the noise term for finite n is ours, derived the same way; Kim &
    Suzuki, arXiv 2402.01258, section 3, bound |L^n - L| <~ sqrt(log k / n) stated).
    """
    if n < 1:
        raise ValueError(f"prompt length n must be >= 1, got {n}")
    cov = covariances(name, student, teacher, tile=tile, order=order)
    basis = _span_basis(student.w, teacher.w)  # (d, r)
    z, wt = _tensor_grid(basis.shape[1], grid_order, max_nodes, W.dtype, W.device)  # (N, r), (N,)
    x = z @ basis.T  # (N, d): x restricted to the span (the orthogonal part never enters)
    h, f = features(name, student, x), features(name, teacher, x)  # (N, k), (N, k_o)
    N = W @ cov.S_mm @ W.T  # (k, k)
    fourth = wt @ (((h @ N) * h).sum(-1) * (f * f).sum(-1))
    correction = fourth - torch.trace(cov.S_om @ N @ cov.S_mo)
    noise = 0.5 * noise_var * (1.0 + torch.trace(N @ cov.S_mm) / n)
    return loss_tf(cov, W) + correction / (2 * n) + noise


def mc_finite_n_loss(name: str, student: ParticleMeasure, teacher: ParticleMeasure, W: Tensor,
                     n: int, n_prompts: int, generator: torch.Generator | None = None, *,
                     noise_var: float = 0.0, batch: int = 8192) -> MCEstimate:
    """Monte Carlo twin of :func:`finite_n_loss`: the full attention model on sampled prompts.

    Each prompt draws x_1..x_n, x_q ~ N(0, I_d), a task v ~ N(0, I_k) (E[v v^T] = I),
    y_i = v^T f°(x_i) + eps_i, eps_i ~ N(0, s^2); the prediction is
    y_hat = (1/n) sum_i y_i h(x_i)^T W h(x_q) and the loss 1/2 (y_q - y_hat)^2. Kim & Suzuki,
    arXiv 2402.01258, section 2 (stated model); docs/attention_landscape.md §8. For tests and benchmarks.
    ``generator`` must live on W's device.
    """
    d, k_o = student.w.shape[1], teacher.a.shape[1]
    opts = dict(generator=generator, dtype=W.dtype, device=W.device)
    total = sq = torch.zeros((), dtype=W.dtype, device=W.device)
    for start in range(0, n_prompts, batch):
        b = min(batch, n_prompts - start)
        x = torch.randn(b, n + 1, d, **opts)  # (b, n + 1, d); the last token is the query
        v = torch.randn(b, k_o, 1, **opts)  # (b, k_o, 1)
        y = (features(name, teacher, x) @ v).squeeze(-1)  # (b, n + 1)
        y = y + math.sqrt(noise_var) * torch.randn(b, n + 1, **opts)
        h = features(name, student, x)  # (b, n + 1, k)
        context = (y[:, :n, None] * h[:, :n]).mean(1)  # (b, k)
        y_hat = ((context @ W) * h[:, n]).sum(-1)  # (b,)
        loss = 0.5 * (y[:, n] - y_hat) ** 2  # (b,)
        total, sq = total + loss.sum(), sq + (loss * loss).sum()
    mean = total / n_prompts
    var = (sq / n_prompts - mean * mean).clamp_min(0.0) * n_prompts / (n_prompts - 1)
    return MCEstimate(mean, torch.sqrt(var / n_prompts))
