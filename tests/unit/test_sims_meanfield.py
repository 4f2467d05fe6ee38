"""Unit tests of sims.landscape.flow* (docs/attention_landscape.md §1-§9).

Tolerances: float64 unit roundoff is 1.1e-16. Quantities that two routes compute from the same
covariances agree to ~cond(S_mm) * eps; we use 1e-12 where cond <= ~1e2 (checked in the test).
Statistical comparisons state their standard error. Dynamics claims (plateau slope, birth-death,
joint tracking) quote the measured numbers they were calibrated on in comments.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from sims.landscape.flow import (
    PRESETS, MeanFieldConfig, MeanFieldTrajectory, finite_n_estimate, finite_n_loss, landscape,
    particle_field, perturb, plateau_length, preset, saddle_escape_rate, simulate, strict_saddle,
)
from sims.landscape.config import check_batch
from sims.landscape.init import MeanFieldStream, gaussian, make_student, make_teacher
from sims.landscape.kernels import batched_pair_kernel, kernel_means, kernel_means_and_grad
from sims.landscape.objective import jacobi_eigvals
from sims.landscape.noise import birth_death_keys, birth_death_step
from theory.landscape import objective as AL
from theory.errors import InputError
from theory.landscape.gaussian import ACTIVATIONS, pair_kernel

DT = torch.float64
EPS = torch.finfo(DT).eps
ROUNDOFF = 1e-12
C_ERF = (2 / math.pi) * math.asin(2 / 3)  # E[erf(u.x)^2], |u| = 1: the saddle loss is C_ERF / 2
QUAD = {"sigmoid": 48, "tanh": 64}  # quadrature orders for fast tests (both routes use the same)


def _cfg(**kw) -> MeanFieldConfig:
    base = dict(d=4, k=2, M=6, steps=1, log_every=1)
    base.update(kw)
    return MeanFieldConfig(**base)


def _batch_mates_bound(traj: MeanFieldTrajectory, name: str, *members: int) -> float:
    """Largest rounding difference between batch members that are equal in exact arithmetic.

    Members of one batch sit at different offsets of the batch's buffers, so vectorised kernels (SIMD body
    vs scalar tail, MKL's alignment-dependent batched matmul) may round them differently: ~1 ulp per
    operation, amplified by cond(S_mm) through S_mm^{-1}. As in tests/property/test_meanfield_properties.py
    (measured there at most 5.3 eps cond scale over 6 steps) we allow 64 eps cond(S_mm) max|x| per logged
    run of a few steps, cond taken over the whole run of every member compared.
    """
    cond = max(float(traj.cond[c].max()) for c in members)
    scale = max(float(getattr(traj, name)[c].abs().max()) for c in members)
    return 64 * EPS * cond * scale


def _pair(cfg: MeanFieldConfig, i: int = 0):
    a, w = make_student([cfg])
    ta, tw = make_teacher([cfg])
    return AL.ParticleMeasure(a[0], w[0]), AL.ParticleMeasure(ta[0], tw[0])


# ----------------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, fragment", [
    (dict(activation="softplus"), "unknown activation"),
    (dict(k=0), "k must be"),
    (dict(d=0), "d must be"),
    (dict(M=0), "M must be"),
    (dict(M=2.5), "M must be"),
    (dict(lr=0.0), "lr must be"),
    (dict(lr=-1.0), "lr must be"),
    (dict(lr=float("nan")), "lr must be"),
    (dict(steps=0), "steps must be"),
    (dict(log_every=0), "log_every must be"),
    (dict(d=2, k=3), "d >= k"),
    (dict(teacher="weird"), "unknown teacher"),
    (dict(dynamics="fast"), "unknown dynamics"),
    (dict(w_init="ones"), "unknown w_init"),
    (dict(w_speed=0.0), "w_speed"),
    (dict(birth_death=-1.0), "birth_death"),
    (dict(noise=-0.1), "noise must be"),
    (dict(noise_threshold=-1.0), "noise_threshold"),
    (dict(label_noise=-1.0), "label_noise"),
    (dict(seed=-1), "seed"),
    (dict(teacher_seed=-2), "teacher_seed"),
    (dict(teacher="random", teacher_M=0), "teacher_M"),
    (dict(quad_order=0), "quad_order"),
    (dict(init_scale=0.0), "init_scale"),
])
def test_validate_names_the_problem_in_one_line(kwargs, fragment):
    with pytest.raises(InputError, match=fragment) as info:
        _cfg(**kwargs).validate()
    assert "\n" not in str(info.value)


def test_config_normalises_numbers_and_round_trips():
    cfg = MeanFieldConfig(d=np.int64(4), k=2, M=3, lr=1, noise_threshold=float("inf"))
    assert isinstance(cfg.d, int) and isinstance(cfg.lr, float)
    assert MeanFieldConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="unknown mean-field config keys"):
        MeanFieldConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(InputError, match="missing required keys"):
        MeanFieldConfig.from_dict({"d": 3})


def test_batch_must_share_shapes_but_not_dynamics():
    check_batch([_cfg(seed=0, lr=0.1), _cfg(seed=1, lr=0.3, dynamics="joint", birth_death=2.0)])
    with pytest.raises(InputError, match="share M"):
        check_batch([_cfg(M=3), _cfg(M=4)])
    with pytest.raises(InputError, match="no configs"):
        check_batch([])


def test_paper_preset():
    cfg = preset("paper")
    assert (cfg.d, cfg.k, cfg.M, cfg.activation, cfg.dynamics) == (20, 5, 500, "sigmoid", "joint")
    assert PRESETS["paper"] == cfg
    small = preset("paper", M=8, a_scale=8 ** 0.5, steps=2, seed=4)  # a_scale ~ sqrt(M), as the preset's 22 at M = 500
    traj = simulate(small)
    assert traj.a.shape == (1, 8, 5) and bool(torch.isfinite(traj.loss).all())
    with pytest.raises(InputError, match="unknown preset"):
        preset("nope")
    with pytest.raises(InputError, match="invalid override"):
        preset("paper", bogus=1)


def test_simulate_rejects_bad_inputs():
    cfg = _cfg()
    student, teacher = _pair(cfg)
    with pytest.raises(InputError, match="CUDA is not available" if not torch.cuda.is_available() else "unknown"):
        simulate(cfg, device="cuda:99" if torch.cuda.is_available() else "cuda")
    with pytest.raises(InputError, match="init particles have shapes"):
        simulate(cfg, init=[AL.ParticleMeasure(student.a[:3], student.w[:3])])
    with pytest.raises(InputError, match="uniform weights"):
        p = torch.arange(1.0, 7.0, dtype=DT)
        simulate(cfg, init=[AL.ParticleMeasure(student.a, student.w, p / p.sum())])
    with pytest.raises(InputError, match="NaN"):
        simulate(cfg, init=[AL.ParticleMeasure(student.a * math.nan, student.w)])
    with pytest.raises(InputError, match="2 measures for 1 configs"):
        simulate(cfg, teachers=[teacher, teacher])


# ----------------------------------------------------------------------------------------------------
# Teachers and initialisation
# ----------------------------------------------------------------------------------------------------
def test_orthonormal_teacher_and_seed_independence():
    cfgs = [_cfg(d=5, k=3, seed=s) for s in (0, 1)]
    ta, tw = make_teacher(cfgs)
    torch.testing.assert_close(tw @ tw.mT, torch.eye(3, dtype=DT).expand(2, 3, 3), rtol=0, atol=1e-14)
    torch.testing.assert_close(ta, 3 * torch.eye(3, dtype=DT).expand(2, 3, 3), rtol=0, atol=0)
    assert not torch.allclose(tw[0], tw[1])
    # teacher_seed shares the teacher across student seeds; the student follows seed
    shared = [_cfg(seed=s, teacher_seed=7) for s in (0, 1)]
    # Equal in exact arithmetic, but computed at different offsets of one batch (or alone), so the
    # vectorised log/sqrt/cos of Box-Muller may round them differently: each normal is within ~4 ulp
    # of exact on either path (3 transcendental calls of <= 1 ulp, 2 correctly rounded products), so the
    # two differ by at most 8 eps max|x|. The teacher frame then goes through a Householder QR (d = 5,
    # k = 3), whose Q moves by at most ~ d k cond(G) times the input's relative change (Higham, Accuracy
    # and Stability, Thm 19.4); cond(G) of these 5 x 3 Gaussian matrices is below 10 (checked).
    ta, tw = make_teacher(shared)
    gauss = gaussian(torch.tensor([7, 7]), MeanFieldStream.TEACHER_W, 5, 3)  # (2, 5, 3): the teacher's G
    cond = float(torch.linalg.cond(gauss).max())
    assert cond < 10
    torch.testing.assert_close(tw[0], tw[1], rtol=0, atol=2 * 8 * 5 * 3 * cond * EPS)
    a, w = make_student(shared)
    assert float((a[0] - a[1]).abs().max()) > 0.1  # different seeds: different students
    a1, w1 = make_student(shared[1:])
    torch.testing.assert_close(a1[0], a[1], rtol=0, atol=8 * EPS * float(a[1].abs().max()))
    torch.testing.assert_close(w1[0], w[1], rtol=0, atol=8 * EPS * float(w[1].abs().max()))


def test_student_scales():
    cfg = _cfg(M=4000, d=10, init_scale=2.0, a_scale=3.0)
    a, w = make_student([cfg])
    assert abs(float((w[0] ** 2).sum(-1).mean()) - 4.0) < 4 * 4.0 * math.sqrt(2 / (10 * 4000))
    assert abs(float(a[0].std()) - 3.0) < 0.1


# ----------------------------------------------------------------------------------------------------
# Kernels, landscape and first variation against theory (one-by-one)
# ----------------------------------------------------------------------------------------------------
def test_batched_kernel_and_tiling_match_pair_kernel():
    g = torch.Generator().manual_seed(0)
    W1, W2 = torch.randn(2, 7, 3, generator=g, dtype=DT), torch.randn(2, 5, 3, generator=g, dtype=DT)
    B = torch.randn(2, 5, 2, generator=g, dtype=DT)
    A = torch.randn(2, 7, 2, generator=g, dtype=DT)
    for name in ACTIVATIONS:
        order = QUAD.get(name)
        K = batched_pair_kernel(name, W1, W2, order)
        for c in range(2):
            torch.testing.assert_close(K[c], pair_kernel(name, W1[c], W2[c], order), rtol=0, atol=1e-15)
        full = kernel_means(name, W1, W2, B, order=order)
        torch.testing.assert_close(kernel_means(name, W1, W2, B, tile=2, order=order), full, rtol=0, atol=1e-15)
        torch.testing.assert_close(full, K @ B, rtol=0, atol=1e-15)
        grad = kernel_means_and_grad(name, W1, A, W2, B, order=order)
        torch.testing.assert_close(kernel_means_and_grad(name, W1, A, W2, B, tile=3, order=order), grad,
                                   rtol=0, atol=1e-14)
        w = W1.clone().requires_grad_()
        (auto,) = torch.autograd.grad(((batched_pair_kernel(name, w, W2, order) @ B) * A).sum(), w)
        torch.testing.assert_close(grad, auto, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_landscape_and_velocity_match_theory_and_autograd(name):
    """Particle velocity == -M * autograd grad of L(theta_1..theta_M) (docs/attention_landscape.md §4), and the
    batched landscape == theory's, config by config."""
    cfgs = [_cfg(d=4, k=2, M=5, seed=s, activation=name, teacher="random", teacher_M=3,
                 quad_order=QUAD.get(name)) for s in (0, 1)]
    a, w = make_student(cfgs)
    ta, tw = make_teacher(cfgs)
    field = particle_field(name, a, w, ta, tw, order=QUAD.get(name))
    M = 5
    for c in range(2):
        mu, mu_o = AL.ParticleMeasure(a[c], w[c]), AL.ParticleMeasure(ta[c], tw[c])
        cov = AL.covariances(name, mu, mu_o, order=QUAD.get(name))
        _, cond = AL.check_conditioning(cov.S_mm)
        assert cond < 1e3
        land = field.land
        torch.testing.assert_close(land.S_mm[c], cov.S_mm, rtol=0, atol=ROUNDOFF)
        torch.testing.assert_close(land.S_mo[c], cov.S_mo, rtol=0, atol=ROUNDOFF)
        torch.testing.assert_close(land.S_mu[c], AL.schur_complement(cov), rtol=0, atol=ROUNDOFF)
        torch.testing.assert_close(land.W_star[c], AL.optimal_W(cov), rtol=1e-11, atol=0)
        assert abs(float(land.saddle[c] - AL.saddle_indicator(cov))) < ROUNDOFF
        torch.testing.assert_close(field.V[c], AL.first_variation(name, mu, mu_o, a[c], w[c],
                                                                   order=QUAD.get(name)),
                                   rtol=0, atol=ROUNDOFF)
        # -M * autograd of L(theta_1..theta_M)
        aa, ww = a[c].clone().requires_grad_(), w[c].clone().requires_grad_()
        L = AL.attention_landscape(name, AL.ParticleMeasure(aa, ww), mu_o, order=QUAD.get(name))
        ga, gw = torch.autograd.grad(L, (aa, ww))
        assert abs(float(L.detach() - land.loss[c])) < ROUNDOFF
        torch.testing.assert_close(-field.grad_a[c], -M * ga, rtol=0, atol=ROUNDOFF)
        torch.testing.assert_close(-field.grad_w[c], -M * gw, rtol=0, atol=ROUNDOFF)
        assert abs(float(field.grad_sq[c]) - float((M * M * ((ga ** 2).sum(-1) + (gw ** 2).sum(-1))).mean())) \
            < ROUNDOFF
        # normal equations: the first variation integrates to zero
        assert abs(float(field.V[c].mean())) < ROUNDOFF


