"""theory.softmax.closed_form: every formula against a slow, obviously-correct twin."""
import itertools
import math

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
from scipy import integrate

from theory.softmax import closed_form as th

EPS64 = np.finfo(np.float64).eps


@pytest.mark.parametrize("K", [2, 3, 4, 5])
def test_update_rule_equals_direct_symbolic_derivative(K):
    """The A/B rule in attention form == d l_k / d s_{k,n} of the explicit loss, exactly (sympy)."""
    target_rule, off_rule = th.update_rule_exprs()
    for k in range(K):
        loss, s, w = th.per_query_loss_expr(K, k)
        Z = sum(w[m] * sp.exp(s[m]) for m in range(K))
        attn = [w[m] * sp.exp(s[m]) / Z for m in range(K)]
        subs = {th.a_k: attn[k], th.S: sum(a ** 2 for a in attn)}
        for n, direct in enumerate(th.score_gradient_exprs(K, k)):
            rule = target_rule if n == k else off_rule.subs(th.a_n, attn[n])
            assert sp.simplify(direct - rule.subs(subs)) == 0


@pytest.mark.parametrize("K", [2, 7, 33])
def test_lambdified_rule_equals_autograd(K):
    gen = torch.Generator().manual_seed(K)
    scores = 4 * torch.randn(5, K, K, generator=gen, dtype=torch.float64).requires_grad_(True)  # (5, K, K)
    weights = torch.rand(5, 1, K, generator=gen, dtype=torch.float64) + 0.01  # (5, 1, K)
    attn = th.attention(scores, weights)  # (5, K, K)
    losses = th.per_query_loss(attn, torch.arange(K))  # (5, K)
    auto, = torch.autograd.grad(losses.sum(), scores)
    # O(1) values: the two evaluation orders differ by a few ulps
    torch.testing.assert_close(th.score_gradient(attn.detach()), auto, rtol=0, atol=64 * EPS64)


def test_lambdified_rule_matches_evalf_at_a_point():
    attn = torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64)
    G = th.score_gradient(attn.expand(3, 3).clone())[0]  # query 0 row
    target, off = th.update_rule_exprs()
    S_val = sp.Rational(38, 100)
    expected = [target.subs({th.a_k: sp.Rational(1, 2), th.S: S_val}).evalf(30)] + [
        off.subs({th.a_n: sp.Rational(v, 10), th.a_k: sp.Rational(1, 2), th.S: S_val}).evalf(30) for v in (3, 2)]
    np.testing.assert_allclose(G.numpy(), np.array(expected, dtype=float), rtol=0, atol=4 * EPS64)


def test_attention_zero_weight_gives_zero_attention():
    attn = th.attention(torch.tensor([1.0, 50.0, -3.0], dtype=torch.float64), torch.tensor([0.5, 0.0, 0.5]))
    assert attn[1] == 0 and abs(float(attn.sum()) - 1) < 4 * EPS64


def test_F_is_the_antiderivative_and_matches_the_hand_written_form_up_to_a_constant():
    F = th.F_expr()
    assert sp.simplify(sp.diff(F, th.x) - 1 / (th.x ** 2 * (1 - th.x) ** 3)) == 0
    points = [sp.Rational(v, 1000) for v in (10, 300, 770, 999)]  # exact points: no float cancellation
    diff = [float((F - th.F_reference_expr()).subs(th.x, v).evalf(30)) for v in points]
    assert max(diff) - min(diff) < 1e-12


def test_ode_rhs_matches_the_documented_form():
    expected = th.eta * th.p * (th.K / (th.K - 1)) ** 2 * th.x ** 2 * (1 - th.x) ** 3
    assert sp.simplify(th.attention_ode_rhs_expr() - expected) == 0


@pytest.mark.parametrize("K,p_k,a", [(5, 0.2, 0.5), (10, 0.1, 0.9), (10, 0.5, 0.8), (40, 1 / 40, 0.99)])
def test_time_to_attention_equals_quadrature(K, p_k, a):
    """Slow twin: integrate dt = da / rhs(a) numerically."""
    rhs = sp.lambdify(th.x, th.attention_ode_rhs_expr().subs({th.K: K, th.p: p_k, th.eta: 0.7}), "math")
    quad, err = integrate.quad(lambda v: 1.0 / rhs(v), p_k, a, epsabs=0, epsrel=1e-12, limit=200)
    assert th.time_to_attention(a, K, p_k, 0.7) == pytest.approx(quad, rel=1e-9)


