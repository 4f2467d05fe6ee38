"""Gaussian kernels: closed form == Gauss-Hermite == scipy quadrature == Monte Carlo; tiling; gradients."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from theory.landscape import gaussian as G

DT = torch.float64
EPS = torch.finfo(DT).eps
# The quadrature contract: DEFAULT_ORDER is documented to be within 1e-10 of the exact kernel for
# |w|, |w'| <= 3 (a truncation error of the rule, far above the ~10 eps rounding of the closed forms).
QUAD_TOL = 1e-10


def _particles(seed, m, d=3, scale=1.0, max_norm=3.0):
    """Random directions of typical norm ``scale``, clipped to the documented range |w| <= 3."""
    g = torch.Generator().manual_seed(seed)
    w = scale * torch.randn(m, d, generator=g, dtype=DT) / math.sqrt(d)
    return w * (max_norm / w.norm(dim=1, keepdim=True)).clamp(max=1.0)


def _special_pairs():
    """Directions with aligned, anti-aligned, scaled, orthogonal and generic pairs, |w| <= 3."""
    w = torch.tensor([[1.0, 0.5, -0.3], [2.0, 1.0, -0.6], [-1.0, -0.5, 0.3],
                      [0.0, 0.6, 1.0], [1.5, -2.0, 0.9]], dtype=DT)
    return w, w.flip(0)


def test_unknown_activation_names_choices():
    with pytest.raises(ValueError, match="unknown activation 'gelu'; choose from erf, probit, relu"):
        G.activation_fn("gelu")
    with pytest.raises(ValueError, match="unknown activation"):
        G.pair_kernel("softplus", torch.ones(1, 2, dtype=DT), torch.ones(1, 2, dtype=DT))


@pytest.mark.parametrize("name", G.ACTIVATIONS)
def test_activation_grad_is_derivative(name):
    z = torch.linspace(-3, 3, 61, dtype=DT)
    z = z[z.abs() > 1e-3].requires_grad_()  # avoid relu's kink
    (auto,) = torch.autograd.grad(G.activation_fn(name)(z).sum(), z)
    torch.testing.assert_close(G.activation_grad(name)(z), auto, rtol=4 * EPS, atol=4 * EPS)


def test_probit_is_normal_cdf():
    z = torch.linspace(-4, 4, 33, dtype=DT)
    torch.testing.assert_close(G.activation_fn("probit")(z), torch.special.ndtr(z),
                               rtol=0, atol=4 * EPS)


def test_gauss_hermite_integrates_polynomials_exactly():
    z, wt = G.gauss_hermite(10)
    for k in range(10):  # exact up to degree 19; E[z^(2k)] = (2k-1)!!
        expected = float(np.prod(np.arange(2 * k - 1, 0, -2))) if k else 1.0
        assert abs(float(wt @ z ** (2 * k)) - expected) <= 64 * EPS * expected
        assert abs(float(wt @ z ** (2 * k + 1))) <= 64 * EPS * max(expected, 1.0) * 10


@pytest.mark.parametrize("name", ["erf", "probit"])
def test_closed_form_equals_quadrature(name):
    for W1, W2 in [_special_pairs(), (_particles(1, 6, scale=2.0), _particles(2, 5, scale=2.0))]:
        closed = G.pair_kernel(name, W1, W2)
        quad = G.quad_pair_kernel(name, W1, W2)
        torch.testing.assert_close(quad, closed, rtol=0, atol=QUAD_TOL)


@pytest.mark.parametrize("name", ["erf", "probit", "sigmoid", "tanh"])  # relu: see next test
def test_default_order_reaches_documented_accuracy(name):
    """At |w| = |w'| = 3 (the hardest case of the documented range), every angle."""
    cos = torch.linspace(-1, 1, 11, dtype=DT)
    W1 = torch.tensor([[3.0, 0.0]], dtype=DT)
    W2 = 3.0 * torch.stack([cos, torch.sqrt(1 - cos ** 2)], -1)  # (11, 2)
    exact = (G.pair_kernel(name, W1, W2) if name in G.CLOSED_FORM
             else G.quad_pair_kernel(name, W1, W2, order=1400))
    err = (G.quad_pair_kernel(name, W1, W2) - exact).abs().max()
    assert err <= QUAD_TOL


def test_relu_gauss_hermite_converges_only_algebraically():
    W1, W2 = _special_pairs()
    exact = G.pair_kernel("relu", W1, W2)
    errs = [(G.quad_pair_kernel("relu", W1, W2, order=n) - exact).abs().max() for n in (32, 128, 512)]
    assert errs[0] > errs[1] > errs[2] > 1e-6  # converging, but nowhere near spectral accuracy


