"""Expectations over the token counts of a prompt (docs/softmax_dynamics.md §2).

For a prompt with query feature ``k`` only the counts ``c_n`` of each feature among the N tokens matter:
``Attn_n = c_n e^{s_{k,n}} / sum_m c_m e^{s_{k,m}}`` and ``c ~ Multinomial(N, p)``.  A *count ensemble*
represents that distribution per config as weighted count vectors ``(counts (C, M, K), weights (C, M))``:

- ``N`` infinite: one "count vector" equal to ``p`` with weight 1 (``c/N -> p``; exact limit);
- ``N`` finite and ``binom(N + K' - 1, K' - 1) <= exact_limit`` (``K'`` = features with ``p_n > 0``):
  every count vector with its multinomial probability (exact);
- otherwise: ``count_samples`` count vectors drawn afresh at every step with weight ``1/count_samples``
  (Monte Carlo; the draws depend only on the config's seed and the step, see :mod:`sims.counter_rng`).

Token features are drawn by inverse CDF (:class:`InverseCDF`: integer comparisons of 32-bit random
integers with a guide table, equal to ``searchsorted`` on the cdf); :class:`FeatureDraws` draws them for a
batch, once per distinct (seed, p) (:class:`sims.counter_rng.Groups`).

Configs of one batch are padded to ``K_max`` features with ``p = 0`` (count 0, hence zero attention and,
by :func:`theory.softmax.closed_form.score_gradient`, zero gradient) and to ``M_max`` vectors with weight 0.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import torch
from scipy.special import gammaln

from sims.counter_rng import Groups, Stream, bits32, counter_offsets, keys_at, stream_keys
from sims.softmax.config import SoftmaxConfig
from theory.errors import InputError
from theory.softmax.closed_form import attention, per_query_loss, score_gradient

__all__ = [
    "EXACT_ENUMERATION_LIMIT",
    "DEFAULT_COUNT_SAMPLES",
    "count_vector_number",
    "expectation_method",
    "exact_count_vectors",
    "padded_probabilities",
    "feature_cdf",
    "sample_features",
    "GUIDE_BITS",
    "InverseCDF",
    "FeatureDraws",
    "CountEnsemble",
    "token_counts",
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
    """Every count vector of ``Multinomial(N, p)`` with its probability (docs/softmax_dynamics.md §2, §8; exact).

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
    """Feature indices (C, ...) with probabilities given by ``cdf`` (C, K), from float64 uniforms (C, ...).

    The reference inverse CDF (``searchsorted``, index = number of cdf entries <= u); the simulators use
    :class:`InverseCDF`, which tests check against it.
    """
    flat = torch.searchsorted(cdf, u.reshape(u.shape[0], -1), right=True)  # (C, prod(...))
    return flat.reshape(u.shape)  # (C, ...)


GUIDE_BITS = 12
"""Bucket bits L of the :class:`InverseCDF` guide table (2^L entries per config)."""