def test_time_to_attention_solves_the_ode_by_explicit_integration():
    """Slow twin: scipy's ODE solver started at a(0) = p_k reaches t(a) at a."""
    K, p_k, eta = 6, 1 / 6, 1.0
    rhs = sp.lambdify(th.x, th.attention_ode_rhs_expr().subs({th.K: K, th.p: p_k, th.eta: eta}), "math")
    t_half = th.time_to_attention(0.5, K, p_k, eta)
    sol = integrate.solve_ivp(lambda t, y: [rhs(y[0])], (0, t_half), [p_k], rtol=1e-11, atol=1e-13)
    assert sol.y[0, -1] == pytest.approx(0.5, abs=1e-8)


def test_rise_threshold_is_one_over_sqrt_K():
    assert sp.simplify(th.rise_threshold_expr() - 1 / sp.sqrt(th.K)) == 0
    for K in (4, 9, 10, 100):
        assert th.rise_threshold(K) == pytest.approx(1 / math.sqrt(K), rel=1e-14)


def test_bracket_changes_sign_at_threshold():
    bracket = sp.lambdify((th.c, th.K), th.offtarget_bracket_expr(), "math")
    for K in (3, 10, 50):
        c_star = 1 / math.sqrt(K)
        assert bracket(0.99 * c_star, K) > 0 > bracket(1.01 * c_star, K)


def test_bracket_is_built_from_attention_at_start():
    """Twin: evaluate Attn_n + Attn_k - S directly from the attention vector p at Q = 0."""
    K, c = 7, 0.45
    p = np.array([c] + [(1 - c) / (K - 1)] * (K - 1))
    direct = p[1] + p[2] - np.sum(p ** 2)
    assert float(th.offtarget_bracket_expr().subs({th.K: K, th.c: c})) == pytest.approx(direct, rel=1e-13)


def test_phase_times_approach_their_asymptotic_orders():
    orders = th.asymptotic_orders()
    phase1 = sp.lambdify((th.K, th.eta), orders["balanced.phase1"][0], "math")
    ratios = [th.phase_times_balanced(K, 1.0, 0.01)[0] / phase1(K, 1.0) for K in (100, 1000, 10000)]
    assert abs(ratios[-1] - 1) < abs(ratios[0] - 1) and abs(ratios[-1] - 1) < 0.02
    t_I, t_II = th.phase_times_balanced(10, 1.0, 1e-6)
    assert (t_II - t_I) / float(orders["balanced.phase2"][0].subs({th.K: 10, th.eta: 1, th.eps: 1e-6})) == \
        pytest.approx(1, rel=1e-2)


def test_dominant_time_is_nearly_independent_of_K():
    times = [th.dominant_time(K, 0.5, 1.0, 0.01) for K in (4, 16, 64, 256)]
    assert max(times) / min(times) < 1.5
    asym = float(th.asymptotic_orders()["dominant"][0].subs({th.eta: 1, th.c: 0.5, th.eps: 1e-6}))
    assert th.dominant_time(1000, 0.5, 1.0, 1e-6) / asym == pytest.approx(1, rel=2e-2)


def test_attention_for_loss_solves_l_equals_eps():
    """Twin: the exchangeable per-query loss evaluated at the returned attention is eps."""
    for K, eps in ((2, 0.1), (10, 0.01), (100, 1e-4)):
        a = th.attention_for_loss(eps, K)
        loss = 0.5 * ((1 - a) ** 2 + (K - 1) * ((1 - a) / (K - 1)) ** 2)
        assert 0 < a < 1 and loss == pytest.approx(eps, rel=64 * EPS64)


@pytest.mark.parametrize("K,eta,eps,c", [(4, 1.0, 0.01, 0.5), (10, 0.7, 0.003, 0.3), (64, 2.0, 0.05, 0.8)])
def test_phase_time_exprs_equal_the_numeric_phase_times(K, eta, eps, c):
    """The sympy phase times (evaluated to 30 digits) equal the numeric functions the claims use."""
    exprs = th.phase_time_exprs()
    subs = {th.K: K, th.eta: eta, th.eps: eps, th.c: c}
    value = {name: float(e.subs(subs).evalf(30)) for name, e in exprs.items()}
    t_I, t_II = th.phase_times_balanced(K, eta, eps)
    # F(a) - F(a0) cancels terms of size ~1/a0 and 1/(1-a)^2: allow their ulps, scaled by the largest term
    rtol = 1e4 * EPS64 * K
    assert value["balanced.phase1"] == pytest.approx(t_I, rel=rtol)
    assert value["balanced.total"] == pytest.approx(t_II, rel=rtol)
    assert value["balanced.phase2"] == pytest.approx(t_II - t_I, rel=rtol)
    assert value["dominant"] == pytest.approx(th.dominant_time(K, c, eta, eps), rel=rtol)


