"""Analytic kernel partials and the fused gradient route against autograd and finite differences.

The closed-form partials (theory.landscape.gaussian.closed_form_partials) and the fused tile contraction of the
mean-field kernel means and gradient (sims.landscape.kernels, route "fused", with and without the shared
symmetric block) must equal autograd through the kernel (route
"autograd", the tile-by-tile path the fused one replaced) to rounding, including at and near aligned
particles and for batched configs, and central finite differences on small cases.

Tolerances (u = 2^-53, float64 unit roundoff). Both routes evaluate the same smooth function of the Gram
entries with at most N_OPS = 16 roundings per pair each (counted on the longer, autograd chain: square,
scale, addcmul, sqrt, atan2 and their backward multiplies), plus the sums: d terms of every Gram entry,
k of beta_ij = a_i . coef_j and Q over the sources. For erf and probit every pair term is computed
through h = P Q - S12^2 >= c^2, whose relative rounding error is amplified at most by
kappa = (P Q + S12^2) / h; each route is then off by at most u (N_OPS kappa + 2 d + k + Q) times the sum
of the absolute values of the terms, and the two routes by twice that. For relu the partials go through
s = sqrt(G), G = S11 S22 - S12^2, which cancels at alignment: rounding of G by
|dG| <= (4 d + 6) u S11 S22 moves s by at most min(sqrt(|dG|), |dG| / s) and theta = atan2(s, S12) by at most
(|ds| + d u |w||w'|) / (|w||w'|): terms of order sqrt(u) at aligned pairs, u elsewhere, added to the
bound pair by pair.
"""
from __future__ import annotations

import math

import pytest
import torch

from sims.landscape.flow import MeanFieldConfig, make_student, make_teacher, particle_field
from sims.landscape.kernels import KERNEL_ROUTES, kernel_means, kernel_means_and_grad, kernel_route
from theory.landscape import gaussian as G

DT = torch.float64
U = torch.finfo(DT).eps / 2  # unit roundoff
N_OPS = 16  # roundings per pair term in one route (module docstring)
ARCSINE_C = {"erf": 0.5, "probit": 1.0}  # P = c + S11, Q = c + S22 of the arcsine kernels


def _directions(seed: int, C: int = 3, P: int = 12, d: int = 4,
                aligned: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, P, d) evaluation directions, |w| <= 3, and sources: with ``aligned``, (C, P + 7, d) holding
    every kind of pair: exact copies of the evaluation points (the diagonal of a mean-field pass), a
    scaled copy, an anti-aligned one, copies rotated by 1e-7 and 1e-4, and generic directions; else
    (C, 7, d) generic directions and copies rotated by 1e-4 only."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(C, P, d, generator=g, dtype=DT)
    w = w * (3.0 / w.norm(dim=-1, keepdim=True)).clamp(max=1.0) * 0.9
    xi = torch.randn(C, 2, d, generator=g, dtype=DT)
    special = torch.stack([2.0 * w[:, 0] / 3.0, -w[:, 1], w[:, 2] + 1e-7 * xi[:, 0],
                           w[:, 3] + 1e-4 * xi[:, 1]], 1)  # (C, 4, d)
    generic = torch.randn(C, 3, d, generator=g, dtype=DT)
    if not aligned:
        return w, torch.cat([generic, w[:, :4] + 1e-4 * torch.randn(C, 4, d, generator=g, dtype=DT)], 1)
    return w, torch.cat([w, special, generic], 1)


def _gram(W1: torch.Tensor, W2: torch.Tensor):
    return (W1 * W1).sum(-1, keepdim=True), (W2 * W2).sum(-1).unsqueeze(-2), W1 @ W2.mT


def _autograd_partials(name, S11, S22, S12):
    S = [t.detach().clone().requires_grad_() for t in (S11, S22, S12)]
    K = G.closed_form_kernel(name, *S)
    return torch.autograd.grad(K.sum(), S)  # (dK/dS11 summed over j, dK/dS22 summed over i, dK/dS12)


def _kappa(name, S11, S22, S12):
    """Rounding amplification of the pair terms (module docstring): (P Q + S12^2) / h for erf/probit."""
    if name == "relu":
        return torch.ones_like(S12)
    P, Q = ARCSINE_C[name] + S11, ARCSINE_C[name] + S22
    return (P * Q + S12 * S12) / (P * Q - S12 * S12)