@pytest.mark.parametrize("name", ["erf", "relu", "tanh"])
def test_joint_first_variation_is_M_times_autograd_of_L_TF_at_fixed_W(name):
    """Joint training: the particles follow the first variation of L_TF(., W) at fixed W; derived
    G_mm = W^T S_mo S_om W / 2, G_mo = -(W + W^T) S_mo + W S_mm W^T S_mo."""
    cfgs = [_cfg(d=3, k=2, M=4, seed=s, activation=name, quad_order=QUAD.get(name)) for s in (2, 3)]
    a, w = make_student(cfgs)
    ta, tw = make_teacher(cfgs)
    W = torch.randn(2, 2, 2, generator=torch.Generator().manual_seed(5), dtype=DT)
    field = particle_field(name, a, w, ta, tw, W=W, order=QUAD.get(name))
    for c in range(2):
        mu_o = AL.ParticleMeasure(ta[c], tw[c])
        aa, ww = a[c].clone().requires_grad_(), w[c].clone().requires_grad_()
        cov = AL.covariances(name, AL.ParticleMeasure(aa, ww), mu_o, order=QUAD.get(name))
        ga, gw = torch.autograd.grad(AL.loss_tf(cov, W[c]), (aa, ww))
        torch.testing.assert_close(field.grad_a[c], 4 * ga, rtol=0, atol=ROUNDOFF)
        torch.testing.assert_close(field.grad_w[c], 4 * gw, rtol=0, atol=ROUNDOFF)
        torch.testing.assert_close(field.W[c], W[c], rtol=0, atol=0)


