"""Hypothesis properties of the attention landscape over random particle measures (float64, small M).

Tolerances (float64 rounding, no fudge). Rounding reaches L = 1/2 tr(S_oo - S_om B), B = S_mm^{-1} S_mo,
in two ways:
- each covariance entry is a sum of p_i p_j a_i a_j^T K_ij that may cancel, so its absolute error is
  ~ eps * A with A = sum_ij |p_i p_j| |a_i| |a_j| |K_ij|; since dL = 1/2 tr(B^T dS_mm B)
  - tr(dS_om B) + 1/2 tr(dS_oo), this moves L by ~ eps k (|B|^2 A_mm + 2 |B| A_om + A_oo);
- the Cholesky solve is backward stable, with forward error ~ cond(S_mm) eps |B|, moving L by
  ~ cond(S_mm) eps |S_om| |B|.
We accept measures with cond(S_mm) <= COND (hypothesis.assume) and allow 64 eps times the sum of
these magnitudes: 64 covers the few dozen k x k operations with margin, and any wrong formula
violates the properties by many orders of magnitude more.
"""
import math
from dataclasses import dataclass

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from theory.landscape import objective as AL
from theory.landscape.gaussian import ACTIVATIONS, pair_kernel

DT = torch.float64
EPS = torch.finfo(DT).eps
COND = 1e4
STEP = 0.01


@dataclass(frozen=True)
class Config:
    name: str
    M: int
    M_o: int
    k: int
    d: int
    scale: float
    weighted: bool
    seed: int


@st.composite
def configs(draw, max_M=4):
    k = draw(st.integers(1, 2))
    return Config(name=draw(st.sampled_from(ACTIVATIONS)), M=draw(st.integers(k, max_M)),
                  M_o=draw(st.integers(1, 3)), k=k, d=draw(st.integers(1, 3)),
                  scale=draw(st.floats(0.3, 2.0)), weighted=draw(st.booleans()),
                  seed=draw(st.integers(0, 2 ** 31 - 1)))


def _build(cfg):
    """Student and teacher measures and covariances; rejects ill-conditioned S_mm."""
    g = torch.Generator().manual_seed(cfg.seed)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=DT)
    p = None
    if cfg.weighted:
        p = torch.rand(cfg.M, generator=g, dtype=DT) + 0.2
        p = p / p.sum()
    student = AL.ParticleMeasure(rnd(cfg.M, cfg.k), cfg.scale * rnd(cfg.M, cfg.d) / math.sqrt(cfg.d), p)
    teacher = AL.ParticleMeasure(rnd(cfg.M_o, cfg.k), rnd(cfg.M_o, cfg.d) / math.sqrt(cfg.d))
    cov = AL.covariances(cfg.name, student, teacher)
    assume(_cond(cov.S_mm) <= COND)
    return student, teacher, cov


def _cond(S_mm):
    eig = torch.linalg.eigvalsh(S_mm)
    return float(eig[-1] / eig[0]) if float(eig[0]) > 0 else math.inf


def _abs_contract(name, m1, m2):
    """A = sum_ij |p_i p_j| |a_i| |a_j| |K(w_i, w_j)|, the rounding scale of a covariance entry."""
    K = pair_kernel(name, m1.w, m2.w).abs()  # (M1, M2)
    return float((m1.weights.abs() * m1.a.norm(dim=1)) @ K @ (m2.weights.abs() * m2.a.norm(dim=1)))


def _tol(name, student, teacher, cov, extra=0.0):
    """64 eps times the magnitude through which rounding reaches L (module docstring), plus
    ``extra``: the magnitude of other terms entering the compared quantities."""
    _, cond = AL.check_conditioning(cov.S_mm)
    B = float(torch.linalg.matrix_norm(AL.b_matrix(cov), ord=2))
    k = cov.S_mm.shape[0]
    covariance_rounding = k * (B * B * _abs_contract(name, student, student)
                               + 2 * B * _abs_contract(name, teacher, student)
                               + _abs_contract(name, teacher, teacher))
    solve_rounding = cond * float(torch.linalg.matrix_norm(cov.S_om, ord=2)) * B
    return 64 * EPS * (covariance_rounding + solve_rounding + float(extra))