def _relu_deltas(S11, S22, S12, d):
    """Absolute rounding bounds of (dK/dS11, dK/dS12) for relu from the cancellation in G (docstring):
    |ds| <= min(sqrt(|dG|), |dG| / s), since |sqrt(x) - sqrt(y)| = |x - y| / (sqrt(x) + sqrt(y))."""
    norms = torch.sqrt(S11 * S22)  # |w||w'|
    dG = (4 * d + 6) * U * S11 * S22
    s = (S11 * S22 - S12 * S12).clamp_min(0).sqrt()
    ds = torch.minimum(dG.sqrt(), dG / s)
    return ds / (4 * math.pi * S11), (ds + d * U * norms) / (2 * math.pi * norms)


def _grad_bound(name, w_eval, a_eval, w_src, coef):
    """Per-entry bound on |fused - autograd| of kernel_means_and_grad (module docstring)."""
    d, k, Q = w_eval.shape[-1], a_eval.shape[-1], w_src.shape[1]
    S11, S22, S12 = _gram(w_eval, w_src)
    d11, _, d12 = (t.abs() for t in G.closed_form_partials(name, S11, S22, S12).full())
    beta = (a_eval @ coef.mT).abs()  # (C, P, Q)
    kappa = float(_kappa(name, S11, S22, S12).max())
    mag = 2 * (beta * d11).sum(-1, keepdim=True) * w_eval.abs() + (beta * d12) @ w_src.abs()  # (C, P, d)
    bound = 2 * U * (N_OPS * kappa + 2 * d + k + Q) * mag
    if name == "relu":
        e11, e12 = _relu_deltas(S11, S22, S12, d)
        bound = bound + 2 * (2 * (beta * e11).sum(-1, keepdim=True) * w_eval.abs() + (beta * e12) @ w_src.abs())
    return bound


def _problem(name, seed=0, C=3, P=12, d=4, k=2, aligned=True):
    w, src = _directions(seed, C, P, d, aligned)
    g = torch.Generator().manual_seed(seed + 100)
    a = torch.randn(C, P, k, generator=g, dtype=DT)
    coef = torch.randn(C, src.shape[1], k, generator=g, dtype=DT) / src.shape[1]
    return w, a, src, coef


# ------------------------------------------------------------------------------------------ partials


@pytest.mark.parametrize("name", ["erf", "probit"])
def test_arcsine_partials_equal_autograd(name):
    """dK/dS11, dK/dS22, dK/dS12 written out == autograd of the closed form, aligned pairs included."""
    w, src = _directions(1)
    S11, S22, S12 = _gram(w, src)
    d11, d22, d12 = G.closed_form_partials(name, S11, S22, S12).full()
    a11, a22, a12 = _autograd_partials(name, S11, S22, S12)
    kappa = _kappa(name, S11, S22, S12)
    tol = 2 * U * (N_OPS * kappa + 2) * d12.abs()  # S inputs are shared: no Gram rounding between routes
    assert bool((d12 - a12).abs().le(tol).all())
    # autograd sums the broadcast S11 over j and S22 over i: compare those sums, bounded term by term
    tol11 = (2 * U * (N_OPS * kappa + d12.shape[-1]) * d11.abs()).sum(-1, keepdim=True)
    tol22 = (2 * U * (N_OPS * kappa + d12.shape[-2]) * d22.abs()).sum(-2, keepdim=True)
    assert bool((d11.sum(-1, keepdim=True) - a11).abs().le(tol11).all())
    assert bool((d22.sum(-2, keepdim=True) - a22).abs().le(tol22).all())
    assert bool(torch.isfinite(d11).all() and torch.isfinite(d12).all())


@pytest.mark.parametrize("name", G.CLOSED_FORM)
def test_partials_match_finite_differences(name):
    """Central differences in each Gram entry, away from the boundary G = 0 of the Gram cone (where a
    one-sided entry perturbation would leave it). h = 1e-5: truncation h^2 |K'''| / 6 < 1e-10 for
    these entries (|K'''| < 6), rounding u |K| / h < 1e-10."""
    S11 = torch.tensor([[1.3], [0.7], [4.0]], dtype=DT)  # (3, 1)
    S22 = torch.tensor([[0.9, 2.0, 1.1, 5.0]], dtype=DT)  # (1, 4)
    S12 = torch.tensor([[0.4, -0.9, 0.1, 1.5], [0.5, 0.2, -0.6, -1.2], [1.0, 2.0, -1.5, 3.0]], dtype=DT)
    assert bool((S11 * S22 - S12 ** 2 > 0.1).all())
    d11, d22, d12 = G.closed_form_partials(name, S11, S22, S12).full()
    K = lambda a, b, c: G.closed_form_kernel(name, a, b, c)  # noqa: E731
    h = 1e-5
    fd11 = (K(S11 + h, S22, S12) - K(S11 - h, S22, S12)) / (2 * h)
    fd22 = (K(S11, S22 + h, S12) - K(S11, S22 - h, S12)) / (2 * h)
    fd12 = (K(S11, S22, S12 + h) - K(S11, S22, S12 - h)) / (2 * h)
    for ours, fd in ((d11, fd11), (d22, fd22), (d12, fd12)):
        torch.testing.assert_close(ours, fd, rtol=0, atol=2e-10)