def test_one_simulated_step_is_the_euler_step_of_the_velocity():
    cfg = _cfg(M=5, lr=0.07, seed=3)
    traj = simulate(cfg)
    mu, mu_o = _pair(cfg)
    v_a, v_w = AL.particle_velocity("erf", mu, mu_o)
    torch.testing.assert_close(traj.a[0], mu.a + 0.07 * v_a, rtol=0, atol=ROUNDOFF)
    torch.testing.assert_close(traj.w[0], mu.w + 0.07 * v_w, rtol=0, atol=ROUNDOFF)


def test_loss_decrease_per_step_is_lr_times_dissipation_to_first_order():
    """L(t + lr) - L(t) = -lr mean ||grad V||^2 + O(lr^2): the relative error shrinks ~ linearly in lr."""
    errors = []
    for lr in (1e-3, 1e-4):
        traj = simulate(_cfg(M=6, lr=lr, steps=1, seed=1))
        drop = float(traj.loss[0, 0] - traj.loss[0, 1])
        errors.append(abs(drop / (lr * float(traj.grad_sq[0, 0])) - 1.0))
    assert errors[0] < 0.05
    assert 5.0 < errors[0] / errors[1] < 20.0  # ~10 for a first-order error


# ----------------------------------------------------------------------------------------------------
# Two-timescale and joint dynamics
# ----------------------------------------------------------------------------------------------------
def test_two_timescale_L_TF_at_W_star_equals_L_and_logs_are_consistent():
    traj = simulate([_cfg(M=8, seed=s, steps=60, log_every=10, lr=0.2) for s in range(2)])
    assert traj.loss.shape == (2, 7) and traj.t.tolist() == [0, 10, 20, 30, 40, 50, 60]
    torch.testing.assert_close(traj.loss_tf, traj.loss, rtol=0, atol=ROUNDOFF)
    # L = 1/2 tr S_mu = 1/2 sum of its eigenvalues, all >= 0 (PSD)
    torch.testing.assert_close(traj.loss, 0.5 * traj.s_mu_eig.sum(-1), rtol=0, atol=ROUNDOFF)
    assert bool((traj.s_mu_eig > -ROUNDOFF).all())
    assert bool((traj.loss[:, 1:] <= traj.loss[:, :-1]).all())
    assert bool((traj.cond >= 1).all()) and bool((traj.lambda_min > 0).all())
    torch.testing.assert_close(traj.time[0], 0.2 * traj.t.double())
    assert traj.failed_at.tolist() == [-1, -1]
    # the final W is W* of the final particles
    cov = AL.covariances("erf", traj.student(1), traj.teacher(1))
    torch.testing.assert_close(traj.W[1], AL.optimal_W(cov), rtol=1e-11, atol=0)


