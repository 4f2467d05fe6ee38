"""The full softmax attention model on explicit prompts (docs/softmax_dynamics.md §1; stated model).

One GD step of a config draws ``batch`` prompts: query feature ``q ~ p``, N token features ``f_i ~ p``
i.i.d. (inverse CDF of counter-based uniforms, :mod:`sims.counter_rng`), and ``w ~ N(0, I_d)``.  With
features ``v_k`` (columns of V), labels ``y_i = <w, v_{f_i}>`` and target ``<w, v_q>`` only need
``u = V^T w``; the score of token i is ``x_i^T Q x_q = s_{q, f_i}`` with ``S = (V^T Q V)^T``, gathered
from the (K, K) score matrix, so the cost of a step is independent of d except for ``V^T Q V`` and
``V^T w``.  The minibatch loss is ``1/2 mean_b (y_hat_b - <w_b, v_{q_b}>)^2`` and ``Q -= eta grad``.

Three gradients of that loss (:data:`GRADIENTS`): ``"manual"`` (token level, the default),
``"autograd"`` (its check) and ``"counts"``, which evaluates each prompt through its count vector
(``y_hat = sum_n Attn_n u_n`` with ``Attn_n = c_n e^{s_{q,n}} / sum_m c_m e^{s_{q,m}}``,
docs/softmax_dynamics.md §2): the same gradient in exact arithmetic, with K instead of N terms per prompt; it sums in
another order, so it agrees with ``"manual"`` to float64 roundoff (tests), not bit for bit.  :class:`FullStep` is one GD step with
fixed shapes and the step counter on the device, so ``torch.compile`` or a CUDA graph can capture it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from sims.counter_rng import Groups, Stream, counter_offsets, keys_at, normals, stream_keys
from sims.softmax.config import SoftmaxConfig
from sims.softmax.counts import FeatureDraws, padded_probabilities, token_counts
from theory.softmax.closed_form import attention

__all__ = ["FEATURE_KINDS", "feature_matrix", "scores_from_Q", "Prompts", "PromptSampler",
           "manual_gradient", "counts_gradient", "autograd_gradient", "GRADIENTS", "FullStep"]

FEATURE_KINDS = ("standard", "random")


def feature_matrix(configs: Sequence[SoftmaxConfig], d_max: int, K_max: int, kind: str, device, dtype) -> torch.Tensor:
    """Orthonormal features V (C, d_max, K_max): columns ``v_k``; zero padding beyond each config's (d, K).

    ``kind="standard"``: ``v_k = e_k`` (docs/softmax_dynamics.md §1 default).  ``kind="random"``: the Q factor (signs
    fixed so that diag R > 0) of a Gaussian (d, K) matrix drawn from the config's seed, so it does not
    depend on the batch.  Built per config at setup, outside any step loop.
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
    """Scores (C, K, K) ``S[k, n] = v_n^T Q v_k`` from Q (C, d, d) and V (C, d, K) (docs/softmax_dynamics.md §2)."""
    return (V.mT @ Q @ V).mT  # (C, K, K)


@dataclass
class Prompts:
    """One minibatch of prompts per config."""

    query: torch.Tensor  # (C, B) query feature indices
    tokens: torch.Tensor  # (C, B, N_max) token feature indices
    values: torch.Tensor  # (C, B, K) u = V^T w: the label of feature n is values[..., n]
    real: torch.Tensor  # (C, N_max) 1 for real tokens, 0 for padding beyond a config's N
    log_mask: torch.Tensor | None  # (C, 1, N_max) log(real); None when no config is padded


