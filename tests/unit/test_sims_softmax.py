"""Unit tests of sims.softmax_* (docs/softmax_dynamics.md §1-§8): configs, randomness, count expectations,
reduced and full dynamics, trajectories and phase events.

Tolerances: float64 unit roundoff is 1.1e-16.  Identities that hold exactly in real arithmetic get
1e-12 after O(1e2..1e3) steps (accumulated roundoff of O(1) quantities); statistical comparisons state
their standard error and how it was estimated.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import multinomial

from sims.counter_rng import Stream, mix64, normals, stream_keys, uniforms, uniforms32
from sims.softmax.config import SoftmaxConfig, check_batch
from sims.softmax.counts import (
    CountEnsemble, count_vector_number, exact_count_vectors, expected_quantities, feature_cdf, sample_features,
)
from sims.softmax.full import (
    PromptSampler, autograd_gradient, feature_matrix, manual_gradient, scores_from_Q,
)
from sims.softmax.dynamics import (
    SoftmaxTrajectory, first_attention_step, first_loss_step, simulate_full, simulate_reduced,
    underrepresented_events,
)
from theory.errors import InputError
from theory.softmax.closed_form import attention, rise_threshold, time_to_attention

ROUNDOFF = 1e-12  # exact identities after many float64 steps (see module docstring)


# ----------------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, fragment", [
    (dict(K=1, d=3, p=[1.0]), "K must be"),
    (dict(K="3", d=3, p=[1 / 3] * 3), "K must be"),
    (dict(K=4, d=3, p=[0.25] * 4), "K <= d"),
    (dict(K=3, d=3, p=[0.5, 0.5]), "p has 2 entries"),
    (dict(K=2, d=2, p=[1.5, -0.5]), "nonnegative"),
    (dict(K=2, d=2, p=[0.5, 0.5 + 1e-8]), "sum to 1"),
    (dict(K=2, d=2, p=[0.5, 0.5], eta=0.0), "eta"),
    (dict(K=2, d=2, p=[0.5, 0.5], eta=float("inf")), "eta"),
    (dict(K=2, d=2, p=[0.5, 0.5], N=0), "N must be"),
    (dict(K=2, d=2, p=[0.5, 0.5], steps=0), "steps"),
    (dict(K=2, d=2, p=[0.5, 0.5], batch=0), "batch"),
    (dict(K=2, d=2, p=[0.5, 0.5], log_every=0), "log_every"),
    (dict(K=2, d=2, p=[0.5, 0.5], seed=-1), "seed"),
])
def test_validate_names_the_problem_in_one_line(kwargs, fragment):
    with pytest.raises(InputError, match=fragment) as info:
        SoftmaxConfig(**kwargs).validate()
    assert "\n" not in str(info.value)


def test_p_summing_to_one_within_tolerance_is_accepted():
    SoftmaxConfig(K=2, d=2, p=[0.5, 0.5 + 1e-10]).validate()


def test_constructors_and_json_round_trip():
    cfg = SoftmaxConfig.dominant(5, 0.6, eta=0.5, steps=10, N=20, seed=3)
    assert cfg.p == pytest.approx((0.6, 0.1, 0.1, 0.1, 0.1)) and cfg.d == 5
    assert SoftmaxConfig.balanced(4, d=7).p == (0.25,) * 4
    for original in (cfg, SoftmaxConfig.balanced(3, N=None)):
        assert SoftmaxConfig.from_dict(json.loads(json.dumps(original.to_dict()))) == original
    assert SoftmaxConfig.from_dict({**cfg.to_dict(), "N": "inf"}).N is None
    with pytest.raises(InputError, match="unknown softmax config keys"):
        SoftmaxConfig.from_dict({**cfg.to_dict(), "temperature": 1})
    with pytest.raises(InputError, match="missing required keys"):
        SoftmaxConfig.from_dict({"K": 2})


def test_batch_checks():
    a, b = SoftmaxConfig.balanced(3, steps=5), SoftmaxConfig.balanced(3, steps=6)
    with pytest.raises(InputError, match="share steps"):
        check_batch([a, b])
    with pytest.raises(InputError, match="no configs"):
        check_batch([])
    with pytest.raises(InputError, match="finite prompt length"):
        simulate_full(a)
    with pytest.raises(InputError, match="share batch"):
        simulate_full([SoftmaxConfig.balanced(3, steps=5, N=4), SoftmaxConfig.balanced(3, steps=5, N=4, batch=8)])
    with pytest.raises(InputError, match="device"):
        simulate_reduced(a, device="tpu-42")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            simulate_reduced(a, device="cuda")
    with pytest.raises(InputError, match="grad must be"):
        simulate_full(SoftmaxConfig.balanced(3, steps=5, N=4), grad="numerical")


# ----------------------------------------------------------------------------------------------------
# Counter-based randomness
# ----------------------------------------------------------------------------------------------------
def _splitmix_reference(value: int) -> int:
    mask = (1 << 64) - 1
    z = value & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_mix64_matches_python_uint64_reference():
    values = [0, 1, 12345, 2 ** 62 + 7, 2 ** 63 - 1, -1, -(2 ** 63), -987654321]
    got = mix64(torch.tensor(values, dtype=torch.long)).tolist()
    assert [g & ((1 << 64) - 1) for g in got] == [_splitmix_reference(v) for v in values]


def test_uniform_blocks_do_not_depend_on_padding():
    keys = stream_keys(torch.tensor([0, 5]), Stream.COUNTS, torch.arange(3))[:, 2]  # (2,)
    assert torch.equal(uniforms(keys, 4, 7), uniforms(keys, 6, 11)[:, :4, :7])
    assert torch.equal(uniforms32(keys, 4, 7), uniforms32(keys, 6, 12)[:, :4, :7])


def test_uniforms_and_normals_have_the_right_moments():
    keys = stream_keys(torch.tensor([1]), Stream.TOKENS, torch.arange(2))  # (1, 2)
    n = 200 * 500
    for u in (uniforms(keys[:, 0], 200, 500), uniforms32(keys[:, 0], 200, 500)):
        assert 0.0 <= u.min() and u.max() < 1.0
        # mean 1/2 with standard error sqrt(1/12 / n) = 9.1e-4; variance 1/12 with SE ~ 2.4e-4
        assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
        assert abs(u.var().item() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    z = normals(keys[:, 0], keys[:, 1], 200, 500)
    assert abs(z.mean().item()) < 5 / math.sqrt(n) and abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)


def test_inverse_cdf_never_picks_zero_probability_features():
    p = torch.tensor([[0.3, 0.0, 0.7, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3, 0.0, 0.0]], dtype=torch.float64)
    edges = torch.tensor([0.0, 0.3, 1 - 2.0 ** -53], dtype=torch.float64)
    picked = sample_features(feature_cdf(p), edges.expand(2, 3).contiguous())
    assert picked.tolist() == [[0, 2, 2], [0, 0, 2]]


# ----------------------------------------------------------------------------------------------------
# Count ensembles: exact enumeration vs Monte Carlo
# ----------------------------------------------------------------------------------------------------
def test_exact_count_vectors_are_the_multinomial():
    p = [0.5, 0.0, 0.2, 0.3]
    counts, weights = exact_count_vectors(7, p)
    assert len(counts) == count_vector_number(7, 3) == 36 and (counts[:, 1] == 0).all()
    assert (counts.sum(1) == 7).all() and len({tuple(c) for c in counts}) == len(counts)
    np.testing.assert_allclose(weights, multinomial.pmf(counts, 7, p), rtol=1e-12)
    assert abs(weights.sum() - 1) < 1e-14


def _ensemble_moments(cfg, scores, count_samples, step):
    """Exact expectation of Attn and the Monte Carlo mean and standard error at one step."""
    exact = expected_quantities(scores, *CountEnsemble([cfg], cfg.K, step, "cpu", torch.float64).at(0))[0]
    counts, _ = CountEnsemble([cfg], cfg.K, step, "cpu", torch.float64, count_samples, exact_limit=0).at(step)
    samples = attention(scores[:, None], counts[:, :, None, :])  # (1, M, K, K)
    return exact[0], samples.mean(1)[0], samples.std(1)[0] / math.sqrt(count_samples)


def test_monte_carlo_agrees_with_exact_enumeration_within_its_standard_error():
    cfg = SoftmaxConfig.dominant(3, 0.5, N=6, steps=1, seed=11)
    scores = torch.tensor([[[1.0, -0.4, -0.6], [0.3, 0.5, -0.8], [-1.2, 0.2, 1.0]]], dtype=torch.float64)
    exact, mc, se = _ensemble_moments(cfg, scores, 4096, step=0)
    # 9 entries, SE from the 4096 samples themselves; |z| < 4 fails with probability ~ 6e-4 per entry
    assert ((mc - exact).abs() <= 4 * se).all(), ((mc - exact) / se)
    errors = [(_ensemble_moments(cfg, scores, m, step=1)[1] - exact).pow(2).mean().sqrt() for m in (64, 4096)]
    assert errors[1] < errors[0] / 3  # expected ratio sqrt(4096/64) = 8


def test_monte_carlo_draws_are_fresh_each_step_and_seeded():
    cfg = SoftmaxConfig.balanced(4, N=30, steps=3, seed=2)
    ens = CountEnsemble([cfg], 4, 3, "cpu", torch.float64, 32, exact_limit=0)
    assert not torch.equal(ens.at(0)[0], ens.at(1)[0])
    assert torch.equal(ens.at(1)[0], CountEnsemble([cfg], 4, 3, "cpu", torch.float64, 32, exact_limit=0).at(1)[0])
    assert torch.equal(ens.at(1)[0].sum(-1), torch.full((1, 32), 30.0, dtype=torch.float64))


# ----------------------------------------------------------------------------------------------------
# Reduced dynamics: invariants, padding, closed form
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N, exact_limit", [(None, 20_000), (6, 20_000), (40, 0)])
def test_reduced_invariants(N, exact_limit):
    configs = [SoftmaxConfig.balanced(5, N=N, steps=150, seed=1), SoftmaxConfig.dominant(5, 0.6, N=N, steps=150)]
    traj = simulate_reduced(configs, exact_limit=exact_limit, count_samples=256)
    assert traj.scores.sum(-1).abs().max() < ROUNDOFF  # sum_n s_{k,n} = 0 (docs/softmax_dynamics.md §3)
    assert (traj.A.diff(dim=1) >= 0).all()  # A_k non-decreasing: each update adds eta p_k E[a 2l] >= 0
    balanced = traj.select(0)
    off = balanced.scores[0] - torch.diag_embed(balanced.A[0])  # (T, K, K), zero diagonal
    expected = -balanced.A[0][:, :, None] / 4 * (1 - torch.eye(5, dtype=torch.float64))  # -A_k/(K-1)
    if N is None or exact_limit:  # symmetric expectation; Monte Carlo draws break the symmetry
        assert (off - expected).abs().max() < ROUNDOFF
        assert (balanced.A[0] - balanced.A[0][:, :1]).abs().max() < ROUNDOFF


def test_padded_mixed_batch_equals_each_config_alone():
    configs = [SoftmaxConfig.balanced(3, steps=60), SoftmaxConfig.dominant(5, 0.5, N=4, steps=60, eta=0.7),
               SoftmaxConfig.balanced(4, N=40, steps=60, seed=9), SoftmaxConfig.dominant(2, 0.7, N=50, steps=60)]
    options = dict(exact_limit=100, count_samples=64)  # K=4, N=40 and K=2, N=50 (51 vectors) -> MC / exact
    batch = simulate_reduced(configs, **options)
    for i, cfg in enumerate(configs):
        alone, picked = simulate_reduced(cfg, **options), batch.select(i)
        for name in ("scores", "attn", "loss_per_query", "loss"):
            assert (getattr(alone, name) - getattr(picked, name)).abs().max() < ROUNDOFF, name
    assert (batch.scores[0, :, 3:, :] == 0).all() and (batch.attn[0, :, :, 3:] == 0).all()  # padding inert


@pytest.mark.parametrize("K, eta, rel", [(5, 1.0, 0.01), (10, 1.0, 0.01), (5, 0.1, 0.002)])
def test_gd_tracks_the_closed_form_attention_time(K, eta, rel):
    """GD (forward Euler) vs the gradient-flow t(a) of docs/softmax_dynamics.md §4 at a = 1/2 and 0.9, N infinite.

    Measured (crossing time interpolated between steps): relative error 0.02% / 0.51% (K=5, a=1/2 / 0.9),
    0.15% / 0.15% (K=10), 0.004% / 0.05% (K=5, eta=0.1): first-order Euler error, shrinking with eta.
    The first logged step at or after the crossing adds up to one step of rounding, hence ``+ 1``.
    """
    targets = {a: float(time_to_attention(a, K, 1 / K, eta)) for a in (0.5, 0.9)}
    traj = simulate_reduced(SoftmaxConfig.balanced(K, eta=eta, steps=int(1.05 * targets[0.9]) + 2))
    for a, flow_time in targets.items():
        gd_time = first_attention_step(traj, 0, a)[0]
        assert abs(gd_time - flow_time) <= rel * flow_time + 1, (a, gd_time, flow_time)


# ----------------------------------------------------------------------------------------------------
# Full model
# ----------------------------------------------------------------------------------------------------
def _full_setup(configs):
    K, d = max(c.K for c in configs), max(c.d for c in configs)
    p = torch.tensor([list(c.p) + [0.0] * (K - c.K) for c in configs], dtype=torch.float64)
    V = feature_matrix(configs, d, K, "random", "cpu", torch.float64)
    return V, PromptSampler(configs, p, V).draw(0)


def test_manual_gradient_equals_autograd():
    configs = [SoftmaxConfig.dominant(4, 0.4, d=6, N=9, steps=1, batch=64),
               SoftmaxConfig.balanced(3, d=5, N=5, steps=1, batch=64)]
    V, prompts = _full_setup(configs)
    Q = torch.randn(2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # (C, d, d)
    S = scores_from_Q(Q, V)  # (C, K, K)
    assert abs(S[0, 1, 2] - V[0, :, 2] @ Q[0] @ V[0, :, 1]) < 1e-14  # s_{k,n} = v_n^T Q v_k, k=1, n=2
    manual, auto = manual_gradient(Q, V, prompts), autograd_gradient(Q, V, prompts)
    assert (manual - auto).abs().max() < 1e-14 * (1 + auto.abs().max())  # same sums, different order


def test_random_features_are_orthonormal_and_seeded():
    configs = [SoftmaxConfig.balanced(3, d=7, seed=4), SoftmaxConfig.balanced(5, d=5, seed=5)]
    V = feature_matrix(configs, 7, 5, "random", "cpu", torch.float64)
    gram = V.mT @ V  # (C, K, K)
    assert (gram[0, :3, :3] - torch.eye(3, dtype=torch.float64)).abs().max() < 1e-14
    assert (gram[1] - torch.eye(5, dtype=torch.float64)).abs().max() < 1e-14
    assert (V[0, :, 3:] == 0).all() and (V[1, 5:, :] == 0).all()  # padding of K (config 0) and d (config 1)
    assert torch.equal(V[:1, :, :3], feature_matrix(configs[:1], 7, 3, "random", "cpu", torch.float64))


def test_full_model_invariant_and_gradient_choice():
    cfg = SoftmaxConfig.dominant(4, 0.5, d=6, N=12, steps=40, batch=128, log_every=10)
    manual, auto = simulate_full(cfg, features="random"), simulate_full(cfg, features="random", grad="autograd")
    assert manual.scores.sum(-1).abs().max() < ROUNDOFF  # sum_n s_{k,n} = 0 with sampled w and tokens
    assert (manual.scores - auto.scores).abs().max() < ROUNDOFF
    assert manual.t.tolist() == [0, 10, 20, 30, 40]


def test_full_model_batched_equals_one_by_one():
    configs = [SoftmaxConfig.balanced(3, d=4, N=5, steps=30, batch=64, seed=1),
               SoftmaxConfig.dominant(5, 0.6, d=8, N=9, steps=30, batch=64, eta=0.5, seed=2),
               SoftmaxConfig.balanced(4, d=4, N=30, steps=30, batch=64, seed=1)]
    options = dict(exact_limit=200, count_samples=64)  # the third config's logs use Monte Carlo
    batch = simulate_full(configs, **options)
    for i, cfg in enumerate(configs):
        alone, picked = simulate_full(cfg, **options), batch.select(i)
        for name in ("scores", "attn", "loss_per_query"):
            assert (getattr(alone, name) - getattr(picked, name)).abs().max() < ROUNDOFF, name


def test_full_model_tracks_reduced_dynamics_at_finite_N():
    """Full model (sampled tokens and w, 256 prompts per step) vs the exact reduced GD at N = 32.

    The standard error of the full model's A_k(t) is estimated from 16 independent seeds (measured
    relative sd of one seed: 0.7-8.7%).  Mean minus reduced, over 3 logged steps x 4 features, must stay
    within 4.5 standard errors (t with 15 dof: false alarm ~ 4e-4 per entry).  Measured max |z| = 0.91.
    The same data must tell N = 32 from N = 4 (measured |z| 18-88; required > 10), so the check has power
    (against N = infinity the measured max |z| is 23).
    """
    base = dict(d=6, steps=60, log_every=20, batch=256)
    full = simulate_full([SoftmaxConfig.dominant(4, 0.55, N=32, seed=s, **base) for s in range(16)])
    A = full.A[:, 1:]  # (seeds, T-1, K); t = 0 is exactly 0
    mean, se = A.mean(0), A.std(0) / 4  # sqrt(16) = 4
    reduced = {N: simulate_reduced(SoftmaxConfig.dominant(4, 0.55, N=N, **base)).A[0, 1:] for N in (32, 4)}
    assert ((mean - reduced[32]).abs() / se).max() < 4.5
    assert ((mean - reduced[4]).abs() / se).max() > 10


# ----------------------------------------------------------------------------------------------------
# Trajectories and events
# ----------------------------------------------------------------------------------------------------
def test_trajectory_views_and_serialisation(tmp_path):
    configs = [SoftmaxConfig.balanced(3, steps=7, log_every=3),
               SoftmaxConfig.dominant(4, 0.5, N=3, steps=7, log_every=3)]
    traj = simulate_reduced(configs)
    assert traj.t.tolist() == [0, 3, 6, 7] and traj.scores.shape == (2, 4, 4, 4)
    assert torch.equal(traj.B + torch.diag_embed(traj.A), traj.scores)
    p = torch.tensor([[1 / 3] * 3 + [0], [0.5] + [1 / 6] * 3], dtype=torch.float64)  # (C, K) padded
    assert torch.allclose(traj.loss, (traj.loss_per_query * p[:, None]).sum(-1))
    assert traj.select(0).attn.shape == (1, 4, 3, 3)
    np.savez(tmp_path / "traj.npz", **traj.to_arrays())
    loaded = SoftmaxTrajectory.from_arrays(np.load(tmp_path / "traj.npz"))
    assert loaded.configs == traj.configs and torch.equal(loaded.scores, traj.scores)
    runs = json.loads(json.dumps(traj.to_json_dict()))["runs"]
    assert len(runs[0]["A"][0]) == 3 and len(runs[1]["B"][0]) == 4


def test_underrepresented_events_are_ordered_and_vectorised():
    K, eps = 6, 0.02
    above, below = 0.6, 0.3  # rise threshold 1/sqrt(6) = 0.41 lies between
    assert below < rise_threshold(K) < above
    configs = [SoftmaxConfig.dominant(K, c, steps=2500, log_every=1) for c in (above, below)]
    traj = simulate_reduced(configs)
    events = underrepresented_events(traj, k=1, eps=eps)
    assert 0 < events.offtarget_peak[0] < events.overtakes_dominant[0] < events.half_attention[0] < events.converged[0]
    assert events.offtarget_peak[1] == 0  # below the threshold B_{k,n} only falls
    single = underrepresented_events(traj.select(0), k=1, eps=eps)
    assert single.converged[0] == events.converged[0] and single.offtarget_peak[0] == events.offtarget_peak[0]
    short = underrepresented_events(simulate_reduced(SoftmaxConfig.dominant(K, above, steps=5)), k=1, eps=eps)
    assert np.isnan(short.offtarget_peak[0]) and np.isnan(short.converged[0])  # not reached in 5 steps
    np.testing.assert_array_equal(first_loss_step(traj, 1, eps), events.converged)
    with pytest.raises(InputError, match="dominant"):
        underrepresented_events(traj, k=0, eps=eps)
    with pytest.raises(InputError, match="outside"):
        first_attention_step(traj, 6, 0.5)
