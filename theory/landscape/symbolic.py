"""Symbolic (sympy) derivations behind the attention landscape of Kim & Suzuki (arXiv 2402.01258).

With a small explicit k and symbolic matrix entries (S_mm and S_oo symmetric, S_om, W and R general),
these functions return the sympy expressions and the *residuals* of the identities of
docs/attention_landscape.md §2-§3; a residual that simplifies to 0 proves the identity for that k.
:func:`lambdify_torch` turns any of the expressions into a torch function through an explicit
function map (sympy's torch printing maps Max/Min wrongly, so unknown functions are refused).

Never feed user strings to sympy here: every expression is built from Symbols.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import sympy as sp
import torch
from torch import Tensor

__all__ = [
    "TORCH_FUNCTIONS",
    "LandscapeSymbols",
    "completed_square_identity",
    "grad_W_closed_form",
    "grad_W_expr",
    "grad_W_identity",
    "landscape_expr",
    "landscape_identity",
    "landscape_symbols",
    "lambdify_torch",
    "loss_tf_expr",
    "invariance_identity",
    "W_star_stationarity",
]

#: The only functions :func:`lambdify_torch` will print; anything else raises.
TORCH_FUNCTIONS: dict[str, Callable] = {"sqrt": torch.sqrt, "Abs": torch.abs, "exp": torch.exp,
                                        "log": torch.log}
_ARITHMETIC = (sp.Add, sp.Mul, sp.Pow, sp.Symbol, sp.Number)


def _symmetric(prefix: str, k: int) -> sp.Matrix:
    return sp.Matrix(k, k, lambda i, j: sp.Symbol(f"{prefix}_{min(i, j)}{max(i, j)}", real=True))


def _general(prefix: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{prefix}_{i}{j}", real=True))


@dataclass(frozen=True)
class LandscapeSymbols:
    """Symbolic k x k matrices: S_mm, S_oo symmetric; S_om, W, R general."""

    S_mm: sp.Matrix
    S_om: sp.Matrix
    S_oo: sp.Matrix
    W: sp.Matrix
    R: sp.Matrix

    @property
    def S_mo(self) -> sp.Matrix:
        """S_om^T."""
        return self.S_om.T

    def flat(self) -> list[sp.Symbol]:
        """Every free symbol once, in a fixed order (the argument order of lambdified functions)."""
        seen: dict[sp.Symbol, None] = {}
        for M in (self.S_mm, self.S_om, self.S_oo, self.W, self.R):
            seen.update(dict.fromkeys(M))
        return list(seen)

    def values(self, S_mm: Tensor, S_om: Tensor, S_oo: Tensor, W: Tensor,
               R: Tensor) -> list[Tensor]:
        """Numeric values (0-d tensors) for :meth:`flat`, read off the given (k, k) tensors."""
        lookup: dict[sp.Symbol, Tensor] = {}
        for M, T in ((self.S_mm, S_mm), (self.S_om, S_om), (self.S_oo, S_oo), (self.W, W),
                     (self.R, R)):
            for i in range(M.rows):
                for j in range(M.cols):
                    lookup.setdefault(M[i, j], T[i, j])
        return [lookup[s] for s in self.flat()]


def landscape_symbols(k: int = 2) -> LandscapeSymbols:
    """Symbolic matrices for output dimension k (k = 2 keeps every simplification fast)."""
    return LandscapeSymbols(_symmetric("m", k), _general("o", k, k), _symmetric("s", k),
                            _general("w", k, k), _general("r", k, k))


def loss_tf_expr(sym: LandscapeSymbols, W: sp.Matrix | None = None) -> sp.Expr:
    """L_TF = 1/2 tr S_oo - tr(S_om W S_mo) + 1/2 tr(W^T S_mo S_om W S_mm).

    Kim & Suzuki, arXiv 2402.01258, eq. (2); docs/attention_landscape.md §2. Provenance: stated.
    """
    W = sym.W if W is None else W
    return (sym.S_oo.trace() / 2 - (sym.S_om * W * sym.S_mo).trace()
            + (W.T * sym.S_mo * sym.S_om * W * sym.S_mm).trace() / 2)


def grad_W_expr(sym: LandscapeSymbols, W: sp.Matrix | None = None) -> sp.Matrix:
    """grad_W L_TF by symbolic differentiation, entry (i, j) = d L_TF / d W_ij (evaluated at ``W``).

    docs/attention_landscape.md §2. Provenance: derived.
    """
    L = loss_tf_expr(sym)
    grad = sym.W.applyfunc(lambda w_ij: sp.diff(L, w_ij))
    return grad if W is None else grad.subs(dict(zip(sym.W, W)), simultaneous=True)


def grad_W_closed_form(sym: LandscapeSymbols) -> sp.Matrix:
    """The closed form S_mo S_om (W S_mm - I) (docs/attention_landscape.md §2; derived)."""
    return sym.S_mo * sym.S_om * (sym.W * sym.S_mm - sp.eye(sym.W.rows))


def grad_W_identity(sym: LandscapeSymbols) -> sp.Matrix:
    """Residual grad_W_expr - S_mo S_om (W S_mm - I), expanded: the zero matrix (polynomial identity).

    docs/attention_landscape.md §2 (derived; Kim & Suzuki, arXiv 2402.01258, Lemma 3.1).
    """
    return (grad_W_expr(sym) - grad_W_closed_form(sym)).applyfunc(sp.expand)


def W_star_stationarity(sym: LandscapeSymbols) -> sp.Matrix:
    """grad_W L_TF at W* = S_mm^{-1}, simplified: the zero matrix.

    Kim & Suzuki, arXiv 2402.01258, Lemma 3.1 (stated: W* minimizes); docs/attention_landscape.md §2.
    """
    return grad_W_expr(sym, sym.S_mm.inv()).applyfunc(sp.cancel)


def landscape_expr(sym: LandscapeSymbols, S_mm: sp.Matrix | None = None,
                   S_om: sp.Matrix | None = None) -> sp.Expr:
    """L = 1/2 tr(S_oo - S_om S_mm^{-1} S_mo) (Kim & Suzuki, arXiv 2402.01258, eq. (3); stated)."""
    S_mm = sym.S_mm if S_mm is None else S_mm
    S_om = sym.S_om if S_om is None else S_om
    return (sym.S_oo - S_om * S_mm.inv() * S_om.T).trace() / 2


def landscape_identity(sym: LandscapeSymbols) -> sp.Expr:
    """Residual L_TF(W*) - 1/2 tr(S_oo - S_om S_mm^{-1} S_mo), simplified: 0.

    min_W L_TF = L (Kim & Suzuki, arXiv 2402.01258, eq. (3); stated); docs/attention_landscape.md §3.
    """
    return sp.cancel(loss_tf_expr(sym, sym.S_mm.inv()) - landscape_expr(sym))


def completed_square_identity(sym: LandscapeSymbols) -> sp.Expr:
    """Residual of L_TF(W) - L = 1/2 tr((W - W*)^T S_mo S_om (W - W*) S_mm), simplified: 0.

    Both factors are PSD, so the right side is >= 0: W* is a global minimizer and the minimizers are
    the W with S_om (W - W*) = 0 (Lemma 3.1 of Kim & Suzuki, arXiv 2402.01258; derived here).
    """
    E = sym.W - sym.S_mm.inv()
    square = (E.T * sym.S_mo * sym.S_om * E * sym.S_mm).trace() / 2
    return sp.cancel(loss_tf_expr(sym) - landscape_expr(sym) - square)


def invariance_identity(sym: LandscapeSymbols) -> sp.Expr:
    """Residual L(R#mu) - L(mu) with S_mm -> R S_mm R^T, S_om -> S_om R^T, simplified: 0.

    Holds for every invertible R (docs/attention_landscape.md §3; derived).
    """
    moved = landscape_expr(sym, sym.R * sym.S_mm * sym.R.T, sym.S_om * sym.R.T)
    return sp.cancel(moved - landscape_expr(sym))


def lambdify_torch(args: Sequence[sp.Symbol], expr: sp.Expr | sp.MatrixBase) -> Callable[..., Tensor]:
    """Compile a scalar or matrix sympy expression to a torch function of ``args``.

    Only arithmetic and the functions of :data:`TORCH_FUNCTIONS` may appear (Max, Min, Piecewise,
    pi... raise), so nothing is silently mapped to a Python builtin. Matrix expressions return a tensor of the
    matrix's shape; constants come back as tensors like the first argument.

    Raises
    ------
    ValueError
        If the expression contains a function outside the map.
    """
    exprs = list(expr) if isinstance(expr, sp.MatrixBase) else [expr]
    unknown = {type(node).__name__ for e in exprs for node in sp.preorder_traversal(e)
               if not isinstance(node, _ARITHMETIC)} - set(TORCH_FUNCTIONS)
    if unknown:
        raise ValueError(f"no torch mapping for {sorted(unknown)}; extend TORCH_FUNCTIONS explicitly")
    fn = sp.lambdify(list(args), exprs, modules=[TORCH_FUNCTIONS])
    shape = expr.shape if isinstance(expr, sp.MatrixBase) else ()

    def compiled(*values: Tensor) -> Tensor:
        like = torch.as_tensor(values[0])
        out = [torch.as_tensor(v, dtype=like.dtype, device=like.device) for v in fn(*values)]
        return torch.stack(out).reshape(shape)

    return compiled