class InverseCDF:
    """Inverse-CDF sampling of features from random 32-bit integers by integer comparisons (guide table).

    A 32-bit integer ``b`` stands for the uniform ``u = b 2^-32`` of :func:`sims.counter_rng.uniforms32`,
    and :func:`sample_features` picks ``#{k : cdf_k <= u}``.  Since ``cdf_k 2^32`` is exact and ``b`` an
    integer, ``cdf_k <= u`` iff ``b >= T_k = ceil(cdf_k 2^32)``: the same index is ``#{k : b >= T_k}``,
    computed with a guide table (indexed search, Chen & Asau 1974): ``G[j] = #{k : T_k <= j 2^(32-L)}``
    is the answer at the bottom of bucket ``j = b >> (32 - L)``, and ``passes`` steps
    ``idx += (b >= T[idx])`` add the thresholds inside the bucket (``passes`` = the most thresholds
    strictly inside one bucket, found once here; usually 0 or 1).  Cost: a shift, a gather and
    ``passes`` (gather, compare, add) instead of a binary search.

    Parameters
    ----------
    p : (C, K) feature probabilities (rows may be zero-padded; :func:`feature_cdf` conventions).
    """

    def __init__(self, p: torch.Tensor):
        C = p.shape[0]
        self.thresholds = torch.ceil(feature_cdf(p) * 2.0 ** 32).to(torch.long)  # (C, K) nondecreasing
        edges = (torch.arange((1 << GUIDE_BITS) + 1, device=p.device) << (32 - GUIDE_BITS)).repeat(C, 1)
        at_or_below = torch.searchsorted(self.thresholds, edges, right=True)  # (C, 2^L + 1) #{T_k <= edge}
        below = torch.searchsorted(self.thresholds, edges)  # (C, 2^L + 1) #{T_k < edge}
        self.guide = at_or_below[:, :-1].contiguous()  # (C, 2^L)
        self.passes = int((below[:, 1:] - self.guide).max()) if C else 0  # one host read, at setup

    def __call__(self, bits: torch.Tensor) -> torch.Tensor:
        """Feature indices (C, ...) for 32-bit integers ``bits`` (C, ...) in [0, 2^32) (int64)."""
        flat = bits.reshape(bits.shape[0], -1)  # (C, n)
        index = self.guide.gather(1, flat >> (32 - GUIDE_BITS))  # (C, n)
        for _ in range(self.passes):
            index += flat >= self.thresholds.gather(1, index)  # (C, n)
        return index.reshape(bits.shape)  # (C, ...)