def _scipy_kernel(name, w1, w2):
    """E[sigma(u) sigma(u')] by nested adaptive scipy quadrature in Cholesky coordinates,
    with break points at the relu kinks; tails beyond |z| = 12 carry < 1e-32 of the mass."""
    f = {"erf": math.erf, "probit": lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2))),
         "relu": lambda z: max(z, 0.0), "sigmoid": lambda z: 1 / (1 + math.exp(-z)),
         "tanh": math.tanh}[name]
    phi = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    s11, s22, s12 = w1 @ w1, w2 @ w2, w1 @ w2
    alpha, beta = math.sqrt(s11), s12 / math.sqrt(s11)
    gamma = math.sqrt(max(s11 * s22 - s12 * s12, 0.0) / s11)
    opts = dict(epsabs=1e-14, epsrel=1e-13, limit=200)

    def inner(z1):
        if gamma < 1e-12:
            return f(beta * z1)
        kink = min(max(-beta * z1 / gamma, -12.0), 12.0)
        return integrate.quad(lambda z2: f(beta * z1 + gamma * z2) * phi(z2), -12, 12,
                              points=[kink], **opts)[0]

    return integrate.quad(lambda z1: f(alpha * z1) * inner(z1) * phi(z1), -12, 12,
                          points=[0.0], **opts)[0]


@pytest.mark.parametrize("name", G.ACTIVATIONS)
def test_kernel_matches_scipy_quadrature(name):
    w1, w2 = _particles(3, 2, d=3, scale=2.0), _particles(4, 2, d=3, scale=2.0)
    W1 = torch.cat([w1, w1[:1]])  # the last pair (w1[0], w1[0]) is aligned: a 1-D integral
    W2 = torch.cat([w2, w1[:1]])
    ours = G.pair_kernel(name, W1, W2)
    for i in range(3):
        ref = _scipy_kernel(name, W1[i].numpy(), W2[i].numpy())
        assert abs(float(ours[i, i]) - ref) <= QUAD_TOL


def test_diagonal_against_1d_scipy():
    """K(w, w) = E[sigma(|w| z)^2], a 1-D integral, for every activation."""
    w = torch.tensor([[1.2, -0.7, 0.4]], dtype=DT)
    r = float(w.norm())
    for name in G.ACTIVATIONS:
        f = G.activation_fn(name)
        ref = integrate.quad(lambda z: float(f(torch.tensor(r * z, dtype=DT))) ** 2
                             * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi),
                             -12, 12, points=[0.0], epsabs=1e-14, epsrel=1e-13)[0]
        assert abs(float(G.pair_kernel(name, w, w)) - ref) <= QUAD_TOL, name


@pytest.mark.parametrize("name", G.ACTIVATIONS)
def test_kernel_is_symmetric_to_rounding(name):
    """K(W1, W2) = K(W2, W1)^T to a few eps: the quadrature must not be merely symmetric up to its
    truncation error (that broke Cholesky-based invariants at the 1e-12 level)."""
    W1, W2 = _particles(20, 5, scale=2.5), _particles(21, 4, scale=2.5)
    torch.testing.assert_close(G.pair_kernel(name, W1, W2), G.pair_kernel(name, W2, W1).T,
                               rtol=0, atol=8 * EPS)


@pytest.mark.parametrize("name", G.ACTIVATIONS)
def test_kernel_matches_monte_carlo(name):
    W1, W2 = _particles(5, 4, d=3, scale=1.5), _particles(6, 3, d=3, scale=1.5)
    mc = G.mc_pair_kernel(name, W1, W2, 200_000, torch.Generator().manual_seed(7))
    assert bool((mc.stderr > 0).all())
    z = (G.pair_kernel(name, W1, W2) - mc.mean) / mc.stderr
    assert float(z.abs().max()) < 5.0  # 12 entries at 5 standard errors: false alarm p ~ 7e-6


def test_monte_carlo_stderr_is_honest():
    """Across 200 independent small-sample estimates about 95% fall within 1.96 SE."""
    W = torch.tensor([[1.0, 0.3]], dtype=DT)
    g = torch.Generator().manual_seed(11)
    exact = G.pair_kernel("erf", W, W)
    covered = 0
    for _ in range(200):
        est = G.mc_pair_kernel("erf", W, W, 400, g)
        covered += int(((est.mean - exact).abs() <= 1.96 * est.stderr).all())
    assert 170 <= covered <= 200  # binomial(200, 0.95) has sd 3.1: 170 is ~ -10 sd


