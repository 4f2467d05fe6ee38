"""Each closed form of linear_icl.theory against a slow, obviously correct twin.

Tolerances: exact twins (sympy, autograd, the same algebra in another order) get a multiple of float64's
eps scaled by the size of the numbers; finite differences get the central-difference bound
(h^2 truncation + eps/h rounding, h = eps^(1/3)); Monte Carlo twins get a z-test on the sampled
standard error at level 1e-6 per entry (z = 5), so the suite fails by chance with probability < 1e-4.
"""
import itertools
import math

import pytest
import sympy as sp
import torch

from linear_icl import sims
from linear_icl import theory as th

DT = torch.float64
EPS = torch.finfo(DT).eps
Z = 5.0  # Monte Carlo z-threshold per compared entry


def _spd(d: int, seed: int, spread: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DT))
    return (Q * torch.linspace(1.0, spread, d, dtype=DT)) @ Q.T


def _close(a, b, scale, factor=64):
    assert torch.allclose(a, b, rtol=0, atol=factor * EPS * scale), (a, b, float((a - b).abs().max()))


# ---------------------------------------------------------------------------------------------------
# Gaussian moments
# ---------------------------------------------------------------------------------------------------
def _gaussian_expectation(poly: sp.Expr, zs) -> sp.Expr:
    """E over independent standard normals zs of a polynomial: monomials -> prod (k-1)!! (0 for odd k)."""
    poly = sp.Poly(sp.expand(poly), *zs)
    total = sp.Integer(0)
    for powers, coeff in poly.terms():
        moment = sp.Integer(1)
        for k in powers:
            moment *= 0 if k % 2 else sp.factorial2(k - 1)
        total += coeff * moment
    return total


def test_fourth_moment_equals_exact_gaussian_moments():
    d = 2
    zs = sp.symbols("z0:2")
    L = sp.Matrix([[sp.Rational(3, 2), 0], [sp.Rational(-1, 3), sp.Rational(4, 5)]])
    A = sp.Matrix([[1, sp.Rational(2, 7)], [-3, sp.Rational(1, 2)]])  # not symmetric on purpose
    x = L * sp.Matrix(zs)
    exact = (x * x.T * A * x * x.T).applyfunc(lambda e: _gaussian_expectation(e, zs))
    lam = torch.tensor([[float(v) for v in row] for row in (L * L.T).tolist()], dtype=DT)
    At = torch.tensor([[float(v) for v in row] for row in A.tolist()], dtype=DT)
    got = th.fourth_moment(lam, At)
    want = torch.tensor([[float(exact[i, j]) for j in range(d)] for i in range(d)], dtype=DT)
    _close(got, want, float(want.abs().max()))


def _mc_mean(samples: torch.Tensor):
    """Mean and standard error over the first axis."""
    n = samples.shape[0]
    return samples.mean(0), samples.std(0) / math.sqrt(n)


def test_h_second_moment_matches_sampled_prompts():
    d, M, n = 3, 4, 200_000
    lam = _spd(d, 1)
    mu, scale = torch.tensor([0.5, -1.0, 0.2], dtype=DT), torch.diag(torch.tensor([0.7, 1.3, 0.4], dtype=DT))
    X, y, _, _, _ = sims.sample_prompts(torch.linalg.cholesky(lam), mu, scale, M, n, torch.Generator().manual_seed(2))
    h = (y[:, :, None] * X).mean(1)  # (n, d)
    mean, se = _mc_mean(h[:, :, None] * h[:, None, :])
    S = scale @ scale.T + torch.outer(mu, mu)
    assert ((mean - th.h_second_moment(lam, S, M)).abs() <= Z * se).all()


@pytest.mark.parametrize("M", [1, 5, None])
def test_risk_matches_monte_carlo_under_shifts(M):
    d, N, n = 3, 6, 200_000
    lam, lam_test = _spd(d, 3), _spd(d, 4, spread=2.0)
    mu, scale = torch.tensor([1.0, 0.0, -0.5], dtype=DT), torch.diag(torch.tensor([0.5, 1.5, 1.0], dtype=DT))
    G = th.minimiser(lam, N) + 0.1 * _spd(d, 5)  # not only at the minimiser
    mean, se = sims.mc_error(G, torch.linalg.cholesky(lam_test), mu, scale, M, n, torch.Generator().manual_seed(6))
    want = float(th.risk(G, lam_test, scale @ scale.T + torch.outer(mu, mu), M))
    assert abs(mean - want) <= Z * se, (mean, se, want)


