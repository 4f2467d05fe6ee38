"""Symbolic quantities of "In-Context Convergence of Transformers" (Huang, Cheng & Liang, arXiv 2310.05249).

Everything here is derived with sympy from the model written out in ``docs/softmax_dynamics.md`` (sections 1-2) and then
lambdified (numpy or torch, with an explicit function map).  Nothing in this module runs a simulation.

Notation (docs/softmax_dynamics.md §2).  Query feature ``k``; scores ``s_{k,n} = v_n^T Q v_k``; token weights ``w_n``
(counts ``c_n`` for a finite prompt, probabilities ``p_n`` when N is infinite);
``Attn_n = w_n e^{s_n} / sum_m w_m e^{s_m}``; per-query loss
``l_k = 1/2 [(1 - Attn_k)^2 + sum_{n != k} Attn_n^2]``.

Provenance tags (docs/softmax_dynamics.md §9): *stated* (the paper says it), *derived* (exact consequence of the model,
derived here), *recalled* (likely form of a theorem whose text we could not read: order only).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp
import torch

__all__ = [
    "attention",
    "per_query_loss",
    "per_query_loss_expr",
    "score_gradient_exprs",
    "update_rule_exprs",
    "score_gradient",
    "attention_ode_rhs_expr",
    "F_expr",
    "F_reference_expr",
    "time_to_attention",
    "attention_for_loss_expr",
    "attention_for_loss",
    "offtarget_bracket_expr",
    "rise_threshold_expr",
    "rise_threshold",
    "phase_times_balanced",
    "dominant_time",
    "time_to_attention_expr",
    "phase_time_exprs",
    "asymptotic_orders",
    "asymptotic_loglog_slope",
    "loss_floor_expr",
    "asymptotic_log_rate",
]

# Explicit sympy -> torch map: sympy's own torch printer maps Max/Min to reductions (wrong elementwise).
TORCH_FUNCTIONS = {
    "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt,
    "Max": torch.maximum, "Min": torch.minimum, "Abs": torch.abs,
}

# Symbols shared by the closed forms.
x, t, eta, p, K, c, eps, N = sp.symbols("x t eta p K c epsilon N", positive=True)
a, a0 = sp.symbols("a a_0", positive=True)  # target attention reached, and at the start
a_n, a_k, S = sp.symbols("a_n a_k S", real=True)  # off-target attention, target attention, sum_m Attn_m^2


# ----------------------------------------------------------------------------------------------------
# Per-query loss and its exact gradient (docs/softmax_dynamics.md §2)
# ----------------------------------------------------------------------------------------------------
def attention(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Total attention per feature, ``Attn_n = w_n e^{s_n} / sum_m w_m e^{s_m}`` (§2; stated model).

    Parameters
    ----------
    scores : (..., K) tensor of scores ``s_{k,n}`` of one query row.
    weights : (..., K) nonnegative counts ``c_n`` or probabilities ``p_n``; zero weight -> zero attention.

    Computed as a masked log-sum-exp so large scores cannot overflow.
    """
    logits = scores + torch.log(weights)  # (..., K); log 0 = -inf gives exactly zero attention
    return torch.softmax(logits, dim=-1)  # (..., K)


def per_query_loss(attn: torch.Tensor, target: torch.Tensor | int) -> torch.Tensor:
    """Per-query loss ``l_k = 1/2 [(1 - Attn_k)^2 + sum_{n != k} Attn_n^2]`` (§2; derived).

    ``attn`` is (..., K); ``target`` an index or a (..., ) long tensor of target features.
    Equals ``1/2 E_w[(y_hat - <w, v_k>)^2]`` for orthonormal features and ``E[w w^T] = I``.
    """
    K_ = attn.shape[-1]
    target = torch.as_tensor(target, device=attn.device)
    onehot = torch.nn.functional.one_hot(target, K_).to(attn.dtype)  # (..., K)
    return 0.5 * ((attn - onehot) ** 2).sum(-1)  # (...)