def test_label_noise_shifts_the_losses_by_half_its_variance():
    base = _cfg(M=5, steps=5, seed=2)
    traj = simulate([base, dataclasses.replace(base, label_noise=0.3)])
    torch.testing.assert_close(traj.loss[1] - traj.loss[0], torch.full((6,), 0.15, dtype=DT), rtol=0, atol=1e-14)
    # label noise does not enter the particle velocity: the particles agree to the batch mates' rounding
    torch.testing.assert_close(traj.a[1], traj.a[0], rtol=0, atol=_batch_mates_bound(traj, "a", 0, 1))
    torch.testing.assert_close(traj.w[1], traj.w[0], rtol=0, atol=_batch_mates_bound(traj, "w", 0, 1))


def test_joint_training_tracks_two_timescale_as_w_speed_grows():
    """Measured (k = 1, d = 3, M = 8, a_scale = 4, lr = 1e-3, T = 1): relative gap of L at the end
    0.53, 0.27, 0.061 for w_speed 160, 640, 2560 (two-timescale L = 0.0146); the gap shrinks ~1/w_speed.
    Explicit Euler on W needs lr * w_speed * lambda_max(S_mo S_om) lambda_max(S_mm) < 2, and that rate
    grows ~25x during this run, hence the small lr."""
    base = MeanFieldConfig(d=3, k=1, M=8, a_scale=4.0, lr=1e-3, steps=1000, log_every=250, seed=0)
    speeds = (160.0, 640.0, 2560.0)
    traj = simulate([base] + [dataclasses.replace(base, dynamics="joint", w_speed=s) for s in speeds])
    assert traj.failed_at.tolist() == [-1] * 4
    gaps = ((traj.loss[1:, -1] - traj.loss[0, -1]) / traj.loss[0, -1]).tolist()
    assert gaps[0] > gaps[1] > gaps[2] >= 0
    assert gaps[2] < 0.1
    # L_TF(mu, W) >= L(mu) = min_W L_TF for every explicit W (completed square, Lemma 3.1)
    assert bool((traj.loss_tf[1:] >= traj.loss[1:] - ROUNDOFF).all())
    assert float(traj.loss_tf[3, -1] - traj.loss[3, -1]) < 1e-6


def test_joint_zero_init_starts_at_half_trace():
    base = _cfg(M=5, seed=1, steps=1, dynamics="joint", w_init="zero")
    traj = simulate(base)
    mu, mu_o = _pair(base)
    cov = AL.covariances("erf", mu, mu_o)
    assert abs(float(traj.loss_tf[0, 0]) - 0.5 * float(torch.trace(cov.S_oo))) < ROUNDOFF


# ----------------------------------------------------------------------------------------------------
# Birth-death and noise
# ----------------------------------------------------------------------------------------------------
def test_birth_death_step_copies_particles_and_keeps_M():
    C, M = 3, 50
    g = torch.Generator().manual_seed(0)
    V = torch.randn(C, M, generator=g, dtype=DT)
    state = torch.arange(C * M, dtype=DT).view(C, M, 1).repeat(1, 1, 2)  # particle id in every coordinate
    keys = birth_death_keys(torch.tensor([5, 6, 7]), 4)[:, 3]  # (C,) step 3
    written, (out,) = birth_death_step(keys, V, torch.tensor([0.0, 0.5, 50.0], dtype=DT), state)
    assert out.shape == state.shape
    assert written[0] == 0 and torch.equal(out[0], state[0])  # rate 0: nothing happens
    for c in (1, 2):
        changed = (out[c, :, 0] != state[c, :, 0])
        assert int(changed.sum()) == int(written[c])
        assert set(out[c, :, 0].tolist()) <= set(state[c, :, 0].tolist())  # copies of this config's particles
    assert int(written[2]) > int(written[1]) > 0
    # at a large rate the worst particles (largest V) are replaced, and the best ones multiply
    worst = int(V[2].argmax())
    best = int(V[2].argmin())
    assert float(out[2, worst, 0]) != float(state[2, worst, 0])
    assert int((out[2, :, 0] == state[2, best, 0]).sum()) > 1
    # batch independence and determinism
    w1, (single,) = birth_death_step(birth_death_keys(torch.tensor([7]), 4)[:, 3], V[2:],
                                     torch.tensor([50.0], dtype=DT), state[2:])
    assert torch.equal(single[0], out[2]) and int(w1[0]) == int(written[2])