@pytest.mark.parametrize("M", [7, "N", None])
def test_error_expr_is_the_risk_of_the_minimiser(M):
    train, test, s = [1.0, 2.0, 4.0], [0.5, 3.0, 1.0], [2.0, 0.25, 1.0]
    N = 9
    value = float(th.error_expr(train, test, s, M).subs(th.N_SYMBOL, N))
    lam, lam_t, S = (torch.diag(torch.tensor(v, dtype=DT)) for v in (train, test, s))
    want = float(th.risk(th.minimiser(lam, N), lam_t, S, N if M == "N" else M))
    assert abs(value - want) <= 64 * EPS * abs(want)


@pytest.mark.parametrize("M,slope", [(None, -2), ("N", -1)])
def test_asymptotic_slope_matches_numeric_local_slopes(M, slope):
    expr = th.error_expr([1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [1.0, 1.0, 1.0], M)
    assert th.asymptotic_loglog_slope(expr) == slope
    f = sp.lambdify(th.N_SYMBOL, expr)
    local = [math.log(f(2 * N) / f(N)) / math.log(2) for N in (1e3, 1e4, 1e5)]
    assert all(abs(v - slope) < 20 / N for v, N in zip(local, (1e3, 1e4, 1e5)))
    assert abs(local[-1] - slope) < abs(local[0] - slope)  # the local slopes approach the limit


# ---------------------------------------------------------------------------------------------------
# gradients, minimiser, Hessian
# ---------------------------------------------------------------------------------------------------
def test_risk_gradient_matches_central_differences():
    d, N = 3, 5
    lam, S = _spd(d, 7), _spd(d, 8, spread=1.5)
    G = _spd(d, 9) - 0.3 * torch.eye(d, dtype=DT)
    h = EPS ** (1 / 3)
    grad = th.risk_gradient(G, lam, S, N)
    fd = torch.zeros_like(G)
    for i, j in itertools.product(range(d), range(d)):
        E = torch.zeros_like(G)
        E[i, j] = h
        fd[i, j] = (th.risk(G + E, lam, S, N) - th.risk(G - E, lam, S, N)) / (4 * h)  # gradient of R/2
    scale = float(th.risk(G, lam, S, N)) + float(grad.abs().max())
    assert torch.allclose(grad, fd, rtol=0, atol=100 * EPS ** (2 / 3) * scale)


def test_minimiser_is_stationary_and_minimal():
    d, N = 4, 3
    lam = _spd(d, 10)
    I = torch.eye(d, dtype=DT)
    G = th.minimiser(lam, N)
    grad = th.risk_gradient(G, lam, I, N)
    _close(grad, torch.zeros_like(grad), float(torch.linalg.matrix_norm(lam, 2) ** 2 * torch.linalg.cond(lam)))
    g = torch.Generator().manual_seed(11)
    best = th.risk(G, lam, I, N)
    assert all(th.risk(G + 1e-3 * torch.randn(d, d, generator=g, dtype=DT), lam, I, N) > best for _ in range(20))


def test_reduced_gradients_match_autograd():
    d, N = 3, 6
    lam = _spd(d, 12)
    g = torch.Generator().manual_seed(13)
    u = torch.tensor([0.7, -0.3], dtype=DT, requires_grad=True)
    U = torch.randn(2, d, d, generator=g, dtype=DT, requires_grad=True)
    loss = th.reduced_loss(u, U, lam, N).sum()
    gu, gU = torch.autograd.grad(loss, (u, U))
    ru, rU = th.reduced_gradients(u.detach(), U.detach(), lam, N)
    scale = float(gU.abs().max() + gu.abs().max())
    _close(ru, gu, scale)
    _close(rU, gU, scale)


def test_reduced_hessian_matches_differences_of_the_gradient():
    d, N = 2, 4
    lam = _spd(d, 14)
    u, U = th.flow_limit(lam, N, 0.3)
    theta = torch.cat([u.reshape(1), U.reshape(-1)])
    h = EPS ** (1 / 3)

    def grad(t):
        gu, gU = th.reduced_gradients(t[0], t[1:].reshape(d, d), lam, N)
        return torch.cat([gu.reshape(1), gU.reshape(-1)])
    fd = torch.stack([(grad(theta + h * e) - grad(theta - h * e)) / (2 * h) for e in torch.eye(1 + d * d, dtype=DT)], 1)
    H = th.reduced_hessian(lam, N, 0.3)
    assert torch.allclose(H, fd, rtol=0, atol=100 * EPS ** (2 / 3) * float(H.abs().max()))
    mu = torch.linalg.eigvalsh(H)
    assert mu[0].abs() <= 1e3 * EPS * mu[-1] and mu[1] > 1e-3 * mu[-1]  # exactly one zero mode


def test_flow_limit_is_a_minimiser_with_the_given_imbalance():
    lam, N = _spd(3, 15), 7
    for delta in (0.0, -0.2, 0.5):
        u, U = th.flow_limit(lam, N, delta)
        G = th.minimiser(lam, N)
        _close(u * U.T, G, float(G.abs().max()))
        assert abs(float(u ** 2 - torch.linalg.matrix_norm(U) ** 2) - delta) <= 64 * EPS * float(u ** 2)


# ---------------------------------------------------------------------------------------------------
# simulations: fast paths against the definitions
# ---------------------------------------------------------------------------------------------------
def test_euler_step_is_the_theory_gradient_step():
    d, N, eta = 3, 5, 0.01
    lam = _spd(d, 16)[None]
    g = torch.Generator().manual_seed(17)
    u, U = torch.tensor([0.4], dtype=DT), torch.randn(1, d, d, generator=g, dtype=DT)
    run = sims.euler_flow(lam, torch.tensor([float(N)], dtype=DT), u, U, torch.tensor([eta], dtype=DT),
                          torch.tensor([1]), torch.tensor([0]))
    gu, gU = th.reduced_gradients(u, U, lam, N)
    _close(run.u, u - eta * gu, 1.0)
    _close(run.U, U - eta * gU, float(U.abs().max()))


def test_structured_lsa_predicts_the_reduced_formula():
    d, N, n = 3, 5, 64
    lam = _spd(d, 18)
    g = torch.Generator().manual_seed(19)
    u, U = torch.tensor([0.8], dtype=DT), torch.randn(1, d, d, generator=g, dtype=DT)
    p, W = sims.lsa_structured(u, U)
    Wpv = torch.zeros(1, d + 1, d + 1, dtype=DT)
    Wpv[:, d] = p
    X, y, xq, _, _ = sims.sample_prompts(torch.linalg.cholesky(lam), torch.zeros(d, dtype=DT), torch.eye(d, dtype=DT),
                                         N, n, g)
    yhat = sims.lsa_predict(Wpv, W, X[None], y[None], xq[None])[0]
    h = (y[:, :, None] * X).mean(1)
    want = ((xq @ (u * U[0].T)) * h).sum(-1)
    _close(yhat, want, float(want.abs().max()) * d * N)


def test_effective_G_is_the_odd_part_of_the_full_lsa():
    d, N, n = 2, 4, 32
    g = torch.Generator().manual_seed(20)
    Wpv, W = torch.randn(d + 1, d + 1, generator=g, dtype=DT), torch.randn(d + 1, d + 1, generator=g, dtype=DT)
    X, y, xq, _, _ = sims.sample_prompts(torch.eye(d, dtype=DT), torch.zeros(d, dtype=DT), torch.eye(d, dtype=DT), N, n, g)
    odd = (sims.lsa_predict(Wpv, W, X, y, xq) - sims.lsa_predict(Wpv, W, X, -y, xq)) / 2  # y -> -y is w -> -w
    h = (y[:, :, None] * X).mean(1)
    want = ((xq @ sims.effective_G(Wpv[d], W)) * h).sum(-1)
    _close(odd, want, float(want.abs().max()) * d * N)


def test_empirical_quadratic_form_is_the_lsa_loss_and_its_gradient():
    d, N, R, b = 2, 5, 3, 40
    L = torch.linalg.cholesky(_spd(d, 21))
    K, c, m = sims.empirical_moments(L, N, b, R, torch.Generator().manual_seed(22))
    X, y, xq, yq, _ = sims.sample_prompts(L, torch.zeros(d, dtype=DT), torch.eye(d, dtype=DT), N, R * b,
                                          torch.Generator().manual_seed(22))  # the same draws, in the same order
    g = torch.Generator().manual_seed(23)
    p = torch.randn(R, d + 1, generator=g, dtype=DT)
    W = torch.randn(R, d + 1, d + 1, generator=g, dtype=DT)
    Wpv = torch.zeros(R, d + 1, d + 1, dtype=DT)
    Wpv[:, d] = p
    Wpv.requires_grad_(True)
    Wk = W.clone().requires_grad_(True)
    yhat = sims.lsa_predict(Wpv, Wk, X.view(R, b, N, d), y.view(R, b, N), xq.view(R, b, d))
    loss = 0.5 * ((yhat - yq.view(R, b)) ** 2).mean(-1)  # (R,)
    gpv, gW = torch.autograd.grad(loss.sum(), (Wpv, Wk))
    v = (p[:, :, None, None] * W[:, None, :, :d]).flatten(1)  # the last column of W^KQ never enters
    quad = 0.5 * ((v[:, None, :] @ K @ v[:, :, None])[:, 0, 0] - 2 * (c * v).sum(-1) + m)
    _close(quad, loss.detach(), float(loss.detach().max()) * 100)
    p1, W1, _ = sims.train_lsa_gd(p, W, K, c, torch.ones(R, dtype=DT), 1)  # one step of size 1: minus the gradient
    scale = float(gW.abs().max()) * 100
    _close(p - p1, gpv[:, d], scale)
    _close(W - W1, gW, scale)
    assert gpv[:, :d].abs().max() == 0  # the other rows of W^PV never reach the prediction
