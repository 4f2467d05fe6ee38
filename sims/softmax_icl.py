"""Batched GD dynamics of "In-Context Convergence of Transformers" (Huang, Cheng & Liang, arXiv 2310.05249).

Two simulators of spec ``softmax_icl.md``, both batched along a leading config axis C, with a fixed
step count, logging into preallocated buffers, and no host synchronisation inside the step loop:

- :func:`simulate_reduced`: the exact population GD of the scores (spec 4.2; derived), using the
  symbolic gradient :func:`theory.softmax_icl.score_gradient`.
- :func:`simulate_full`: the full model (spec 1-2; stated) — Q in R^{d x d}, explicit sampled prompts,
  minibatch GD — logged through the same expectation over counts as the reduced model.

The configs (:mod:`sims.softmax_config`), count ensembles (:mod:`sims.softmax_counts`), trajectories
(:mod:`sims.softmax_trajectory`) and phase events (:mod:`sims.softmax_events`) are re-exported here.
"""
from __future__ import annotations

from typing import Sequence

import torch

from sims.softmax_config import SoftmaxConfig, check_batch
from sims.softmax_counts import (
    DEFAULT_COUNT_SAMPLES, EXACT_ENUMERATION_LIMIT, CountEnsemble, expectation_method, expected_quantities,
    padded_probabilities,
)
from sims.softmax_events import UnderrepresentedEvents, first_attention_step, first_loss_step, underrepresented_events
from sims.softmax_full import FEATURE_KINDS, GRADIENTS, PromptSampler, feature_matrix, scores_from_Q
from sims.softmax_trajectory import SoftmaxTrajectory, TrajectoryRecorder
from theory.errors import InputError

__all__ = [
    "SoftmaxConfig",
    "SoftmaxTrajectory",
    "simulate_reduced",
    "simulate_full",
    "UnderrepresentedEvents",
    "underrepresented_events",
    "first_attention_step",
    "first_loss_step",
    "expectation_method",
    "DEFAULT_COUNT_SAMPLES",
    "EXACT_ENUMERATION_LIMIT",
]


class _Batch:
    """Tensors shared by both simulators: padded p (C, K), step sizes (C,), ensemble and recorder."""

    def __init__(self, configs, device, dtype, count_samples: int, exact_limit: int):
        self.configs = check_batch(configs)
        self.device = _device(device)
        self.steps = self.configs[0].steps
        self.K = max(cfg.K for cfg in self.configs)
        self.p = padded_probabilities(self.configs, self.K, self.device, dtype)  # (C, K)
        self.eta = torch.tensor([cfg.eta for cfg in self.configs], device=self.device, dtype=dtype)  # (C,)
        self.counts = CountEnsemble(self.configs, self.K, self.steps, self.device, dtype, count_samples, exact_limit)
        self.recorder = TrajectoryRecorder(self.configs, self.p)

    def evaluate(self, step: int, scores: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Expected attention/gradient/loss at ``scores`` (C, K, K); recorded when ``step`` is logged."""
        attn, grad, loss = expected_quantities(scores, *self.counts.at(step))
        if self.recorder.wants(step):
            self.recorder.record(step, scores, attn, loss)
        return attn, grad, loss


def _device(device) -> torch.device:
    """``torch.device`` of ``device``; InputError when it names CUDA and none is available."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available")
    return resolved