class PromptSampler:
    """Draws the prompts of step t for every config from counter-based streams (batch-independent).

    Query and tokens come from :class:`sims.softmax.counts.FeatureDraws` (stream TOKENS, column 0 is the
    query), ``w`` from the W streams; both are drawn once per distinct seed (and p) and shared.
    """

    def __init__(self, configs: Sequence[SoftmaxConfig], p: torch.Tensor, V: torch.Tensor):
        device = p.device
        steps = torch.arange(configs[0].steps, device=device)  # (steps,)
        self.batch = configs[0].batch
        self.N_max = max(cfg.N for cfg in configs)
        self.features = FeatureDraws(configs, p, Stream.TOKENS, configs[0].steps, self.batch, self.N_max + 1)
        self._w = Groups([cfg.seed for cfg in configs], device)
        seeds = torch.tensor([configs[i].seed for i in self._w.first], device=device, dtype=torch.long)  # (U,)
        self.keys = {s: stream_keys(seeds, s, steps) for s in (Stream.W_RADIUS, Stream.W_ANGLE)}  # (U, steps)
        self.V = V  # (C, d, K)
        self._w_offsets = counter_offsets(self.batch, V.shape[1], device)  # (B, d)
        N = torch.tensor([cfg.N for cfg in configs], device=device)  # (C,)
        self.real = (torch.arange(self.N_max, device=device) < N[:, None]).to(V.dtype)  # (C, N_max)
        padded = any(cfg.N < self.N_max for cfg in configs)
        self.log_mask = torch.log(self.real)[:, None, :] if padded else None  # (C, 1, N_max)

    def draw(self, step: int | torch.Tensor) -> Prompts:
        """The prompts of ``step`` (C configs x ``batch`` prompts); ``step`` an int or a 0-d device tensor."""
        features = self.features(step)  # (C, B, N+1); column 0 is the query
        w = normals(keys_at(self.keys[Stream.W_RADIUS], step), keys_at(self.keys[Stream.W_ANGLE], step),
                    *self._w_offsets.shape, self._w_offsets)  # (U, B, d)
        values = self._w.spread(w.to(self.V.dtype)) @ self.V  # (C, B, K)
        return Prompts(query=features[..., 0], tokens=features[..., 1:], values=values, real=self.real,
                       log_mask=self.log_mask)


@dataclass
class _Terms:
    """What the gradient needs from a forward pass over J attended items (tokens, or features)."""

    attn: torch.Tensor  # (C, B, J) attention on each item
    labels: torch.Tensor  # (C, B, J) label of each item
    y_hat: torch.Tensor  # (C, B) prediction
    residual: torch.Tensor  # (C, B) y_hat - target
    index: torch.Tensor  # (C, B, J) position of each item's score s_{q, n} in S.view(C, K*K)


def _token_terms(S: torch.Tensor, prompts: Prompts) -> _Terms:
    """Token-level forward pass: softmax over the N tokens of each prompt (docs/softmax_dynamics.md §1)."""
    C, K, _ = S.shape
    flat = prompts.query[..., None] * K + prompts.tokens  # (C, B, N): index of s_{q, f_i} in S.view(C, K*K)
    z = S.reshape(C, K * K).gather(1, flat.reshape(C, -1)).reshape(flat.shape)  # (C, B, N)
    if prompts.log_mask is not None:
        z = z + prompts.log_mask  # (C, B, N); -inf on padding
    attn = torch.softmax(z, -1)  # (C, B, N)
    y = prompts.values.gather(2, prompts.tokens)  # (C, B, N)
    return _Terms(attn, y, *_prediction(attn, y, prompts), flat)


def _count_terms(S: torch.Tensor, prompts: Prompts) -> _Terms:
    """Count-level forward pass: ``Attn_n = c_n e^{s_{q,n}} / sum_m c_m e^{s_{q,m}}`` over K features.

    docs/softmax_dynamics.md §2.
    """
    C, K, _ = S.shape
    counts = token_counts(prompts.tokens, K, prompts.real)  # (C, B, K)
    index = prompts.query[..., None] * K + torch.arange(K, device=S.device)  # (C, B, K)
    attn = attention(S.reshape(C, K * K).gather(1, index.reshape(C, -1)).reshape(index.shape), counts)  # (C, B, K)
    return _Terms(attn, prompts.values, *_prediction(attn, prompts.values, prompts), index)


def _prediction(attn: torch.Tensor, labels: torch.Tensor, prompts: Prompts) -> tuple[torch.Tensor, torch.Tensor]:
    """``y_hat = sum_j attn_j y_j`` (C, B) and the residual ``y_hat - <w, v_q>`` (C, B)."""
    y_hat = (attn * labels).sum(-1)  # (C, B)
    target = prompts.values.gather(2, prompts.query[..., None])[..., 0]  # (C, B)
    return y_hat, y_hat - target


def _gradient(terms: _Terms, V: torch.Tensor) -> torch.Tensor:
    """``dL/dQ = V G^T V^T`` (C, d, d) from ``dL/dz_{b,j} = r_b attn_{b,j} (y_{b,j} - y_hat_b) / B``.

    Each ``dz`` is scattered into ``G[q_b, n]`` for the score it came from; since
    ``s_{k,n} = v_n^T Q v_k``, ``dL/dQ = sum_{k,n} G[k,n] v_n v_k^T``.  ``terms.attn`` is overwritten.
    """
    C, K = V.shape[0], V.shape[2]
    r = terms.residual  # (C, B)
    dz = terms.attn.mul_(r[..., None]).mul_(terms.labels - terms.y_hat[..., None]).div_(r.shape[1])  # (C, B, J)
    G = torch.zeros(C, K * K, device=V.device, dtype=V.dtype).scatter_add_(1, terms.index.reshape(C, -1),
                                                                          dz.reshape(C, -1))  # (C, K*K)
    return V @ G.reshape(C, K, K).mT @ V.mT  # (C, d, d)