@pytest.mark.parametrize("name", G.CLOSED_FORM)
def test_partials_are_separable_and_symmetric(name):
    """dK/dS11 = row(S11) pair and dK/dS22 = col(S22) pair, with pair and cross symmetric under
    exchanging the particles (what lets one tile of a measure against itself serve both orientations):
    the partials of the transposed problem are the transposes, dK/dS11 and dK/dS22 exchanged."""
    w, src = _directions(2)
    S11, S22, S12 = _gram(w, src)
    part = G.closed_form_partials(name, S11, S22, S12)
    swap = G.closed_form_partials(name, S22.mT, S11.mT, S12.mT)
    assert part.row.shape == S11.shape and part.col.shape == S22.shape
    rtol = 2 * U * N_OPS * float(_kappa(name, S11, S22, S12).max())  # operand order may change roundings
    torch.testing.assert_close(swap.pair, part.pair.mT, rtol=rtol, atol=0)
    torch.testing.assert_close(swap.cross, part.cross.mT, rtol=rtol, atol=0)
    torch.testing.assert_close(swap.row, part.col.mT, rtol=rtol, atol=0)  # same function, transposed layout


def test_closed_form_functions_refuse_quadrature_activations():
    S = torch.ones(1, 1, dtype=DT)
    with pytest.raises(ValueError, match="no closed-form kernel for 'sigmoid'; closed forms: erf, probit, relu"):
        G.closed_form_partials("sigmoid", S, S, S)


# ------------------------------------------------------------------------------------------ fused route


@pytest.mark.parametrize("name", G.CLOSED_FORM)
@pytest.mark.parametrize("tile", [1, 5, 1024])
@pytest.mark.parametrize("aligned", [True, False])
def test_fused_gradient_equals_autograd_route(name, tile, aligned):
    """kernel_means_and_grad, fused vs autograd through each tile, 3 configs batched; ``aligned``: with
    exact, scaled, anti-aligned and 1e-7-close source copies of the evaluation points (where the relu
    bound is of order sqrt(u)), the copies first, so the symmetric block is shared; else generic and
    1e-4-close pairs only (bounds of order u)."""
    w, a, src, coef = _problem(name, aligned=aligned)
    fused = kernel_means_and_grad(name, w, a, src, coef, tile=tile, shared=aligned)
    with kernel_route("autograd"):
        auto = kernel_means_and_grad(name, w, a, src, coef)
    assert fused.shape == auto.shape == w.shape
    assert bool(torch.isfinite(fused).all())
    bound = _grad_bound(name, w, a, src, coef)
    assert bool(((fused - auto).abs() <= bound).all()), float(((fused - auto).abs() / bound).max())


@pytest.mark.parametrize("name", G.CLOSED_FORM)
def test_fused_kernel_means_equal_autograd_route(name):
    w, a, src, coef = _problem(name, seed=4)
    fused = kernel_means(name, w, src, coef, tile=5, shared=True)
    with kernel_route("autograd"):
        ref = kernel_means(name, w, src, coef)
    S11, S22, S12 = _gram(w, src)
    K = G.closed_form_kernel(name, S11, S22, S12).abs()
    kappa = float(_kappa(name, S11, S22, S12).max())
    d, Q = w.shape[-1], src.shape[1]
    bound = 2 * U * (N_OPS * kappa + 2 * d + Q) * (K @ coef.abs())
    if name == "relu":  # |K| changes by at most (|ds| + |S12| |dtheta|) / (2 pi) per pair
        e11, e12 = _relu_deltas(S11, S22, S12, d)
        bound = bound + 2 * ((4 * math.pi * S11 * e11 + 2 * math.pi * S12.abs() * e12) / (2 * math.pi)) @ coef.abs()
    assert bool(((fused - ref).abs() <= bound).all())