def test_birth_death_speeds_up_the_flow():
    """Measured (k = 2, d = 5, M = 16, lr = 0.1, alpha = 50, 8 seeds, logged every t = 5): mean log
    ratio L_bd / L_flow = -1.21, -1.79, -1.98, -2.28, -2.45, -2.82 at t = 5..30; every seed lower at
    t = 30. The sign matters early only: the reversed rule (kill the particles with V below the mean)
    gives +2.42, +0.95, +0.05, -0.99, -1.78, -2.43, so the check is on every logged time."""
    seeds = range(8)
    plain = simulate([MeanFieldConfig(d=5, k=2, M=16, lr=0.1, steps=300, log_every=50, seed=s) for s in seeds])
    bd = simulate([MeanFieldConfig(d=5, k=2, M=16, lr=0.1, steps=300, log_every=50, seed=s, birth_death=50.0)
                   for s in seeds])
    ratio = (bd.loss[:, 1:] / plain.loss[:, 1:]).log()  # (8, 6)
    assert bool((ratio.mean(0) < -0.5).all()), ratio.mean(0)
    assert bool((ratio[:, -1] < 0).all()), ratio[:, -1]
    assert bool((bd.events[:, -1] > 0).all()) and bool((plain.events == 0).all())


def test_noise_is_injected_only_below_the_threshold():
    base = _cfg(M=6, steps=20, lr=0.1, seed=4, noise=0.01)
    traj = simulate([base, dataclasses.replace(base, noise_threshold=math.inf),
                     dataclasses.replace(base, noise_threshold=1e-30)])
    assert traj.noise_steps[:, -1].tolist() == [0, 20, 0]
    # never below the threshold: config 2 is config 0 up to the batch mates' rounding; noise moves config 1
    # far beyond it
    tol = _batch_mates_bound(traj, "a", 0, 1, 2)
    torch.testing.assert_close(traj.a[2], traj.a[0], rtol=0, atol=tol)
    assert float((traj.a[1] - traj.a[0]).abs().max()) > 1e3 * tol


# ----------------------------------------------------------------------------------------------------
# The exact strict saddle (docs/attention_landscape.md §6)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, d, M", [(1, 2, 1), (2, 3, 2), (3, 5, 6)])
def test_strict_saddle_is_a_critical_point(k, d, M):
    student, teacher = strict_saddle(d, k, M)
    assert student.a.shape == (M, k)
    a, w = student.a[None], student.w[None]
    field = particle_field("erf", a, w, teacher.a[None], teacher.w[None])
    assert abs(float(field.land.loss[0]) - C_ERF / 2) < ROUNDOFF
    assert float(field.V.abs().max()) < 1e-15
    assert float(field.grad_sq[0]) < 1e-30
    assert float(field.land.saddle[0]) < 1e-15


def test_strict_saddle_rejects_bad_sizes():
    with pytest.raises(InputError, match="multiple of k"):
        strict_saddle(4, 2, 3)
    with pytest.raises(InputError, match="d >= k \\+ 1"):
        strict_saddle(2, 2)


def test_flow_and_birth_death_stay_at_the_saddle_but_noise_escapes():
    """Measured (k = 2, d = 3, lr = 0.05): noise 1e-3 (threshold 1e-10) leaves the saddle and reaches
    L < 1e-5 by t = 30; flow and birth-death (alpha = 10) keep L = C_ERF / 2 exactly."""
    student, teacher = strict_saddle(3, 2)
    base = MeanFieldConfig(d=3, k=2, M=2, activation="erf", lr=0.05, steps=600, log_every=20)
    cfgs = [base, dataclasses.replace(base, birth_death=10.0),
            dataclasses.replace(base, noise=1e-3, noise_threshold=1e-10),
            dataclasses.replace(base, noise=1e-3, noise_threshold=1e-10, seed=1)]
    traj = simulate(cfgs, init=[student] * 4, teachers=[teacher] * 4)
    L0 = C_ERF / 2
    for c in (0, 1):
        assert float((traj.loss[c] - L0).abs().max()) < ROUNDOFF
        torch.testing.assert_close(traj.a[c], student.a, rtol=0, atol=1e-14)
        torch.testing.assert_close(traj.w[c], student.w, rtol=0, atol=1e-14)
    assert int(traj.events[1, -1]) == 0
    for c in (2, 3):
        assert float(traj.loss[c, -1]) < 0.01 * L0
        assert 0 < int(traj.noise_steps[c, -1]) < 600  # switched off once the gradient is large


def test_perturb_sizes_and_directions():
    student, teacher = strict_saddle(3, 2, 4)
    for direction in ("hessian", "random"):
        moved = perturb(student, 1e-3, seed=2, direction=direction, teacher=teacher)
        e = torch.cat([moved.a - student.a, moved.w - student.w], 1)
        assert abs(math.sqrt(float((e ** 2).sum(1).mean())) - 1e-3) < 1e-15
    r1 = perturb(student, 1e-3, seed=2, direction="random")
    r2 = perturb(student, 1e-3, seed=2, direction="random")
    assert torch.equal(r1.w, r2.w)
    # the Hessian direction lowers L at second order: L(delta) ~ L0 - |lambda| delta^2 / (2 M)... < L0
    h = perturb(student, 1e-2, direction="hessian", teacher=teacher)
    assert float(AL.attention_landscape("erf", h, teacher)) < C_ERF / 2 - 1e-6
    with pytest.raises(InputError, match="needs the teacher"):
        perturb(student, 1e-3)
    with pytest.raises(InputError, match="unknown perturbation direction"):
        perturb(student, 1e-3, direction="up")


