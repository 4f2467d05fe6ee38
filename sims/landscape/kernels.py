"""Batched, tiled Gaussian kernel passes over particle sets (docs/attention_landscape.md §1).

The mean-field step needs, for C configs at once, the kernel means

    c(w_i) = sum_j K(w_i, w'_j) b_j                      (no gradient), and
    grad_{w_i} sum_j K(w_i, w'_j) (a_i . b_j)            (gradient in the first argument only),

with K(w, w') = E[sigma(w.x) sigma(w'.x)], x ~ N(0, I_d), the pair kernel of
:func:`theory.landscape.gaussian.pair_kernel` (closed forms for erf/probit/relu, the Hermite series for
sigmoid/tanh, Gauss-Hermite quadrature when an order is given).  Both are contracted in (C, t1, t2)
tiles, so no M x M kernel and no graph over tiles is ever held.  We never copy theory's formulas; two
routes evaluate a tile:

- ``"fused"`` (closed forms and the Hermite series; the default): the tile's Gram entries S12 = W1 W2^T
  (one batched matmul, the squared norms computed once per call) give the kernel means through
  :func:`theory.landscape.gaussian.closed_form_kernel` or
  :meth:`theory.landscape.hermite.HermiteTables.kernel`, and the gradient is contracted from the analytic
  partials in the same tile loop, without autograd:
  grad_{w_i} = 2 w_i sum_j beta_ij dK/dS11_ij + sum_j beta_ij dK/dS12_ij w'_j, beta_ij = a_i . b_j.
  The closed forms' partials are separable (:class:`theory.landscape.gaussian.KernelPartials`), the
  series' are not (:class:`theory.landscape.hermite.SeriesPartials`); both offer the same contractions.
  The series' per-particle coefficients and their truncation are fixed once per call
  (:class:`theory.landscape.hermite.HermiteTables`), so tiling never changes a result beyond rounding.
  When the sources begin with the evaluation points themselves (``shared``: a measure against itself,
  then the teacher), each off-diagonal tile of that symmetric block is evaluated once and serves both
  orientations, which halves the pair work at large M;
- ``"autograd"``: each tile calls :func:`theory.landscape.gaussian.gram_kernel` on the batched Gram
  entries and the gradient comes from autograd of that tile alone.  It is the route of an explicit
  quadrature order, and :func:`kernel_route` selects it for the others too, so that benchmarks and tests
  can run the two side by side (they agree to rounding).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor

from theory.landscape.gaussian import (
    CLOSED_FORM, DEFAULT_ORDER, DEFAULT_TILE, KernelPartials, closed_form_kernel, closed_form_partials, gram,
    gram_kernel,
)
from theory.landscape.hermite import HERMITE, HermiteTables, SeriesPartials

__all__ = ["KERNEL_ROUTES", "QUAD_TILE_BUDGET", "batched_pair_kernel", "kernel_route", "tile_side",
           "kernel_means", "kernel_means_and_grad", "step_tiles"]

#: Quadrature temporaries of one tile are capped at this many floats (C * t1 * t2 * nodes).
QUAD_TILE_BUDGET = 1 << 22
#: Tile routes for the closed-form and Hermite-series activations (module docstring); the first is the default.
KERNEL_ROUTES: tuple[str, ...] = ("fused", "autograd")
_route = [KERNEL_ROUTES[0]]  # the route in force; changed only through kernel_route


@contextmanager
def kernel_route(route: str) -> Iterator[None]:
    """Evaluate closed-form and Hermite-series tiles by ``route`` (:data:`KERNEL_ROUTES`) inside the
    ``with`` block.

    For benchmarks and tests that time or compare the two routes in one process; the default
    ``"fused"`` is restored on exit.  An explicit quadrature order always takes the autograd route.
    """
    if route not in KERNEL_ROUTES:
        raise ValueError(f"unknown kernel route {route!r}; choose from {', '.join(KERNEL_ROUTES)}")
    previous, _route[0] = _route[0], route
    try:
        yield
    finally:
        _route[0] = previous


def _series(name: str, order: int | None) -> bool:
    """Whether ``name`` goes through the Hermite series (no quadrature order given)."""
    return name in HERMITE and order is None


def _fused(name: str, order: int | None) -> bool:
    return (name in CLOSED_FORM or _series(name, order)) and _route[0] == "fused"


def batched_pair_kernel(name: str, W1: Tensor, W2: Tensor, order: int | None = None) -> Tensor:
    """K[c, i, j] = E[sigma(W1[c, i].x) sigma(W2[c, j].x)] for every config c.

    :func:`theory.landscape.gaussian.gram_kernel` on the batched Gram entries (every route broadcasts
    over the config axis). docs/attention_landscape.md §1 (facts). Provenance: as ``pair_kernel``.

    Parameters
    ----------
    W1, W2 : Tensor
        (C, M1, d) and (C, M2, d).

    Returns
    -------
    Tensor
        (C, M1, M2), differentiable in both arguments.
    """
    return gram_kernel(name, *gram(W1, W2), order=order)  # (C, M1, M2)


def tile_side(name: str, C: int, tile: int = DEFAULT_TILE, order: int | None = None) -> int:
    """Side of a kernel tile: ``tile`` for closed forms and the Hermite series; for quadrature, at most
    sqrt(QUAD_TILE_BUDGET / (C * nodes)) with nodes = order^2 / 2 (an upper bound on the pruned
    half grid of :func:`theory.landscape.gaussian.quad_pair_kernel`). No formula: memory policy (contract in
    tiles so M = 1e5 never materialises M^2 floats)."""
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if name in CLOSED_FORM or _series(name, order):
        return tile
    q = DEFAULT_ORDER[name] if order is None else order
    nodes = max(1, q * q // 2)
    return max(1, min(tile, int((QUAD_TILE_BUDGET / (C * nodes)) ** 0.5)))


def _blocks(n: int, side: int, start: int = 0) -> list[tuple[int, int]]:
    return [(i, min(i + side, n)) for i in range(start, n, side)]


class _FusedTiles:
    """The tiles of a fused pass: evaluation blocks i and source blocks j, with the Gram entries of each.

    The squared norms and the transposed sources (C, d, Q), contiguous (a faster matmul operand), are
    laid out once per call.  When ``shared`` (the first P sources are the P evaluation points
    themselves, ``w_src[:, :P] == w_eval``: a measure against itself, then other sources), the source
    blocks below P are the evaluation blocks, so tile (j, i) is the transpose of tile (i, j):
    :meth:`pairs` lists each such pair once (j >= i) and says whether to mirror it.  :meth:`kernel` and
    :meth:`partials` evaluate a tile by the closed form of ``name``; :class:`_SeriesTiles` by the Hermite
    series.
    """

    def __init__(self, name: str, w_eval: Tensor, w_src: Tensor, side: int, shared: bool):
        P, Q = w_eval.shape[1], w_src.shape[1]
        if shared and Q < P:
            raise ValueError(f"shared sources must begin with the {P} evaluation points, got only {Q} sources")
        self.name = name
        self.w, self.sq = w_eval, (w_eval * w_eval).sum(-1, keepdim=True)  # (C, P, d), (C, P, 1)
        self.src_sq = (w_src * w_src).sum(-1).unsqueeze(1)  # (C, 1, Q)
        self.srcT = w_src.mT.contiguous()  # (C, d, Q)
        self.shared = P if shared else 0  # sources below this index mirror evaluation points
        self.rows = _blocks(P, side)
        self.cols = _blocks(self.shared, side) + _blocks(Q, side, self.shared)

    def pairs(self) -> list[tuple[tuple[int, int], tuple[int, int], bool]]:
        """(i block, j block, mirror): every tile once; ``mirror`` for off-diagonal tiles of the shared part."""
        return [((i0, i1), (j0, j1), j0 < self.shared and j0 > i0) for i0, i1 in self.rows
                for j0, j1 in self.cols if not (j0 < self.shared and j0 < i0)]

    def gram(self, i: tuple[int, int], j: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """(S11 (C, t1, 1), S22 (C, 1, t2), S12 (C, t1, t2)) of evaluation block i and source block j."""
        return (self.sq[:, i[0]:i[1]], self.src_sq[..., j[0]:j[1]],
                self.w[:, i[0]:i[1]] @ self.srcT[..., j[0]:j[1]])

    def kernel(self, i: tuple[int, int], j: tuple[int, int]) -> Tensor:
        """K on tile (i, j): (C, t1, t2)."""
        return closed_form_kernel(self.name, *self.gram(i, j))

    def partials(self, i: tuple[int, int], j: tuple[int, int], mirror: bool) -> KernelPartials:
        """dK/dS11, dK/dS22, dK/dS12 on tile (i, j) (separable; dK/dS22 is there whether mirrored or not)."""
        return closed_form_partials(self.name, *self.gram(i, j))


class _SeriesTiles(_FusedTiles):
    """:class:`_FusedTiles` evaluated by the Hermite series: the per-particle coefficients of the
    evaluation points and the sources, and the number of terms, are fixed here once per call
    (:class:`theory.landscape.hermite.HermiteTables`) for the kernel (``kernel``), for its partials
    (``grad``; dK/dS22 too when tiles are mirrored), or for both."""

    def __init__(self, name: str, w_eval: Tensor, w_src: Tensor, side: int, shared: bool, kernel: bool, grad: bool):
        super().__init__(name, w_eval, w_src, side, shared)
        series = ([(0, 0)] if kernel else []) + ([(2, 0), (1, 1)] + ([(0, 2)] if shared else []) if grad else [])
        self.tables = HermiteTables(name, self.sq[..., 0], self.src_sq[:, 0], series, shared=shared)

    def kernel(self, i: tuple[int, int], j: tuple[int, int]) -> Tensor:
        return self.tables.kernel(self.gram(i, j)[2], slice(*i), slice(*j))

    def partials(self, i: tuple[int, int], j: tuple[int, int], mirror: bool) -> SeriesPartials:
        return self.tables.partials(self.gram(i, j)[2], slice(*i), slice(*j), d22=mirror)


def _fused_tiles(name: str, w_eval: Tensor, w_src: Tensor, side: int, shared: bool, kernel: bool,
                 grad: bool) -> _FusedTiles:
    if name in CLOSED_FORM:
        return _FusedTiles(name, w_eval, w_src, side, shared)
    return _SeriesTiles(name, w_eval, w_src, side, shared, kernel, grad)


def step_tiles(name: str, w_eval: Tensor, w_src: Tensor, *, tile: int = DEFAULT_TILE, order: int | None = None,
               shared: bool = False) -> _FusedTiles | None:
    """The tiles of one (evaluation points, sources) pair for both passes of a step: :func:`kernel_means`, then
    :func:`kernel_means_and_grad` at the same points and sources (their ``tiles=``). On the Hermite series the
    per-particle tables of the kernel and of its partials are then built once (one table, one certificate
    covering all four series) instead of once per pass. None on the autograd route (nothing to share).
    No formula: a reuse of the same per-call preparation."""
    if not _fused(name, order):
        return None
    side = tile_side(name, w_eval.shape[0], tile, order)
    return _fused_tiles(name, w_eval.detach(), w_src.detach(), side, shared, kernel=True, grad=True)


def kernel_means(name: str, w_eval: Tensor, w_src: Tensor, coef: Tensor, *, tile: int = DEFAULT_TILE,
                 order: int | None = None, shared: bool = False, tiles: _FusedTiles | None = None) -> Tensor:
    """out[c, i] = sum_j K(w_eval[c, i], w_src[c, j]) coef[c, j], tiled, without gradients.

    With ``coef = a / M`` this is the kernel mean c_m(w) = E[sigma(w.x) h_mu(x)] (docs/attention_landscape.md §4).
    ``shared``: the first P sources are the P evaluation points themselves (the caller's promise, e.g.
    sources (w, w°) evaluated at w); the fused route then evaluates each symmetric pair of tiles once
    (K(w, w') = K(w', w)). ``tiles``: :func:`step_tiles` of these points and sources, when the gradient
    pass follows. Provenance: derived (a reordering of a sum).

    Parameters
    ----------
    w_eval : Tensor
        (C, P, d) evaluation directions.
    w_src, coef : Tensor
        (C, Q, d) source directions and (C, Q, m) coefficients.

    Returns
    -------
    Tensor
        (C, P, m).
    """
    C, P, _ = w_eval.shape
    side = tile_side(name, C, tile, order)
    with torch.no_grad():
        if not _fused(name, order):
            out = coef.new_zeros(C, P, coef.shape[-1])  # (C, P, m)
            for i in range(0, P, side):
                for j in range(0, w_src.shape[1], side):
                    K = batched_pair_kernel(name, w_eval[:, i:i + side], w_src[:, j:j + side], order)  # (C, t1, t2)
                    out[:, i:i + side] += K @ coef[:, j:j + side]  # (C, t1, m)
            return out
        if tiles is None:
            tiles = _fused_tiles(name, w_eval, w_src, side, shared, kernel=True, grad=False)
        coefT = coef.mT.contiguous()  # (C, m, Q)
        outT = coef.new_zeros(C, coef.shape[-1], P)  # (C, m, P): coef^T K^T is the faster product
        for (i0, i1), (j0, j1), mirror in tiles.pairs():
            K = tiles.kernel((i0, i1), (j0, j1))  # (C, t1, t2)
            outT[..., i0:i1] += coefT[..., j0:j1] @ K.mT  # (C, m, t1)
            if mirror:  # sources i0:i1 are evaluation points i0:i1: K^T is tile (j, i)
                outT[..., j0:j1] += coefT[..., i0:i1] @ K  # (C, m, t2)
        return outT.mT.contiguous()  # (C, P, m)


def kernel_means_and_grad(name: str, w_eval: Tensor, a_eval: Tensor, w_src: Tensor, coef: Tensor, *,
                          tile: int = DEFAULT_TILE, order: int | None = None, shared: bool = False,
                          tiles: _FusedTiles | None = None) -> Tensor:
    """grad_{w_i} of a_i . g(w_i), g(w) = sum_j K(w, w_src[c, j]) coef[c, j], at w = w_eval[c, i].

    Only the first kernel argument is differentiated (the measure is held fixed), which is how the
    Wasserstein velocity -grad_theta V(theta) is defined (docs/attention_landscape.md §4). For a Gaussian x,
    grad_w K(w, w') = E[sigma'(w.x) sigma(w'.x) x] = 2 (dK/dS11) w + (dK/dS12) w'. The fused route
    contracts the partials tile by tile (:func:`theory.landscape.gaussian.closed_form_partials`, separable, or
    the Hermite series' :class:`theory.landscape.hermite.SeriesPartials`):

        grad_i = 2 w_i sum_j beta_ij dK/dS11_ij + sum_j beta_ij dK/dS12_ij w'_j,   beta_ij = a_i . coef_j;

    with ``shared`` (as in :func:`kernel_means`) a tile of the measure against itself also gives the
    mirrored tile's terms (dK/dS12 is symmetric and dK/dS22 of the tile is dK/dS11 of its transpose;
    beta'_ij = coef_i . a_j). The autograd route (an explicit quadrature order, or :func:`kernel_route`
    ``("autograd")``) differentiates each tile of ``gram_kernel``. ``tiles``: as in :func:`kernel_means`.
    Provenance: derived.

    Parameters
    ----------
    w_eval, a_eval : Tensor
        (C, P, d) and (C, P, m) evaluation points.
    w_src, coef : Tensor
        (C, Q, d) and (C, Q, m).

    Returns
    -------
    Tensor
        (C, P, d).
    """
    C, P, _ = w_eval.shape
    side = tile_side(name, C, tile, order)
    src, coef = w_src.detach(), coef.detach()
    if _fused(name, order):
        if tiles is None:
            tiles = _fused_tiles(name, w_eval.detach(), src, side, shared, kernel=False, grad=True)
        return _fused_grad(tiles, a_eval.detach(), coef)
    grad = torch.zeros_like(w_eval)  # (C, P, d)
    with torch.enable_grad():
        for i in range(0, P, side):
            w_blk = w_eval[:, i:i + side].detach().requires_grad_()  # (C, t1, d)
            a_blk = a_eval[:, i:i + side].detach()  # (C, t1, m)
            for j in range(0, src.shape[1], side):
                K = batched_pair_kernel(name, w_blk, src[:, j:j + side], order)  # (C, t1, t2)
                value = ((K @ coef[:, j:j + side]) * a_blk).sum()
                grad[:, i:i + side] += torch.autograd.grad(value, w_blk)[0]  # (C, t1, d)
    return grad


def _fused_grad(tiles: _FusedTiles, a_eval: Tensor, coef: Tensor) -> Tensor:
    """The fused route of :func:`kernel_means_and_grad`: no autograd, one pass per tile."""
    w_eval = tiles.w
    C, P, d = w_eval.shape
    coefT = coef.mT.contiguous()  # (C, m, Q)
    row = w_eval.new_zeros(C, P)  # (C, P): sum_j beta_ij dK/dS11_ij
    gradT = w_eval.new_zeros(C, d, P)  # (C, d, P): sum_j beta_ij dK/dS12_ij w'_j, transposed
    for (i0, i1), (j0, j1), mirror in tiles.pairs():
        part = tiles.partials((i0, i1), (j0, j1), mirror)  # cross (C, t1, t2)
        beta = a_eval[:, i0:i1] @ coefT[..., j0:j1]  # (C, t1, t2): a_i . coef_j
        row[:, i0:i1] += part.row_sum(beta)  # (C, t1)
        gradT[..., i0:i1] += tiles.srcT[..., j0:j1] @ beta.mul_(part.cross).mT  # (C, d, t1)
        if mirror:  # evaluation points j0:j1 against sources i0:i1 (= evaluation points i0:i1)
            beta = coef[:, i0:i1] @ a_eval[:, j0:j1].mT  # (C, t1, t2): coef_i . a_j
            row[:, j0:j1] += part.col_sum(beta)  # (C, t2); the partials' last use
            gradT[..., j0:j1] += tiles.srcT[..., i0:i1] @ beta.mul_(part.cross)  # (C, d, t2)
    return gradT.mT + 2.0 * row.unsqueeze(-1) * w_eval  # (C, P, d)
