"""The full softmax attention model on explicit prompts (spec ``softmax_icl.md`` sections 1-2; stated model).

One GD step of a config draws ``batch`` prompts: query feature ``q ~ p``, N token features ``f_i ~ p``
i.i.d. (inverse CDF of counter-based uniforms, :mod:`sims.counter_rng`), and ``w ~ N(0, I_d)``.  With
features ``v_k`` (columns of V), labels ``y_i = <w, v_{f_i}>`` and target ``<w, v_q>`` only need
``u = V^T w``; the score of token i is ``x_i^T Q x_q = s_{q, f_i}`` with ``S = (V^T Q V)^T``, gathered
from the (K, K) score matrix, so the cost of a step is independent of d except for ``V^T Q V`` and
``V^T w``.  The minibatch loss is ``1/2 mean_b (y_hat_b - <w_b, v_{q_b}>)^2`` and ``Q -= eta grad``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from sims.counter_rng import Stream, normals, stream_keys, uniforms32
from sims.softmax_config import SoftmaxConfig
from sims.softmax_counts import feature_cdf, sample_features

__all__ = ["FEATURE_KINDS", "feature_matrix", "scores_from_Q", "Prompts", "PromptSampler",
           "manual_gradient", "autograd_gradient", "GRADIENTS"]

FEATURE_KINDS = ("standard", "random")


def feature_matrix(configs: Sequence[SoftmaxConfig], d_max: int, K_max: int, kind: str, device, dtype) -> torch.Tensor:
    """Orthonormal features V (C, d_max, K_max): columns ``v_k``; zero padding beyond each config's (d, K).

    ``kind="standard"``: ``v_k = e_k`` (spec 1 default).  ``kind="random"``: the Q factor (signs fixed so
    that diag R > 0) of a Gaussian (d, K) matrix drawn from the config's seed, so it does not depend on
    the batch.  Built per config at setup, outside any step loop.
    """
    V = torch.zeros(len(configs), d_max, K_max, device=device, dtype=torch.float64)  # (C, d, K)
    for i, cfg in enumerate(configs):
        if kind == "standard":
            V[i, :cfg.K, :cfg.K] = torch.eye(cfg.K, device=device, dtype=torch.float64)
        else:
            seed = torch.tensor([cfg.seed], device=device)
            keys = stream_keys(seed, Stream.FEATURES, torch.arange(2, device=device))  # (1, 2)
            gauss = normals(keys[:, 0], keys[:, 1], cfg.d, cfg.K)[0]  # (d, K)
            q, r = torch.linalg.qr(gauss)  # (d, K), (K, K)
            V[i, :cfg.d, :cfg.K] = q * torch.sign(torch.diagonal(r))[None, :]  # (d, K)
    return V.to(dtype)


def scores_from_Q(Q: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Scores (C, K, K) ``S[k, n] = v_n^T Q v_k`` from Q (C, d, d) and V (C, d, K) (spec 3)."""
    return (V.mT @ Q @ V).mT  # (C, K, K)


@dataclass
class Prompts:
    """One minibatch of prompts per config."""

    query: torch.Tensor  # (C, B) query feature indices
    tokens: torch.Tensor  # (C, B, N_max) token feature indices
    values: torch.Tensor  # (C, B, K) u = V^T w: the label of feature n is values[..., n]
    log_mask: torch.Tensor  # (C, 1, N_max) 0 for real tokens, -inf for padding beyond a config's N