def _numeric_local_slope(expr, var, value, subs):
    """Slow twin: central finite difference of ln f in ln x, in 50-digit arithmetic (mpmath)."""
    f = sp.lambdify(var, expr.subs(subs), modules="mpmath")
    with mpmath.workdps(50):
        h, x = mpmath.mpf("1e-12"), mpmath.mpf(value)
        return float((mpmath.log(f(x * (1 + h))) - mpmath.log(f(x * (1 - h))))
                     / (mpmath.log(1 + h) - mpmath.log(1 - h)))


ASYMPTOTES = [  # (expression name, variable, point, points approaching it, expected exponent)
    ("balanced.phase1", "K", sp.oo, ("1e3", "1e5", "1e8"), 2),
    ("balanced.total", "K", sp.oo, ("1e3", "1e5", "1e8"), 2),
    ("dominant", "K", sp.oo, ("1e3", "1e5", "1e8"), 0),
    ("balanced.phase2", "eps", 0, ("1e-4", "1e-8", "1e-14"), -1),
]


@pytest.mark.parametrize("name,var,point,xs,expected", ASYMPTOTES, ids=[a[0] for a in ASYMPTOTES])
def test_asymptotic_slope_is_the_limit_of_numeric_local_slopes(name, var, point, xs, expected):
    """Twin: finite-difference local log-log slopes at x -> point approach the exact asymptotic slope."""
    symbol = {"K": th.K, "eps": th.eps}[var]
    expr = th.phase_time_exprs()[name]
    exact = th.asymptotic_loglog_slope(expr, symbol, point)
    assert exact == expected
    others = {th.K: 10, th.eta: sp.Rational(7, 10), th.eps: sp.Rational(1, 100), th.c: sp.Rational(1, 2)}
    others.pop(symbol)
    gaps = [abs(_numeric_local_slope(expr, symbol, x, others) - float(exact)) for x in xs]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-5, gaps


def test_asymptotic_slope_equals_the_definition():
    """Twin: sympy's limit of x f'(x)/f(x) (the local log-log slope itself), where sympy computes it quickly."""
    for expr, var, point in [(th.phase_time_exprs()["balanced.phase1"], th.K, sp.oo),
                             (th.asymptotic_orders(1.5)["balanced.theorem"][0], th.K, sp.oo),
                             (th.K ** 3 + 2 * sp.sqrt(th.K) * (1 - sp.log(th.K)), th.K, 0)]:
        definition = sp.limit(var * sp.diff(sp.log(expr), var), var, point)
        assert th.asymptotic_loglog_slope(expr, var, point) == definition


def test_theorem_bound_exponent_enters_its_asymptotic_slope():
    for b, slope in ((2, 2), (1.5, sp.Rational(3, 2)), (0.5, 1)):  # K/eps term: slope never below 1
        assert th.asymptotic_loglog_slope(th.asymptotic_orders(b)["balanced.theorem"][0], th.K, sp.oo) == slope


def _floor_by_enumeration(K: int, N: int) -> float:
    """Slow twin: sum over every count vector of the K features among N tokens, with its multinomial probability,
    of the converged loss: 0 if the query's feature 0 is present, else 1/2 (1 + sum_n (c_n/N)^2)."""
    total = 0.0
    for counts in itertools.product(range(N + 1), repeat=K):
        if sum(counts) != N or counts[0] > 0:
            continue
        prob = math.factorial(N) / math.prod(math.factorial(n) for n in counts) / K ** N
        total += prob * 0.5 * (1 + sum((n / N) ** 2 for n in counts))
    return total


@pytest.mark.parametrize("K,N", [(2, 1), (3, 4), (3, 9), (4, 6), (5, 5)])
def test_loss_floor_equals_enumeration(K, N):
    value = float(th.loss_floor_expr().subs({th.K: K, th.N: N}))
    assert value == pytest.approx(_floor_by_enumeration(K, N), rel=64 * EPS64 * N)


def test_loss_floor_rate_is_ln_one_minus_p():
    rate = th.asymptotic_log_rate(th.loss_floor_expr(), th.N)
    assert sp.simplify(rate - sp.log(1 - 1 / th.K)) == 0
    floor = sp.lambdify(th.N, th.loss_floor_expr().subs(th.K, 3), "mpmath")
    with mpmath.workdps(50):  # twin: finite differences of ln(floor) in N
        local = [float(mpmath.log(floor(mpmath.mpf(n + 1)) / floor(mpmath.mpf(n)))) for n in (10, 100, 1000)]
    gaps = [abs(v - math.log(2 / 3)) for v in local]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-6, gaps