def test_batched_configs_are_independent():
    """Each config of a fused batch equals that config run alone (to rounding: batch size may change
    the matmul kernels), so nothing leaks across the config axis."""
    w, a, src, coef = _problem("erf", seed=5)
    batch = kernel_means_and_grad("erf", w, a, src, coef, tile=4)
    for c in range(w.shape[0]):
        one = kernel_means_and_grad("erf", w[c:c + 1], a[c:c + 1], src[c:c + 1], coef[c:c + 1], tile=4)
        bound = _grad_bound("erf", w[c:c + 1], a[c:c + 1], src[c:c + 1], coef[c:c + 1])
        assert bool(((batch[c:c + 1] - one).abs() <= bound).all())


@pytest.mark.parametrize("name", G.CLOSED_FORM)
def test_fused_gradient_matches_finite_differences(name):
    """grad_{w_i} of sum_i a_i . g(w_i), sources held fixed, against central differences of the fused
    kernel means on a small case with aligned pairs. h = 1e-5: truncation O(h^2 K''') ~ 1e-10 and
    rounding u |objective| / h ~ 1e-11, so 1e-8 separates a wrong gradient from rounding."""
    w, a, src, coef = _problem(name, seed=6, C=2, P=4, d=3)

    def objective(W):
        return (kernel_means(name, W, src, coef) * a).sum()

    grad = kernel_means_and_grad(name, w, a, src, coef)
    h, fd = 1e-5, torch.zeros_like(w)
    for idx in torch.cartesian_prod(*(torch.arange(n) for n in w.shape)).tolist():
        e = torch.zeros_like(w)
        e[tuple(idx)] = h
        fd[tuple(idx)] = (objective(w + e) - objective(w - e)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", G.CLOSED_FORM)
def test_particle_field_routes_agree(name):
    """A whole mean-field field evaluation (kernel means, landscape, first variation, velocity) by the
    two routes: the kernel-level rounding, ~1e-15 relative, times cond(S_mm) <= 1e2 (checked)."""
    cfgs = [MeanFieldConfig(d=4, k=2, M=9, activation=name, steps=1, log_every=1, seed=s) for s in (0, 1)]
    a, w = make_student(cfgs)
    ta, tw = make_teacher(cfgs)
    fused = particle_field(name, a, w, ta, tw, tile=4)
    with kernel_route("autograd"):
        auto = particle_field(name, a, w, ta, tw, tile=4)
    assert bool((auto.land.cond <= 1e2).all())
    for x, y in ((fused.V, auto.V), (fused.grad_a, auto.grad_a), (fused.grad_w, auto.grad_w),
                 (fused.land.loss, auto.land.loss)):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12 * max(1.0, float(y.abs().max())))


def test_kernel_route_is_scoped_and_validated():
    assert KERNEL_ROUTES == ("fused", "autograd")
    with pytest.raises(ValueError, match="unknown kernel route 'slow'; choose from fused, autograd"):
        with kernel_route("slow"):
            pass
    with pytest.raises(RuntimeError):
        with kernel_route("autograd"):
            raise RuntimeError("boom")
    from sims.landscape import kernels as meanfield_kernels
    assert meanfield_kernels._route[0] == "fused"  # restored after an exception


@pytest.mark.parametrize("name", G.CLOSED_FORM)
@pytest.mark.parametrize("tile", [1, 5, 12, 1024])
def test_shared_block_equals_full_tiling(name, tile):
    """Mirroring the tiles of the measure against itself == evaluating every tile (kernel means and
    gradient), to the rounding of the reordered sums; a tile side that does not divide P included."""
    w, a, src, coef = _problem(name, seed=7, P=13)
    d, Q = w.shape[-1], src.shape[1]
    grad = kernel_means_and_grad(name, w, a, src, coef, tile=tile, shared=True)
    full = kernel_means_and_grad(name, w, a, src, coef, tile=tile)
    bound = _grad_bound(name, w, a, src, coef)
    assert bool(((grad - full).abs() <= bound).all())
    means = kernel_means(name, w, src, coef, tile=tile, shared=True)
    S11, S22, S12 = _gram(w, src)
    K = G.closed_form_kernel(name, S11, S22, S12).abs()
    tol = 2 * U * (N_OPS * float(_kappa(name, S11, S22, S12).max()) + 2 * d + Q) * (K @ coef.abs())
    assert bool(((means - kernel_means(name, w, src, coef, tile=tile)).abs() <= tol).all())


def test_shared_needs_the_evaluation_points_first():
    w, a, src, coef = _problem("erf")
    with pytest.raises(ValueError, match="shared sources must begin with the 12 evaluation points, got only 5"):
        kernel_means("erf", w, src[:, :5], coef[:, :5], shared=True)
