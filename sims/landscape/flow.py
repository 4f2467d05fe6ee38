"""Batched mean-field dynamics on the attention landscape of Kim & Suzuki (arXiv 2402.01258, ICML 2024).

docs/attention_landscape.md §4, §6 and §9. :func:`simulate` runs C configs that share their
shapes (d, k, M, activation, teacher) in one set of (C, ...) tensors, with a fixed step count, logging
into preallocated buffers and no host synchronisation inside the step loop:

- two-timescale particle flow (W = W*(mu_t) = S_mm^{-1}): explicit Euler in mean-field time,
  theta_i -= lr grad_theta V(theta_i), which is lr * M grad_{theta_i} L(theta_1..theta_M);
- joint training: an explicit W moved by one step of its optimiser (:mod:`sims.landscape.optim`; plain GD:
  W -= lr w_speed grad_W L_TF(mu_t, W)), while the particles follow the
  first variation of L_TF(., W) at the current W (:func:`sims.landscape.objective.variation_coefficients`);
- conservative birth-death and noise injection (:mod:`sims.landscape.noise`), each switchable per config;
- ``compile``: the field evaluation of a step (kernel means, landscape, first variation and its
  gradient) goes through ``torch.compile`` with static shapes, by default exactly on CUDA;
- singular S_mm: a config whose S_mm is non-finite or has cond > COND_MAX (theory's threshold) is
  marked failed at that step (``failed_at``), its particles and W frozen where the failure was
  detected, and its logs NaN from that step on (except lambda_min and cond of S_mm, which say why);
  the others run on. The check is tensor ops only (no host synchronisation); on the CPU, where reading it back
  is free, failed configs then leave the step loop (:class:`_Dropped`);
- tiles: on the CPU the kernel tiles of a large batch shrink so that they stay in cache (:func:`batch_tile`).

The pieces live in the other modules of ``sims/landscape/`` and are re-exported here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Sequence

import torch
from torch import Tensor

from sims.devices import checked_device, compile_mode, compiled
from sims.landscape.config import (
    DYNAMICS, PRESETS, TEACHERS, W_OPTIMIZERS, MeanFieldConfig, check_batch, preset,
)
from sims.landscape.finite_n import finite_n_estimate, finite_n_loss, finite_n_losses
from sims.landscape.init import make_student, make_teacher, perturb, saddle_escape_rate, strict_saddle
from sims.landscape.kernels import kernel_means, kernel_means_and_grad, step_tiles
from sims.landscape.objective import (
    BatchLandscape, batch_landscape, batched_grad_W, batched_loss_tf, symmetric_eigvals,
    variation_coefficients,
)
from sims.landscape.noise import birth_death_keys, birth_death_step, noise_keys, noise_step
from sims.landscape.optim import WOptimizerState, w_step
from sims.landscape.trajectory import MeanFieldRecorder, MeanFieldTrajectory, plateau_length
from theory.landscape.objective import ParticleMeasure
from theory.errors import InputError
from theory.landscape.gaussian import DEFAULT_TILE

__all__ = [
    "DYNAMICS",
    "TEACHERS",
    "PRESETS",
    "MeanFieldConfig",
    "MeanFieldTrajectory",
    "preset",
    "simulate",
    "ParticleField",
    "particle_field",
    "landscape",
    "teacher_covariance",
    "plateau_length",
    "strict_saddle",
    "perturb",
    "saddle_escape_rate",
    "finite_n_loss",
    "finite_n_losses",
    "finite_n_estimate",
    "batch_tile",
]

#: Floats of one (C, t, t) kernel-tile temporary :func:`batch_tile` aims at on the CPU (3 MiB of float64).
CPU_TILE_FLOATS = 3 << 17
#: Smallest CPU tile side :func:`batch_tile` picks (below it, per-tile overhead dominates).
MIN_CPU_TILE = 32


def _stack(measures: Sequence[ParticleMeasure], C: int, what: str, device, dtype) -> tuple[Tensor, Tensor]:
    """Stack C uniform particle measures into (C, M, k), (C, M, d); one-line InputError otherwise."""
    if len(measures) != C:
        raise InputError(f"{what}: got {len(measures)} measures for {C} configs")
    for i, mu in enumerate(measures):
        if not isinstance(mu, ParticleMeasure):
            raise InputError(f"{what} {i} is a {type(mu).__name__}, not a ParticleMeasure")
        if not (bool(torch.isfinite(mu.a).all()) and bool(torch.isfinite(mu.w).all())):
            raise InputError(f"{what} {i} contains NaN or inf")
        if mu.p is not None and not torch.allclose(mu.p, torch.full_like(mu.p, 1.0 / len(mu.p)),
                                                   rtol=0, atol=1e-12):
            raise InputError(f"{what} {i} must have uniform weights (the sims move equal-mass particles)")
    shapes = {(tuple(mu.a.shape), tuple(mu.w.shape)) for mu in measures}
    if len(shapes) > 1:
        raise InputError(f"{what}: all measures of a batch need the same shapes, got {sorted(shapes)}")
    a = torch.stack([mu.a for mu in measures]).to(device=device, dtype=dtype)  # (C, M, k)
    w = torch.stack([mu.w for mu in measures]).to(device=device, dtype=dtype)  # (C, M, d)
    return a, w


def batch_tile(tile: int, C: int, M: int, device: torch.device) -> int:
    """Kernel tile side for a batch of C configs of M particles: ``tile`` on accelerators; on the CPU at most
    sqrt(:data:`CPU_TILE_FLOATS` / C) (but at least :data:`MIN_CPU_TILE`), so that the (C, t, t) temporaries of a
    tile stay in cache, evened out so that the M particles fall into equal blocks (``tile`` itself where that
    bound does not bind). Numbers change only by the order of the tile sums (rounding).

    Provenance: ours (performance policy). Measured on a 2-core CPU, one thread, CPU time per step: C = 20
    probit configs of M = 500 (the attention-vs-static sweep): 0.35 s with tiles of 500 (40 MB temporaries,
    fresh pages at every step: ~9e4 page faults per step), 0.26 s with 250, 0.15 s with 167, 0.10 s with 125,
    0.11 s with 100; C = 32 configs of M = 100 (generic initialisations), where this budget keeps one tile: two
    tiles of 50 would be ~20% faster for erf but 10-20% slower for sigmoid (Hermite series).
    """
    side = max(MIN_CPU_TILE, math.isqrt(CPU_TILE_FLOATS // C))
    if device.type != "cpu" or side >= min(tile, M):
        return tile
    return -(-M // -(-M // side))  # ceil(M / blocks), blocks = ceil(M / side)


class _Dropped:
    """Configs taken out of the step loop once they failed (``failed_at``): their state is frozen and their logs
    are NaN from then on, except lambda_min and cond (those of the frozen state) and the counts, so stepping
    them is wasted work. Holds what the trajectory needs of them: final particles, failure step, frozen logs.

    The configs left run on as a smaller batch, which moves their numbers by rounding only (a batched matmul may
    round a slice differently beside other batch mates: tests/property/test_meanfield_properties.py). Deciding
    reads ``alive`` back to the host: free on the CPU, so only there; accelerators step every config to the end.
    Provenance: ours (performance; the logged trajectory is the one of the whole batch).
    """

    def __init__(self, a: Tensor, w: Tensor):
        C, dev = a.shape[0], a.device
        self.rows = torch.arange(C, device=dev)  # (C_left,) batch index of each config still stepped
        self.failed_at = torch.full((C,), -1, dtype=torch.long, device=dev)  # (C,)
        self.a, self.w = a.clone(), w.clone()  # (C, M, k), (C, M, d): final particles of the dropped configs
        self.frozen = {name: torch.full((C,), math.nan, dtype=a.dtype, device=dev) for name in ("lambda_min", "cond")}
        self.frozen.update({name: torch.zeros(C, dtype=torch.long, device=dev) for name in ("events", "noise_steps")})

    def drop(self, alive: Tensor, failed_at: Tensor, a: Tensor, w: Tensor, logs: dict[str, Tensor]) -> None:
        """Keep what the configs still stepped (C_left,) that are no longer ``alive`` leave behind (``logs``: their
        lambda_min, cond and counts, (C_left,) each); the others stay."""
        dead, gone = ~alive, self.rows[~alive]
        self.failed_at[gone] = failed_at[dead]
        self.a[gone], self.w[gone] = a[dead], w[dead]
        for name, value in logs.items():
            self.frozen[name][gone] = value[dead]
        self.rows = self.rows[alive]

    def full(self, part: Tensor, fill) -> Tensor:
        """(C, ...) with ``part`` (C_left, ...) at the configs still stepped and ``fill`` (a number, or a (C, ...)
        tensor) at the dropped ones; ``part`` itself while none was dropped."""
        C = len(self.failed_at)
        if len(self.rows) == C:
            return part
        out = fill.clone() if isinstance(fill, Tensor) else torch.full((C, *part.shape[1:]), fill, dtype=part.dtype,
                                                                        device=part.device)
        out[self.rows] = part
        return out


def _per_config(configs, fn, device, dtype=torch.float64) -> Tensor:
    return torch.tensor([fn(c) for c in configs], dtype=dtype, device=device)  # (C,)


def teacher_covariance(name: str, ta: Tensor, tw: Tensor, *, tile: int = DEFAULT_TILE,
                       order: int | None = None) -> Tensor:
    """S_oo = (1/M_o^2) sum_jl a°_j a°_l^T K(w°_j, w°_l) for C uniform teachers.

    docs/attention_landscape.md §1 (stated).

    ta (C, M_o, k_o), tw (C, M_o, d) -> (C, k_o, k_o), exactly symmetric.
    """
    M_o = ta.shape[1]
    S_oo = ta.mT @ kernel_means(name, tw, tw, ta / M_o, tile=tile, order=order) / M_o  # (C, k_o, k_o)
    return 0.5 * (S_oo + S_oo.mT)


def landscape(name: str, a: Tensor, w: Tensor, ta: Tensor, tw: Tensor, *, S_oo: Tensor | None = None,
              tile: int = DEFAULT_TILE, order: int | None = None,
              tiles=None) -> tuple[BatchLandscape, Tensor, Tensor]:
    """Landscape of C uniform student measures against C uniform teachers, and the kernel means.

    One tiled kernel pass over the sources (w_j, w°_l) gives c_m(w_i) = (1/M) sum_j a_j K(w_i, w_j) and
    c_o(w_i) = (1/M_o) sum_l a°_l K(w_i, w°_l); then :func:`sims.landscape.objective.batch_landscape`.
    docs/attention_landscape.md §1-§4.

    Parameters
    ----------
    a, w : Tensor
        (C, M, k), (C, M, d) student particles.
    ta, tw : Tensor
        (C, M_o, k_o), (C, M_o, d) teacher particles.
    S_oo : Tensor, optional
        (C, k_o, k_o) teacher covariance if already known (:func:`teacher_covariance`).
    tiles : optional
        :func:`sims.landscape.kernels.step_tiles` of w against (w, w°), shared with the gradient pass.

    Returns
    -------
    (BatchLandscape, Tensor, Tensor)
        The landscape, c_m (C, M, k) and c_o (C, M, k_o).
    """
    C, M, k = a.shape
    M_o, k_o = ta.shape[1], ta.shape[2]
    if S_oo is None:
        S_oo = teacher_covariance(name, ta, tw, tile=tile, order=order)
    src = torch.cat([w, tw], 1)  # (C, M + M_o, d)
    coef = torch.cat([torch.cat([a / M, a.new_zeros(C, M, k_o)], 2),
                      torch.cat([a.new_zeros(C, M_o, k), ta / M_o], 2)], 1)  # (C, M + M_o, k + k_o)
    means = kernel_means(name, w, src, coef, tile=tile, order=order, shared=True, tiles=tiles)  # (C, M, k + k_o)
    c_m, c_o = means[..., :k], means[..., k:]  # (C, M, k), (C, M, k_o)
    return batch_landscape(a, c_m, c_o, S_oo), c_m, c_o


@dataclass
class ParticleField:
    """First variation and velocity field at the particles of C measures (docs/attention_landscape.md §4).

    Attributes
    ----------
    land : BatchLandscape
        Covariances, conditioning, B, S_mu, L.
    W : Tensor
        (C, k, k) the W in use: W* = S_mm^{-1} (two-timescale) or the explicit W (joint).
    V : Tensor
        (C, M) first variation V(theta_i).
    grad_a, grad_w : Tensor
        (C, M, k), (C, M, d) grad_theta V at the particles; the velocity is minus these.
    grad_sq : Tensor
        (C,) mean over particles of ||grad_theta V(theta_i)||^2.
    """

    land: BatchLandscape
    W: Tensor
    V: Tensor
    grad_a: Tensor
    grad_w: Tensor
    grad_sq: Tensor


def particle_field(name: str, a: Tensor, w: Tensor, ta: Tensor, tw: Tensor, *, W: Tensor | None = None,
                   joint: Tensor | None = None, S_oo: Tensor | None = None, tile: int = DEFAULT_TILE,
                   order: int | None = None) -> ParticleField:
    """V(theta_i) and grad_theta V(theta_i) for C uniform particle measures.

    V(theta) = a^T g(w), g(w) = 2 G_mm c_m(w) + G_mo c_o(w) with (G_mm, G_mo) from
    :func:`sims.landscape.objective.variation_coefficients`: for L (W None, or configs where ``joint``
    is False) V = -a^T B (c_o - B^T c_m) (docs/attention_landscape.md §4; derived); for L_TF(., W) at the given W
    (configs where ``joint`` is True, all if ``joint`` is None and W is given) the first variation at
    fixed W (derived). grad_a V = g(w_i); grad_w V from the kernel's derivative in its first argument
    (:func:`sims.landscape.kernels.kernel_means_and_grad`: analytic partials for the closed forms,
    autograd for quadrature). With uniform weights the velocity
    -grad_theta V(theta_i) equals -M grad_{theta_i} of the loss (mean-field time).

    Returns
    -------
    ParticleField
    """
    src = torch.cat([w, tw], 1)  # (C, M + M_o, d)
    tiles = step_tiles(name, w, src, tile=tile, order=order, shared=True)  # both kernel passes of the step
    land, c_m, c_o = landscape(name, a, w, ta, tw, S_oo=S_oo, tile=tile, order=order, tiles=tiles)
    M, M_o = a.shape[1], ta.shape[1]
    G_mm, G_mo = variation_coefficients(land)  # (C, k, k), (C, k, k_o)
    W_use = land.W_star
    if W is not None:
        use = torch.ones(a.shape[0], dtype=torch.bool, device=a.device) if joint is None else joint  # (C,)
        J_mm, J_mo = variation_coefficients(land, W)
        G_mm = torch.where(use[:, None, None], J_mm, G_mm)
        G_mo = torch.where(use[:, None, None], J_mo, G_mo)
        W_use = torch.where(use[:, None, None], W, land.W_star)  # (C, k, k)
    g = 2.0 * c_m @ G_mm.mT + c_o @ G_mo.mT  # (C, M, k) = grad_a V
    V = (a * g).sum(-1)  # (C, M)
    coef = torch.cat([a @ (2.0 * G_mm).mT / M, ta @ G_mo.mT / M_o], 1)  # (C, M + M_o, k)
    grad_w = kernel_means_and_grad(name, w, a, src, coef, tile=tile, order=order, shared=True,
                                   tiles=tiles)  # (C, M, d)
    grad_sq = ((g * g).sum(-1) + (grad_w * grad_w).sum(-1)).mean(-1)  # (C,)
    return ParticleField(land, W_use, V, g, grad_w, grad_sq)


def simulate(configs: Sequence[MeanFieldConfig] | MeanFieldConfig, *, device="cpu",
             dtype: torch.dtype = torch.float64, init: Sequence[ParticleMeasure] | None = None,
             teachers: Sequence[ParticleMeasure] | None = None,
             tile: int = DEFAULT_TILE, compile: bool | str | None = None) -> MeanFieldTrajectory:
    """Run C mean-field configs in one batch and return their logged trajectories.

    Each step evaluates, at the current particles theta_i = (a_i, w_i) and W:
    the kernel means c_m(w_i) = (1/M) sum_j a_j K(w_i, w_j), c_o(w_i) = (1/M_o) sum_l a°_l K(w_i, w°_l);
    S_mm, S_mo, conditioning, B, S_mu, L (:func:`sims.landscape.objective.batch_landscape`); the first
    variation V(theta) = a^T g(w), g(w) = 2 G_mm c_m(w) + G_mo c_o(w), for L (two-timescale,
    docs/attention_landscape.md §4: V = -a^T B (c_o - B^T c_m)) or for L_TF(., W) at the current W (joint;
    derived), and its gradient grad_a V = g(w), grad_w V from the kernel's derivative in its first argument.
    It logs when due, then updates (explicit Euler in mean-field time t = step * lr):

    1. theta_i <- theta_i - lr grad_theta V(theta_i) (= lr M grad_{theta_i} of the loss);
    2. joint: one step of the config's W optimiser of size lr w_speed on L_TF(mu_t, .) (``gd``:
       W <- W - lr w_speed grad_W L_TF(mu_t, W), theory's grad_W_loss_tf; :mod:`sims.landscape.optim`);
    3. noise: if mean_i ||grad V(theta_i)||^2 < noise_threshold, theta_i += noise sqrt(lr) xi_i;
    4. birth-death (rate alpha = ``birth_death``), with V - mean V evaluated at the pre-step state and
       the copies taken from the state after 1-3 (Lie splitting; :mod:`sims.landscape.noise`).

    A config whose S_mm is non-finite or has cond(S_mm) > COND_MAX is frozen from that step and its
    logs are NaN (``failed_at``; see :class:`MeanFieldTrajectory`).

    docs/attention_landscape.md §4, §6, §9 (dynamics derived from the stated losses; the update rules are ours).

    Parameters
    ----------
    configs : MeanFieldConfig or sequence
        A batch sharing :data:`sims.landscape.config.BATCH_SHARED`.
    device, dtype : where and in which precision (float64 default; identities are tested at float64).
    init : sequence of ParticleMeasure, optional
        One uniform student measure per config (e.g. :func:`strict_saddle` + :func:`perturb`);
        default :func:`sims.landscape.init.make_student`.
    teachers : sequence of ParticleMeasure, optional
        One uniform teacher per config; default :func:`sims.landscape.init.make_teacher`.
    tile : int
        Kernel tile side of one config (:func:`sims.landscape.kernels.tile_side`); a batch of C configs on the CPU
        uses :func:`batch_tile`. The M x M kernel is never formed.
    compile : bool, str or None
        ``torch.compile`` the field evaluation of a step (:func:`particle_field`, static shapes), as
        :func:`sims.softmax.dynamics.compile_mode` reads it: None follows ``$VERIFY_COMPILE`` (unset: on
        exactly when the device is CUDA). Compiled numbers equal eager ones to rounding (fused kernels
        reorder sums), not bit for bit.

    Returns
    -------
    MeanFieldTrajectory
        On the CPU.
    """
    batch = check_batch(configs)
    dev = checked_device(device)
    cfg = batch[0]
    C, M, name, order = len(batch), cfg.M, cfg.activation, cfg.quad_order
    if init is None:
        a, w = make_student(batch, device=dev, dtype=dtype)  # (C, M, k), (C, M, d)
    else:
        a, w = _stack(init, C, "init", dev, dtype)
        if a.shape[1:] != (M, cfg.k) or w.shape[2] != cfg.d:
            raise InputError(f"init particles have shapes a {tuple(a.shape[1:])}, w {tuple(w.shape[1:])}; "
                             f"configs need a ({M}, {cfg.k}), w ({M}, {cfg.d})")
    if teachers is None:
        ta, tw = make_teacher(batch, device=dev, dtype=dtype)  # (C, M_o, k_o), (C, M_o, d)
    else:
        ta, tw = _stack(teachers, C, "teacher", dev, dtype)
        if tw.shape[2] != cfg.d:
            raise InputError(f"teacher directions have d = {tw.shape[2]}, configs have d = {cfg.d}")
    k, k_o = a.shape[2], ta.shape[2]
    kern = dict(tile=batch_tile(tile, C, M, dev), order=order)

    # static per-config parameters (C,)
    lr = _per_config(batch, lambda c: c.lr, dev, dtype)
    w_rate = _per_config(batch, lambda c: c.lr * c.w_speed, dev, dtype)
    joint = _per_config(batch, lambda c: c.dynamics == "joint", dev, torch.bool)
    optimal_init = _per_config(batch, lambda c: c.w_init == "optimal", dev, torch.bool)
    w_kind = _per_config(batch, lambda c: W_OPTIMIZERS.index(c.w_optimizer), dev, torch.long)
    rate_dt = _per_config(batch, lambda c: c.birth_death * c.lr, dev, dtype)
    noise_scale = _per_config(batch, lambda c: c.noise * math.sqrt(c.lr), dev, dtype)
    threshold = _per_config(batch, lambda c: c.noise_threshold if c.noise > 0 else 0.0, dev, dtype)
    noise_var = _per_config(batch, lambda c: c.label_noise, dev, dtype)
    seeds = _per_config(batch, lambda c: c.seed, dev, torch.long)
    any_joint = any(c.dynamics == "joint" for c in batch)
    any_noise = any(c.noise > 0 and c.noise_threshold > 0 for c in batch)
    any_bd = any(c.birth_death > 0 for c in batch)

    S_oo = teacher_covariance(name, ta, tw, **kern)  # (C, k_o, k_o), fixed
    W = a.new_zeros(C, k, k)  # (C, k, k) explicit W of joint dynamics
    w_state = WOptimizerState.zeros(W)
    failed_at = torch.full((C,), -1, dtype=torch.long, device=dev)  # (C,)
    alive = torch.ones(C, dtype=torch.bool, device=dev)  # (C,)
    events = torch.zeros(C, dtype=torch.long, device=dev)  # (C,)
    noise_steps = torch.zeros(C, dtype=torch.long, device=dev)  # (C,)
    recorder = MeanFieldRecorder(batch, k_o, dev, dtype)
    mode = compile_mode(compile, dev)
    field_of = compiled(partial(particle_field, name, S_oo=S_oo, **kern), mode)
    drop = _Dropped(a, w) if dev.type == "cpu" else None
    teacher = (ta, tw)  # (C, M_o, k_o), (C, M_o, d) of every config, for the result
    bd_keys = birth_death_keys(seeds, cfg.steps) if any_bd else None  # (C, steps)
    xi_keys = noise_keys(seeds, cfg.steps) if any_noise else None  # (C, steps, 2)

    for step in range(cfg.steps + 1):
        if step == 0 and any_joint:
            W0 = landscape(name, a, w, ta, tw, S_oo=S_oo, **kern)[0].W_star  # (C, k, k)
            W = torch.where((joint & optimal_init)[:, None, None], W0, W)
        field = field_of(a, w, ta, tw, W=W if any_joint else None, joint=joint if any_joint else None)
        land, g, grad_w, V, grad_sq, W_use = (field.land, field.grad_a, field.grad_w, field.V,
                                              field.grad_sq, field.W)
        failed_at = torch.where(alive & ~land.ok, step, failed_at)
        alive = alive & land.ok

        if recorder.wants(step):
            values = {
                "loss": land.loss + 0.5 * noise_var,
                "loss_tf": batched_loss_tf(land.S_mm, land.S_om, S_oo, W_use, noise_var),
                "lambda_min": land.lambda_min, "cond": land.cond,
                "s_mu_eig": symmetric_eigvals(land.S_mu),  # (C, k_o)
                "saddle": land.saddle, "grad_sq": grad_sq,
            }
            counts = {"events": events, "noise_steps": noise_steps}
            if drop is not None:  # the whole batch: dropped configs are not alive, with their frozen logs
                values = {key: drop.full(value, drop.frozen.get(key, math.nan)) for key, value in values.items()}
                counts = {key: drop.full(value, drop.frozen[key]) for key, value in counts.items()}
            recorder.record(step, alive if drop is None else drop.full(alive, False), values, counts)
        if step == cfg.steps:
            break

        a_new = a - lr[:, None, None] * g  # (C, M, k)
        w_new = w - lr[:, None, None] * grad_w  # (C, M, d)
        if any_joint:
            W_new = w_step(w_kind, W, batched_grad_W(land.S_mm, land.S_om, S_oo, W), land.W_star, w_rate,
                           w_state)  # (C, k, k)
            W = torch.where((joint & alive)[:, None, None], W_new, W)
        if any_noise:
            on = alive & (grad_sq < threshold)  # (C,)
            a_new, w_new = noise_step(xi_keys[:, step], torch.where(on, noise_scale, 0.0), a_new, w_new)
            noise_steps = noise_steps + on.long()
        if any_bd:
            written, (a_new, w_new) = birth_death_step(bd_keys[:, step], V, rate_dt, a_new, w_new)
            events = events + torch.where(alive, written, 0)
        a = torch.where(alive[:, None, None], a_new, a)
        w = torch.where(alive[:, None, None], w_new, w)
        if drop is not None and 0 < int(alive.sum()) < len(alive):  # one read-back; the last one is never dropped
            keep = alive  # (C_left,)
            drop.drop(keep, failed_at, a, w, {"lambda_min": land.lambda_min, "cond": land.cond, "events": events,
                                              "noise_steps": noise_steps})
            (a, w, ta, tw, W, S_oo, lr, w_rate, joint, w_kind, rate_dt, noise_scale, threshold, noise_var, failed_at,
             alive, events, noise_steps) = (x[keep] for x in (a, w, ta, tw, W, S_oo, lr, w_rate, joint, w_kind, rate_dt,
                                                                noise_scale, threshold, noise_var, failed_at, alive,
                                                                events, noise_steps))
            bd_keys, xi_keys = (None if x is None else x[keep] for x in (bd_keys, xi_keys))
            w_state = w_state.select(keep)
            field_of = compiled(partial(particle_field, name, S_oo=S_oo, **kern), mode)

    W_final = torch.where(alive[:, None, None], W_use, torch.full_like(W_use, math.nan))
    if drop is not None:
        failed_at, a, w, W_final = (drop.full(failed_at, drop.failed_at), drop.full(a, drop.a), drop.full(w, drop.w),
                                    drop.full(W_final, math.nan))
    return recorder.result(failed_at, a, w, W_final, *teacher)