def test_plateau_length_grows_linearly_in_log_one_over_delta():
    """docs/attention_landscape.md §6: plateau ~ log(1/delta) / |lambda_min|. Measured (k = 2, d = 3, M = 2,
    lr = 0.05, half-drop): plateaus 5.55, 8.60, 11.60, 14.65 for delta = 1e-2..1e-5; slope 1.3159, R^2 0.99999;
    1/|lambda_min| = 1.2895 (lambda_min = -0.7755 from theory's Wasserstein Hessian); explicit Euler
    grows at log(1 + lr |lambda|)/lr, predicting slope 1.3149."""
    student, teacher = strict_saddle(3, 2)
    rate = saddle_escape_rate(student, teacher)
    assert abs(rate - 0.3877366 * 2) < 1e-6
    deltas = (1e-2, 1e-3, 1e-4, 1e-5)
    lr = 0.05
    cfgs = [MeanFieldConfig(d=3, k=2, M=2, lr=lr, steps=400, log_every=1, seed=i) for i in range(4)]
    traj = simulate(cfgs, init=[perturb(student, dl, teacher=teacher) for dl in deltas],
                    teachers=[teacher] * 4)
    plateau = plateau_length(traj, 0.5).numpy()
    assert np.isfinite(plateau).all()
    x = np.log(1 / np.array(deltas))
    slope, intercept = np.polyfit(x, plateau, 1)
    r2 = 1 - ((plateau - (slope * x + intercept)) ** 2).sum() / ((plateau - plateau.mean()) ** 2).sum()
    assert r2 > 0.999
    euler = lr / math.log1p(lr * rate)
    assert abs(slope - euler) < 2 * lr / (x[-1] - x[0])  # plateau resolution is one step (lr)
    assert abs(slope * rate - 1) < 0.05


def test_plateau_length_on_a_synthetic_trajectory():
    cfg = _cfg(steps=3, lr=0.5, label_noise=0.2)
    loss = torch.tensor([[1.1, 1.0, 0.5, 0.2], [1.1, 1.1, 1.1, 1.1]], dtype=DT)  # floor 0.1
    n = torch.zeros(2, 4)
    traj = MeanFieldTrajectory(
        configs=(cfg, cfg), t=torch.arange(4), time=0.5 * torch.arange(4.0).expand(2, 4), loss=loss,
        loss_tf=loss, lambda_min=n, cond=n, s_mu_eig=n[..., None], saddle=n, grad_sq=n,
        events=n.long(), noise_steps=n.long(), failed_at=torch.tensor([-1, -1]), a=n, w=n, W=n,
        teacher_a=n, teacher_w=n)
    out = plateau_length(traj, 0.5)
    assert out[0] == 1.0 and math.isnan(out[1])  # excess 1.0 -> 0.4 < 0.5 at step 2, time 1.0
    with pytest.raises(ValueError):
        plateau_length(traj, 1.5)


# ----------------------------------------------------------------------------------------------------
# Batching, failures, trajectories
# ----------------------------------------------------------------------------------------------------
def test_batched_equals_one_by_one():
    base = _cfg(M=7, steps=40, log_every=7, lr=0.1)
    cfgs = [dataclasses.replace(base, seed=3),
            dataclasses.replace(base, seed=4, birth_death=20.0, lr=0.05),
            dataclasses.replace(base, seed=5, noise=1e-2, noise_threshold=math.inf),
            dataclasses.replace(base, seed=6, dynamics="joint", w_speed=20.0, a_scale=3.0, lr=0.02)]
    batched = simulate(cfgs)
    for i, cfg in enumerate(cfgs):
        single = simulate(cfg)
        for name in ("loss", "loss_tf", "lambda_min", "cond", "s_mu_eig", "saddle", "grad_sq", "a", "w", "W"):
            torch.testing.assert_close(getattr(batched, name)[i], getattr(single, name)[0], rtol=1e-12,
                                       atol=1e-12, msg=name)
        assert torch.equal(batched.events[i], single.events[0])
        assert torch.equal(batched.noise_steps[i], single.noise_steps[0])
    assert int(batched.events[1, -1]) > 0 and int(batched.noise_steps[2, -1]) == 40


def test_singular_S_mm_fails_that_config_only():
    cfg = _cfg(M=4, steps=5, log_every=1)
    good, teacher = _pair(cfg)
    # all a_i parallel: S_mm has rank 1 < k = 2
    bad = AL.ParticleMeasure(torch.ones(4, 1, dtype=DT) * torch.tensor([[1.0, 2.0]], dtype=DT), good.w)
    traj = simulate([cfg, cfg], init=[good, bad], teachers=[teacher, teacher])
    assert traj.failed_at.tolist() == [-1, 0]
    assert bool(torch.isnan(traj.loss[1]).all()) and bool(torch.isnan(traj.s_mu_eig[1]).all())
    assert bool(torch.isnan(traj.W[1]).all())
    assert bool((traj.cond[1] > 1e12).all())  # still logged: it is the reason
    torch.testing.assert_close(traj.a[1], bad.a, rtol=0, atol=0)  # frozen
    alone = simulate(cfg, init=[good], teachers=[teacher])
    torch.testing.assert_close(traj.loss[0], alone.loss[0], rtol=0, atol=ROUNDOFF)


