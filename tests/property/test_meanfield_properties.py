"""Hypothesis properties of the batched mean-field dynamics (docs/attention_landscape.md §2-§4).

Random small measures (M <= 8, k <= 3, d <= 5) with well-conditioned S_mm (cond <= COND, assumed).
Tolerances are float64 rounding: two routes to L differ by ~ cond(S_mm) eps |S_oo| (see
tests/property/test_landscape_properties.py); we allow 64 times that.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from sims.landscape.flow import MeanFieldConfig, particle_field, simulate, teacher_covariance
from sims.landscape.init import make_student, make_teacher
from sims.landscape.noise import birth_death_keys, birth_death_step
from theory.landscape.objective import ParticleMeasure

DT = torch.float64
EPS = torch.finfo(DT).eps
COND = 1e3
SMOOTH = ("erf", "probit", "sigmoid", "tanh")  # relu's kernel is not C^2 at aligned particles
QUAD_ORDER = 48  # sigmoid/tanh at |w| <~ 2: accurate to ~1e-9; both sides of each check use it


@st.composite
def configs(draw, activations=SMOOTH, steps=20, lr=0.005):
    k = draw(st.integers(1, 3))
    teacher = draw(st.sampled_from(("orthonormal", "random")))
    return MeanFieldConfig(
        d=draw(st.integers(k, 5)), k=k, M=draw(st.integers(k, 8)),
        activation=draw(st.sampled_from(activations)), teacher=teacher,
        teacher_M=draw(st.integers(1, 4)) if teacher == "random" else None,
        init_scale=draw(st.floats(0.5, 2.0)), a_scale=draw(st.floats(0.5, 2.0)),
        lr=lr, steps=steps, log_every=1, seed=draw(st.integers(0, 2 ** 40)), quad_order=QUAD_ORDER)


def _s_oo_trace(cfg: MeanFieldConfig) -> float:
    ta, tw = make_teacher([cfg])
    return float(torch.trace(teacher_covariance(cfg.activation, ta, tw, order=cfg.quad_order)[0]))


@given(configs())
def test_landscape_is_non_increasing_along_the_two_timescale_flow(cfg):
    """dL/dt = -int |grad V|^2 dmu <= 0 (docs/attention_landscape.md §4); explicit Euler keeps it for small lr."""
    traj = simulate(cfg)
    assume(int(traj.failed_at[0]) == -1 and float(traj.cond[0].max()) <= COND)
    L = traj.loss[0]
    tol = 64 * EPS * COND * (1.0 + _s_oo_trace(cfg))
    assert bool((L[1:] <= L[:-1] + tol).all()), (L[1:] - L[:-1]).max()
    # and it does move where the gradient is not negligible
    if float(traj.grad_sq[0, 0]) * cfg.lr > 1e3 * tol:
        assert float(L[-1]) < float(L[0])


@given(configs(activations=("erf", "probit"), steps=1))
def test_first_variation_integrates_to_zero_and_L_TF_at_W_star_is_L(cfg):
    a, w = make_student([cfg])
    ta, tw = make_teacher([cfg])
    field = particle_field(cfg.activation, a, w, ta, tw)
    assume(bool(field.land.ok[0]) and float(field.land.cond[0]) <= COND)
    scale = 64 * EPS * COND * (1.0 + float(torch.trace(field.land.S_oo[0])))
    assert abs(float(field.V[0].mean())) <= scale * (1.0 + float(field.V[0].abs().max()))
    traj = simulate(cfg)
    assert float((traj.loss_tf - traj.loss).abs().max()) <= scale


@given(configs(activations=("erf", "tanh"), steps=5, lr=0.05), st.integers(0, 2 ** 31))
def test_flow_is_equivariant_under_orthogonal_output_maps(cfg, r_seed):
    """L(R#mu) = L(mu); for orthogonal R the flow maps a -> R a and leaves w alone (docs/attention_landscape.md §3)."""
    k = cfg.k
    R = torch.linalg.qr(torch.randn(k, k, generator=torch.Generator().manual_seed(r_seed), dtype=DT)).Q
    a, w = make_student([cfg])
    base = simulate(cfg, init=[ParticleMeasure(a[0], w[0])])
    assume(int(base.failed_at[0]) == -1 and float(base.cond[0].max()) <= COND)
    moved = simulate(cfg, init=[ParticleMeasure(a[0] @ R.T, w[0])])
    tol = 64 * EPS * COND * (1.0 + float(base.a.abs().max()) + float(base.w.abs().max()))
    assert float((moved.loss - base.loss).abs().max()) <= tol
    assert float((moved.w - base.w).abs().max()) <= tol
    assert float((moved.a[0] - base.a[0] @ R.T).abs().max()) <= tol


@given(configs(activations=("erf",), steps=6, lr=0.1), st.lists(st.integers(0, 2 ** 40), min_size=2, max_size=3),
       st.floats(0.0, 30.0), st.floats(0.0, 0.05))
def test_batched_equals_one_by_one(cfg, seeds, rate, noise):
    """A config's numbers never depend on its batch mates (counter-based randomness).

    Not bitwise: MKL's batched matmul may round a batch slice differently from a lone matrix (its
    results depend on memory alignment), ~1 ulp, which the landscape amplifies by cond(S_mm). The
    scale of a field is max|x|, plus 1/2 tr S_oo for L and mean |grad V|^2, which are differences of
    terms of that size (L = 1/2 tr S_oo - 1/2 tr(S_om B)). Each step adds its own rounding, ~eps
    cond_t scale, and carries the earlier ones along, so the bound sums cond_t over the logged steps
    (every step is logged). Measured: at most 5.3 eps max_t cond_t scale over 60 random cases, but
    1.13 x 64 eps max_t cond_t scale in a nightly case whose cond grew to ~1e10 within six steps (the
    errors of the steps add up); we allow 64 eps sum_t cond_t scale. Event counts must match exactly."""
    cfgs = [dataclasses.replace(cfg, seed=s, birth_death=rate * (i % 2), noise=noise,
                                noise_threshold=math.inf if i == 0 else 0.0) for i, s in enumerate(seeds)]
    batched = simulate(cfgs)
    for i, c in enumerate(cfgs):
        single = simulate(c)
        assert torch.equal(batched.failed_at[i], single.failed_at[0])
        alive = int(single.failed_at[0]) == -1
        cond = float(single.cond[0].sum()) if alive else 1.0  # sum over the steps: each adds its rounding
        half_trace = 0.5 * _s_oo_trace(c)
        for name in ("loss", "grad_sq", "a", "w"):
            x, y = getattr(batched, name)[i], getattr(single, name)[0]
            scale = float(y.abs().nan_to_num(0.0).max()) + (half_trace if name in ("loss", "grad_sq") else 0.0)
            torch.testing.assert_close(x, y, rtol=0, atol=64 * EPS * cond * scale + 1e-300, equal_nan=True)
        assert torch.equal(batched.events[i], single.events[0])


@given(st.integers(1, 40), st.integers(1, 4), st.floats(0.0, 1e3), st.integers(0, 2 ** 40), st.integers(0, 1000))
def test_birth_death_keeps_M_and_only_copies(M, C, rate, seed, step):
    g = torch.Generator().manual_seed(seed % (2 ** 31))
    V = torch.randn(C, M, generator=g, dtype=DT)
    ids = torch.arange(C * M, dtype=DT).view(C, M, 1)  # (C, M, 1)
    keys = birth_death_keys(torch.arange(C) + seed, step + 1)[:, step]  # (C,)
    written, (out,) = birth_death_step(keys, V, torch.full((C,), rate, dtype=DT), ids)
    assert out.shape == (C, M, 1)
    for c in range(C):
        assert set(out[c, :, 0].tolist()) <= set(ids[c, :, 0].tolist())
        assert int((out[c] != ids[c]).sum()) == int(written[c])
