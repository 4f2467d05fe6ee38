"""Exact non-global critical points, the near-critical lower bound and the free output direction
(docs/attention_landscape.md §5-§7), each against a slow direct computation."""
import math

import numpy as np
import pytest
import torch

from theory.landscape import objective as AL

DT = torch.float64
EPS = torch.finfo(DT).eps


def _erf_second_moment(r: float) -> float:
    """E[erf(r u.x)^2] for a unit u and x ~ N(0, I): (2/pi) arcsin(2 r^2 / (1 + 2 r^2))."""
    return 2 / math.pi * math.asin(2 * r * r / (1 + 2 * r * r))


CASES = [dict(k=2, d=3), dict(k=3, d=6, unexplained=2, norms=(0.8, 1.0, 1.3), scale=0.5, copies=2),
         dict(k=2, d=4, unexplained=2, norms=(1.0, 1.5)), dict(k=4, d=7, unexplained=1, copies=3)]


@pytest.mark.parametrize("name", ["erf", "tanh"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_orthogonal_critical_points_are_exactly_critical(name, case):
    case = dict(case)
    k, d, r = case.pop("k"), case.pop("d"), case.get("unexplained", 1)
    student, teacher = AL.orthogonal_critical_point(k, d, generator=torch.Generator().manual_seed(3), **case)
    cov = AL.covariances(name, student, teacher)
    tol = 64 * EPS * max(1.0, float(torch.linalg.matrix_norm(cov.S_oo)))
    V = AL.first_variation(name, student, teacher, student.a, student.w)
    probes = AL.first_variation(name, student, teacher, torch.randn(5, k, dtype=DT), torch.randn(5, d, dtype=DT))
    assert float(V.abs().max()) <= tol and float(probes.abs().max()) <= tol  # V = 0 everywhere, not only on mu
    assert float(AL.saddle_indicator(cov)) <= tol
    unexplained = torch.diagonal(cov.S_oo)[k - r:]
    assert float(AL.landscape_loss(cov)) == pytest.approx(0.5 * float(unexplained.sum()), abs=tol)
    eig = torch.linalg.eigvalsh(AL.schur_complement(cov))
    assert int((eig > 1e-8).sum()) == r
    if name == "erf":  # the closed form of E[f°_j^2]
        norms = case.get("norms") or (1.0,) * k
        assert float(unexplained.sum()) == pytest.approx(sum(_erf_second_moment(n) for n in norms[k - r:]), abs=tol)


def test_split_particles_keep_the_features():
    student, teacher = AL.orthogonal_critical_point(3, 5, copies=4)
    single, _ = AL.orthogonal_critical_point(3, 5)
    x = torch.randn(50, 5, dtype=DT)
    assert student.a.shape == (12, 3)
    assert torch.allclose(AL.features("erf", student, x), AL.features("erf", single, x), atol=16 * EPS)


def test_orthogonal_critical_point_needs_room():
    with pytest.raises(ValueError, match="d >= k \\+ unexplained"):
        AL.orthogonal_critical_point(3, 4, unexplained=2)
    with pytest.raises(ValueError, match="k norms"):
        AL.orthogonal_critical_point(3, 6, norms=(1.0, 1.0))


def _near_critical_bound_slow(cov, rtol=1e-8) -> float:
    """numpy: eigenpairs of S_mu one by one, eta from its definition, the per-eigenvalue bound of §5."""
    S_mm, S_om, S_oo = (np.asarray(m, dtype=float) for m in (cov.S_mm, cov.S_om, cov.S_oo))
    S_mu = S_oo - S_om @ np.linalg.solve(S_mm, S_om.T)
    S_mu = (S_mu + S_mu.T) / 2
    eta = np.linalg.norm(S_om.T @ S_mu)
    lam_oo, lam_mm = np.linalg.eigvalsh(S_oo), np.linalg.eigvalsh(S_mm)[0]
    total = 0.0
    for s in np.linalg.eigvalsh(S_mu):
        if s > rtol * lam_oo[-1]:
            total += max(0.0, lam_oo[0] - eta ** 2 / (s * s * lam_mm))
    return 0.5 * total


def _random_measures(seed, M=5, k=3, d=4):
    g = torch.Generator().manual_seed(seed)
    student = AL.ParticleMeasure(torch.randn(M, k, generator=g, dtype=DT), torch.randn(M, d, generator=g, dtype=DT) / 2)
    teacher = AL.ParticleMeasure(torch.randn(k, k, generator=g, dtype=DT), torch.randn(k, d, generator=g, dtype=DT) / 2)
    return student, teacher


@pytest.mark.parametrize("seed", range(4))
def test_near_critical_bound_matches_its_slow_twin_and_holds_everywhere(seed):
    student, teacher = _random_measures(seed)
    cov = AL.covariances("erf", student, teacher)
    fast = float(AL.near_critical_lower_bound(cov))
    _, cond = AL.check_conditioning(cov.S_mm)
    assert fast == pytest.approx(_near_critical_bound_slow(cov), abs=64 * cond * EPS)
    assert fast <= float(AL.landscape_loss(cov)) + 64 * cond * EPS  # a theorem at every measure


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_near_critical_bound_is_the_critical_bound_at_critical_points(case):
    case = dict(case)
    student, teacher = AL.orthogonal_critical_point(case.pop("k"), case.pop("d"), **case)
    cov = AL.covariances("erf", student, teacher)
    assert float(AL.near_critical_lower_bound(cov)) == pytest.approx(float(AL.critical_point_lower_bound(cov)),
                                                                      abs=64 * EPS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_free_output_direction_is_the_unexplained_projector_at_orthogonal_points(case):
    case = dict(case)
    k, r = case["k"], case.get("unexplained", 1)
    student, teacher = AL.orthogonal_critical_point(case.pop("k"), case.pop("d"), **case)
    R = AL.free_output_direction(AL.covariances("erf", student, teacher))
    expected = torch.zeros(k, k, dtype=DT)
    expected[k - r:, k - r:] = torch.eye(r, dtype=DT)
    assert torch.allclose(R, expected, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_free_output_direction_carries_no_weight_in_the_fit(seed):
    """At a critical point whose student outputs are mixed by a random invertible map (R#mu: same L, same
    criticality) the free direction is no longer a coordinate projector, yet B^T R = 0 and R maps the unexplained
    output, and the curvature towards it is negative."""
    g = torch.Generator().manual_seed(seed)
    student, teacher = AL.orthogonal_critical_point(3, 6, unexplained=1, norms=(0.9, 1.2, 1.0))
    mix = torch.randn(3, 3, generator=g, dtype=DT) + 3 * torch.eye(3, dtype=DT)
    mixed = student.push(mix)
    cov = AL.covariances("erf", mixed, teacher)
    R = AL.free_output_direction(cov)
    B = AL.b_matrix(cov)
    _, cond = AL.check_conditioning(cov.S_mm)
    assert float(torch.linalg.matrix_norm(B.T @ R)) <= 64 * cond * EPS * float(torch.linalg.matrix_norm(B))
    assert float(torch.linalg.matrix_norm(R[:, :2])) <= 64 * cond * EPS and float(R[:, 2].norm()) > 0.1
    assert float(AL.mixture_second_derivative("erf", mixed, teacher, R)) < -0.01