def test_divergence_mid_run_is_caught_without_host_syncs():
    """Joint training with W far too slow for the mean-field scale (a_scale = 1: lambda_min(S_mm) ~ 3e-3,
    W* ~ 300) lets the fixed-W particle gradient explode (measured: grad_sq 3 -> 3e2 -> 6e5 -> ... ->
    inf); the config is marked failed at the first step whose S_mm is non-finite or too ill-conditioned,
    with NaN logs from there on, and its two-timescale batch mate runs on unaffected."""
    base = MeanFieldConfig(d=4, k=2, M=8, lr=0.05, steps=12, log_every=1, seed=3)
    joint = dataclasses.replace(base, dynamics="joint", w_speed=10.0)
    traj = simulate([joint, base])
    f = int(traj.failed_at[0])
    assert 0 < f <= 12 and int(traj.failed_at[1]) == -1
    assert bool(torch.isfinite(traj.loss[0, :f]).all()) and bool(torch.isnan(traj.loss[0, f:]).all())
    assert bool(torch.isnan(traj.grad_sq[0, f:]).all())
    assert bool(torch.isfinite(traj.a[0]).all())  # frozen where the failure was detected
    alone = simulate(base)
    torch.testing.assert_close(traj.loss[1], alone.loss[0], rtol=0, atol=ROUNDOFF)


