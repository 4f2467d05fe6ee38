"""Symbolic quantities of "In-Context Convergence of Transformers" (Huang, Cheng & Liang, arXiv 2310.05249).

Everything here is derived with sympy from the model of spec ``softmax_icl.md`` sections 1-3 and then
lambdified (numpy or torch, with an explicit function map).  Nothing in this module runs a simulation.

Notation (spec section 3).  Query feature ``k``; scores ``s_{k,n} = v_n^T Q v_k``; token weights ``w_n``
(counts ``c_n`` for a finite prompt, probabilities ``p_n`` when N is infinite);
``Attn_n = w_n e^{s_n} / sum_m w_m e^{s_m}``; per-query loss
``l_k = 1/2 [(1 - Attn_k)^2 + sum_{n != k} Attn_n^2]``.

Provenance tags follow the spec: *stated* (the paper says it), *derived* (exact consequence of the model,
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
    "F_spec_expr",
    "F",
    "time_to_attention",
    "attention_for_loss",
    "offtarget_bracket_expr",
    "rise_threshold_expr",
    "rise_threshold",
    "phase_times_balanced",
    "dominant_time",
    "asymptotic_orders",
    "local_loglog_slope",
]

# Explicit sympy -> torch map: sympy's own torch printer maps Max/Min to reductions (wrong elementwise).
TORCH_FUNCTIONS = {
    "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt,
    "Max": torch.maximum, "Min": torch.minimum, "Abs": torch.abs,
}

# Symbols shared by the closed forms.
x, t, eta, p, K, c, eps = sp.symbols("x t eta p K c epsilon", positive=True)
a_n, a_k, S = sp.symbols("a_n a_k S", real=True)  # off-target attention, target attention, sum_m Attn_m^2


# ----------------------------------------------------------------------------------------------------
# Per-query loss and its exact gradient (spec 3, 4.2)
# ----------------------------------------------------------------------------------------------------
def attention(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Total attention per feature, ``Attn_n = w_n e^{s_n} / sum_m w_m e^{s_m}`` (spec 3; stated model).

    Parameters
    ----------
    scores : (..., K) tensor of scores ``s_{k,n}`` of one query row.
    weights : (..., K) nonnegative counts ``c_n`` or probabilities ``p_n``; zero weight -> zero attention.

    Computed as a masked log-sum-exp so large scores cannot overflow.
    """
    logits = scores + torch.log(weights)  # (..., K); log 0 = -inf gives exactly zero attention
    return torch.softmax(logits, dim=-1)  # (..., K)


def per_query_loss(attn: torch.Tensor, target: torch.Tensor | int) -> torch.Tensor:
    """Per-query loss ``l_k = 1/2 [(1 - Attn_k)^2 + sum_{n != k} Attn_n^2]`` (spec 3; derived).

    ``attn`` is (..., K); ``target`` an index or a (..., ) long tensor of target features.
    Equals ``1/2 E_w[(y_hat - <w, v_k>)^2]`` for orthonormal features and ``E[w w^T] = I``.
    """
    K_ = attn.shape[-1]
    target = torch.as_tensor(target, device=attn.device)
    onehot = torch.nn.functional.one_hot(target, K_).to(attn.dtype)  # (..., K)
    return 0.5 * ((attn - onehot) ** 2).sum(-1)  # (...)


@lru_cache(maxsize=None)
def per_query_loss_expr(K_: int, k: int = 0) -> tuple[sp.Expr, tuple[sp.Symbol, ...], tuple[sp.Symbol, ...]]:
    """Sympy per-query loss for ``K_`` explicit features and target ``k`` (spec 3; derived).

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
    """The score-gradient rule in attention form (spec 4.2; derived).

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
    (..., K, K) tensor ``G[..., k, n] = d l_k / d s_{k,n}`` (spec 4.2; derived).  Rows with zero attention
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
# Closed form t(a) (spec 4.5)
# ----------------------------------------------------------------------------------------------------
def attention_ode_rhs_expr() -> sp.Expr:
    """``da/dt = eta p_k (K/(K-1))^2 a^2 (1-a)^3`` (spec 4.5; derived).

    Derived here from the exchangeable reduction: with ``a = Attn_k`` and all off-target scores equal to
    ``-A/(K-1)``, ``2 l_k = (1-a)^2 K/(K-1)`` and ``da/dt = a (1-a) (1 + 1/(K-1)) dA/dt``.
    """
    two_l = (1 - x) ** 2 + (K - 1) * ((1 - x) / (K - 1)) ** 2
    dA = eta * p * x * two_l
    return sp.factor(x * (1 - x) * (1 + 1 / (K - 1)) * dA)


def F_spec_expr() -> sp.Expr:
    """The antiderivative as printed in the spec, used only to check :func:`F_expr` (spec 4.5)."""
    return -1 / x + 3 * sp.log(x) + 1 / (2 * (1 - x) ** 2) + 2 / (1 - x) - 3 * sp.log(1 - x)