@lru_cache(maxsize=None)
def per_query_loss_expr(K_: int, k: int = 0) -> tuple[sp.Expr, tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    """Sympy per-query loss for ``K_`` explicit features and target ``k`` (§2; derived).

    Returns ``(l_k, scores, weights)`` with ``l_k`` an expression of the scores ``s_0..s_{K-1}`` and the
    positive token weights ``w_0..w_{K-1}`` (counts or probabilities).
    """
    s = sp.symbols(f"s0:{K_}", real=True)
    w = sp.symbols(f"w0:{K_}", positive=True)
    Z = sum(w[m] * sp.exp(s[m]) for m in range(K_))
    attn = [w[m] * sp.exp(s[m]) / Z for m in range(K_)]
    loss = sp.Rational(1, 2) * ((1 - attn[k]) ** 2 + sum(attn[m] ** 2 for m in range(K_) if m != k))
    return loss, s, w


@lru_cache(maxsize=None)
def score_gradient_exprs(K_: int, k: int = 0) -> tuple[sp.Expr, ...]:
    """``d l_k / d s_{k,n}`` for n = 0..K-1, by symbolic differentiation of :func:`per_query_loss_expr`."""
    loss, s, _ = per_query_loss_expr(K_, k)
    return tuple(sp.diff(loss, s[n]) for n in range(K_))


def update_rule_exprs() -> tuple[sp.Expr, sp.Expr]:
    """The score-gradient rule in attention form (§2; derived).

    ``d l_k / d s_{k,k} = -a_k (1 - 2 a_k + S) = -a_k * 2 l_k`` and
    ``d l_k / d s_{k,n} = a_n (a_n + a_k - S)`` for n != k, with ``S = sum_m Attn_m^2``.
    GD then reads ``A_k += eta p_k E[a_k 2 l_k]`` and ``B_{k,n} -= eta p_k E[a_n (a_n + a_k - S)]``.

    The two expressions are what :func:`score_gradient` lambdifies; ``tests/unit`` proves them equal to
    :func:`score_gradient_exprs` (direct differentiation of the loss) for explicit K.
    """
    two_l = (1 - a_k) ** 2 + S - a_k ** 2  # 2 l_k written with S
    return -a_k * sp.expand(two_l), a_n * (a_n + a_k - S)


@lru_cache(maxsize=None)
def _lambdified_rule():
    target_expr, off_expr = update_rule_exprs()
    target = sp.lambdify((a_k, S), target_expr, modules=[TORCH_FUNCTIONS])
    off = sp.lambdify((a_n, a_k, S), off_expr, modules=[TORCH_FUNCTIONS])
    return target, off


def score_gradient(attn: torch.Tensor) -> torch.Tensor:
    """Exact gradient of every per-query loss w.r.t. its scores, lambdified from :func:`update_rule_exprs`.

    Parameters
    ----------
    attn : (..., K, K) tensor; row k holds ``Attn_n`` for query feature k (the target is the diagonal).

    Returns
    -------
    (..., K, K) tensor ``G[..., k, n] = d l_k / d s_{k,n}`` (§2; derived).  Rows with zero attention
    (padded features) give zero gradient.
    """
    target_fn, off_fn = _lambdified_rule()
    K_ = attn.shape[-1]
    sq = (attn ** 2).sum(-1, keepdim=True)  # (..., K, 1)
    diag = torch.diagonal(attn, dim1=-2, dim2=-1).unsqueeze(-1)  # (..., K, 1)
    off = off_fn(attn, diag, sq)  # (..., K, K)
    tgt = target_fn(diag, sq)  # (..., K, 1)
    eye = torch.eye(K_, dtype=torch.bool, device=attn.device)  # (K, K)
    return torch.where(eye, tgt, off)  # (..., K, K)


# ----------------------------------------------------------------------------------------------------
# Closed form t(a) (docs/softmax_dynamics.md §4)
# ----------------------------------------------------------------------------------------------------
def attention_ode_rhs_expr() -> sp.Expr:
    """``da/dt = eta p_k (K/(K-1))^2 a^2 (1-a)^3`` (§4; derived).

    Derived here from the exchangeable reduction: with ``a = Attn_k`` and all off-target scores equal to
    ``-A/(K-1)``, ``2 l_k = (1-a)^2 K/(K-1)`` and ``da/dt = a (1-a) (1 + 1/(K-1)) dA/dt``.
    """
    two_l = (1 - x) ** 2 + (K - 1) * ((1 - x) / (K - 1)) ** 2
    dA = eta * p * x * two_l
    return sp.factor(x * (1 - x) * (1 + 1 / (K - 1)) * dA)


def F_reference_expr() -> sp.Expr:
    """The antiderivative written out by hand in §4, used only to check :func:`F_expr`."""
    return -1 / x + 3 * sp.log(x) + 1 / (2 * (1 - x) ** 2) + 2 / (1 - x) - 3 * sp.log(1 - x)


@lru_cache(maxsize=None)
def F_expr() -> sp.Expr:
    """``F(x) = int dx / (x^2 (1-x)^3)`` on (0, 1), integrated by sympy (§4; derived).

    Sympy integrates the partial fractions; its ``log(x - 1)`` branch is rewritten as ``log(1 - x)``,
    which differs by a constant (irrelevant in ``F(a) - F(p_k)``).  The result must differentiate back to
    the integrand and differ from :func:`F_reference_expr` by a constant (both checked in tests).
    """
    rhs = attention_ode_rhs_expr()
    integrand = sp.simplify(eta * p * (K / (K - 1)) ** 2 / rhs)  # 1 / (x^2 (1-x)^3)
    antider = sp.integrate(sp.apart(integrand, x), x)
    return sp.simplify(antider.subs(sp.log(x - 1), sp.log(1 - x)))


def time_to_attention_expr() -> sp.Expr:
    """``t(a) = ((K-1)/K)^2 / (eta p) [F(a) - F(a_0)]`` in the symbols ``a``, ``a_0``, K, p, eta (§4; derived).

    The gradient-flow time (in GD steps of size eta) for the target attention of a query with exchangeable
    off-target features (balanced case; dominant query of the imbalanced case) and probability ``p`` to
    grow from ``a_0`` (= p at Q = 0) to ``a``: :func:`attention_ode_rhs_expr` separated and integrated.
    """
    F_ = F_expr()
    return ((K - 1) / K) ** 2 / (eta * p) * (F_.subs(x, a) - F_.subs(x, a0))


def attention_for_loss_expr() -> sp.Expr:
    """Target attention at which ``l_k = eps`` for an exchangeable query: ``1 - sqrt(2 eps (K-1)/K)`` (§4).

    Derived from ``l_k = 1/2 (K/(K-1)) (1-a)^2`` (all off-target attentions equal ``(1-a)/(K-1)``),
    solved for the root below 1.
    """
    loss = sp.Rational(1, 2) * ((1 - x) ** 2 + (K - 1) * ((1 - x) / (K - 1)) ** 2)
    roots = [r for r in sp.solve(sp.Eq(loss, eps), x) if (r.subs({K: 4, eps: sp.Rational(1, 100)}) < 1) is sp.true]
    if len(roots) != 1:
        raise ArithmeticError(f"expected one root below 1, got {roots}")
    return sp.simplify(roots[0])


@lru_cache(maxsize=None)
def _numeric():
    """Lambdified (numpy) :func:`time_to_attention_expr` and :func:`attention_for_loss_expr`."""
    return (sp.lambdify((a, a0, K, p, eta), time_to_attention_expr(), modules="numpy"),
            sp.lambdify((eps, K), attention_for_loss_expr(), modules="numpy"))


def time_to_attention(a_, K_: int, p_k: float, eta_: float, a0_: float | None = None):
    """Numeric :func:`time_to_attention_expr` (numpy, elementwise in ``a_``); ``a0_`` defaults to ``p_k``."""
    a0_ = p_k if a0_ is None else a0_
    return _numeric()[0](np.asarray(a_, dtype=np.float64), float(a0_), float(K_), float(p_k), float(eta_))


def attention_for_loss(eps_: float, K_: int) -> float:
    """Numeric :func:`attention_for_loss_expr`."""
    return float(_numeric()[1](float(eps_), float(K_)))


def phase_times_balanced(K_: int, eta_: float, eps_: float) -> tuple[float, float]:
    """Closed-form ends of the balanced phases (§5; boundaries ours, times derived).

    Phase I ends when ``Attn_k >= 1/2``; Phase II when ``l_k <= eps``.  Returns ``(t_I, t_II)`` in steps.
    """
    p_k = 1.0 / K_
    return (float(time_to_attention(0.5, K_, p_k, eta_)),
            float(time_to_attention(attention_for_loss(eps_, K_), K_, p_k, eta_)))


def dominant_time(K_: int, c_: float, eta_: float, eps_: float) -> float:
    """Time for the dominant query (``p_1 = c``) to reach ``l_1 <= eps`` (§6; derived closed form)."""
    return float(time_to_attention(attention_for_loss(eps_, K_), K_, c_, eta_))


@lru_cache(maxsize=None)
def phase_time_exprs() -> dict[str, sp.Expr]:
    """The closed-form phase times as sympy expressions (§5, §6; derived from :func:`time_to_attention_expr`).

    - ``balanced.phase1``: ``t_I(K, eta)``, target attention from 1/K to 1/2;
    - ``balanced.phase2``: ``t_II - t_I`` (K, eta, eps), from 1/2 to ``l_k = eps``;
    - ``balanced.total``: ``t_II`` (K, eta, eps), from 1/K to ``l_k = eps``;
    - ``dominant``: (K, c, eta, eps), the dominant query (p = c) from c to ``l_1 = eps``.

    :func:`phase_times_balanced` and :func:`dominant_time` evaluate the same formulas numerically.
    """
    t, a_eps = time_to_attention_expr(), attention_for_loss_expr()
    balanced = {p: 1 / K, a0: 1 / K}
    t_I = t.subs({**balanced, a: sp.Rational(1, 2)})
    t_II = t.subs({**balanced, a: a_eps})
    return {"balanced.phase1": t_I, "balanced.phase2": t_II - t_I, "balanced.total": t_II,
            "dominant": t.subs({p: c, a0: c, a: a_eps})}


# ----------------------------------------------------------------------------------------------------
# Off-target competition threshold (docs/softmax_dynamics.md §7)
# ----------------------------------------------------------------------------------------------------
def offtarget_bracket_expr() -> sp.Expr:
    """``Attn_n + Attn_k - S`` at t = 0 for an under-represented query and off-target n (§7; derived).

    With ``q = (1-c)/(K-1)``: ``2 q - c^2 - (K-1) q^2``.  Where it is negative, ``B_{k,n}`` first rises.
    Built from the attention vector at Q = 0 (``Attn = p``), not typed in.
    """
    q = (1 - c) / (K - 1)
    attn_k, attn_n = q, q
    sum_sq = c ** 2 + (K - 1) * q ** 2
    return sp.simplify(attn_n + attn_k - sum_sq)


@lru_cache(maxsize=None)
def rise_threshold_expr() -> sp.Expr:
    """The dominant probability above which ``B_{k,n}`` first rises: root in (0, 1) of the bracket (derived).

    Solved symbolically for c with K > 1 symbolic; the answer is ``1/sqrt(K)`` (checked in tests).
    """
    roots = sp.solve(sp.Eq(offtarget_bracket_expr(), 0), c)
    inside = [r for r in roots if sp.simplify(r.subs(K, 4)).is_positive and (r.subs(K, 4) < 1) is sp.true]
    if len(inside) != 1:
        raise ArithmeticError(f"expected one threshold root in (0, 1), got {roots}")
    return sp.simplify(inside[0])


def rise_threshold(K_: int) -> float:
    """Numeric :func:`rise_threshold_expr` for a given K."""
    return float(rise_threshold_expr().subs(K, K_))




# ----------------------------------------------------------------------------------------------------
# Asymptotic orders (docs/softmax_dynamics.md §5, §9)
# ----------------------------------------------------------------------------------------------------
def asymptotic_orders(theorem_K_exponent: float = 2) -> dict[str, tuple[sp.Expr, str]]:
    """Phase-time orders as sympy expressions with their provenance (§5, §6).

    - ``balanced.phase1``: ``(K^2 + 3 K ln K)/eta`` — derived from the large-K expansion of t(1/2).
    - ``balanced.phase2``: ``(K-1)/(4 eta eps)`` — derived from the a -> 1 expansion of t(a).
    - ``dominant``: ``1/(4 eta c eps)`` — derived, independent of K.
    - ``balanced.theorem``: ``K^b ln K / eta + K/(eta eps)`` with ``b = theorem_K_exponent`` (2 in the
      recalled theorem form; other values only to plant a stronger or weaker bound) — recalled (order only).
    - ``dominant.theorem``: ``1/(eta eps)`` — recalled theorem form (order only).
    """
    b = sp.nsimplify(theorem_K_exponent)
    return {
        "balanced.phase1": ((K ** 2 + 3 * K * sp.log(K)) / eta, "derived"),
        "balanced.phase2": ((K - 1) / (4 * eta * eps), "derived"),
        "dominant": (1 / (4 * eta * c * eps), "derived"),
        "balanced.theorem": (K ** b * sp.log(K) / eta + K / (eta * eps), "recalled"),
        "dominant.theorem": (1 / (eta * eps), "recalled"),
    }


@lru_cache(maxsize=None)
def asymptotic_loglog_slope(expr: sp.Expr, var: sp.Symbol, point) -> sp.Expr:
    """``lim_{var -> point} d ln f / d ln var`` of a positive expression ``f`` (§9; exact, sympy).

    ``point`` is ``sympy.oo`` or ``0``.  The limit of the local log-log slope is the exponent of the
    leading term of ``f`` in ``u = 1/var`` (at infinity) or ``u = var`` (at 0): for a leading term
    ``C u^alpha (ln u)^beta`` the local slope tends to ``alpha`` (the logarithm only adds ``beta / ln u``),
    and ``alpha = lim ln(leading term) / ln u``.  This is what a scaling exponent claims ("T ~ K^2"), as
    opposed to the secant slope over a finite range, which lower-order terms move.  Tests tie it to the
    definition (sympy limit of ``var f'/f``) and to finite-difference local slopes at growing ``var``.
    """
    u = sp.Dummy("u", positive=True)
    if point is sp.oo:
        sign, in_u = -1, expr.subs(var, 1 / u)
    elif point == 0:
        sign, in_u = 1, expr.subs(var, u)
    else:
        raise ValueError(f"point must be sympy.oo or 0, not {point!r}")
    _, power = in_u.as_leading_term(u).as_independent(u, as_Add=False)  # u^alpha (ln u)^beta, constant dropped
    return sign * sp.limit(sp.log(power) / sp.log(u), u, 0, "+")


# ----------------------------------------------------------------------------------------------------
# Finite prompts (docs/softmax_dynamics.md §8)
# ----------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def loss_floor_expr() -> sp.Expr:
    """The t -> infinity loss of balanced features at prompt length N, in K and N (§8; derived).

    As t grows, ``A_k -> infinity`` and every off-target score stays ``-A_k/(K-1)`` (balanced symmetry),
    so a prompt that contains its query's feature attends to it alone (zero loss), while a prompt without
    it (probability ``(1 - 1/K)^N``) spreads attention over its tokens by their counts, ``Attn_n = c_n/N``,
    and costs ``l_k = 1/2 [1 + sum_n (c_n/N)^2]``.  Given the query's feature is absent, each other count
    is Binomial(N, 1/(K-1)), whose second moment is ``N q (1-q) + (N q)^2``.  Hence the floor is
    ``(1 - 1/K)^N * 1/2 * [1 + 1/(K-1) + (K-2)/((K-1) N)]``, of order ``(1 - p_k)^N`` with ``p_k = 1/K``.
    """
    q = 1 / (K - 1)
    second_moment = N * q * (1 - q) + (N * q) ** 2  # E[c_n^2], c_n ~ Binomial(N, q)
    absent = sp.Rational(1, 2) * (1 + (K - 1) * second_moment / N ** 2)
    return sp.simplify((1 - 1 / K) ** N * absent)


@lru_cache(maxsize=None)
def asymptotic_log_rate(expr: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """``lim_{var -> oo} d ln f / d var`` (§8; exact, sympy): the rate of an exponential order ``f ~ r^var``
    is ``ln r``; polynomial prefactors do not change it."""
    return sp.simplify(sp.limit(sp.diff(sp.log(expr), var), var, sp.oo))