@pytest.mark.parametrize("C, M", [(1, 4000), (20, 500), (32, 100), (1000, 500), (20, 10)])
def test_batch_tile_keeps_cpu_tiles_within_budget(C, M):
    from sims.landscape.flow import CPU_TILE_FLOATS, MIN_CPU_TILE, batch_tile

    cpu = torch.device("cpu")
    side = batch_tile(512, C, M, cpu)
    assert side <= 512 and batch_tile(512, C, M, torch.device("meta")) == 512 and batch_tile(7, C, M, cpu) == 7
    if side < min(512, M):  # the budget binds: equal blocks within it (or the smallest side)
        assert C * side * side <= max(CPU_TILE_FLOATS, C * MIN_CPU_TILE ** 2)
        blocks = -(-M // side)
        assert blocks * side - M < blocks  # equal blocks, the last one short by less than one per block
    else:
        assert side == 512 and C * min(M, 512) ** 2 <= CPU_TILE_FLOATS


def test_failed_configs_leave_the_cpu_step_loop(monkeypatch):
    """On the CPU a failed config is no longer stepped: the field is evaluated for its batch mates only, and
    the trajectory is the one of stepping it to the end (a lone config is never dropped): NaN logs, lambda_min
    and cond of its frozen state at every later step, frozen particles; its mates as when run alone."""
    from sims.landscape import flow

    base = MeanFieldConfig(d=4, k=2, M=8, lr=0.05, steps=12, log_every=1, seed=3)
    joint = dataclasses.replace(base, dynamics="joint", w_speed=10.0)  # diverges mid-run (test above)
    other = dataclasses.replace(base, seed=4)
    sizes, field = [], flow.particle_field
    monkeypatch.setattr(flow, "particle_field", lambda name, a, *rest, **kw: sizes.append(a.shape[0])
                        or field(name, a, *rest, **kw))
    traj = simulate([base, joint, other])
    f = int(traj.failed_at[1])
    assert 0 < f < 12 and sizes == [3] * (f + 1) + [2] * (12 - f)
    monkeypatch.undo()
    stepped = simulate(joint)  # alone: stepped to the end
    assert int(stepped.failed_at[0]) == f
    for name in ("loss", "loss_tf", "lambda_min", "cond", "s_mu_eig", "saddle", "grad_sq", "W", "a", "w"):
        x, y = getattr(traj, name)[1], getattr(stepped, name)[0]
        assert torch.equal(torch.isnan(x), torch.isnan(y)), name
        bound = 64 * EPS * float(stepped.cond[0, :f].max()) * float(y.nan_to_num(0.0).abs().max())
        torch.testing.assert_close(x, y, rtol=0, atol=bound, equal_nan=True, msg=name)  # batch mates round alike
    for name in ("lambda_min", "cond"):  # the frozen state's, copied to every later step
        x = getattr(traj, name)[1]
        torch.testing.assert_close(x[f:], x[f].expand(13 - f), rtol=0, atol=0, equal_nan=True)
    assert torch.equal(traj.events[1], stepped.events[0]) and torch.equal(traj.noise_steps[1], stepped.noise_steps[0])
    for i, cfg in ((0, base), (2, other)):
        torch.testing.assert_close(traj.loss[i], simulate(cfg).loss[0], rtol=0, atol=ROUNDOFF)


def test_trajectory_round_trip_and_select():
    traj = simulate([_cfg(seed=s, steps=3) for s in range(2)])
    back = MeanFieldTrajectory.from_arrays(traj.to_arrays())
    assert back.configs == traj.configs
    torch.testing.assert_close(back.loss, traj.loss, rtol=0, atol=0)
    one = traj.select(1)
    assert one.configs == (traj.configs[1],) and torch.equal(one.a[0], traj.a[1])


# ----------------------------------------------------------------------------------------------------
# Finite-n attention model (docs/attention_landscape.md §8)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise_var", [0.0, 0.25])
def test_finite_n_loss_matches_theory_and_converges_to_L_TF(noise_var):
    """Empirical loss (20k prompts) vs theory's exact L^n_TF (n = 1, 4, 32), within 4 standard errors; the
    exact correction L^n_TF - L_TF is positive and exactly proportional to 1/n."""
    cfg = MeanFieldConfig(d=3, k=2, M=3, seed=1, label_noise=noise_var)
    traj = simulate(dataclasses.replace(cfg, steps=5, lr=0.2))
    mu, mu_o = traj.student(0), traj.teacher(0)
    W = traj.W[0]
    cov = AL.covariances("erf", mu, mu_o)
    L_tf = float(AL.loss_tf(cov, W, noise_var))
    # theory's exact L^n_TF; its correction is exactly proportional to 1/n, so one quadrature serves all n
    exact_1 = float(AL.finite_n_loss("erf", mu, mu_o, W, 1, noise_var=noise_var, grid_order=48))
    exact_4 = float(AL.finite_n_loss("erf", mu, mu_o, W, 4, noise_var=noise_var, grid_order=48))
    assert abs((exact_4 - L_tf) * 4 - (exact_1 - L_tf)) < 1e-12
    for n in (1, 4, 32):
        est = finite_n_estimate(cfg, mu, W, n, 20_000, seed=n)
        exact = L_tf + (exact_1 - L_tf) / n
        assert abs(float(est.mean) - exact) < 4 * float(est.stderr), (n, float(est.mean), exact)
    assert exact_1 > L_tf  # the finite-n correction is the expectation of a square / (2n), and not zero here
    # at n = 256 the empirical loss agrees with L_TF within its standard errors
    est = finite_n_estimate(cfg, mu, W, 256, 2_000, seed=9)
    assert abs(float(est.mean) - L_tf) < 4 * float(est.stderr) + (exact_1 - L_tf) / 256


def test_finite_n_draws_do_not_depend_on_chunking():
    cfg = _cfg(d=3, M=3)
    mu, _ = _pair(cfg)
    W = torch.eye(2, dtype=DT)
    a = finite_n_loss(cfg, mu, W, 5, 300, seed=3, chunk=7)
    b = finite_n_loss(cfg, mu, W, 5, 300, seed=3)
    assert abs(float(a - b)) < 1e-14
    with pytest.raises(InputError, match="prompt length"):
        finite_n_loss(cfg, mu, W, 0, 10, seed=0)
    with pytest.raises(InputError, match="at least 2 prompts"):
        finite_n_loss(cfg, mu, W, 3, 1, seed=0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_jacobi_eigenvalues_match_lapack(n):
    """The sync-free eigenvalue route used on GPUs, checked on the CPU (random and cond-1e12 spectra)."""
    g = torch.Generator().manual_seed(n)
    X = torch.randn(20, n, n, generator=g, dtype=DT)
    Q = torch.linalg.qr(torch.randn(20, n, n, generator=g, dtype=DT)).Q
    ill = Q @ torch.diag_embed(torch.logspace(-12, 0, n, dtype=DT).expand(20, n)) @ Q.mT
    for S in (X @ X.mT, 0.5 * (ill + ill.mT), X + X.mT):
        ref = torch.linalg.eigvalsh(S)
        err = (jacobi_eigvals(S) - ref).abs().max(-1).values / ref.abs().max(-1).values
        assert float(err.max()) < 64 * 2.2e-16 * n


def test_simulation_with_the_gpu_eigenvalue_route_matches(monkeypatch):
    import sims.landscape.flow as MF
    import sims.landscape.objective as ML
    cfg = _cfg(M=6, steps=20, log_every=5, seed=2)
    ref = simulate(cfg)
    monkeypatch.setattr(ML, "symmetric_eigvals", jacobi_eigvals)
    monkeypatch.setattr(MF, "symmetric_eigvals", jacobi_eigvals)
    alt = simulate(cfg)
    for name in ("loss", "cond", "lambda_min", "s_mu_eig", "a", "w"):
        torch.testing.assert_close(getattr(alt, name), getattr(ref, name), rtol=1e-12, atol=1e-14)


def test_landscape_helper_matches_theory():
    cfg = _cfg(seed=8)
    mu, mu_o = _pair(cfg)
    land, c_m, c_o = landscape("erf", mu.a[None], mu.w[None], mu_o.a[None], mu_o.w[None])
    assert abs(float(land.loss[0] - AL.attention_landscape("erf", mu, mu_o))) < ROUNDOFF
    assert bool(land.ok[0])


def test_compiled_step_equals_eager():
    """torch.compile of the step's field evaluation (what runs by default on CUDA) against eager on the
    CPU: fused kernels reorder sums, so equal to rounding (a few ulps per step, amplified by cond(S_mm)
    <~ 1e2 over 8 steps), not bit for bit; counters exactly. Both dynamics, birth-death on."""
    base = _cfg(M=8, steps=8, log_every=2, lr=0.1)
    cfgs = [dataclasses.replace(base, seed=1, birth_death=20.0),
            dataclasses.replace(base, seed=2, dynamics="joint", a_scale=3.0, lr=0.02)]
    eager, fused = simulate(cfgs, compile=False), simulate(cfgs, compile=True)
    assert torch.equal(eager.events, fused.events) and torch.equal(eager.failed_at, fused.failed_at)
    for name in ("loss", "loss_tf", "cond", "s_mu_eig", "grad_sq", "a", "w", "W"):
        torch.testing.assert_close(fused.__dict__[name], eager.__dict__[name], rtol=ROUNDOFF, atol=ROUNDOFF,
                                   msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    """Same configs on CUDA and CPU: the counter-based draws are identical, arithmetic differs by
    rounding (Jacobi eigenvalues on the GPU, LAPACK on the CPU), amplified by cond(S_mm) <~ 1e2."""
    base = _cfg(M=9, steps=30, log_every=10, lr=0.1)
    cfgs = [dataclasses.replace(base, seed=1), dataclasses.replace(base, seed=2, birth_death=20.0),
            dataclasses.replace(base, seed=3, noise=0.01, noise_threshold=math.inf),
            dataclasses.replace(base, seed=4, activation="erf", dynamics="joint", a_scale=3.0, lr=0.02)]
    cpu, gpu = simulate(cfgs), simulate(cfgs, device="cuda")
    assert torch.equal(cpu.events, gpu.events) and torch.equal(cpu.failed_at, gpu.failed_at)
    for name in ("loss", "loss_tf", "cond", "s_mu_eig", "grad_sq", "a", "w", "W"):
        torch.testing.assert_close(gpu.__dict__[name], cpu.__dict__[name], rtol=1e-9, atol=1e-11, msg=name)
