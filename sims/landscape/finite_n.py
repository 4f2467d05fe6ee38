"""The finite-prompt attention model on sampled prompts: the cross-check of the n = infinity landscape.

docs/attention_landscape.md §1 and §8 (Kim & Suzuki, arXiv 2402.01258, section 2): a prompt
is x_1..x_n, x_q ~ N(0, I_d) iid, a task v ~ N(0, I_k) (E[v v^T] = I), labels y_i = v^T f°(x_i) + eps_i
with eps_i ~ N(0, s^2); the model predicts y_hat = (1/n) sum_i y_i h_mu(x_i)^T W h_mu(x_q) and the loss
is 1/2 (y_q - y_hat)^2, averaged over prompts. Its expectation is L^n_TF, whose exact value (by
quadrature) is :func:`theory.landscape.objective.finite_n_loss`, and which tends to L_TF(mu, W) as
n -> infinity.

Every random number is a pure function of (seed, stream, prompt index, token, coordinate)
(:mod:`sims.counter_rng`), so results do not depend on the chunk size or on other prompts.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from sims.counter_rng import COUNTER_STRIDE, normals, stream_keys
from sims.landscape.config import MeanFieldConfig
from sims.landscape.init import MeanFieldStream, make_teacher
from theory.landscape.objective import ParticleMeasure, features
from theory.errors import InputError
from theory.landscape.gaussian import MCEstimate

__all__ = ["finite_n_losses", "finite_n_loss", "finite_n_estimate"]


def _prompt_normals(seed: int, stream: int, first: int, count: int, rows: int, cols: int,
                    device) -> Tensor:
    """(count, rows, cols) normals of prompts first..first+count-1; each prompt has its own keys."""
    prompts = torch.arange(first, first + count, device=device)  # (count,)
    seeds = torch.tensor([seed], dtype=torch.long, device=device)  # (1,)
    radius = stream_keys(seeds, stream, 2 * prompts)[0]  # (count,)
    angle = stream_keys(seeds, stream, 2 * prompts + 1)[0]  # (count,)
    return normals(radius, angle, rows, cols)  # (count, rows, cols)


def finite_n_losses(config: MeanFieldConfig, particles: ParticleMeasure, W: Tensor, n: int, prompts: int,
                    seed: int, *, teacher: ParticleMeasure | None = None, chunk: int = 4096) -> Tensor:
    """Per-prompt losses 1/2 (y_q - y_hat)^2 of the finite-n attention model, shape (prompts,).

    y_hat = (1/n) sum_i y_i h_mu(x_i)^T W h_mu(x_q) (docs/attention_landscape.md §1, stated model), label noise
    variance ``config.label_noise``. ``particles`` is the student (its weights are used as given);
    ``teacher`` defaults to the config's teacher (:func:`sims.landscape.init.make_teacher`). h and f°
    are theory's :func:`~theory.landscape.objective.features`. Prompts are drawn ``chunk`` at a time;
    the numbers do not depend on ``chunk``.
    """
    config.validate()
    if not (isinstance(n, int) and n >= 1):
        raise InputError(f"prompt length n must be an integer >= 1, got {n!r}")
    if not (isinstance(prompts, int) and prompts >= 2):
        raise InputError(f"need at least 2 prompts for a standard error, got {prompts!r}")
    d = config.d
    if (n + 1) * d > COUNTER_STRIDE:
        raise InputError(f"(n + 1) * d = {(n + 1) * d} exceeds {COUNTER_STRIDE} draws per prompt")
    device, dtype = W.device, W.dtype
    if teacher is None:
        ta, tw = make_teacher((config,), device=device, dtype=dtype)
        teacher = ParticleMeasure(ta[0], tw[0])
    if particles.w.shape[1] != d or teacher.w.shape[1] != d:
        raise InputError(f"particles and teacher must have d = {d} input coordinates")
    k_o, name, s = teacher.a.shape[1], config.activation, math.sqrt(config.label_noise)
    out = []
    for first in range(0, prompts, chunk):
        b = min(chunk, prompts - first)
        x = _prompt_normals(seed, MeanFieldStream.PROMPT_X, first, b, n + 1, d, device)  # (b, n+1, d)
        x = x.to(dtype)
        v = _prompt_normals(seed, MeanFieldStream.PROMPT_V, first, b, 1, k_o, device)[:, 0].to(dtype)  # (b, k_o)
        y = (features(name, teacher, x) * v[:, None, :]).sum(-1)  # (b, n + 1)
        if s > 0:
            y = y + s * _prompt_normals(seed, MeanFieldStream.PROMPT_EPS, first, b, 1, n + 1,
                                        device)[:, 0].to(dtype)  # (b, n + 1)
        h = features(name, particles, x)  # (b, n + 1, k)
        context = (y[:, :n, None] * h[:, :n]).mean(1)  # (b, k): (1/n) sum_i y_i h(x_i)
        y_hat = ((context @ W) * h[:, n]).sum(-1)  # (b,)
        out.append(0.5 * (y[:, n] - y_hat) ** 2)  # (b,)
    return torch.cat(out)


def finite_n_loss(config: MeanFieldConfig, particles: ParticleMeasure, W: Tensor, n: int, prompts: int,
                  seed: int, *, teacher: ParticleMeasure | None = None, chunk: int = 4096) -> Tensor:
    """Empirical finite-n loss: the mean of :func:`finite_n_losses` over ``prompts`` prompts (0-d).

    An unbiased estimate of L^n_TF = L_TF + (1/(2n)) E||(f° h^T - S_om) W h_q||^2 (+ label-noise terms)
    (docs/attention_landscape.md §8, derived; theory's :func:`~theory.landscape.objective.finite_n_loss` computes it
    exactly).
    """
    return finite_n_losses(config, particles, W, n, prompts, seed, teacher=teacher, chunk=chunk).mean()


def finite_n_estimate(config: MeanFieldConfig, particles: ParticleMeasure, W: Tensor, n: int, prompts: int,
                      seed: int, *, teacher: ParticleMeasure | None = None, chunk: int = 4096) -> MCEstimate:
    """Mean and standard error (sample std / sqrt(prompts)) of the empirical finite-n loss.

    docs/attention_landscape.md §8 (the model is stated; the estimator is ours: prompts are iid, so the standard
    error of the mean is the sample standard deviation over sqrt(prompts)).

    Returns
    -------
    theory.landscape.gaussian.MCEstimate
        ``mean`` and ``stderr``, 0-d tensors.
    """
    losses = finite_n_losses(config, particles, W, n, prompts, seed, teacher=teacher, chunk=chunk)
    return MCEstimate(losses.mean(), losses.std() / math.sqrt(prompts))
