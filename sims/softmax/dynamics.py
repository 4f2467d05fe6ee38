"""Batched GD dynamics of "In-Context Convergence of Transformers" (Huang, Cheng & Liang, arXiv 2310.05249).

Two simulators of the model of docs/softmax_dynamics.md, both batched along a leading config axis C, with a
fixed step count, logging into preallocated buffers, and no host synchronisation inside the step loop:

- :func:`simulate_reduced`: the exact population GD of the scores (docs/softmax_dynamics.md §2; derived), using
  the symbolic gradient :func:`theory.softmax.closed_form.score_gradient`.
- :func:`simulate_full`: the full model (docs/softmax_dynamics.md §1; stated) — Q in R^{d x d}, explicit sampled
  prompts, minibatch GD — logged through the same expectation over counts as the reduced model.

The configs (:mod:`sims.softmax.config`), count ensembles (:mod:`sims.softmax.counts`), trajectories
(:mod:`sims.softmax.trajectory`) and phase events (:mod:`sims.softmax.events`) are re-exported here.

Performance: each step is one function of device tensors with fixed shapes — the state and a step counter
``t`` kept on the device — so the loop never reads the device, and the step can be compiled (``compile=``, or ``$VERIFY_COMPILE``; on by default on CUDA).  Random numbers
are drawn once per distinct seed and shared by the configs that have it (:mod:`sims.counter_rng`).
On the CPU, glibc's malloc is asked once per process to keep freed memory for reuse
(:func:`reuse_freed_memory`): otherwise every step's megabyte-sized temporaries are fresh mmaps, and
page faults took half the time of a full-model step.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Sequence

import torch

from sims.devices import COMPILE_ENV, COMPILE_MODES, checked_device, compile_mode, compiled
from sims.softmax.config import SoftmaxConfig, check_batch
from sims.softmax.counts import (
    DEFAULT_COUNT_SAMPLES, EXACT_ENUMERATION_LIMIT, CountEnsemble, expectation_method, expected_quantities,
    padded_probabilities,
)
from sims.softmax.events import UnderrepresentedEvents, first_attention_step, first_loss_step, underrepresented_events
from sims.softmax.full import FEATURE_KINDS, GRADIENTS, FullStep, scores_from_Q
from sims.softmax.trajectory import SoftmaxTrajectory, TrajectoryRecorder
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
    "COMPILE_ENV",
    "COMPILE_MODES",
    "compile_mode",
    "compiled",
    "reuse_freed_memory",
]

class _Batch:
    """What both simulators share: validated configs, device, compile mode (:func:`compile_mode`), padded
    p (C, K), step sizes (C,), count ensemble and recorder."""

    def __init__(self, configs, device, dtype, count_samples: int, exact_limit: int, compile):
        self.configs = check_batch(configs)
        self.device = checked_device(device)
        if self.device.type == "cpu":
            reuse_freed_memory()
        self.compile = compile_mode(compile, self.device)
        self.steps = self.configs[0].steps
        self.K = max(cfg.K for cfg in self.configs)
        self.p = padded_probabilities(self.configs, self.K, self.device, dtype)  # (C, K)
        self.eta = torch.tensor([cfg.eta for cfg in self.configs], device=self.device, dtype=dtype)  # (C,)
        self.counts = CountEnsemble(self.configs, self.K, self.steps, self.device, dtype, count_samples, exact_limit)
        self.recorder = TrajectoryRecorder(self.configs, self.p)


@functools.cache
def reuse_freed_memory() -> None:
    """Keep freed heap memory for reuse instead of returning it to the OS (glibc only; else nothing).

    ``mallopt(M_MMAP_THRESHOLD, 32 MiB)`` (its maximum) serves allocations below 32 MiB from the heap and
    ``mallopt(M_TRIM_THRESHOLD, 1 GiB)`` keeps up to 1 GiB of freed heap, so a step loop reuses its
    temporaries' pages instead of faulting in fresh zeroed pages at every step.  Numbers are unaffected.
    """
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    if mallopt is not None:
        mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD


def simulate_reduced(configs: Sequence[SoftmaxConfig] | SoftmaxConfig, *, device="cpu",
                     dtype: torch.dtype = torch.float64, count_samples: int = DEFAULT_COUNT_SAMPLES,
                     exact_limit: int = EXACT_ENUMERATION_LIMIT,
                     compile: bool | str | None = None) -> SoftmaxTrajectory:
    """Exact population GD on the scores, ``s_k -= eta p_k E[d l_k / d s_k]`` from ``s = 0``.

    docs/softmax_dynamics.md §2 (derived).

    Parameters
    ----------
    configs : one config or a batch sharing ``steps`` and ``log_every`` (K, p, eta, N, seed may differ;
        smaller K are padded with ``p = 0``, which leaves their dynamics exact).
    device, dtype : where and in which precision to run (float64 by default).
    count_samples, exact_limit : finite-N expectation, see :mod:`sims.softmax.counts`; N infinite uses
        ``Attn = softmax(s + log p)`` with no sampling.
    compile : compile the step with ``torch.compile`` (True, False, a mode of :data:`COMPILE_MODES`, or
        None: ``$VERIFY_COMPILE``, else only on CUDA).  Compiled kernels fuse and may round differently
        (agreement with eager to float64 roundoff is tested).

    Returns
    -------
    SoftmaxTrajectory with ``model="reduced"``.

    Every step evaluates the expectation at the current scores (with the loss only when the step is
    logged) and applies the exact GD update of docs/softmax_dynamics.md §2, with the gradient lambdified from sympy by
    :mod:`theory.softmax.closed_form`.
    """
    batch = _Batch(configs, device, dtype, count_samples, exact_limit, compile)
    step_size = (batch.eta[:, None] * batch.p)[:, :, None]  # (C, K, 1): eta p_k per query row

    def reduced_step(scores: torch.Tensor, t: torch.Tensor, logged: bool):
        """Scores (C, K, K) and counter after one GD step, with attention and loss when ``logged``."""
        attn, grad, loss = expected_quantities(scores, *batch.counts.at(t), loss=logged)  # (C, K, K) x2, (C, K)
        return scores - step_size * grad, t + 1, attn, loss

    step = compiled(reduced_step, batch.compile)
    scores = torch.zeros(len(batch.configs), batch.K, batch.K, device=batch.device, dtype=dtype)  # (C, K, K)
    t = torch.zeros((), device=batch.device, dtype=torch.long)  # step counter
    for index in range(batch.steps + 1):  # the update after the last step is not used
        logged = batch.recorder.wants(index)
        before = scores.clone() if logged else None  # a CUDA-graph replay may reuse the memory of ``scores``
        following, t, attn, loss = step(scores, t, logged)
        if logged:
            batch.recorder.record(index, before, attn, loss)
        scores = following
    return batch.recorder.result("reduced")


def simulate_full(configs: Sequence[SoftmaxConfig] | SoftmaxConfig, *, device="cpu",
                  dtype: torch.dtype = torch.float64, grad: str = "manual", features: str = "standard",
                  count_samples: int = DEFAULT_COUNT_SAMPLES, exact_limit: int = EXACT_ENUMERATION_LIMIT,
                  compile: bool | str | None = None) -> SoftmaxTrajectory:
    """Minibatch GD of the full model on explicit prompts, ``Q -= eta grad``, from ``Q = 0``.

    docs/softmax_dynamics.md §1 (stated).

    Parameters
    ----------
    configs : one config or a batch sharing ``steps``, ``log_every`` and ``batch``; N must be finite
        (mixed N and d are padded exactly).
    device, dtype : where and in which precision to run (float64 by default).
    grad : ``"manual"`` (hand-written, token level, :func:`sims.softmax.full.manual_gradient`),
        ``"autograd"``, or ``"counts"`` (the same gradient through each prompt's count vector: K terms per
        prompt instead of N; equal to ``"manual"`` to float64 roundoff, not bit for bit).
    features : ``"standard"`` (``v_k = e_k``) or ``"random"`` (orthonormal V from the seed).
    count_samples, exact_limit : the expectation over counts used for the logged attention and losses.
    compile : as in :func:`simulate_reduced`, for the GD step (:class:`sims.softmax.full.FullStep`).

    Returns
    -------
    SoftmaxTrajectory with ``model="full"``; scores are ``s_{k,n} = v_n^T Q v_k``, and attention and
    per-query losses are the expectation over ``Multinomial(N, p)`` counts at those scores, computed by
    the same code as in :func:`simulate_reduced`.
    """
    _check_full(configs, grad, features)
    batch = _Batch(configs, device, dtype, count_samples, exact_limit, compile)
    full = FullStep.build(batch.configs, batch.device, dtype, grad, features)
    step = compiled(full, batch.compile)
    Q, t = full.start()  # (C, d, d) zeros, step counter 0
    for index in range(batch.steps + 1):
        if batch.recorder.wants(index):
            scores = scores_from_Q(Q, full.V)  # (C, K, K)
            attn, _, loss = expected_quantities(scores, *batch.counts.at(index), grad=False)
            batch.recorder.record(index, scores, attn, loss)
        if index < batch.steps:
            Q, t = step(Q, t)  # (C, d, d), ()
    return batch.recorder.result("full")


def _check_full(configs, grad: str, features: str) -> None:
    """Full-model-only input checks (the rest is :func:`sims.softmax.config.check_batch`)."""
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
