"""Expectations over the token counts of a prompt (spec ``softmax_icl.md`` sections 3 and 4.2).

For a prompt with query feature ``k`` only the counts ``c_n`` of each feature among the N tokens matter:
``Attn_n = c_n e^{s_{k,n}} / sum_m c_m e^{s_{k,m}}`` and ``c ~ Multinomial(N, p)``.  A *count ensemble*
represents that distribution per config as weighted count vectors ``(counts (C, M, K), weights (C, M))``:

- ``N`` infinite: one "count vector" equal to ``p`` with weight 1 (``c/N -> p``; exact limit);
- ``N`` finite and ``binom(N + K' - 1, K' - 1) <= exact_limit`` (``K'`` = features with ``p_n > 0``):
  every count vector with its multinomial probability (exact);
- otherwise: ``count_samples`` count vectors drawn afresh at every step with weight ``1/count_samples``
  (Monte Carlo; the draws depend only on the config's seed and the step, see :mod:`sims.counter_rng`).

Configs of one batch are padded to ``K_max`` features with ``p = 0`` (count 0, hence zero attention and,
by :func:`theory.softmax_icl.score_gradient`, zero gradient) and to ``M_max`` vectors with weight 0.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import torch
from scipy.special import gammaln

from sims.counter_rng import Stream, stream_keys, uniforms32
from sims.softmax_config import SoftmaxConfig
from theory.errors import InputError
from theory.softmax_icl import attention, per_query_loss, score_gradient

__all__ = [
    "EXACT_ENUMERATION_LIMIT",
    "DEFAULT_COUNT_SAMPLES",
    "count_vector_number",
    "expectation_method",
    "exact_count_vectors",
    "padded_probabilities",
    "feature_cdf",
    "sample_features",
    "CountEnsemble",
    "expected_quantities",
]

EXACT_ENUMERATION_LIMIT = 20_000
"""Largest number of count vectors enumerated exactly; larger supports switch to Monte Carlo."""

DEFAULT_COUNT_SAMPLES = 1024
"""Monte Carlo count vectors per step (standard error of an attention ~ 0.5/sqrt(1024) ~ 0.016 at worst)."""


def count_vector_number(N: int, support: int) -> int:
    """Number of count vectors of N tokens over ``support`` features: ``binom(N + support - 1, support - 1)``."""
    return math.comb(N + support - 1, support - 1)


def _compositions(total: int, parts: int) -> np.ndarray:
    """All (M, parts) nonnegative integer vectors summing to ``total`` (stars and bars)."""
    bars = np.array(list(itertools.combinations(range(total + parts - 1), parts - 1)), dtype=np.int64)
    bars = bars.reshape(-1, parts - 1)  # (M, parts - 1); also for parts == 1
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), total + parts - 1)], 1)
    return np.diff(edges, axis=1) - 1  # (M, parts)


def exact_count_vectors(N: int, p: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Every count vector of ``Multinomial(N, p)`` with its probability (spec 3; exact).

    Returns ``counts`` (M, len(p)) int64 and ``weights`` (M,) float64 summing to 1; features with
    ``p_n = 0`` always have count 0 and are not enumerated.
    """
    p = np.asarray(p, dtype=np.float64)
    support = np.flatnonzero(p > 0)
    counts = np.zeros((count_vector_number(N, len(support)), len(p)), dtype=np.int64)  # (M, K)
    counts[:, support] = _compositions(N, len(support))
    log_pmf = gammaln(N + 1) + (counts[:, support] * np.log(p[support]) - gammaln(counts[:, support] + 1)).sum(1)
    return counts, np.exp(log_pmf)  # (M, K), (M,)


def padded_probabilities(configs: Sequence[SoftmaxConfig], K_max: int, device, dtype) -> torch.Tensor:
    """(C, K_max) tensor of feature probabilities, zero beyond each config's K."""
    rows = [list(cfg.p) + [0.0] * (K_max - cfg.K) for cfg in configs]
    return torch.tensor(rows, device=device, dtype=dtype)  # (C, K_max)


def feature_cdf(p: torch.Tensor) -> torch.Tensor:
    """Cumulative probabilities (C, K) for inverse-CDF sampling, exactly 1 from the last positive ``p_n`` on.

    Clamping to 1 keeps it sorted and guarantees that a uniform in [0, 1) never selects a feature with
    ``p_n = 0`` (padding included), whatever the rounding of the cumulative sum.
    """
    last = (torch.arange(p.shape[1], device=p.device) * (p > 0)).amax(1, keepdim=True)  # (C, 1)
    cdf = torch.cumsum(p.to(torch.float64), 1).clamp(max=1.0)  # (C, K)
    return torch.where(torch.arange(p.shape[1], device=p.device) >= last, 1.0, cdf)  # (C, K)


