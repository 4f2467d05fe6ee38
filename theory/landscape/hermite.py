"""Gaussian pair expectations of sigmoid and tanh by Mehler's (Hermite) expansion.

For (u, v) ~ N(0, [[S11, S12], [S12, S22]]) write r = sqrt(S11), r' = sqrt(S22) and rho = S12 / (r r')
(rho = 0 when r r' = 0; |rho| <= 1 by Cauchy-Schwarz). Mehler's formula (a classical fact) gives, for
functions f, g of finite Gaussian variance,

    E[f(u) g(v)] = sum_{k >= 0} c_k^f(r) c_k^g(r') rho^k,      c_k^f(r) = E[f(r xi) h_k(xi)],  xi ~ N(0, 1),

h_k = He_k / sqrt(k!) the orthonormal probabilists' Hermite polynomials. The coefficients belong to one
particle each, so a pair costs a polynomial in rho (Horner, with an outer product of coefficient vectors
per term), and the per-particle work is one 1-D Gauss-Hermite rule per particle.

Partial derivatives come from Price's theorem (the Gaussian density solves the heat equation in its
covariance): dE/dS12 = E[f'(u) g'(v)], dE/dS11 = E[f''(u) g(v)] / 2, dE/dS22 = E[f(u) g''(v)] / 2. With
s the activation and s^(a) its a-th derivative, every derivative of K = E[s(u) s(v)] is a series of the
same kind, E[s^(a)(u) s^(b)(v)] (:func:`pair_expectation` is its own autograd backward), so no 1/r or 1/G
appears: finite at aligned particles and at w = 0.

Symmetry halves the series. s = c + A tanh(B z) (sigmoid: c = A = B = 1/2, since sigmoid(z) =
(1 + tanh(z/2)) / 2; tanh: c = 0, A = B = 1), so g_a = s^(a) - [a = 0] c is odd for even a and even for
odd a: its coefficients vanish unless k = a + 1 (mod 2). Derivatives of every order only ever pair a with
b = a (mod 2), so each series is c_0 c'_0 [a = b = 0] + rho^p P(rho^2), p = (a + 1) mod 2, with
s^(a)(z) = A B^a T_a(tanh(B z)), T_0(t) = t, T_{a+1}(t) = (1 - t^2) T_a'(t).

Truncation certificate. Keeping the m terms k = p, p + 2, ..., p + 2(m - 1) leaves a tail bounded by
Cauchy-Schwarz (|rho| <= 1) by t_m(r) t_m(r'), t_m(r)^2 = sum of the dropped c_k(r)^2. We take the
largest t_m over the particles of each side and keep the fewest terms for which the product is <= ``tol``
(default :data:`SERIES_TOL` = 1e-15, the rounding level of K: a pair's value then does not depend, beyond
rounding, on which other particles share its call, although the number of terms is chosen per call).

Coefficients by quadrature: an n-node Gauss-Hermite rule, n = 6 m (:data:`LEVELS`), folded onto z > 0
(the integrands g(r z) h_k(z) are even), h_k from the normalised three-term recurrence
h_{k+1} = (z h_k - sqrt(k) h_{k-1}) / sqrt(k + 1) run on sqrt(weight) h_k (bounded by 1: the rule's
Hermite matrix is orthogonal, so nothing overflows), nodes of weight below 1e-60 dropped. The rule gives
all n/2 coefficients of each parity at once, and its Hermite matrix is orthogonal, so the squared tail
after m terms is the sum of the squares of the coefficients m..n/2 - 1 (discrete Parseval): a sum of
squares, free of the cancellation of E[g^2] - sum_{k<m} c_k^2. Its rounding is bounded and added
(:func:`_side`). The levels are tried in order until the certificate holds for every requested series.
At tol 1e-15 the last level (m = 1024) covers |w| up to about 3 for tanh and 6 for sigmoid (sigmoid at
norm r is tanh at r / 2). Beyond, every term of the last level is kept and its own certified bound is in
force, with a RuntimeWarning, as long as it is <= :data:`SERIES_TOL_MAX` = 1e-9 (tanh kernel to |w| ~ 7,
its gradient to ~ 6); past that :class:`theory.errors.InputError` is raised. Never a silently
inaccurate value. n = 6 m makes the rule's own error on the kept coefficients ~1e-14 at the edge
of each level (measured against n = 32 m; tests/unit/test_hermite_kernels.py), and the kernel and its
partials are tested against the order-1400 tensor Gauss-Hermite reference.

docs/kernel_gradients.md (Hermite route). Provenance: derived (Mehler's formula and Price's theorem are
classical facts).
"""
from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np
import torch
from numpy.polynomial import polynomial as npoly
from scipy.special import roots_hermitenorm
from torch import Tensor

