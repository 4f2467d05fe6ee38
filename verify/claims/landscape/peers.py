"""Peers in ``verify bench``: what a researcher would write instead, in plain torch, timed on the same work.

- :func:`meanfield_vs_monte_carlo`: one evaluation of the mean-field velocity field (every particle's
  -grad_theta V) by our exact-kernel route against a Monte Carlo peer that averages h_mu(x) h_mu(x)^T
  and f°(x) h_mu(x)^T over n samples x ~ N(0, I_d) and differentiates the resulting landscape with
  autograd, at the sample size n that reaches the same accuracy (1% and 0.1% relative RMS error of
  the field).  Our cost grows like M^2 (all pairs), the peer's like n M, so the ratio falls like 1/M;
  the M where they would cross is extrapolated from the largest M measured.
- :func:`softmax_vs_plain_torch`: one GD step of the full softmax model (:class:`sims.softmax.full.FullStep`)
  against the same step written with ``torch.multinomial`` prompts, an explicit token embedding and
  autograd.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from sims.landscape.flow import MeanFieldConfig, make_student, make_teacher, particle_field, teacher_covariance
from sims.seeds import derive
from theory.landscape.gaussian import activation_fn
from verify.timing import best_time

__all__ = ["mc_velocity", "meanfield_vs_monte_carlo"]


def _chunk_x(seed: int, i: int, chunk: int, d: int, like: Tensor) -> Tensor:
    gen = torch.Generator(device=like.device).manual_seed(derive(seed, i))
    return torch.randn(chunk, d, generator=gen, device=like.device, dtype=like.dtype)  # (chunk, d)


def mc_velocity(name: str, a: Tensor, w: Tensor, ta: Tensor, tw: Tensor, S_oo: Tensor, chunks: int,
                chunk: int = 4096, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The Monte Carlo peer's velocity field (M grad_a L, M grad_w L) of one measure, as plain torch.

    S_mm and S_om are averaged over n = ``chunks`` * ``chunk`` samples x (h = sigma(x W^T) a / M,
    f° = sigma(x W°^T) a° / M_o); L = 1/2 tr(S_oo - S_om S_mm^{-1} S_mo) with the exact S_oo; the gradient
    by autograd in two passes over the same chunks (statistics, then each chunk's backward with dL/dS
    fixed), so memory stays O(chunk M).  ``a`` (M, k), ``w`` (M, d), ``ta`` (M_o, k_o), ``tw`` (M_o, d).
    """
    f, (M, d), M_o = activation_fn(name), w.shape, ta.shape[0]

    def stats(aa: Tensor, ww: Tensor, i: int) -> tuple[Tensor, Tensor]:
        x = _chunk_x(seed, i, chunk, d, w)
        h = f(x @ ww.T) @ aa / M  # (chunk, k)
        fo = f(x @ tw.T) @ ta / M_o  # (chunk, k_o)
        return h.T @ h, fo.T @ h  # (k, k), (k_o, k)

    n = chunks * chunk
    with torch.no_grad():
        parts = [stats(a, w, i) for i in range(chunks)]
    S_mm = sum(p[0] for p in parts).div(n).requires_grad_()  # (k, k)
    S_om = sum(p[1] for p in parts).div(n).requires_grad_()  # (k_o, k)
    L = 0.5 * torch.trace(S_oo - S_om @ torch.linalg.solve(S_mm, S_om.T))
    G_mm, G_om = torch.autograd.grad(L, (S_mm, S_om))
    aa, ww = a.detach().requires_grad_(), w.detach().requires_grad_()
    grad_a, grad_w = torch.zeros_like(a), torch.zeros_like(w)
    for i in range(chunks):
        s_mm, s_om = stats(aa, ww, i)
        da, dw = torch.autograd.grad(((G_mm * s_mm).sum() + (G_om * s_om).sum()) / n, (aa, ww))
        grad_a += da
        grad_w += dw
    return M * grad_a, M * grad_w


def _field_error(ours: tuple[Tensor, Tensor], peer: tuple[Tensor, Tensor]) -> float:
    diff = sum(float((p - o).square().sum()) for o, p in zip(ours, peer))
    return math.sqrt(diff / sum(float(o.square().sum()) for o in ours))


def meanfield_vs_monte_carlo(device: torch.device, Ms: Sequence[int] = (250, 1000, 4000), *, d: int = 20,
                             k: int = 5, activation: str = "erf", targets: Sequence[float] = (0.01, 0.001),
                             accuracy_M: int = 250, chunk: int = 4096, max_chunks: int = 256) -> dict:
    """Our exact velocity field against the Monte Carlo peer at equal accuracy, as M grows.

    Accuracy: the relative RMS error of the peer's field ((grad_a, grad_w) of every particle) against
    ours, measured at ``accuracy_M`` particles with n = chunk, 2 chunk, 4 chunk, ... samples until it is
    below the largest target (one draw per n).  The sample size of each target follows from that last
    measurement by the Monte Carlo law error ~ n^{-1/2}: n(target) = n (error / target)^2 (so 0.1%
    needs about 100 times the samples of 1%; it is extrapolated, not run).  Times (best of 3, one
    field evaluation each): ours is :func:`sims.landscape.flow.particle_field` (fused route); the peer's is
    one chunk of :func:`mc_velocity` (both passes) times n / chunk, exact because the chunks are
    independent and equal.  ``ratio`` = peer time / ours per M and target; ``crossing_M`` the M where
    they would be equal, M_top * ratio(M_top), since ours grows like M^2 and the peer's like M.
    """
    def problem(M: int):
        cfg = MeanFieldConfig(d=d, k=k, M=M, activation=activation, steps=1, log_every=1, seed=0)
        a, w = make_student([cfg], device=device)  # (1, M, k), (1, M, d)
        ta, tw = make_teacher([cfg], device=device)  # (1, k, k), (1, k, d)
        return a, w, ta, tw, teacher_covariance(activation, ta, tw)  # S_oo (1, k, k)

    a, w, ta, tw, S_oo = problem(accuracy_M)
    field = particle_field(activation, a, w, ta, tw, S_oo=S_oo)
    exact = (field.grad_a[0], field.grad_w[0])
    chunks = 1
    while True:
        err = _field_error(exact, mc_velocity(activation, a[0], w[0], ta[0], tw[0], S_oo[0], chunks, chunk))
        if err <= max(targets) or chunks >= max_chunks:
            break
        chunks *= 2
    samples = {t: chunks * chunk * (err / t) ** 2 for t in targets}
    ours, per_sample = [], []
    for M in Ms:
        a, w, ta, tw, S_oo = problem(M)
        ours.append(best_time(lambda: particle_field(activation, a, w, ta, tw, S_oo=S_oo), device))
        one = best_time(lambda: mc_velocity(activation, a[0], w[0], ta[0], tw[0], S_oo[0], 1, chunk), device)
        per_sample.append(one / chunk)
    ratio = {f"{t:g}": [s * samples[t] / o for s, o in zip(per_sample, ours)] for t in targets}
    return {"activation": activation, "d": d, "k": k, "accuracy_M": accuracy_M, "measured_samples": chunks * chunk,
            "measured_error": err, "samples": {f"{t:g}": n for t, n in samples.items()}, "M": list(Ms),
            "ours_s": ours, "peer_s_per_sample": per_sample, "ratio": ratio,
            "crossing_M": {key: Ms[-1] * r[-1] for key, r in ratio.items()}}