@pytest.mark.parametrize("name", G.ACTIVATIONS)
def test_gradients_finite_and_correct_at_aligned_particles(name):
    """Diagonal (w_i with itself), duplicated, scaled and anti-aligned particles."""
    w = torch.tensor([[0.8, -0.4, 0.5], [0.8, -0.4, 0.5], [1.6, -0.8, 1.0], [-0.8, 0.4, -0.5]],
                     dtype=DT)
    c = torch.tensor([[1.0, -0.5, 0.3, 0.7], [0.2, 0.9, -1.1, 0.4], [0.6, 0.1, 0.5, -0.8],
                      [-0.3, 0.4, 0.2, 1.0]], dtype=DT)

    def objective(W):
        return (c * G.pair_kernel(name, W, W)).sum()

    W = w.clone().requires_grad_()
    (grad,) = torch.autograd.grad(objective(W), W)
    assert bool(torch.isfinite(grad).all())
    # The kernels are C^1 at alignment, so central differences converge to the gradient. With
    # h = 1e-5 the truncation error is O(h^2 * |K'''|) ~ 1e-10 and rounding is eps / h ~ 2e-11.
    h, fd = 1e-5, torch.zeros_like(w)
    for idx in np.ndindex(*w.shape):
        e = torch.zeros_like(w)
        e[idx] = h
        fd[idx] = (objective(w + e) - objective(w - e)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", ["erf", "probit"])
def test_second_derivatives_finite_at_aligned_particles(name):
    w = torch.tensor([[0.8, -0.4], [0.8, -0.4]], dtype=DT)
    H = torch.autograd.functional.hessian(lambda W: G.pair_kernel(name, W, W).sum(), w)
    assert bool(torch.isfinite(H).all())


def test_relu_custom_gradient_passes_gradcheck():
    S11 = torch.tensor([[1.3], [0.7]], dtype=DT, requires_grad=True)
    S22 = torch.tensor([[0.9, 2.0, 1.1]], dtype=DT, requires_grad=True)
    S12 = torch.tensor([[0.4, -0.9, 0.1], [0.5, 0.2, -0.6]], dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(G._ArcCos1.apply, (S11, S22, S12))
    assert torch.autograd.gradgradcheck(G._ArcCos1.apply, (S11, S22, S12))


@pytest.mark.parametrize("name", G.ACTIVATIONS)
@pytest.mark.parametrize("tile", [1, 2, 5])
def test_tiled_contraction_equals_untiled(name, tile):
    A1, W1 = _particles(8, 7, d=2), _particles(9, 7, d=4)
    A2, W2 = _particles(10, 6, d=3), _particles(11, 6, d=4)
    p1 = torch.linspace(0.5, 1.5, 7, dtype=DT)
    p1 = p1 / p1.sum()
    W1 = W1.requires_grad_()
    order = 48  # tiling is a reordering of sums: it must hold at any quadrature order
    dense = (p1[:, None] * A1).T @ G.pair_kernel(name, W1, W2, order) @ (A2 / 6)  # (2, 3)
    tiled = G.contract(name, A1, W1, A2, W2, p1=p1, tile=tile, order=order)
    torch.testing.assert_close(tiled, dense, rtol=0, atol=16 * EPS)
    (g_dense,) = torch.autograd.grad(dense.square().sum(), W1)
    (g_tiled,) = torch.autograd.grad(tiled.square().sum(), W1)
    torch.testing.assert_close(g_tiled, g_dense, rtol=0, atol=64 * EPS)


def test_tiled_second_derivatives_equal_untiled():
    A, W = _particles(12, 5, d=2), _particles(13, 5, d=3)

    def loss(tile):
        return lambda w: G.contract("erf", A, w, A, w, tile=tile).square().sum()

    torch.testing.assert_close(torch.autograd.functional.hessian(loss(2), W),
                               torch.autograd.functional.hessian(loss(100), W),
                               rtol=0, atol=256 * EPS)


@pytest.mark.parametrize("name", ["erf", "sigmoid"])
def test_tiles_never_exceed_the_tile_side(monkeypatch, name):
    seen = []
    original = G.pair_kernel

    def recording(n, W1, W2, order=None):
        seen.append((W1.shape[0], W2.shape[0]))
        return original(n, W1, W2, order)

    monkeypatch.setattr(G, "pair_kernel", recording)
    A, W = _particles(14, 23, d=2), _particles(15, 23, d=3)
    out = G.kernel_matvec(name, W, W, A, tile=4, order=16)
    assert out.shape == (23, 2)
    assert max(max(s) for s in seen) <= 4 and len(seen) == 36  # ceil(23/4)^2 tiles


def test_quadrature_tiles_shrink_to_the_memory_budget():
    side = G._tile_side("tanh", 1024, G.DEFAULT_ORDER["tanh"])  # an explicit order selects quadrature
    nodes = len(G._half_grid_np(G.DEFAULT_ORDER["tanh"])[2])
    assert side * side * nodes <= G._QUAD_BUDGET < (side + 1) ** 2 * nodes
    assert G._tile_side("erf", 1024, None) == 1024
    assert G._tile_side("tanh", 1024, None) == 1024  # the Hermite series: a few (t1, t2) temporaries
