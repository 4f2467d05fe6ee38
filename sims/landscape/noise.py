"""Birth-death resampling and noise injection for batched particle systems (docs/attention_landscape.md §6).

Both draw from the counter-based generator (:mod:`sims.counter_rng`) keyed by (config seed, stream,
step, particle, coordinate), so a config's events never depend on its batch mates, and neither needs a
host synchronisation.

Birth-death (Rotskoff, Jelassi, Bruna & Vanden-Eijnden, "Global convergence of neuron birth-death
dynamics", ICML 2019, in its conservative form that keeps M fixed). With beta_i = V(theta_i) - mean_j
V(theta_j) and rate parameter alpha, in a step of length lr each particle independently has an event
with probability 1 - exp(-alpha lr |beta_i|) (the exact Poisson probability of at least one event;
= alpha lr |beta_i| + O(lr^2)). An event is paired with its compensating opposite so that M is fixed:

- beta_i > 0 (particle i is worse than average): i is killed; its slot receives a copy of a partner
  j drawn uniformly from all M particles;
- beta_i < 0: i is duplicated; the copy overwrites a partner j drawn uniformly from all M particles.

So every event is one write "slot <- source": (slot, source) = (i, j) for a kill, (j, i) for a
duplication. All reads use the state before resampling (synchronous update). When several events write
the same slot, the one with the lowest particle index i wins and the others are dropped (deterministic;
a scatter-min over event indices); j = i is a no-op. Dropped events are O((alpha lr)^2 M) per step,
second order in lr like the splitting error itself.

Noise injection: when the mean ||grad V||^2 over particles of a config is below its threshold,
theta_i += noise sqrt(lr) xi_i, xi_i ~ N(0, I_{k+d}) iid (a Euler-Maruyama step of Langevin noise of
temperature noise^2 / 2, switched on near critical points).
"""
from __future__ import annotations

import torch
from torch import Tensor

from sims.counter_rng import normals, stream_keys, uniforms
from sims.landscape.init import MeanFieldStream

__all__ = ["birth_death_keys", "noise_keys", "birth_death_step", "noise_step"]


def birth_death_keys(seeds: Tensor, steps: int) -> Tensor:
    """(C, steps) counter keys of the birth-death draws of every config and step (built once, so the
    step loop only slices a device tensor). Provenance: ours (reproducibility policy)."""
    return stream_keys(seeds, MeanFieldStream.BIRTH_DEATH, torch.arange(steps, device=seeds.device))


def noise_keys(seeds: Tensor, steps: int) -> Tensor:
    """(C, steps, 2) counter keys (Box-Muller radius, angle) of the noise of every config and step.
    Provenance: ours (reproducibility policy)."""
    keys = stream_keys(seeds, MeanFieldStream.NOISE, torch.arange(2 * steps, device=seeds.device))  # (C, 2 steps)
    return keys.view(-1, steps, 2)


def birth_death_step(keys: Tensor, V: Tensor, rate_dt: Tensor,
                     *states: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One conservative birth-death resampling of C particle systems (see the module docstring).

    Event probability 1 - exp(-alpha lr |V_i - mean V|); kills (V_i above the mean) receive a copy of a
    uniform partner, duplications overwrite a uniform partner; lowest event index wins a contested
    slot. Birth-death in the style of Rotskoff et al. 2019 (stated in form by the paper: a particle is
    killed or duplicated at a rate proportional to V_i - mean V, M fixed; docs/attention_landscape.md §6); the pairing
    and conflict rule are ours.

    Parameters
    ----------
    keys : Tensor
        (C,) int64 counter keys of this step (a column of :func:`birth_death_keys`).
    V : Tensor
        (C, M) first variation at the particles (before the step).
    rate_dt : Tensor
        (C,) alpha * lr per config (0 switches birth-death off for that config).
    states : Tensor
        Arrays (C, M, ...) to resample consistently (e.g. a and w after the flow step).

    Returns
    -------
    (Tensor, tuple of Tensor)
        (C,) number of writes actually applied, and the resampled states.
    """
    C, M = V.shape
    device = V.device
    u = uniforms(keys, 2, M)  # (C, 2, M): row 0 event, row 1 partner
    beta = V - V.mean(-1, keepdim=True)  # (C, M)
    prob = -torch.expm1(-rate_dt[:, None] * beta.abs())  # (C, M) 1 - exp(-alpha lr |beta|)
    event = (u[:, 0] < prob) & torch.isfinite(beta)  # (C, M)
    index = torch.arange(M, device=device).expand(C, M)  # (C, M)
    partner = torch.clamp((u[:, 1] * M).long(), max=M - 1)  # (C, M) uniform on 0..M-1
    kill = beta > 0  # (C, M)
    slot = torch.where(kill, index, partner)  # (C, M)
    source = torch.where(kill, partner, index)  # (C, M)
    event = event & (slot != source)  # (C, M): j = i is a no-op
    sentinel = torch.full((C, M + 1), M, dtype=torch.long, device=device)  # (C, M + 1); column M = dump
    winner = sentinel.scatter_reduce(1, torch.where(event, slot, M), torch.where(event, index, M),
                                     reduce="amin")[:, :M]  # (C, M): winning event per slot, M if none
    written = winner < M  # (C, M)
    src = torch.where(written, source.gather(1, winner.clamp(max=M - 1)), index)  # (C, M)
    out = tuple(x.gather(1, src.view(C, M, *([1] * (x.ndim - 2))).expand_as(x)) for x in states)
    return written.sum(-1), out


def noise_step(keys: Tensor, scale: Tensor, a: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """theta_i += scale_c xi_i with xi_i ~ N(0, I_{k+d}) from the counter-based stream of each config.

    ``keys`` (C, 2) are this step's keys (a slice of :func:`noise_keys`); ``scale`` (C,) is
    noise * sqrt(lr) where the injection is on, 0 elsewhere. a (C, M, k), w (C, M, d).
    docs/attention_landscape.md §6 ("isotropic noise injected while the gradient is small", stated in form); the
    sqrt(lr) scaling (Euler-Maruyama) is ours.
    """
    C, M, k = a.shape
    xi = normals(keys[:, 0], keys[:, 1], M, k + w.shape[-1]).to(a.dtype)  # (C, M, k + d)
    xi = scale[:, None, None] * xi  # (C, M, k + d)
    return a + xi[..., :k], w + xi[..., k:]
