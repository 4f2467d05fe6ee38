"""Symbolic identities of the attention landscape, and sympy == torch at random points."""
import pytest
import sympy as sp
import torch

from theory.landscape import objective as AL
from theory.landscape import symbolic as S

DT = torch.float64
EPS = torch.finfo(DT).eps


@pytest.fixture(scope="module")
def sym():
    return S.landscape_symbols(2)


def _point(seed, k=2):
    """Random S_mm, S_oo (SPD, cond <= ~10), S_om, W, R as (k, k) float64 tensors."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda: torch.randn(k, k, generator=g, dtype=DT)
    A, C = rnd(), rnd()
    return A @ A.T + torch.eye(k, dtype=DT), rnd(), C @ C.T + torch.eye(k, dtype=DT), rnd(), rnd()


def test_grad_W_identity(sym):
    assert S.grad_W_identity(sym).is_zero_matrix


def test_grad_W_identity_for_k3():
    assert S.grad_W_identity(S.landscape_symbols(3)).is_zero_matrix


def test_W_star_is_stationary(sym):
    assert S.W_star_stationarity(sym).is_zero_matrix


def test_min_over_W_is_the_landscape(sym):
    assert S.landscape_identity(sym) == 0
    assert S.completed_square_identity(sym) == 0


def test_landscape_invariant_under_pushforward(sym):
    assert S.invariance_identity(sym) == 0


def test_the_identity_checks_can_fail(sym):
    """Planted wrong variants leave nonzero residuals (so the checks above are not vacuous)."""
    wrong_grad = sym.S_mo * sym.S_om * sym.W * sym.S_mm  # the "- I" dropped
    assert not (S.grad_W_expr(sym) - wrong_grad).applyfunc(sp.expand).is_zero_matrix
    wrong_push = S.landscape_expr(sym, sym.R * sym.S_mm * sym.R.T, sym.S_om * sym.R)  # R, not R^T
    assert sp.cancel(wrong_push - S.landscape_expr(sym)) != 0


@pytest.mark.parametrize("seed", range(5))
def test_lambdified_sympy_equals_torch(sym, seed):
    S_mm, S_om, S_oo, W, R = _point(seed)
    args, vals = sym.flat(), sym.values(S_mm, S_om, S_oo, W, R)
    cov = AL.Covariances(S_mm, S_om, S_oo)
    scale = float(max(S_mm.abs().max(), S_om.abs().max(), S_oo.abs().max(), W.abs().max())) ** 4
    tol = 256 * EPS * scale  # degree-4 polynomials (or cond <= ~10 rational ones) of O(scale) terms
    torch.testing.assert_close(S.lambdify_torch(args, S.loss_tf_expr(sym))(*vals),
                               AL.loss_tf(cov, W), rtol=0, atol=tol)
    torch.testing.assert_close(S.lambdify_torch(args, S.grad_W_expr(sym))(*vals),
                               AL.grad_W_loss_tf(cov, W), rtol=0, atol=tol)
    torch.testing.assert_close(S.lambdify_torch(args, S.landscape_expr(sym))(*vals),
                               AL.landscape_loss(cov), rtol=0, atol=tol)
    moved = AL.Covariances(R @ S_mm @ R.T, S_om @ R.T, S_oo)
    torch.testing.assert_close(AL.landscape_loss(moved), AL.landscape_loss(cov), rtol=0,
                               atol=tol * float(torch.linalg.cond(R)) ** 2)


@pytest.mark.parametrize("seed", range(3))
def test_lambdified_equals_evalf(sym, seed):
    """Every lambdified expression agrees with sympy's own evalf at the same point."""
    point = _point(10 + seed)
    args, vals = sym.flat(), sym.values(*point)
    subs = {a: sp.Float(float(v), 30) for a, v in zip(args, vals)}
    for expr in (S.loss_tf_expr(sym), S.landscape_expr(sym), S.grad_W_expr(sym)):
        numeric = S.lambdify_torch(args, expr)(*vals)
        reference = torch.tensor(
            [float(e.evalf(30, subs=subs)) for e in (expr if isinstance(expr, sp.MatrixBase)
                                                     else [expr])], dtype=DT).reshape(numeric.shape)
        torch.testing.assert_close(numeric, reference, rtol=1e-13, atol=1e-13)


def test_lambdify_refuses_unmapped_functions():
    x = sp.Symbol("x", real=True)
    with pytest.raises(ValueError, match="Max"):
        S.lambdify_torch([x], sp.Max(x, 0))
    f = S.lambdify_torch([x], sp.sqrt(x) + 1)
    assert float(f(torch.tensor(4.0, dtype=DT))) == 3.0


def test_lambdify_constant_matrix_keeps_dtype_and_shape():
    x = sp.Symbol("x", real=True)
    out = S.lambdify_torch([x], sp.Matrix([[0, x], [1, 2 * x]]))(torch.tensor(1.5, dtype=DT))
    assert out.dtype == DT and out.shape == (2, 2)
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.5], [1.0, 3.0]], dtype=DT))