def simulate_reduced(configs: Sequence[SoftmaxConfig] | SoftmaxConfig, *, device="cpu",
                     dtype: torch.dtype = torch.float64, count_samples: int = DEFAULT_COUNT_SAMPLES,
                     exact_limit: int = EXACT_ENUMERATION_LIMIT) -> SoftmaxTrajectory:
    """Exact population GD on the scores, ``s_k -= eta p_k E[d l_k / d s_k]`` from ``s = 0`` (spec 4.2; derived).

    Parameters
    ----------
    configs : one config or a batch sharing ``steps`` and ``log_every`` (K, p, eta, N, seed may differ;
        smaller K are padded with ``p = 0``, which leaves their dynamics exact).
    device, dtype : where and in which precision to run (float64 by default).
    count_samples, exact_limit : finite-N expectation, see :mod:`sims.softmax_counts`; N infinite uses
        ``Attn = softmax(s + log p)`` with no sampling.

    Returns
    -------
    SoftmaxTrajectory with ``model="reduced"``.

    Every step evaluates the expectation at the current scores (logging it when due) and applies the
    exact GD update of spec 4.2, with the gradient lambdified from sympy by :mod:`theory.softmax_icl`.
    """
    batch = _Batch(configs, device, dtype, count_samples, exact_limit)
    step_size = (batch.eta[:, None] * batch.p)[:, :, None]  # (C, K, 1): eta p_k per query row
    scores = torch.zeros(len(batch.configs), batch.K, batch.K, device=batch.device, dtype=dtype)  # (C, K, K)
    for step in range(batch.steps + 1):
        grad = batch.evaluate(step, scores)[1]  # (C, K, K)
        if step < batch.steps:
            scores = scores - step_size * grad  # (C, K, K)
    return batch.recorder.result("reduced")


def simulate_full(configs: Sequence[SoftmaxConfig] | SoftmaxConfig, *, device="cpu",
                  dtype: torch.dtype = torch.float64, grad: str = "manual", features: str = "standard",
                  count_samples: int = DEFAULT_COUNT_SAMPLES,
                  exact_limit: int = EXACT_ENUMERATION_LIMIT) -> SoftmaxTrajectory:
    """Minibatch GD of the full model on explicit prompts, ``Q -= eta grad``, from ``Q = 0`` (spec 1-2; stated).

    Parameters
    ----------
    configs : one config or a batch sharing ``steps``, ``log_every`` and ``batch``; N must be finite
        (mixed N and d are padded exactly).
    device, dtype : where and in which precision to run (float64 by default).
    grad : ``"manual"`` (hand-written, :func:`sims.softmax_full.manual_gradient`) or ``"autograd"``.
    features : ``"standard"`` (``v_k = e_k``) or ``"random"`` (orthonormal V from the seed).
    count_samples, exact_limit : the expectation over counts used for the logged attention and losses.

    Returns
    -------
    SoftmaxTrajectory with ``model="full"``; scores are ``s_{k,n} = v_n^T Q v_k``, and attention and
    per-query losses are the expectation over ``Multinomial(N, p)`` counts at those scores, computed by
    the same code as in :func:`simulate_reduced`.
    """
    _check_full(configs, grad, features)
    batch = _Batch(configs, device, dtype, count_samples, exact_limit)
    d = max(cfg.d for cfg in batch.configs)
    V = feature_matrix(batch.configs, d, batch.K, features, batch.device, dtype)  # (C, d, K)
    prompts = PromptSampler(batch.configs, batch.p, V)
    gradient = GRADIENTS[grad]
    Q = torch.zeros(len(batch.configs), d, d, device=batch.device, dtype=dtype)  # (C, d, d)
    for step in range(batch.steps + 1):
        if batch.recorder.wants(step):
            batch.evaluate(step, scores_from_Q(Q, V))
        if step < batch.steps:
            Q = Q - batch.eta[:, None, None] * gradient(Q, V, prompts.draw(step))  # (C, d, d)
    return batch.recorder.result("full")


def _check_full(configs, grad: str, features: str) -> None:
    """Full-model-only input checks (the rest is :func:`sims.softmax_config.check_batch`)."""
    batch = check_batch(configs)
    if grad not in GRADIENTS:
        raise InputError(f"grad must be one of {sorted(GRADIENTS)}, got {grad!r}")
    if features not in FEATURE_KINDS:
        raise InputError(f"features must be one of {list(FEATURE_KINDS)}, got {features!r}")
    infinite = [i for i, cfg in enumerate(batch) if cfg.N is None]
    if infinite:
        raise InputError(f"the full model needs a finite prompt length N; configs {infinite} have N = inf")
    sizes = sorted({cfg.batch for cfg in batch})
    if len(sizes) > 1:
        raise InputError(f"configs of one full-model batch must share batch (prompts per step); got {sizes}")