def manual_gradient(Q: torch.Tensor, V: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    """Hand-written gradient (C, d, d) of the minibatch loss over the prompts' tokens (:func:`_gradient`)."""
    return _gradient(_token_terms(scores_from_Q(Q, V), prompts), V)


def counts_gradient(Q: torch.Tensor, V: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    """The same gradient (C, d, d) evaluated through each prompt's count vector (module docstring).

    ``sum_{i : f_i = n} attn_i (y_i - y_hat) = Attn_n (u_n - y_hat)``: one term per feature, not per token.
    """
    return _gradient(_count_terms(scores_from_Q(Q, V), prompts), V)


def autograd_gradient(Q: torch.Tensor, V: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    """Gradient (C, d, d) of the minibatch loss by autograd (configs are independent: grad of the sum)."""
    with torch.enable_grad():
        leaf = Q.detach().requires_grad_(True)  # (C, d, d)
        r = _token_terms(scores_from_Q(leaf, V), prompts).residual  # (C, B)
        loss = 0.5 * (r ** 2).mean(1).sum()
        return torch.autograd.grad(loss, leaf)[0]  # (C, d, d)


GRADIENTS = {"manual": manual_gradient, "autograd": autograd_gradient, "counts": counts_gradient}
"""The gradient implementations of the full model, by name."""


class FullStep:
    """One minibatch GD step of a batch of configs: ``(Q, t) -> (Q - eta grad, t + 1)`` (docs/softmax_dynamics.md §1).

    ``Q`` (C, d, d) and the step counter ``t`` (0-d int64) live on the device and every shape is fixed,
    so the step needs no host synchronisation and can be captured by ``torch.compile`` / a CUDA graph.

    Parameters
    ----------
    configs : the batch (validated by the caller: finite N, one ``batch``).
    p : (C, K) padded probabilities.
    V : (C, d, K) features (:func:`feature_matrix`).
    eta : (C,) step sizes.
    grad : a key of :data:`GRADIENTS`.
    """

    def __init__(self, configs: Sequence[SoftmaxConfig], p: torch.Tensor, V: torch.Tensor, eta: torch.Tensor,
                 grad: str = "manual"):
        self.prompts = PromptSampler(configs, p, V)
        self.V = V  # (C, d, K)
        self.eta = eta[:, None, None]  # (C, 1, 1)
        self.gradient = GRADIENTS[grad]

    @classmethod
    def build(cls, configs: Sequence[SoftmaxConfig], device, dtype: torch.dtype, grad: str = "manual",
              features: str = "standard") -> "FullStep":
        """The step of ``configs`` padded to their largest K and d; V is :func:`feature_matrix` of ``features``."""
        K, d = max(cfg.K for cfg in configs), max(cfg.d for cfg in configs)
        p = padded_probabilities(configs, K, device, dtype)  # (C, K)
        eta = torch.tensor([cfg.eta for cfg in configs], device=device, dtype=dtype)  # (C,)
        return cls(configs, p, feature_matrix(configs, d, K, features, device, dtype), eta, grad)

    def __call__(self, Q: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``Q - eta grad`` on the prompts of step ``t``, and ``t + 1``."""
        return Q - self.eta * self.gradient(Q, self.V, self.prompts.draw(t)), t + 1  # (C, d, d), ()

    def start(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The initial state: ``Q = 0`` (C, d, d) and ``t = 0`` (0-d int64), on the device."""
        C, d = self.V.shape[:2]
        return (torch.zeros(C, d, d, device=self.V.device, dtype=self.V.dtype),
                torch.zeros((), device=self.V.device, dtype=torch.long))

    def run(self, steps: int, step: Callable | None = None) -> torch.Tensor:
        """``Q`` (C, d, d) after ``steps`` steps from :meth:`start`, unlogged (benchmarks), by ``step``: this
        step or a compiled form of it."""
        Q, t = self.start()
        for _ in range(steps):
            Q, t = (step or self)(Q, t)
        return Q