@settings(deadline=None)
@given(cfg=configs(), w_seed=st.integers(0, 2 ** 31 - 1), w_scale=st.floats(0.01, 10.0))
def test_landscape_is_below_L_TF_for_every_W(cfg, w_seed, w_scale):
    student, teacher, cov = _build(cfg)
    W = w_scale * torch.randn(cfg.k, cfg.k, generator=torch.Generator().manual_seed(w_seed), dtype=DT)
    L, L_tf = AL.landscape_loss(cov), AL.loss_tf(cov, W)
    terms = (torch.trace(cov.S_om @ W @ cov.S_mo).abs()
             + torch.trace(W.T @ cov.S_mo @ cov.S_om @ W @ cov.S_mm).abs())
    assert float(L) <= float(L_tf) + _tol(cfg.name, student, teacher, cov, terms)


@settings(deadline=None)
@given(cfg=configs())
def test_landscape_between_zero_and_half_trace(cfg):
    student, teacher, cov = _build(cfg)
    L, half_trace = float(AL.landscape_loss(cov)), 0.5 * float(torch.trace(cov.S_oo))
    tol = _tol(cfg.name, student, teacher, cov)
    assert -tol <= L <= half_trace + tol


@settings(deadline=None)
@given(cfg=configs(), r_seed=st.integers(0, 2 ** 31 - 1))
def test_landscape_invariant_under_pushforward(cfg, r_seed):
    student, teacher, cov = _build(cfg)
    R = torch.randn(cfg.k, cfg.k, generator=torch.Generator().manual_seed(r_seed), dtype=DT)
    cond_R = float(torch.linalg.cond(R))
    assume(cond_R <= 10.0)
    pushed = student.push(R)
    moved = AL.covariances(cfg.name, pushed, teacher)
    tol = _tol(cfg.name, student, teacher, cov) + _tol(cfg.name, pushed, teacher, moved)
    assert abs(float(AL.landscape_loss(moved) - AL.landscape_loss(cov))) <= tol


@settings(deadline=None)
@given(cfg=configs())
def test_first_variation_integrates_to_zero(cfg):
    student, teacher, cov = _build(cfg)
    V = AL.first_variation(cfg.name, student, teacher, student.a, student.w)
    integral = student.weights @ V
    # int V dmu = -tr(B (S_mo - S_mm B)) with the covariances summed in another order than in cov
    assert abs(float(integral)) <= _tol(cfg.name, student, teacher, cov)


@settings(deadline=None)
@given(cfg=configs(max_M=3))
def test_loss_decreases_along_explicit_euler_steps_of_the_flow(cfg):
    """theta_i <- theta_i + eta v_i, v = -grad V (the Wasserstein flow). "Small" step: eta <= 0.5 /
    lambda_max of the particle Hessian at the step's start (a quadratic model then guarantees
    descent) and no particle moves by more than STEP times the smallest particle norm (so the
    Hessian barely changes along the step, also where L is scale-invariant in a and its curvature
    grows like 1/|a|^2). Then L drops by at least eta/2 * sum_i p_i |v_i|^2 (= eta/2 |dL/dt|) per
    step, up to rounding, and in particular never increases."""
    student, teacher, cov = _build(cfg)
    mu = student
    for _ in range(2):
        H = AL.wasserstein_hessian(cfg.name, mu, teacher)  # (M (k + d), M (k + d))
        lam_max = float(torch.linalg.eigvalsh(H)[-1])
        L_old = AL.attention_landscape(cfg.name, mu, teacher)
        v_a, v_w = AL.particle_velocity(cfg.name, mu, teacher)
        speed = mu.weights @ ((v_a * v_a).sum(-1) + (v_w * v_w).sum(-1))  # int |grad V|^2 dmu
        v_max = float(torch.cat([v_a, v_w], 1).norm(dim=1).max())
        theta_min = float(torch.cat([mu.a, mu.w], 1).norm(dim=1).min())
        eta = min(0.5 / max(lam_max, 1e-12), STEP * theta_min / max(v_max, 1e-300))
        tol = _tol(cfg.name, mu, teacher, AL.covariances(cfg.name, mu, teacher))
        mu = AL.ParticleMeasure(mu.a + eta * v_a, mu.w + eta * v_w, mu.p)
        cov = AL.covariances(cfg.name, mu, teacher)
        assume(_cond(cov.S_mm) <= COND)
        L_new = AL.landscape_loss(cov)
        tol += _tol(cfg.name, mu, teacher, cov)
        assert float(L_new) <= float(L_old) + tol
        assert float(L_new - L_old) <= -0.5 * eta * float(speed) + tol