from theory.errors import InputError

__all__ = ["HERMITE", "LEVELS", "SERIES_TOL", "SERIES_TOL_MAX", "HermiteTables", "SeriesPartials",
           "activation_derivative", "hermite_partials", "pair_expectation", "table_floats"]

#: Activations served by the Hermite series (no closed-form pair kernel).
HERMITE: tuple[str, ...] = ("sigmoid", "tanh")
#: Default bound on the truncation error of every series, per pair (absolute).
SERIES_TOL = 1e-15
#: Beyond the reach of SERIES_TOL, the last level's own certified bound is used (with a RuntimeWarning) up to this.
SERIES_TOL_MAX = 1e-9
#: (terms per series m, Gauss-Hermite nodes n = 6 m) tried in order; m terms reach degree k = 2 m - 1 + p.
LEVELS: tuple[tuple[int, int], ...] = tuple((m, 6 * m) for m in (16, 32, 64, 128, 256, 512, 1024))
#: Folded weights below this are dropped: a coefficient moves by <= sqrt(weight) |g| <= 1e-30 per node.
_PRUNE = 1e-60
_EPS = float(np.finfo(np.float64).eps) / 2  # unit roundoff u
#: Rule values and coefficients of one chunk of particles are capped at this many floats (32 MiB).
_CHUNK = 1 << 22


class _Shape(NamedTuple):
    """s(z) = const + amp tanh(scale z)."""

    const: float
    amp: float
    scale: float


_SHAPES = {"sigmoid": _Shape(0.5, 0.5, 0.5), "tanh": _Shape(0.0, 1.0, 1.0)}


def _check(name: str) -> _Shape:
    if name not in _SHAPES:
        raise ValueError(f"no Hermite series for {name!r}; Hermite activations: {', '.join(HERMITE)}")
    return _SHAPES[name]


def _parity(a: int) -> int:
    """Parity of the nonzero Hermite indices k of s^(a) - [a = 0] const (odd for even a)."""
    return (a + 1) % 2


@lru_cache(maxsize=None)
def _tanh_poly(a: int) -> tuple[float, ...]:
    """Ascending coefficients of T_a, d^a/dz^a tanh(z) = T_a(tanh z): T_0 = t, T_{a+1} = (1 - t^2) T_a'."""
    p = np.array([0.0, 1.0])
    for _ in range(a):
        p = npoly.polymul(npoly.polyder(p), [1.0, 0.0, -1.0])
    return tuple(float(c) for c in p)


def _odd_even_part(shape: _Shape, a: int, t: Tensor) -> Tensor:
    """g_a = s^(a) - [a = 0] const = amp scale^a T_a(t) at t = tanh(scale z) (Horner in t)."""
    coeffs = _tanh_poly(a)
    out = torch.full_like(t, coeffs[-1])
    for c in coeffs[-2::-1]:
        out.mul_(t).add_(c)
    return out.mul_(shape.amp * shape.scale ** a)