@lru_cache(maxsize=None)
def F_expr() -> sp.Expr:
    """``F(x) = int dx / (x^2 (1-x)^3)`` on (0, 1), integrated by sympy (spec 4.5; derived).

    Sympy integrates the partial fractions; its ``log(x - 1)`` branch is rewritten as ``log(1 - x)``,
    which differs by a constant (irrelevant in ``F(a) - F(p_k)``).  The result must differentiate back to
    the integrand and differ from :func:`F_spec_expr` by a constant (both checked in tests).
    """
    rhs = attention_ode_rhs_expr()
    integrand = sp.simplify(eta * p * (K / (K - 1)) ** 2 / rhs)  # 1 / (x^2 (1-x)^3)
    antider = sp.integrate(sp.apart(integrand, x), x)
    return sp.simplify(antider.subs(sp.log(x - 1), sp.log(1 - x)))


@lru_cache(maxsize=None)
def _F_numpy():
    return sp.lambdify(x, F_expr(), modules="numpy")


def F(a):
    """Numeric :func:`F_expr` (numpy, elementwise) for ``0 < a < 1``."""
    return _F_numpy()(np.asarray(a, dtype=np.float64))


def time_to_attention(a, K_: int, p_k: float, eta_: float, a0: float | None = None):
    """Gradient-flow time for the target attention to grow from ``a0 = p_k`` to ``a`` (spec 4.5; derived).

    ``t(a) = ((K-1)/K)^2 / (eta p_k) [F(a) - F(a0)]``, valid for N = infinity whenever the off-target
    features of the query are exchangeable (balanced case; dominant query of the imbalanced case).
    Time is measured in GD steps of size ``eta``.
    """
    a0 = p_k if a0 is None else a0
    return ((K_ - 1) / K_) ** 2 / (eta_ * p_k) * (F(a) - F(a0))


def attention_for_loss(eps_: float, K_: int) -> float:
    """Target attention at which ``l_k = eps`` in the exchangeable case: ``1 - sqrt(2 eps (K-1)/K)``."""
    return 1.0 - np.sqrt(2.0 * eps_ * (K_ - 1) / K_)


def phase_times_balanced(K_: int, eta_: float, eps_: float) -> tuple[float, float]:
    """Closed-form ends of the balanced phases (spec 5; boundaries ours, times derived).

    Phase I ends when ``Attn_k >= 1/2``; Phase II when ``l_k <= eps``.  Returns ``(t_I, t_II)`` in steps.
    """
    p_k = 1.0 / K_
    return (float(time_to_attention(0.5, K_, p_k, eta_)),
            float(time_to_attention(attention_for_loss(eps_, K_), K_, p_k, eta_)))


def dominant_time(K_: int, c_: float, eta_: float, eps_: float) -> float:
    """Time for the dominant query (``p_1 = c``) to reach ``l_1 <= eps`` (spec 5; derived closed form)."""
    return float(time_to_attention(attention_for_loss(eps_, K_), K_, c_, eta_))


# ----------------------------------------------------------------------------------------------------
# Off-target competition threshold (spec 4.4)
# ----------------------------------------------------------------------------------------------------
def offtarget_bracket_expr() -> sp.Expr:
    """``Attn_n + Attn_k - S`` at t = 0 for an under-represented query and off-target n (spec 4.4; derived).

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

    Solved symbolically for c with K > 1 symbolic; the spec states the answer ``1/sqrt(K)``.
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
# Asymptotic orders (spec 5)
# ----------------------------------------------------------------------------------------------------
def asymptotic_orders() -> dict[str, tuple[sp.Expr, str]]:
    """Phase-time orders as sympy expressions with their provenance (spec 5).

    - ``balanced.phase1``: ``(K^2 + 3 K ln K)/eta`` — derived from the large-K expansion of t(1/2).
    - ``balanced.phase2``: ``(K-1)/(4 eta eps)`` — derived from the a -> 1 expansion of t(a).
    - ``dominant``: ``1/(4 eta c eps)`` — derived, independent of K.
    - ``balanced.theorem``: ``K^2 ln K / eta + K/(eta eps)`` — recalled theorem form (order only).
    - ``dominant.theorem``: ``1/(eta eps)`` — recalled theorem form (order only).
    """
    return {
        "balanced.phase1": ((K ** 2 + 3 * K * sp.log(K)) / eta, "derived"),
        "balanced.phase2": ((K - 1) / (4 * eta * eps), "derived"),
        "dominant": (1 / (4 * eta * c * eps), "derived"),
        "balanced.theorem": (K ** 2 * sp.log(K) / eta + K / (eta * eps), "recalled"),
        "dominant.theorem": (1 / (eta * eps), "recalled"),
    }


def local_loglog_slope(expr: sp.Expr, var: sp.Symbol, lo: float, hi: float, subs: dict | None = None) -> float:
    """Secant log-log slope ``ln(f(hi)/f(lo)) / ln(hi/lo)`` of ``expr`` in ``var`` (others substituted).

    What a log-log fit over ``[lo, hi]`` of data exactly following ``expr`` would report; used as the
    predicted slope of scaling claims so that lower-order terms (e.g. ``3 K ln K``) are not ignored.
    """
    f = sp.lambdify(var, expr.subs(subs or {}), modules="math")
    return float(np.log(f(hi) / f(lo)) / np.log(hi / lo))
