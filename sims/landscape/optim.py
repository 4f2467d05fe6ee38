"""Update rules of the explicit W of joint training (docs/attention_landscape.md §9).

The paper trains W jointly with the features but does not say how; these are the alternatives the
attention-vs-static claim runs. Each is one explicit step of size ``rate = lr * w_speed`` on
L_TF(mu_t, .), whose gradient is G = S_mo S_om (W S_mm - I) and whose Hessian is the linear map
E -> S_mo S_om E S_mm (derived). With W* = S_mm^{-1}:

- ``gd``: W <- W - rate G (plain gradient descent; stable while rate lambda_max(Hessian) < 2);
- ``adam``: Adam (Kingma & Ba 2015) on G with step ``rate``, betas (0.9, 0.999), eps 1e-8, bias-corrected;
- ``precond``: G preconditioned on the right by S_mm^{-1}: W <- W - rate G S_mm^{-1}
  = W - rate S_mo S_om (W - W*) (derived); stable while rate lambda_max(S_mo S_om) < 2;
- ``natural``: G preconditioned by both Hessian factors, W <- W - rate (S_mo S_om)^+ G S_mm^{-1}, which is
  W <- W - rate (W - W*) on the range of S_mo S_om (derived; the rest never enters L_TF, and is moved the
  same way). W relaxes towards W*(mu_t) at rate ``w_speed`` in mean-field time, so ``w_speed -> inf``
  (rate -> 1) is the two-timescale limit.

Provenance: ours (the optimisers are standard; the choice among them is what the paper leaves open).
All rules act per config (C, k, k) in plain tensor ops (no host synchronisation).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sims.landscape.config import W_OPTIMIZERS

__all__ = ["ADAM_BETAS", "ADAM_EPS", "WOptimizerState", "w_step"]

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass
class WOptimizerState:
    """Adam's moment estimates (C, k, k) and the number of steps taken (shared by the batch)."""

    m: Tensor
    v: Tensor
    steps: int = 0

    @classmethod
    def zeros(cls, W: Tensor) -> "WOptimizerState":
        return cls(torch.zeros_like(W), torch.zeros_like(W))

    def select(self, keep: Tensor) -> "WOptimizerState":
        """The state of the configs where ``keep`` (C,) is True (the step count is shared)."""
        return WOptimizerState(self.m[keep], self.v[keep], self.steps)


def w_step(kinds: Tensor, W: Tensor, grad: Tensor, W_star: Tensor, rate: Tensor, state: WOptimizerState) -> Tensor:
    """One step of each config's W optimiser.

    Parameters
    ----------
    kinds : Tensor
        (C,) int64 index into :data:`sims.landscape.config.W_OPTIMIZERS`.
    W, grad, W_star : Tensor
        (C, k, k) current W, grad_W L_TF(mu_t, W), and S_mm(mu_t)^{-1}.
    rate : Tensor
        (C,) step size lr * w_speed.
    state : WOptimizerState
        Updated in place (Adam moments; every config's moments are kept, used only where kind is adam).

    Returns
    -------
    Tensor
        (C, k, k) the new W.
    """
    b1, b2 = ADAM_BETAS
    state.steps += 1
    state.m = b1 * state.m + (1 - b1) * grad  # (C, k, k)
    state.v = b2 * state.v + (1 - b2) * grad * grad  # (C, k, k)
    m_hat, v_hat = state.m / (1 - b1 ** state.steps), state.v / (1 - b2 ** state.steps)
    directions = {
        "gd": grad,
        "adam": m_hat / (torch.sqrt(v_hat) + ADAM_EPS),
        "precond": grad @ W_star,  # (C, k, k) = S_mo S_om (W - W*)
        "natural": W - W_star,
    }
    step = torch.stack([directions[name] for name in W_OPTIMIZERS])  # (n_opt, C, k, k)
    chosen = step[kinds, torch.arange(W.shape[0], device=W.device)]  # (C, k, k)
    return W - rate[:, None, None] * chosen
