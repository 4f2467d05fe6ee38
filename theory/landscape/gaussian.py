"""Gaussian expectations for x ~ N(0, I_d): activations, pair kernels and their tiled contraction.

The pair kernel of an activation sigma is K(w, w') = E[sigma(w.x) sigma(w'.x)] for x ~ N(0, I_d).
It depends on (w, w') only through the Gram entries S11 = |w|^2, S22 = |w'|^2, S12 = w.w'
(docs/attention_landscape.md §1; Kim & Suzuki, arXiv 2402.01258, use x ~ N(0, I_d) in their
experiments, the closed forms are classical facts).

Routes (all float64 torch, device taken from the inputs), chosen by :func:`gram_kernel`:

- closed forms for ``erf``, ``probit`` and ``relu`` (:func:`pair_kernel`), written with ``arctan2``
  and a guarded square root so that autograd gradients stay finite when two particles align;
- the certified Hermite (Mehler) series for ``sigmoid`` and ``tanh`` (:mod:`theory.landscape.hermite`),
  their route whenever no quadrature order is given: per-particle coefficients, a polynomial in the
  cosine per pair, truncation error <= 1e-15 per entry (certified), Price's theorem as its autograd
  backward;
- tensor-product Gauss-Hermite quadrature over the 2-D Gaussian of (u, u') = (w.x, w'.x) for every
  activation (:func:`quad_pair_kernel`): the slow reference (order 1400 converged) and the route of an
  explicit ``order``;
- Monte Carlo (:func:`mc_pair_kernel`), the slow, obviously-correct twin for tests and benchmarks.

Particle velocities need E[sigma'(w.x) sigma(w'.x) x] = grad_w K = 2 dK/dS11 w + dK/dS12 w' (Gaussian
x). For the closed forms the partials dK/dS11, dK/dS22, dK/dS12 are written out
(:func:`closed_form_partials`), so a tiled pass can contract them directly; for the Hermite series they
are series of the same kind (:func:`theory.landscape.hermite.hermite_partials`); the quadrature route is
differentiated by autograd. The ReLU closed form also uses its partials as its autograd backward (a
custom autograd function) because autograd through the arc-cosine formula gives 0 * inf at aligned
particles.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np
import torch
from scipy.special import roots_hermitenorm
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from theory.landscape.hermite import HERMITE, pair_expectation

__all__ = [
    "ACTIVATIONS",
    "CLOSED_FORM",
    "DEFAULT_ORDER",
    "DEFAULT_TILE",
    "KernelPartials",
    "MCEstimate",
    "activation_fn",
    "activation_grad",
    "closed_form_kernel",
    "closed_form_partials",
    "contract",
    "gauss_hermite",
    "gram",
    "gram_kernel",
    "kernel_matvec",
    "mc_pair_kernel",
    "pair_kernel",
    "quad_pair_kernel",
]

ActivationFn = Callable[[Tensor], Tensor]

_SQRT_2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _probit(z: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.erf(z / _SQRT_2))


def _erf_grad(z: Tensor) -> Tensor:
    return (2.0 / math.sqrt(math.pi)) * torch.exp(-z * z)


def _probit_grad(z: Tensor) -> Tensor:
    return torch.exp(-0.5 * z * z) / _SQRT_2PI


def _relu_grad(z: Tensor) -> Tensor:
    return (z > 0).to(z.dtype)


def _sigmoid_grad(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s)


def _tanh_grad(z: Tensor) -> Tensor:
    return 1.0 - torch.tanh(z) ** 2


_ACTIVATIONS: dict[str, tuple[ActivationFn, ActivationFn]] = {
    "erf": (torch.erf, _erf_grad),
    "probit": (_probit, _probit_grad),
    "relu": (torch.relu, _relu_grad),
    "sigmoid": (torch.sigmoid, _sigmoid_grad),
    "tanh": (torch.tanh, _tanh_grad),
}

#: Activation names understood everywhere in ``theory`` (and on the ``verify`` command line).
ACTIVATIONS: tuple[str, ...] = tuple(_ACTIVATIONS)
#: Activations whose pair kernel has a closed form (sigmoid and tanh use the Hermite series).
CLOSED_FORM: tuple[str, ...] = ("erf", "probit", "relu")

#: Default order of :func:`quad_pair_kernel` per activation, measured (tests/unit/test_gaussian.py checks
#: it) so that the 2-D rule is within 1e-10 of a converged reference (order 1400) for every angle at
#: |w|, |w'| <= 3; worst errors at |w| = |w'| = 3: erf 4e-11, probit 6e-12, sigmoid 6e-12,
#: tanh 1e-10 (tanh(3u) is the steepest; at |w| <= 2 order 320 already gives 4e-11). Cost per pair:
#: about order^2 / 4 activation evaluations after pruning. No production route uses these defaults any
#: more (closed forms and the Hermite series are exact to ~1e-15); :func:`quad_pair_kernel` is the
#: reference, and an explicit ``order`` elsewhere selects quadrature at that order. ReLU has a kink, so
#: Gauss-Hermite converges only algebraically for it (error ~ 1e-3 at order 256); its order here only
#: serves comparisons.
DEFAULT_ORDER: dict[str, int] = {"erf": 360, "probit": 192, "relu": 256, "sigmoid": 192, "tanh": 640}

#: Default side of a kernel tile: at most DEFAULT_TILE x DEFAULT_TILE pairs are evaluated at once.
#: 512 (2 MiB per float64 temporary): measured on one CPU thread, the fused mean-field step is as fast
#: as with 1024 or 256 without the shared block and faster with it (more off-diagonal tiles to mirror
#: at moderate M); benchmarks/README.md.
DEFAULT_TILE = 512
#: Quadrature temporaries per tile are capped at this many floats (the tile side shrinks to fit).
_QUAD_BUDGET = 1 << 22
#: Product weights of the 2-D rule below this are dropped; the dropped mass is < 1e-19 up to
#: order 1400 (the integrands are bounded, or grow polynomially for relu).
_PRUNE = 1e-22


def _check_name(name: str) -> None:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")


def activation_fn(name: str) -> ActivationFn:
    """Return the activation sigma called ``name``.

    erf(z); probit Phi(z) = (1 + erf(z / sqrt 2)) / 2; relu max(z, 0); sigmoid 1 / (1 + e^-z);
    tanh(z). Provenance: stated (the paper's experiments use sigmoid; the others are our
    closed-form test beds, docs/attention_landscape.md §1).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones.
    """
    _check_name(name)
    return _ACTIVATIONS[name][0]


def activation_grad(name: str) -> ActivationFn:
    """Return sigma', the derivative of :func:`activation_fn` ``(name)``.

    relu'(0) is taken as 0 (Heaviside convention). Provenance: derived (elementary calculus).
    """
    _check_name(name)
    return _ACTIVATIONS[name][1]


# --------------------------------------------------------------------------- closed forms


def _gram_det(S11: Tensor, S22: Tensor, S12: Tensor) -> Tensor:
    """Guarded Gram determinant |w|^2 |w'|^2 - (w.w')^2 >= 0 (clamped: roundoff can make it < 0)."""
    return (S11 * S22 - S12 * S12).clamp_min(0.0)


class KernelPartials(NamedTuple):
    """Partial derivatives of a closed-form pair kernel K(S11, S22, S12) in separable form:

        dK/dS11 = row * pair,    dK/dS22 = col * pair,    dK/dS12 = cross,

    with ``row`` a function of S11 only (shape (..., t1, 1) for a tile), ``col`` the same function of
    S22 ((..., 1, t2)), and ``pair``, ``cross`` (..., t1, t2) symmetric under exchanging the two
    particles. A tile pass contracts ``pair`` and ``cross`` with its weights and applies ``row`` per
    particle afterwards; a tile of a particle set with itself serves both orientations.
    """

    row: Tensor
    col: Tensor
    pair: Tensor
    cross: Tensor

    def full(self) -> tuple[Tensor, Tensor, Tensor]:
        """(dK/dS11, dK/dS22, dK/dS12), each of the pair shape."""
        return self.row * self.pair, self.col * self.pair, self.cross

    def row_sum(self, beta: Tensor) -> Tensor:
        """sum_j beta_ij dK/dS11_ij = row_i sum_j beta_ij pair_ij: (..., t1)."""
        return self.row[..., 0] * torch.einsum("...ij,...ij->...i", beta, self.pair)

    def col_sum(self, beta: Tensor) -> Tensor:
        """sum_i beta_ij dK/dS22_ij = col_j sum_i beta_ij pair_ij: (..., t2); overwrites ``pair`` (its last use)."""
        return self.col[..., 0, :] * self.pair.mul_(beta).sum(-2)


class _Arcsine(NamedTuple):
    """K = offset + scale * arcsin(S12 / sqrt((c + S11)(c + S22))): erf and probit (see pair_kernel)."""

    c: float
    scale: float
    offset: float


#: erf: (2/pi) arcsin(2 S12 / sqrt((1 + 2 S11)(1 + 2 S22)))
#:      = (2/pi) arcsin(S12 / sqrt((1/2 + S11)(1/2 + S22)));
#: probit: 1/4 + (1/2pi) arcsin(S12 / sqrt((1 + S11)(1 + S22))).
_ARCSINE: dict[str, _Arcsine] = {"erf": _Arcsine(0.5, 2.0 / math.pi, 0.0),
                                 "probit": _Arcsine(1.0, 0.5 / math.pi, 0.25)}


def _arcsine_det(c: float, S11: Tensor, S22: Tensor, S12: Tensor, weight: float = 1.0) -> Tensor:
    """weight * h, h = (c + S11)(c + S22) - S12^2 = c^2 + c (S11 + S22) + G >= c^2 > 0 (G the Gram
    determinant).

    Bounded away from 0, so sqrt(h), 1/sqrt(h) and their autograd derivatives stay finite when two
    particles align (G = 0); its rounding error is a few eps (c + S11)(c + S22), a relative error of
    a few eps (1 + S12^2 / h). The in-place scaling is autograd-safe (square's backward needs only
    S12), and so are in-place functions of the result (addcmul's backward needs only its factors);
    addcmul stays out of place because torch.vmap has no batching rule for addcmul_."""
    return torch.addcmul(S12.square().mul_(-weight), c + S11, c + S22, value=weight)


def _arcsine_closed(name: str, S11: Tensor, S22: Tensor, S12: Tensor) -> Tensor:
    # arcsin(S12 / sqrt(S12^2 + h)) = atan2(S12, sqrt(h)): no division, finite gradients at G = 0
    k = _ARCSINE[name]
    value = torch.atan2(S12, _arcsine_det(k.c, S11, S22, S12).sqrt_()).mul_(k.scale)
    return value.add_(k.offset) if k.offset else value


def _arcsine_partials(name: str, S11: Tensor, S22: Tensor, S12: Tensor) -> KernelPartials:
    """Partial derivatives of the erf and probit kernels K = k0 + s arcsin(S12 / sqrt(P Q)).

    With P = c + S11, Q = c + S22, h = P Q - S12^2 (erf: c = 1/2, s = 2/pi, k0 = 0; probit: c = 1,
    s = 1/(2 pi), k0 = 1/4):

        dK/dS12 = s / sqrt(h),
        dK/dS11 = -(S12 / (2 P)) dK/dS12,      dK/dS22 = -(S12 / (2 Q)) dK/dS12.

    For erf that reads dK/dS12 = 4 / (pi R), dK/dS11 = -S12 / (1 + 2 S11) * 4 / (pi R), with
    R = sqrt((1 + 2 S11)(1 + 2 S22) - 4 S12^2); for probit dK/dS12 = 1 / (2 pi sqrt(h)),
    dK/dS11 = -S12 / (2 (1 + S11)) * dK/dS12. Separable form (:class:`KernelPartials`):
    row = -1 / (2 P), col = -1 / (2 Q), pair = S12 dK/dS12, cross = dK/dS12, the last computed as
    1 / sqrt(h / s^2) (one reciprocal square root per pair).

    Derivation: with z = S12 / sqrt(P Q), d arcsin(z) = dz / sqrt(1 - z^2) and
    sqrt(1 - z^2) = sqrt(h / (P Q)); dz/dS12 = 1 / sqrt(P Q), so dK/dS12 = s / sqrt(h);
    dz/dS11 = -z / (2 P), so dK/dS11 = -(S12 / (2 P)) s / sqrt(h); S22 alike (K is symmetric in its
    arguments). All three are smooth and bounded (h >= c^2), at aligned particles too.
    Provenance: derived (elementary calculus on the closed forms of :func:`pair_kernel`;
    docs/kernel_gradients.md).
    """
    k = _ARCSINE[name]
    cross = _arcsine_det(k.c, S11, S22, S12, 1.0 / (k.scale * k.scale)).rsqrt_()  # s / sqrt(h)
    return KernelPartials(-0.5 / (k.c + S11), -0.5 / (k.c + S22), S12 * cross, cross)


def _safe_sqrt(x: Tensor) -> Tensor:
    """sqrt(max(x, 0)) whose autograd gradient is 0 (not inf or nan) where x <= 0."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), 0.0)


def _relu_partials(S11: Tensor, S22: Tensor, S12: Tensor) -> KernelPartials:
    """Partial derivatives of the arc-cosine kernel K = (s + (pi - theta) S12) / (2 pi).

    With G = S11 S22 - S12^2, s = sqrt(G) = |w||w'| sin(theta), theta = atan2(s, S12):

        dK/dS11 = s / (4 pi S11),    dK/dS22 = s / (4 pi S22),    dK/dS12 = (pi - theta) / (2 pi);

    separable form (:class:`KernelPartials`): row = 1 / (4 pi S11), col = 1 / (4 pi S22), pair = s,
    cross = dK/dS12.

    Derivation: Price's theorem, dK/dS12 = E[relu'(u) relu'(u')] = P(u > 0, u' > 0)
    = (pi - theta) / (2 pi) for the centred Gaussian pair (u, u') = (w.x, w'.x); and, by the chain rule
    on K(S11, S22, S12) with theta = arccos(S12 / sqrt(S11 S22)), the terms in d theta / dS11 cancel
    against ds/dS11 = S22 / (2 s), leaving s / (4 pi S11). Finite at aligned particles (s = 0: 0 and
    (pi - theta)/(2 pi) in {1/2, 0}); near alignment s inherits the rounding of G,
    |delta s| <= sqrt(|delta G|). Provenance: derived (docs/kernel_gradients.md).
    """
    s = _safe_sqrt(S11 * S22 - S12 * S12)  # |w||w'| sin(theta)
    theta = torch.atan2(s, S12)
    tiny = torch.finfo(S11.dtype).tiny
    return KernelPartials(1.0 / (4.0 * math.pi * S11.clamp_min(tiny)),
                          1.0 / (4.0 * math.pi * S22.clamp_min(tiny)), s, (math.pi - theta) / (2.0 * math.pi))


class _ArcCos1(torch.autograd.Function):
    """ReLU pair kernel K = (s + (pi - theta) S12) / (2 pi), s = sqrt(G), theta = atan2(s, S12).

    Autograd through sqrt(G) gives 0 * inf at aligned particles (G = 0); the partials themselves are
    finite there, so backward uses them directly. They are written in differentiable torch ops, so
    second derivatives work wherever the kernel is twice differentiable (not at G = 0). Written with a
    separate ``setup_context`` so that ``torch.vmap`` can batch it over configs (``generate_vmap_rule``).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(S11: Tensor, S22: Tensor, S12: Tensor) -> Tensor:
        s = _safe_sqrt(S11 * S22 - S12 * S12)
        return (s + (math.pi - torch.atan2(s, S12)) * S12) / (2.0 * math.pi)

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        S11, S22, S12 = ctx.saved_tensors
        d11, d22, d12 = _relu_partials(S11, S22, S12).full()
        return (_sum_to(grad * d11, S11.shape), _sum_to(grad * d22, S22.shape),
                _sum_to(grad * d12, S12.shape))


def _sum_to(x: Tensor, shape: torch.Size) -> Tensor:
    """Undo broadcasting: sum ``x`` down to ``shape``."""
    return x.sum_to_size(shape) if x.shape != shape else x


def _relu_closed(S11: Tensor, S22: Tensor, S12: Tensor) -> Tensor:
    return _ArcCos1.apply(S11, S22, S12)


def _check_closed(name: str) -> None:
    if name not in CLOSED_FORM:
        raise ValueError(f"no closed-form kernel for {name!r}; closed forms: {', '.join(CLOSED_FORM)}")


def closed_form_kernel(name: str, S11: Tensor, S22: Tensor, S12: Tensor) -> Tensor:
    """Closed-form pair kernel K(S11, S22, S12) from Gram entries (formulas: :func:`pair_kernel`).

    S11 = |w|^2, S22 = |w'|^2, S12 = w.w' in any mutually broadcastable shapes (batch dimensions
    included, e.g. (C, t1, 1), (C, 1, t2), (C, t1, t2) for a tile of C configs); differentiable, with
    finite gradients at aligned particles. docs/attention_landscape.md §1. Provenance: as
    :func:`pair_kernel`.
    """
    _check_closed(name)
    return _relu_closed(S11, S22, S12) if name == "relu" else _arcsine_closed(name, S11, S22, S12)


def closed_form_partials(name: str, S11: Tensor, S22: Tensor, S12: Tensor) -> KernelPartials:
    """dK/dS11, dK/dS22, dK/dS12 of :func:`closed_form_kernel`, in separable form (:class:`KernelPartials`;
    ``.full()`` gives the three tensors).

    erf and probit: :func:`_arcsine_partials`; relu: :func:`_relu_partials` (formulas and derivations
    there, and in docs/kernel_gradients.md). They give the particle gradient without autograd: for
    x ~ N(0, I_d), grad_w K(w, w') = 2 (dK/dS11) w + (dK/dS12) w' (chain rule through S11 = |w|^2,
    S12 = w.w'). Gram entries as for :func:`closed_form_kernel`: S11 (..., t1, 1), S22 (..., 1, t2),
    S12 (..., t1, t2). Provenance: derived.
    """
    _check_closed(name)
    if name == "relu":
        return _relu_partials(S11, S22, S12)
    return _arcsine_partials(name, S11, S22, S12)


def gram(W1: Tensor, W2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gram entries (S11 (..., M1, 1), S22 (..., 1, M2), S12 (..., M1, M2)) of two particle sets
    (..., M1, d) and (..., M2, d), leading batch dimensions alike. Provenance: definition."""
    S11 = (W1 * W1).sum(-1, keepdim=True)  # (..., M1, 1)
    S22 = (W2 * W2).sum(-1).unsqueeze(-2)  # (..., 1, M2)
    return S11, S22, W1 @ W2.mT  # S12: (..., M1, M2)


# --------------------------------------------------------------------------- quadrature


@lru_cache(maxsize=32)
def _hermite_np(order: int) -> tuple[np.ndarray, np.ndarray]:
    z, wt = roots_hermitenorm(order)
    wt = wt / wt.sum()
    return z, 0.5 * (wt + wt[::-1])  # symmetrise the weights (exact in exact arithmetic)


def gauss_hermite(order: int, dtype: torch.dtype = torch.float64,
                  device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Gauss-Hermite nodes and weights for the standard normal N(0, 1).

    sum_q weight_q f(node_q) = E[f(z)] exactly for polynomials f of degree < 2 * order
    (probabilists' Hermite rule, weights normalised to sum to 1). docs/attention_landscape.md §1 (the quadrature
    route). Provenance: derived (classical Gauss quadrature; exactness is tested).

    Returns
    -------
    nodes, weights : Tensor
        Both of shape (order,).
    """
    if order < 1:
        raise ValueError(f"quadrature order must be >= 1, got {order}")
    z, wt = _hermite_np(order)
    return (torch.as_tensor(z, dtype=dtype, device=device),
            torch.as_tensor(wt, dtype=dtype, device=device))


@lru_cache(maxsize=32)
def _half_grid_np(order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pruned 2-D grid (z1, z2 >= 0, weight): the inner rule folded onto z2 >= 0 (see _quad_gram)."""
    z, wt = _hermite_np(order)
    inner = z >= 0
    half_wt = np.where(z[inner] == 0, 0.5, 1.0) * wt[inner]  # a node at 0 is counted twice below
    Z1, Z2 = np.meshgrid(z, z[inner], indexing="ij")
    Wt = np.outer(wt, half_wt)
    keep = Wt > _PRUNE
    return Z1[keep], Z2[keep], Wt[keep]


def _quad_gram(f: ActivationFn, S11: Tensor, S22: Tensor, S12: Tensor, order: int) -> Tensor:
    """E[f(u) f(u')] for (u, u') ~ N(0, [[S11, S12], [S12, S22]]) by a 2-D Gauss-Hermite rule.

    Cholesky coordinates u = alpha z1, u' = beta z1 + gamma z2 with alpha = sqrt(S11),
    beta = S12 / alpha, gamma = sqrt(G / S11), anchored on the larger of S11, S22 (the integrand is
    symmetric under u <-> u'), so K(w, w') and K(w', w) run the same arithmetic and the kernel is
    symmetric to rounding, not merely to the quadrature error. The inner rule is folded:
    f(beta z1 + gamma z2) + f(beta z1 - gamma z2) over z2 >= 0, so the integrand is even in gamma
    and its gamma-derivative is exactly 0 at gamma = 0 (aligned particles) instead of a rounding
    residue times d gamma/dG = inf.
    """
    z1, z2, wt = (torch.as_tensor(v, dtype=S12.dtype, device=S12.device) for v in _half_grid_np(order))
    S11, S22 = torch.broadcast_to(S11, S12.shape), torch.broadcast_to(S22, S12.shape)
    swap = S22 > S11
    S11, S22 = torch.where(swap, S22, S11), torch.where(swap, S11, S22)  # (P1, P2), S11 >= S22
    positive = S11 > 0
    alpha = _safe_sqrt(S11)  # (P1, P2)
    safe11 = torch.where(positive, S11, torch.ones_like(S11))
    beta = torch.where(positive, S12 / torch.where(positive, alpha, torch.ones_like(alpha)), 0.0)
    gamma = torch.where(positive, _safe_sqrt(_gram_det(S11, S22, S12) / safe11), _safe_sqrt(S22))
    alpha, beta, gamma = (v.unsqueeze(-1) for v in (alpha, beta, gamma))  # (P1, P2, 1)
    first = f(alpha * z1)  # (P1, P2, N)
    second = f(beta * z1 + gamma * z2) + f(beta * z1 - gamma * z2)  # (P1, P2, N)
    return (first * second) @ wt  # (P1, P2)


def _order(name: str, order: int | None) -> int:
    return DEFAULT_ORDER[name] if order is None else int(order)


def quad_pair_kernel(name: str, W1: Tensor, W2: Tensor, order: int | None = None) -> Tensor:
    """Pair kernel K_ij = E[sigma(w_i.x) sigma(w'_j.x)] by 2-D Gauss-Hermite quadrature.

    Integrates over (u, u') = (w.x, w'.x) ~ N(0, [[|w|^2, w.w'], [w.w', |w'|^2]]) with a tensor
    product rule of ``order`` nodes per axis (product weights < 1e-22 dropped). The error decays
    exponentially in sqrt(order) for smooth activations; the steeper sigma(w.x) (large |w|), the
    higher the order needed: :data:`DEFAULT_ORDER` reaches ~1e-10 at |w|, |w'| <= 3. For relu
    (a kink) convergence is only algebraic. Gradients at aligned particles are finite; near alignment
    their rounding error is ~ eps / sqrt(G / |w|^2). At exact alignment (G = 0) the autograd partials in
    the Gram entries drop the 0 * inf term of the Cholesky factor's sqrt(G) and are wrong (dK/dS12 by 4%
    for sigmoid at |w| = |w'| = 0.3); gradients in the particles are right there, since dG/dw = 0.

    docs/attention_landscape.md §1 (Kim & Suzuki, arXiv 2402.01258, sigmoid experiments).
    Provenance: derived (exact up to the stated quadrature error).

    Parameters
    ----------
    name : str
        Activation name (:data:`ACTIVATIONS`).
    W1, W2 : Tensor
        Particle directions, shapes (M1, d) and (M2, d).
    order : int, optional
        Nodes per axis; default :data:`DEFAULT_ORDER` ``[name]``.

    Returns
    -------
    Tensor
        Shape (M1, M2).
    """
    return _quad_gram(activation_fn(name), *gram(W1, W2), _order(name, order))


def pair_kernel(name: str, W1: Tensor, W2: Tensor, order: int | None = None) -> Tensor:
    """Pair kernel K_ij = E[sigma(w_i.x) sigma(w'_j.x)], x ~ N(0, I_d).

    With S11 = |w|^2, S22 = |w'|^2, S12 = w.w', G = S11 S22 - S12^2 >= 0:

    - erf: (2/pi) arcsin(2 S12 / sqrt((1 + 2 S11)(1 + 2 S22)))
      = (2/pi) atan2(S12, sqrt(h)), h = (1/2 + S11)(1/2 + S22) - S12^2 = 1/4 + (S11 + S22)/2 + G;
    - probit: 1/4 + (1/2pi) arcsin(S12 / sqrt((1 + S11)(1 + S22)))
      = 1/4 + (1/2pi) atan2(S12, sqrt(h)), h = (1 + S11)(1 + S22) - S12^2 = 1 + S11 + S22 + G;
    - relu: (sqrt(G) + (pi - theta) S12) / (2 pi), theta = atan2(sqrt(G), S12) (arc-cosine kernel);
    - sigmoid, tanh: no closed form; the certified Hermite series (:mod:`theory.landscape.hermite`:
      truncation error <= 1e-15 per entry; at norms beyond that reach a certified bound <= 1e-9 with a
      RuntimeWarning, an InputError past it), or :func:`quad_pair_kernel` when ``order`` is given.

    The atan2 forms need no division and keep h >= 1/4 (erf) or >= 1 (probit) away from 0, so
    gradients stay finite when two particles align; their partial derivatives are
    :func:`closed_form_partials`. Routes: :func:`gram_kernel`.

    docs/attention_landscape.md §1 (facts; Kim & Suzuki, arXiv 2402.01258, section 2 setting).
    Provenance: stated as classical facts (Williams 1998 for erf, Cho & Saul 2009 for relu); the
    Hermite series is derived (docs/kernel_gradients.md).

    Parameters
    ----------
    name : str
        Activation name.
    W1, W2 : Tensor
        Shapes (M1, d) and (M2, d).
    order : int, optional
        For activations without a closed form: a quadrature order (None: the Hermite series).

    Returns
    -------
    Tensor
        Shape (M1, M2); differentiable, with finite gradients at aligned particles.
    """
    return gram_kernel(name, *gram(W1, W2), order=order)


def gram_kernel(name: str, S11: Tensor, S22: Tensor, S12: Tensor, order: int | None = None) -> Tensor:
    """The pair kernel of :func:`pair_kernel` from Gram entries S11 (..., t1, 1), S22 (..., 1, t2),
    S12 (..., t1, t2) (batch dimensions, e.g. configs, broadcast): closed forms for erf, probit and relu;
    for sigmoid and tanh the Hermite series, or quadrature when ``order`` is given.
    Provenance: as :func:`pair_kernel`."""
    _check_name(name)
    if name in CLOSED_FORM:
        return closed_form_kernel(name, S11, S22, S12)
    if order is None and name in HERMITE:
        return pair_expectation(name, 0, 0, S11, S22, S12)
    return _quad_gram(activation_fn(name), S11, S22, S12, _order(name, order))


# --------------------------------------------------------------------------- Monte Carlo


class MCEstimate(NamedTuple):
    """A Monte Carlo mean and its standard error (sample standard deviation / sqrt(n))."""

    mean: Tensor
    stderr: Tensor


def mc_pair_kernel(name: str, W1: Tensor, W2: Tensor, n_samples: int,
                   generator: torch.Generator | None = None) -> MCEstimate:
    """Monte Carlo twin of :func:`pair_kernel`, for tests and benchmarks only.

    K_ij ~ (1/n) sum_s sigma(w_i.x_s) sigma(w'_j.x_s), x_s ~ N(0, I_d) iid; the standard error is
    computed from the same samples. Provenance: derived (unbiased estimator).

    Returns
    -------
    MCEstimate
        ``mean`` and ``stderr``, both of shape (M1, M2).
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    f = activation_fn(name)
    x = torch.randn(n_samples, W1.shape[1], generator=generator, dtype=W1.dtype,
                    device=W1.device)  # (n, d)
    F1, F2 = f(x @ W1.T), f(x @ W2.T)  # (n, M1), (n, M2)
    mean = F1.T @ F2 / n_samples  # (M1, M2)
    second = (F1 * F1).T @ (F2 * F2) / n_samples  # (M1, M2)
    var = (second - mean * mean).clamp_min(0.0) * n_samples / (n_samples - 1)
    return MCEstimate(mean, torch.sqrt(var / n_samples))


# --------------------------------------------------------------------------- tiled contraction


def _tile_side(name: str, tile: int, order: int | None) -> int:
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if name in CLOSED_FORM or (order is None and name in HERMITE):
        return tile
    nodes = len(_half_grid_np(_order(name, order))[2])
    return max(1, min(tile, math.isqrt(_QUAD_BUDGET // nodes)))


def _tile_product(name: str, order: int | None, W1: Tensor, W2: Tensor, B2: Tensor) -> Tensor:
    return pair_kernel(name, W1, W2, order) @ B2  # (t1, t2) @ (t2, k) -> (t1, k)


def _run_tile(name: str, order: int | None, W1: Tensor, W2: Tensor, B2: Tensor) -> Tensor:
    """One tile; under autograd it is checkpointed, so backward recomputes the tile's kernel
    instead of keeping every tile's (t1, t2) intermediates alive."""
    needs_graph = torch.is_grad_enabled() and any(t.requires_grad for t in (W1, W2, B2))
    if needs_graph:
        return checkpoint(_tile_product, name, order, W1, W2, B2, use_reentrant=False)
    return _tile_product(name, order, W1, W2, B2)


def kernel_matvec(name: str, W1: Tensor, W2: Tensor, B2: Tensor, *, tile: int = DEFAULT_TILE,
                  order: int | None = None) -> Tensor:
    """Tiled kernel-matrix product out_i = sum_j K(w_i, w'_j) b_j.

    The (M1, M2) kernel is never formed: it is evaluated in tiles of at most ``tile`` x ``tile``
    pairs (smaller for quadrature activations, whose tiles hold ``order``^2 / 2 nodes per pair), each
    checkpointed under autograd, so M = 1e5 never materialises M^2 floats. Provenance: derived (a reordering of a
    sum).

    Parameters
    ----------
    W1 : Tensor
        (M1, d) evaluation directions.
    W2, B2 : Tensor
        (M2, d) directions and (M2, k) coefficients.

    Returns
    -------
    Tensor
        (M1, k).
    """
    _check_name(name)
    side = _tile_side(name, tile, order)
    blocks = []
    for i in range(0, W1.shape[0], side):
        block = torch.zeros(min(side, W1.shape[0] - i), B2.shape[1], dtype=B2.dtype,
                            device=B2.device)  # (t1, k)
        for j in range(0, W2.shape[0], side):
            block = block + _run_tile(name, order, W1[i:i + side], W2[j:j + side], B2[j:j + side])
        blocks.append(block)
    return torch.cat(blocks) if blocks else B2.new_zeros(0, B2.shape[1])


def _weighted(A: Tensor, p: Tensor | None) -> Tensor:
    """Rows of A times their weights p (uniform 1/M when p is None): (M, k)."""
    return A / A.shape[0] if p is None else A * p.unsqueeze(-1)


def contract(name: str, A1: Tensor, W1: Tensor, A2: Tensor, W2: Tensor,
             p1: Tensor | None = None, p2: Tensor | None = None, *, tile: int = DEFAULT_TILE,
             order: int | None = None) -> Tensor:
    """Weighted kernel contraction sum_ij p_i p'_j a_i a'_j^T K(w_i, w'_j).

    With uniform weights (``p1``, ``p2`` None) this is (1/(M1 M2)) sum_ij a_i a'_j^T K(w_i, w'_j)
    = E[h_1(x) h_2(x)^T] for the two mean-field networks h(x) = sum_i p_i a_i sigma(w_i.x), i.e. the
    covariances S_mm, S_om, S_oo of docs/attention_landscape.md §1 (Kim & Suzuki, arXiv 2402.01258, section 2).
    Evaluated with :func:`kernel_matvec` (tiled, checkpointed, differentiable).
    Provenance: derived.

    Parameters
    ----------
    A1, W1 : Tensor
        (M1, k1) output weights and (M1, d) directions of the first measure.
    A2, W2 : Tensor
        (M2, k2) and (M2, d) of the second.
    p1, p2 : Tensor, optional
        (M1,) and (M2,) particle weights (signed measures allowed); None means uniform 1/M.

    Returns
    -------
    Tensor
        (k1, k2).
    """
    B1, B2 = _weighted(A1, p1), _weighted(A2, p2)  # (M1, k1), (M2, k2)
    return B1.T @ kernel_matvec(name, W1, W2, B2, tile=tile, order=order)  # (k1, k2)