def sample_features(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Feature indices (C, ...) with probabilities given by ``cdf`` (C, K), from float64 uniforms (C, ...)."""
    flat = torch.searchsorted(cdf, u.reshape(u.shape[0], -1), right=True)  # (C, prod(...))
    return flat.reshape(u.shape)  # (C, ...)


def expectation_method(cfg: SoftmaxConfig, exact_limit: int = EXACT_ENUMERATION_LIMIT) -> str:
    """How the expectation over counts is computed for ``cfg``: ``"limit"`` (N infinite, exact),
    ``"exact"`` (enumeration) or ``"monte-carlo"`` (more than ``exact_limit`` count vectors)."""
    if cfg.N is None:
        return "limit"
    support = sum(v > 0 for v in cfg.p)
    return "exact" if count_vector_number(cfg.N, support) <= exact_limit else "monte-carlo"


def _fixed_vectors(cfg: SoftmaxConfig, K_max: int, method: str):
    """(counts (M, K_max), weights (M,)) of the ``"limit"`` and ``"exact"`` methods; None for Monte Carlo."""
    p = np.array(list(cfg.p) + [0.0] * (K_max - cfg.K))  # (K_max,)
    if method == "limit":
        return p[None, :], np.ones(1)
    return exact_count_vectors(cfg.N, p) if method == "exact" else None


class CountEnsemble:
    """The weighted count vectors of a batch of configs (module docstring); ``at(step)`` gives them.

    Parameters
    ----------
    configs : the batch (validated by the caller).
    K_max : padded number of features.
    steps : last step at which :meth:`at` will be asked (Monte Carlo keys are precomputed up to it).
    device, dtype : of the returned tensors.
    count_samples : Monte Carlo vectors per step for configs too large to enumerate.
    exact_limit : enumerate exactly when there are at most this many count vectors.

    Attributes
    ----------
    methods : per config, :func:`expectation_method`.
    """

    def __init__(self, configs: Sequence[SoftmaxConfig], K_max: int, steps: int, device, dtype,
                 count_samples: int = DEFAULT_COUNT_SAMPLES, exact_limit: int = EXACT_ENUMERATION_LIMIT):
        if count_samples < 1 or exact_limit < 0:
            raise InputError(f"need count_samples >= 1 and exact_limit >= 0, got {count_samples} and {exact_limit}")
        p = padded_probabilities(configs, K_max, device, dtype)  # (C, K)
        self.methods = tuple(expectation_method(cfg, exact_limit) for cfg in configs)
        mc = [i for i, method in enumerate(self.methods) if method == "monte-carlo"]
        self._fill_fixed(configs, p, count_samples if mc else 1)
        self.weights[mc, :count_samples] = 1.0 / count_samples
        self._mc = torch.tensor(mc, device=device, dtype=torch.long)  # (C_mc,)
        self._samples = count_samples
        self._tail = self.counts[self._mc, count_samples:]  # (C_mc, M - M_mc, K) weight-0 padding
        self._cdf = feature_cdf(p[mc])  # (C_mc, K)
        N_mc = torch.tensor([configs[i].N for i in mc], device=device)  # (C_mc,)
        self._N_max = max([configs[i].N for i in mc], default=0)
        self._token_mask = (torch.arange(self._N_max, device=device) < N_mc[:, None]).to(dtype)  # (C_mc, N_max)
        seeds = torch.tensor([configs[i].seed for i in mc], device=device, dtype=torch.long)  # (C_mc,)
        self._keys = stream_keys(seeds, Stream.COUNTS, torch.arange(steps + 1, device=device))  # (C_mc, T+1)

    def _fill_fixed(self, configs: Sequence[SoftmaxConfig], p: torch.Tensor, min_rows: int) -> None:
        """Allocate counts (C, M, K) / weights (C, M) and fill the ``"limit"`` and ``"exact"`` configs."""
        fixed = [_fixed_vectors(cfg, p.shape[1], method) for cfg, method in zip(configs, self.methods)]
        M = max([len(v[1]) for v in fixed if v is not None] + [min_rows])
        self.counts = p[:, None, :].repeat(1, M, 1)  # (C, M, K); weight-0 padding rows hold p (finite attention)
        self.weights = torch.zeros(p.shape[0], M, device=p.device, dtype=p.dtype)  # (C, M)
        for i, vectors in enumerate(fixed):
            if vectors is not None:
                self.counts[i, :len(vectors[1])] = torch.as_tensor(vectors[0], device=p.device, dtype=p.dtype)
                self.weights[i, :len(vectors[1])] = torch.as_tensor(vectors[1], device=p.device, dtype=p.dtype)

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Count vectors (C, M, K) and weights (C, M) at ``step`` (fresh Monte Carlo draws per step)."""
        if len(self._mc) == 0:
            return self.counts, self.weights
        u = uniforms32(self._keys[:, step], self._samples, self._N_max)  # (C_mc, M_mc, N_max)
        tokens = sample_features(self._cdf, u)  # (C_mc, M_mc, N_max)
        drawn = torch.zeros(len(self._mc), self._samples, self.counts.shape[2],
                            device=self.counts.device, dtype=self.counts.dtype)  # (C_mc, M_mc, K)
        drawn.scatter_add_(2, tokens, self._token_mask[:, None, :].expand_as(u))  # padded tokens add 0
        rows = torch.cat([drawn, self._tail], 1)  # (C_mc, M, K)
        return self.counts.index_copy(0, self._mc, rows), self.weights  # (C, M, K), (C, M)


def expected_quantities(scores: torch.Tensor, counts: torch.Tensor, weights: torch.Tensor):
    """Expected attention, score gradient and per-query loss over count vectors (spec 3, 4.2; derived).

    Parameters
    ----------
    scores : (C, K, K) scores, row = query feature k, column = feature n.
    counts : (C, M, K) count vectors (or ``p`` for N infinite).
    weights : (C, M) their probabilities.

    Returns
    -------
    attn : (C, K, K) ``E[Attn_n]`` for each query row.
    grad : (C, K, K) ``E[d l_k / d s_{k,n}]`` (:func:`theory.softmax_icl.score_gradient`).
    loss : (C, K) ``E[l_k]``.
    """
    K = scores.shape[-1]
    attn = attention(scores[:, None, :, :], counts[:, :, None, :])  # (C, M, K, K)
    grad = score_gradient(attn)  # (C, M, K, K)
    loss = per_query_loss(attn, torch.arange(K, device=scores.device))  # (C, M, K)
    return tuple(torch.einsum("cm,cm...->c...", weights, x) for x in (attn, grad, loss))  # sums over M