class FeatureDraws:
    """The features (C, rows, cols) of one random stream at any step, i.i.d. from each config's ``p``.

    Element ``(c, i, j)`` of step t is the :class:`InverseCDF` of :func:`sims.counter_rng.bits32` of
    (seed, stream, t) at ``(i, j)``: it depends on the config only through its seed and p.  Configs that
    share a seed share the integers and those that also share p the features: each is drawn once per
    group and copied (:class:`sims.counter_rng.Groups`), with the numbers of a draw per config.

    Parameters
    ----------
    configs : the configs (seed and p are read).
    p : (C, K) their padded probabilities (device and K of the draws).
    stream : one of :class:`sims.counter_rng.Stream`.
    steps : number of steps (keys are precomputed for steps ``0 .. steps - 1``).
    rows, cols : block shape of one step's draw.
    """

    def __init__(self, configs: Sequence[SoftmaxConfig], p: torch.Tensor, stream: int, steps: int, rows: int,
                 cols: int):
        device = p.device
        self._features = Groups([(cfg.seed, cfg.p) for cfg in configs], device)
        self._seeds = Groups([configs[i].seed for i in self._features.first], device)
        seeds = torch.tensor([configs[self._features.first[i]].seed for i in self._seeds.first], device=device,
                             dtype=torch.long)  # (U_seeds,)
        self.keys = stream_keys(seeds, stream, torch.arange(steps, device=device))  # (U_seeds, steps)
        self.shape = (rows, cols)
        self._width = 2 * ((cols + 1) // 2)  # whole words: contiguous integers, no copy
        self._offsets = counter_offsets(rows, self._width // 2, device)  # (rows, words)
        self._inverse = InverseCDF(p.index_select(0, self._features.index))

    def __call__(self, step: int | torch.Tensor) -> torch.Tensor:
        """Feature indices (C, rows, cols) of ``step`` (an int, or a 0-d int64 tensor on the device)."""
        bits = bits32(keys_at(self.keys, step), self.shape[0], self._width, self._offsets)  # (U_seeds, rows, width)
        features = self._inverse(self._seeds.spread(bits))  # (U_features, rows, width)
        return self._features.spread(features)[..., :self.shape[1]]  # (C, rows, cols)


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

    Monte Carlo configs with the same seed, p and N have the same count vectors at every step: they are
    drawn once per such group and copied (:class:`sims.counter_rng.Groups`).
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
        self._tail = self.counts[self._mc, count_samples:]  # (C_mc, M - M_mc, K) weight-0 padding
        self._whole = len(mc) == len(configs) and self._tail.shape[1] == 0  # Monte Carlo rows are all rows
        self._shared = Groups([(configs[i].seed, configs[i].p, configs[i].N) for i in mc], device)  # equal draws
        drawn = [mc[i] for i in self._shared.first]  # one config per group
        N = torch.tensor([configs[i].N for i in drawn], device=device)  # (U,)
        N_max = max([configs[i].N for i in drawn], default=0)
        self._token_mask = (torch.arange(N_max, device=device) < N[:, None]).to(dtype)  # (U, N_max)
        self._draws = FeatureDraws([configs[i] for i in drawn], p[drawn], Stream.COUNTS, steps + 1, count_samples,
                                   N_max)

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

    def at(self, step: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Count vectors (C, M, K) and weights (C, M) at ``step`` (fresh Monte Carlo draws per step).

        ``step`` is an int or a 0-d int64 tensor on the device (no host synchronisation).
        """
        if len(self._mc) == 0:
            return self.counts, self.weights
        drawn = self._shared.spread(token_counts(self._draws(step), self.counts.shape[2],
                                                 self._token_mask))  # (C_mc, M_mc, K); once per group
        if self._whole:
            return drawn, self.weights
        rows = torch.cat([drawn, self._tail], 1)  # (C_mc, M, K)
        return self.counts.index_copy(0, self._mc, rows), self.weights  # (C, M, K), (C, M)


def token_counts(features: torch.Tensor, K: int, real: torch.Tensor) -> torch.Tensor:
    """Counts ``c_n`` (C, R, K) of each feature among the tokens (C, R, N) of R prompts (docs/softmax_dynamics.md §2).

    ``real`` (C, N) is 1 for real tokens and 0 for padding beyond a config's N (padding adds 0).
    """
    counts = torch.zeros(*features.shape[:2], K, device=real.device, dtype=real.dtype)  # (C, R, K)
    return counts.scatter_add_(2, features, real[:, None, :].expand(features.shape))  # (C, R, K)


def expected_quantities(scores: torch.Tensor, counts: torch.Tensor, weights: torch.Tensor, *, grad: bool = True,
                        loss: bool = True):
    """Expected attention, score gradient and per-query loss over count vectors (docs/softmax_dynamics.md §2; derived).

    Parameters
    ----------
    scores : (C, K, K) scores, row = query feature k, column = feature n.
    counts : (C, M, K) count vectors (or ``p`` for N infinite).
    weights : (C, M) their probabilities.
    grad, loss : compute the expected gradient / loss (``None`` in their place otherwise: the full model
        logs attention and loss but needs no gradient here, the reduced model needs the loss only when it
        logs).

    Returns
    -------
    attn : (C, K, K) ``E[Attn_n]`` for each query row.
    grad : (C, K, K) ``E[d l_k / d s_{k,n}]`` (:func:`theory.softmax.closed_form.score_gradient`), or None.
    loss : (C, K) ``E[l_k]``, or None.
    """
    K = scores.shape[-1]
    attn = attention(scores[:, None, :, :], counts[:, :, None, :])  # (C, M, K, K)
    terms = (attn,
             score_gradient(attn) if grad else None,  # (C, M, K, K)
             per_query_loss(attn, torch.arange(K, device=scores.device)) if loss else None)  # (C, M, K)
    return tuple(None if x is None else _expectation(weights, x) for x in terms)


def _expectation(weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_m weights[c, m] x[c, m, ...]`` (C, ...); for M = 1 (e.g. N infinite) the single product, which
    is the einsum's value bit for bit, without its permutes and batched matmul."""
    if weights.shape[1] == 1:
        return x[:, 0] * weights.reshape(-1, *[1] * (x.dim() - 2))  # (C, ...)
    return torch.einsum("cm,cm...->c...", weights, x)  # (C, ...)
