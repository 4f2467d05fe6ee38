"""Batched, tiled Gaussian kernel passes over particle sets (spec ``attention_landscape.md`` section 6).

The mean-field step needs, for C configs at once, the kernel means

    c(w_i) = sum_j K(w_i, w'_j) b_j                      (no gradient), and
    grad_{w_i} sum_j K(w_i, w'_j) (a_i . b_j)            (gradient in the first argument only),

with K(w, w') = E[sigma(w.x) sigma(w'.x)], x ~ N(0, I_d), the pair kernel of
:func:`theory.gaussian.pair_kernel` (closed forms for erf/probit/relu, Gauss-Hermite quadrature for
sigmoid/tanh).  We never copy its formulas: each (C, t1, t2) tile calls ``pair_kernel`` through
``torch.vmap`` over the config axis, and gradients come from autograd of that tile alone, so no M x M kernel and no graph over
tiles is ever held.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from theory.gaussian import CLOSED_FORM, DEFAULT_ORDER, DEFAULT_TILE, pair_kernel

__all__ = ["QUAD_TILE_BUDGET", "batched_pair_kernel", "tile_side", "kernel_means",
           "kernel_means_and_grad"]

#: Quadrature temporaries of one tile are capped at this many floats (C * t1 * t2 * nodes).
QUAD_TILE_BUDGET = 1 << 22


def batched_pair_kernel(name: str, W1: Tensor, W2: Tensor, order: int | None = None) -> Tensor:
    """K[c, i, j] = E[sigma(W1[c, i].x) sigma(W2[c, j].x)] for every config c.

    :func:`theory.gaussian.pair_kernel` mapped over the leading config axis (``torch.vmap``).
    Spec section 6 (facts). Provenance: as ``pair_kernel``.

    Parameters
    ----------
    W1, W2 : Tensor
        (C, M1, d) and (C, M2, d).

    Returns
    -------
    Tensor
        (C, M1, M2), differentiable in both arguments.
    """
    return torch.vmap(partial(pair_kernel, name, order=order))(W1, W2)  # (C, M1, M2)


def tile_side(name: str, C: int, tile: int = DEFAULT_TILE, order: int | None = None) -> int:
    """Side of a kernel tile: ``tile`` for closed forms; for quadrature, at most
    sqrt(QUAD_TILE_BUDGET / (C * nodes)) with nodes = order^2 / 2 (an upper bound on the pruned
    half grid of :func:`theory.gaussian.quad_pair_kernel`). No formula: memory policy of spec
    section 6 ("contract in tiles so M = 1e5 never materialises M^2 floats")."""
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if name in CLOSED_FORM:
        return tile
    q = DEFAULT_ORDER[name] if order is None else order
    nodes = max(1, q * q // 2)
    return max(1, min(tile, int((QUAD_TILE_BUDGET / (C * nodes)) ** 0.5)))


def kernel_means(name: str, w_eval: Tensor, w_src: Tensor, coef: Tensor, *, tile: int = DEFAULT_TILE,
                 order: int | None = None) -> Tensor:
    """out[c, i] = sum_j K(w_eval[c, i], w_src[c, j]) coef[c, j], tiled, without gradients.

    With ``coef = a / M`` this is the kernel mean c_m(w) = E[sigma(w.x) h_mu(x)] (spec section 3).
    Provenance: derived (a reordering of a sum).

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
    out = coef.new_zeros(C, P, coef.shape[-1])  # (C, P, m)
    with torch.no_grad():
        for i in range(0, P, side):
            for j in range(0, w_src.shape[1], side):
                K = batched_pair_kernel(name, w_eval[:, i:i + side], w_src[:, j:j + side], order)  # (C, t1, t2)
                out[:, i:i + side] += K @ coef[:, j:j + side]  # (C, t1, m)
    return out


def kernel_means_and_grad(name: str, w_eval: Tensor, a_eval: Tensor, w_src: Tensor, coef: Tensor, *,
                          tile: int = DEFAULT_TILE, order: int | None = None) -> Tensor:
    """grad_{w_i} of a_i . g(w_i), g(w) = sum_j K(w, w_src[c, j]) coef[c, j], at w = w_eval[c, i].

    Only the first kernel argument is differentiated (the measure is held fixed), which is how the
    Wasserstein velocity -grad_theta V(theta) is defined (spec section 3). For a Gaussian x,
    grad_w K(w, w') = E[sigma'(w.x) sigma(w'.x) x]; autograd of ``pair_kernel`` gives exactly that.
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
    grad = torch.zeros_like(w_eval)  # (C, P, d)
    src, coef = w_src.detach(), coef.detach()
    with torch.enable_grad():
        for i in range(0, P, side):
            w_blk = w_eval[:, i:i + side].detach().requires_grad_()  # (C, t1, d)
            a_blk = a_eval[:, i:i + side].detach()  # (C, t1, m)
            for j in range(0, src.shape[1], side):
                K = batched_pair_kernel(name, w_blk, src[:, j:j + side], order)  # (C, t1, t2)
                value = ((K @ coef[:, j:j + side]) * a_blk).sum()
                grad[:, i:i + side] += torch.autograd.grad(value, w_blk)[0]  # (C, t1, d)
    return grad