def activation_derivative(name: str, a: int, z: Tensor) -> Tensor:
    """s^(a)(z), the a-th derivative of sigmoid or tanh: [a = 0] c + A B^a T_a(tanh(B z)) (module docstring).

    Provenance: derived (elementary calculus; tested against autograd).
    """
    shape = _check(name)
    if a < 0:
        raise ValueError(f"derivative order must be >= 0, got {a}")
    g = _odd_even_part(shape, a, torch.tanh(shape.scale * z))
    return g + shape.const if a == 0 else g


@lru_cache(maxsize=16)
def _basis_np(n: int, parity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The n-node rule folded onto z > 0: nodes z_q, root_q = sqrt(2 w_q) (sum of squares 1) and the
    orthogonal (n/2, n/2) matrix V[q, j] = root_q h_{2j+p}(z_q), rows of nodes with 2 w_q < 1e-60 dropped."""
    z, w = roots_hermitenorm(n)
    w = w / w.sum()
    w = 0.5 * (w + w[::-1])  # symmetrise (exact in exact arithmetic)
    keep = (z > 0) & (2.0 * w > _PRUNE)
    z, root = z[keep], np.sqrt(2.0 * w[keep])
    V = np.empty((len(z), n // 2))
    prev, cur = np.zeros_like(z), root.copy()  # root h_{k-1}, root h_k at k = 0
    for k in range(n - 1 + parity):
        if k % 2 == parity:
            V[:, k // 2] = cur
        prev, cur = cur, (z * cur - math.sqrt(k) * prev) / math.sqrt(k + 1)
    return z, root, V


class _Side(NamedTuple):
    coef: Tensor  # (..., P, m): c_{2j+p}(r_i)
    tail: Tensor  # (m + 1,): max over particles of the bound on the tail's norm after j terms


def _side(shape: _Shape, orders: Sequence[int], sq: Tensor, m: int, n: int) -> dict[int, _Side]:
    """Coefficients of g_a(r xi), r = sqrt(sq), and bounds on the norm of their tails, per derivative order a.

    With g^_q = root_q g_a(r z_q) and V of :func:`_basis_np`, c = g^ V holds all n/2 coefficients of the
    rule (V is orthogonal: sum_j c_j^2 = |g^|^2), so the tail after j terms has norm
    sqrt(sum_{j <= j' < n/2} c_j'^2), a sum of squares (no cancellation). Rounding: each c_j is off by at
    most q u |g^| (q kept nodes; |V[:, j]| = 1) and by < 1e-29 for the dropped nodes, so
    phi = sqrt(n/2) (q + 1) u |g^| is added to every tail norm. Particles are processed in chunks of at
    most :data:`_CHUNK` floats of rule values.
    """
    z, root, _ = _basis_np(n, 0)
    zt, rt = (torch.as_tensor(v, dtype=sq.dtype, device=sq.device) for v in (z, root))
    bases = {a: torch.as_tensor(_basis_np(n, _parity(a))[2], dtype=sq.dtype, device=sq.device)
             for a in orders}  # (q, n/2) each
    phi = math.sqrt(n / 2) * (len(z) + 1) * _EPS
    flat = sq.reshape(-1)  # (B,): every particle of every batch entry
    step = max(1, _CHUNK // (len(z) + n // 2))
    coefs: dict[int, list[Tensor]] = {a: [] for a in orders}
    tails = {a: flat.new_zeros(m + 1) for a in orders}
    for start in range(0, len(flat), step):
        t = torch.tanh((shape.scale * flat[start:start + step].clamp_min(0.0).sqrt()).unsqueeze(-1) * zt)  # (b, q)
        for a in orders:
            g = _odd_even_part(shape, a, t).mul_(rt)  # (b, q): root_q g_a(r z_q)
            coef = g @ bases[a]  # (b, n/2)
            beyond = coef[:, m:].square().sum(-1, keepdim=True)  # (b, 1): after m terms
            head = coef[:, :m].square().flip(-1).cumsum(-1).flip(-1).add_(beyond)  # (b, m): after j < m terms
            bound = torch.cat([head, beyond], -1).sqrt_().add_(phi * g.norm(dim=-1, keepdim=True))  # (b, m + 1)
            coefs[a].append(coef[:, :m])
            tails[a] = torch.maximum(tails[a], bound.amax(0))
    return {a: _Side(torch.cat(coefs[a]).reshape(*sq.shape, m) if coefs[a] else sq.new_zeros(*sq.shape, m),
                     tails[a]) for a in orders}


def table_floats(C: int, P1: int, P2: int) -> int:
    """Upper estimate of the floats :class:`HermiteTables` holds for C configs of P1 and P2 particles: three
    derivative orders on each side at the last level (``LEVELS[-1][0]`` terms), while building them, and one
    chunk of rule values with its coefficients. No formula: memory policy."""
    return 6 * C * (P1 + P2) * LEVELS[-1][0] + 4 * _CHUNK


def _inverse_norm(sq: Tensor) -> Tensor:
    r = sq.clamp_min(0.0).sqrt()
    return torch.where(r > 0, 1.0 / torch.where(r > 0, r, torch.ones_like(r)), 0.0)


class SeriesPartials(NamedTuple):
    """dK/dS11, dK/dS22 (None unless asked for) and dK/dS12 of a Hermite-series kernel tile (..., t1, t2).

    Not separable (unlike :class:`theory.landscape.gaussian.KernelPartials`); the same contractions:
    :meth:`row_sum`, :meth:`col_sum` and ``cross`` = dK/dS12.
    """

    d11: Tensor
    d22: Tensor | None
    cross: Tensor

    def row_sum(self, beta: Tensor) -> Tensor:
        """sum_j beta_ij dK/dS11_ij: (..., t1)."""
        return torch.einsum("...ij,...ij->...i", beta, self.d11)

    def col_sum(self, beta: Tensor) -> Tensor:
        """sum_i beta_ij dK/dS22_ij: (..., t2); overwrites d22 (its last use)."""
        if self.d22 is None:
            raise ValueError("dK/dS22 was not evaluated for this tile (ask for it with d22=True)")
        return self.d22.mul_(beta).sum(-2)

    def full(self) -> tuple[Tensor, Tensor, Tensor]:
        """(dK/dS11, dK/dS22, dK/dS12)."""
        if self.d22 is None:
            raise ValueError("dK/dS22 was not evaluated for this tile (ask for it with d22=True)")
        return self.d11, self.d22, self.cross


def _horner(F: Tensor, G: Tensor, x: Tensor) -> Tensor:
    """sum_j F[..., j, :, None] G[..., j, None, :] x^j, F (..., m, t1), G (..., m, t2), x (..., t1, t2)."""
    shape = torch.broadcast_shapes(x.shape, F.shape[:-2] + (F.shape[-1], 1), G.shape[:-2] + (1, G.shape[-1]))
    if F.shape[-2] == 0:
        return x.new_zeros(shape)
    P = (F[..., -1, :, None] * G[..., -1, None, :]).expand(shape).clone()  # (..., t1, t2)
    for j in range(F.shape[-2] - 2, -1, -1):
        P.mul_(x).addcmul_(F[..., j, :, None], G[..., j, None, :])
    return P


def _tables(shape: _Shape, series: list[tuple[int, int]], sq1: Tensor, sq2: Tensor, level: tuple[int, int],
            shared: bool) -> tuple[dict[int, _Side], dict[int, _Side]]:
    """Both sides' coefficients and tail bounds at one level. ``shared``: side 1 is the first P1 particles of
    side 2, so only side 2 is computed (side 1 takes the tails of all of side 2: a bound over more particles)."""
    orders1, orders2 = sorted({a for a, _ in series}), sorted({b for _, b in series})
    if not shared:
        return _side(shape, orders1, sq1, *level), _side(shape, orders2, sq2, *level)
    cols = _side(shape, sorted({*orders1, *orders2}), sq2, *level)
    P1 = sq1.shape[-1]
    return {a: _Side(cols[a].coef[..., :P1, :], cols[a].tail) for a in orders1}, cols


def _choose(rows: dict[int, _Side], cols: dict[int, _Side], series: list[tuple[int, int]], tol: float,
            every: bool = False) -> dict[tuple[int, int], int] | None:
    """Terms of each series: the fewest with t_m t'_m <= tol (``every``: all the level has, if that meets tol);
    None when some series falls short."""
    terms = {}
    for a, b in series:
        products = rows[a].tail * cols[b].tail  # (m + 1,)
        ok = torch.nonzero(products[-1:] <= tol if every else products <= tol)
        if not len(ok):
            return None
        terms[(a, b)] = len(products) - 1 if every else int(ok[0, 0])
    return terms


def _bound(rows: dict[int, _Side], cols: dict[int, _Side], terms: dict[tuple[int, int], int]) -> float:
    """The largest certified truncation bound over the series, at their terms."""
    return max(float(rows[a].tail[m] * cols[b].tail[m]) for (a, b), m in terms.items())


def _largest(sq: Tensor) -> Tensor:
    return sq.max().reshape(1) if sq.numel() else sq.new_zeros(1)


class HermiteTables:
    """Per-particle Hermite coefficients of two particle sets, truncated by the certificate, for a list of
    series E[s^(a)(u) s^(b)(v)] (module docstring).

    Built once: per derivative order and side, one product of the rule's values with its (q, n/2) Hermite
    matrix; every tile then costs ``terms[(a, b)]`` Horner steps per pair and series. The first level tried
    is the first that certifies the largest norm of each side (tails grow with the norm; the certificate
    over all particles, which follows, does not rely on it).

    Parameters
    ----------
    name : str
        :data:`HERMITE` activation.
    sq1, sq2 : Tensor
        (..., P1) and (..., P2) squared norms of the two particle sets (batch dimensions broadcast).
    series : sequence of (a, b)
        Derivative orders wanted, a = b (mod 2).
    tol : float
        Truncation bound per pair and series.
    shared : bool
        The caller's promise that ``sq1`` is ``sq2[..., :P1]`` (a measure against itself, then other
        sources): side 1's coefficients are then taken from side 2's.

    Attributes
    ----------
    terms : dict
        (a, b) -> number of terms m kept (highest degree 2 m - 1 + p: :meth:`degree`).
    level : tuple
        The (m, n) of :data:`LEVELS` that certified every series.
    bound : float
        The largest certified truncation bound over the series (<= ``tol``, unless beyond its reach).

    Warns
    -----
    RuntimeWarning
        When no level reaches ``tol``: every term of the last level is kept, and its bound (<=
        :data:`SERIES_TOL_MAX`) is in force.

    Raises
    ------
    InputError
        When even that bound exceeds :data:`SERIES_TOL_MAX` (particle norms beyond the route's reach).
    """

    @torch.compiler.disable  # data-dependent (levels, number of terms): kept out of torch.compile graphs
    def __init__(self, name: str, sq1: Tensor, sq2: Tensor, series: Sequence[tuple[int, int]],
                 tol: float = SERIES_TOL, shared: bool = False):
        shape = _check(name)
        series = list(dict.fromkeys((int(a), int(b)) for a, b in series))
        if any(a < 0 or b < 0 or (a - b) % 2 for a, b in series):
            raise ValueError(f"series orders must be >= 0 with a = b (mod 2), got {series}")
        if shared and sq1.shape[-1] > sq2.shape[-1]:
            raise ValueError(f"shared: side 1 ({sq1.shape[-1]} particles) must begin side 2 ({sq2.shape[-1]})")
        top1, top2 = _largest(sq1), _largest(sq2)
        start = next((i for i, level in enumerate(LEVELS)
                      if _choose(*_tables(shape, series, top1, top2, level, False), series, tol) is not None),
                     len(LEVELS) - 1)
        for m, n in LEVELS[start:]:
            rows, cols = _tables(shape, series, sq1, sq2, (m, n), shared)
            terms = _choose(rows, cols, series, tol)
            if terms is not None:
                break
        else:  # beyond the reach of tol: every term of the last level, if that certifies SERIES_TOL_MAX
            terms = _choose(rows, cols, series, max(tol, SERIES_TOL_MAX), every=True)
            top = math.sqrt(float(max(top1, top2)))
            if terms is None:
                raise InputError(f"{name} pair kernel: particle norms up to {top:.3g} are beyond the Hermite "
                                 f"series' reach ({m} terms per series do not bound the truncation by "
                                 f"{SERIES_TOL_MAX:.0e}; docs/kernel_gradients.md); give a quadrature order instead")
            warnings.warn(f"{name} pair kernel: particle norms up to {top:.3g} need more than {m} Hermite terms "
                          f"for a truncation bound of {tol:.0e}; using {m} (bound {_bound(rows, cols, terms):.1e})",
                          RuntimeWarning, stacklevel=3)
        self.name, self.shape, self.terms, self.level = name, shape, terms, (m, n)
        self.bound = _bound(rows, cols, terms)
        need1 = {a: max(t for (a2, _), t in terms.items() if a2 == a) for a in rows}
        need2 = {b: max(t for (_, b2), t in terms.items() if b2 == b) for b in {b for _, b in series}}
        self.rows = {a: rows[a].coef[..., :need1[a]].mT.contiguous() for a in need1}  # (..., m_a, P1)
        self.cols = {b: cols[b].coef[..., :need2[b]].mT.contiguous() for b in need2}  # (..., m_b, P2)
        self.inv1, self.inv2 = _inverse_norm(sq1), _inverse_norm(sq2)  # (..., P1), (..., P2)

    def degree(self, a: int, b: int) -> int:
        """Highest power of rho kept in series (a, b)."""
        return 2 * self.terms[(a, b)] - 1 + _parity(a)

    def rho(self, S12: Tensor, i: slice = slice(None), j: slice = slice(None)) -> Tensor:
        """rho = S12 / (r r') of rows i and columns j, 0 where r r' = 0, clipped to [-1, 1]: (..., t1, t2).

        The product of the inverse norms is formed first, so the two orientations of a pair round alike."""
        scale = self.inv1[..., i, None] * self.inv2[..., None, j]  # (..., t1, t2)
        return (S12 * scale).clamp_(-1.0, 1.0)

    def series(self, a: int, b: int, rho: Tensor, rho2: Tensor | None = None, i: slice = slice(None),
               j: slice = slice(None)) -> Tensor:
        """E[s^(a)(u) s^(b)(v)] on rows i, columns j: [a = b = 0] c^2 + rho^p sum_j F_j G_j rho^(2j)."""
        m = self.terms[(a, b)]
        F, G = self.rows[a][..., :m, i], self.cols[b][..., :m, j]  # (..., m, t1), (..., m, t2)
        out = _horner(F, G, rho * rho if rho2 is None else rho2)  # (..., t1, t2)
        if _parity(a):
            out.mul_(rho)
        const = self.shape.const if a == b == 0 else 0.0
        return out.add_(const * const) if const else out

    def kernel(self, S12: Tensor, i: slice = slice(None), j: slice = slice(None)) -> Tensor:
        """K = E[s(u) s(v)] on rows i, columns j: (..., t1, t2)."""
        return self.series(0, 0, self.rho(S12, i, j), None, i, j)

    def partials(self, S12: Tensor, i: slice = slice(None), j: slice = slice(None),
                 d22: bool = False) -> SeriesPartials:
        """Price's partials on rows i, columns j: dK/dS11 = E[s'' s] / 2, dK/dS22 = E[s s''] / 2 (if ``d22``),
        dK/dS12 = E[s' s'] (the tables must hold series (2, 0), (1, 1) and, for ``d22``, (0, 2))."""
        rho = self.rho(S12, i, j)
        rho2 = rho * rho  # (..., t1, t2)
        return SeriesPartials(self.series(2, 0, rho, rho2, i, j).mul_(0.5),
                              self.series(0, 2, rho, rho2, i, j).mul_(0.5) if d22 else None,
                              self.series(1, 1, rho, rho2, i, j))


def _gram_sides(S11: Tensor, S22: Tensor, S12: Tensor) -> tuple[Tensor, Tensor]:
    if S11.shape[-1] != 1 or S22.shape[-2] != 1:
        raise ValueError(f"Gram entries must be laid out S11 (..., t1, 1), S22 (..., 1, t2), S12 (..., t1, t2); "
                         f"got {tuple(S11.shape)}, {tuple(S22.shape)}, {tuple(S12.shape)}")
    return S11[..., 0], S22[..., 0, :]  # (..., t1), (..., t2)


class _Expectation(torch.autograd.Function):
    """E[s^(a)(u) s^(b)(v)] with Price's theorem as backward, itself differentiable (any order)."""

    @staticmethod
    def forward(ctx, S11: Tensor, S22: Tensor, S12: Tensor, name: str, a: int, b: int) -> Tensor:
        ctx.save_for_backward(S11, S22, S12)
        ctx.spec = (name, a, b)
        tables = HermiteTables(name, *_gram_sides(S11, S22, S12), [(a, b)])
        return tables.series(a, b, tables.rho(S12))

    @staticmethod
    def backward(ctx, grad: Tensor):
        S11, S22, S12 = ctx.saved_tensors
        name, a, b = ctx.spec
        need = ctx.needs_input_grad
        term = lambda a2, b2: _Expectation.apply(S11, S22, S12, name, a2, b2)
        g11 = (grad * term(a + 2, b)).mul(0.5).sum_to_size(S11.shape) if need[0] else None
        g22 = (grad * term(a, b + 2)).mul(0.5).sum_to_size(S22.shape) if need[1] else None
        g12 = (grad * term(a + 1, b + 1)).sum_to_size(S12.shape) if need[2] else None
        return g11, g22, g12, None, None, None


def pair_expectation(name: str, a: int, b: int, S11: Tensor, S22: Tensor, S12: Tensor) -> Tensor:
    """E[s^(a)(u) s^(b)(v)], (u, v) ~ N(0, [[S11, S12], [S12, S22]]), by the certified Hermite series.

    ``a = b = 0`` is the pair kernel K. Gram entries laid out S11 (..., t1, 1), S22 (..., 1, t2),
    S12 (..., t1, t2). Differentiable to any order: the backward is Price's theorem (module docstring),
    evaluated by this same function, so gradients and Hessians are finite at aligned particles and w = 0.
    Truncation error <= :data:`SERIES_TOL` per entry (certificate), plus the 1-D rule's error (tested
    < 1e-13) and the Horner rounding (< 2 m u). Provenance: derived (docs/kernel_gradients.md).
    """
    _check(name)
    return _Expectation.apply(S11, S22, S12, name, int(a), int(b))


def hermite_partials(name: str, S11: Tensor, S22: Tensor, S12: Tensor) -> SeriesPartials:
    """dK/dS11 = E[s''(u) s(v)] / 2, dK/dS22 = E[s(u) s''(v)] / 2, dK/dS12 = E[s'(u) s'(v)] (Price's
    theorem), without autograd; Gram layout as :func:`pair_expectation`. Provenance: derived."""
    tables = HermiteTables(name, *_gram_sides(S11, S22, S12), [(2, 0), (0, 2), (1, 1)])
    return tables.partials(S12, d22=True)