class PromptSampler:
    """Draws the prompts of step t for every config from counter-based streams (batch-independent)."""

    def __init__(self, configs: Sequence[SoftmaxConfig], p: torch.Tensor, V: torch.Tensor):
        device = p.device
        steps = torch.arange(configs[0].steps, device=device)  # (steps,)
        seeds = torch.tensor([cfg.seed for cfg in configs], device=device, dtype=torch.long)  # (C,)
        self.keys = {s: stream_keys(seeds, s, steps) for s in (Stream.TOKENS, Stream.W_RADIUS, Stream.W_ANGLE)}
        self.cdf = feature_cdf(p)  # (C, K)
        self.V = V  # (C, d, K)
        self.batch = configs[0].batch
        N = torch.tensor([cfg.N for cfg in configs], device=device)  # (C,)
        self.N_max = max(cfg.N for cfg in configs)
        real = torch.arange(self.N_max, device=device) < N[:, None]  # (C, N_max)
        self.log_mask = torch.log(real.to(V.dtype))[:, None, :]  # (C, 1, N_max)

    def draw(self, step: int) -> Prompts:
        """The prompts of ``step`` (C configs x ``batch`` prompts)."""
        u = uniforms32(self.keys[Stream.TOKENS][:, step], self.batch, self.N_max + 1)  # (C, B, N+1)
        features = sample_features(self.cdf, u)  # (C, B, N+1); column 0 is the query
        d = self.V.shape[1]
        w = normals(self.keys[Stream.W_RADIUS][:, step], self.keys[Stream.W_ANGLE][:, step], self.batch, d)
        values = w.to(self.V.dtype) @ self.V  # (C, B, K)
        return Prompts(query=features[..., 0], tokens=features[..., 1:], values=values, log_mask=self.log_mask)


def _forward(S: torch.Tensor, prompts: Prompts):
    """Token attention (C, B, N), labels (C, B, N), prediction (C, B), residual (C, B), flat indices (C, B, N)."""
    C, K, _ = S.shape
    flat = prompts.query[..., None] * K + prompts.tokens  # (C, B, N): index of s_{q, f_i} in S.view(C, K*K)
    z = S.reshape(C, K * K).gather(1, flat.reshape(C, -1)).reshape(flat.shape) + prompts.log_mask  # (C, B, N)
    attn = torch.softmax(z, -1)  # (C, B, N)
    y = prompts.values.gather(2, prompts.tokens)  # (C, B, N)
    target = prompts.values.gather(2, prompts.query[..., None])[..., 0]  # (C, B)
    y_hat = (attn * y).sum(-1)  # (C, B)
    return attn, y, y_hat, y_hat - target, flat


def manual_gradient(Q: torch.Tensor, V: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    """Hand-written gradient (C, d, d) of the minibatch loss.

    ``dL/dz_{b,i} = r_b attn_{b,i} (y_{b,i} - y_hat_b) / B`` is scattered into ``G[q_b, f_{b,i}]``; since
    ``s_{k,n} = v_n^T Q v_k``, ``dL/dQ = sum_{k,n} G[k,n] v_n v_k^T = V G^T V^T``.
    """
    S = scores_from_Q(Q, V)  # (C, K, K)
    attn, y, y_hat, r, flat = _forward(S, prompts)
    C, K, _ = S.shape
    dz = r[..., None] * attn * (y - y_hat[..., None]) / r.shape[1]  # (C, B, N)
    G = torch.zeros(C, K * K, device=S.device, dtype=S.dtype).scatter_add_(1, flat.reshape(C, -1), dz.reshape(C, -1))
    return V @ G.reshape(C, K, K).mT @ V.mT  # (C, d, d)


def autograd_gradient(Q: torch.Tensor, V: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    """Gradient (C, d, d) of the minibatch loss by autograd (configs are independent: grad of the sum)."""
    with torch.enable_grad():
        leaf = Q.detach().requires_grad_(True)  # (C, d, d)
        r = _forward(scores_from_Q(leaf, V), prompts)[3]  # (C, B)
        loss = 0.5 * (r ** 2).mean(1).sum()
        return torch.autograd.grad(loss, leaf)[0]  # (C, d, d)


GRADIENTS = {"manual": manual_gradient, "autograd": autograd_gradient}
"""The two gradient implementations of the full model, by name."""
