"""Fast paths of the softmax simulations against their plain references (correctness, never timing).

- integer inverse CDF (guide table) == ``searchsorted`` on the same uniforms, bit for bit;
- random numbers drawn once per shared seed == drawn per config, bit for bit, and batched == one by one;
- the count-vector gradient == the token-level gradient to float64 roundoff;
- a compiled step == the eager step (integers bit for bit; floats to roundoff: fused kernels round
  differently);
- the compile setting and the skipped expectation terms.

Tolerances: float64 unit roundoff is 1.1e-16; a one-step gradient summed in another order gets 1e-14
relative; trajectories of O(10..100) steps get 1e-12 (``ROUNDOFF``, as in test_sims_softmax.py).
"""
from __future__ import annotations

import pytest
import torch

from sims.counter_rng import Groups, Stream, bits32, counter_offsets, keys_at, stream_keys, uniforms32, words
from sims.softmax.config import SoftmaxConfig
from sims.softmax.counts import (
    CountEnsemble, FeatureDraws, InverseCDF, expected_quantities, feature_cdf, padded_probabilities,
    sample_features,
)
from sims.softmax.full import FullStep, counts_gradient, manual_gradient
from sims.softmax.dynamics import COMPILE_ENV, compile_mode, compiled, simulate_full, simulate_reduced
from theory.errors import InputError
from theory.softmax.closed_form import attention, per_query_loss, score_gradient

ROUNDOFF = 1e-12
FIELDS = ("scores", "attn", "loss_per_query", "loss")


def _max_difference(a, b) -> float:
    return max((getattr(a, name) - getattr(b, name)).abs().max().item() for name in FIELDS)


def _probabilities(rows) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [0.0] * (width - len(r)) for r in rows], dtype=torch.float64)  # (C, K)


# ----------------------------------------------------------------------------------------------------
# Integer inverse CDF
# ----------------------------------------------------------------------------------------------------
def test_inverse_cdf_equals_searchsorted_on_random_and_boundary_integers():
    gen = torch.Generator().manual_seed(3)
    raw = torch.rand(4, 9, generator=gen, dtype=torch.float64)
    p = _probabilities([
        [0.3, 0.0, 0.7],  # a zero inside, padding after
        [1 / 3] * 3,  # rounding of the cumulative sum
        (raw[0] / raw[0].sum()).tolist(),
        [0.999] + [0.001 / 127] * 127,  # tiny probabilities: several thresholds per guide bucket
        [1 / 16] * 16,  # thresholds exactly on bucket edges
    ])
    sampler = InverseCDF(p)
    assert sampler.passes >= 2  # the tiny-probability row needs corrections
    keys = stream_keys(torch.arange(5), Stream.TOKENS, torch.arange(1))[:, 0]  # (5,)
    random_bits = bits32(keys, 64, 257)  # (5, 64, 257)
    T = sampler.thresholds  # (5, K) integer thresholds; test them and their neighbours
    edges = torch.cat([T - 1, T, T + 1, torch.zeros_like(T), torch.full_like(T, 2 ** 32 - 1)], 1).clamp(0, 2 ** 32 - 1)
    for bits in (random_bits, edges):
        reference = sample_features(feature_cdf(p), bits.to(torch.float64) * 2.0 ** -32)  # u as in uniforms32
        assert torch.equal(sampler(bits), reference)
    assert (sampler(edges)[0] != 1).all() and (sampler(edges)[0] <= 2).all()  # p = 0 and padding never drawn


def test_bits32_are_the_integers_behind_uniforms32():
    keys = stream_keys(torch.tensor([0, 7]), Stream.COUNTS, torch.arange(2))[:, 1]  # (2,)
    bits = bits32(keys, 5, 9)  # (2, 5, 9)
    assert bits.min() >= 0 and bits.max() < 2 ** 32
    assert torch.equal(bits.to(torch.float64) * 2.0 ** -32, uniforms32(keys, 5, 9))
    assert torch.equal(bits32(keys, 5, 9, counter_offsets(5, 5, "cpu")), bits)
    assert torch.equal(words(keys, 5, 5, counter_offsets(5, 5, "cpu")), words(keys, 5, 5))
    table = stream_keys(torch.tensor([1, 2]), Stream.TOKENS, torch.arange(4))  # (2, 4)
    assert torch.equal(keys_at(table, 2), keys_at(table, torch.tensor(2)))


# ----------------------------------------------------------------------------------------------------
# Shared random numbers
# ----------------------------------------------------------------------------------------------------
def test_groups_spread_rows_to_their_configs():
    groups = Groups([5, 3, 5, 5, 9], "cpu")
    assert groups.first == [0, 1, 4] and groups.shared
    assert groups.spread(torch.tensor([10, 20, 30])).tolist() == [10, 20, 10, 10, 30]
    alone = Groups([1, 2], "cpu")
    x = torch.arange(2)
    assert not alone.shared and alone.spread(x) is x


def test_shared_feature_draws_equal_draws_per_config():
    configs = [SoftmaxConfig.dominant(4, 0.5, seed=3), SoftmaxConfig.dominant(4, 0.5, seed=3, eta=2.0),
               SoftmaxConfig.dominant(4, 0.7, seed=3), SoftmaxConfig.balanced(3, d=4, seed=8),
               SoftmaxConfig.dominant(4, 0.5, seed=8)]
    p = padded_probabilities(configs, 4, "cpu", torch.float64)  # (C, K)
    together = FeatureDraws(configs, p, Stream.TOKENS, 3, 6, 11)(2)  # (C, 6, 11)
    for i, cfg in enumerate(configs):
        assert torch.equal(together[i], FeatureDraws([cfg], p[i:i + 1], Stream.TOKENS, 3, 6, 11)(2)[0])
    assert torch.equal(together[0], together[1]) and not torch.equal(together[0], together[2])


def test_shared_seed_sweeps_equal_one_by_one():
    """An eta/c sweep on one seed draws once per group; each config's numbers equal its lone run."""
    reduced = [SoftmaxConfig.dominant(4, c, N=25, eta=eta, steps=12, log_every=4, seed=1)
               for c in (0.4, 0.6) for eta in (0.5, 1.5)] + [SoftmaxConfig.dominant(4, 0.4, N=9, steps=12,
                                                                                  log_every=4, seed=1)]
    options = dict(exact_limit=0, count_samples=32)
    batch = simulate_reduced(reduced, **options)
    for i, cfg in enumerate(reduced):
        assert _max_difference(batch.select(i), simulate_reduced(cfg, **options)) < ROUNDOFF
    full = [SoftmaxConfig.dominant(4, c, d=5, N=N, eta=eta, steps=8, batch=32, log_every=4, seed=2)
            for c, N, eta in ((0.5, 7, 1.0), (0.5, 7, 0.3), (0.6, 7, 1.0), (0.5, 10, 1.0))]
    batch = simulate_full(full, **options)
    for i, cfg in enumerate(full):
        assert _max_difference(batch.select(i), simulate_full(cfg, **options)) < ROUNDOFF


# ----------------------------------------------------------------------------------------------------
# Count-vector gradient
# ----------------------------------------------------------------------------------------------------
def test_counts_gradient_equals_token_gradient():
    configs = [SoftmaxConfig.dominant(4, 0.4, d=6, N=9, steps=1, batch=64, seed=1),
               SoftmaxConfig.balanced(3, d=5, N=5, steps=1, batch=64, seed=2),  # padded in K, d and N
               SoftmaxConfig.balanced(4, d=6, N=1, steps=1, batch=64, seed=2)]
    full = FullStep.build(configs, "cpu", torch.float64, features="random")
    prompts = full.prompts.draw(0)
    Q = torch.randn(3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))  # (C, d, d)
    tokens, counts = manual_gradient(Q, full.V, prompts), counts_gradient(Q, full.V, prompts)
    assert (tokens - counts).abs().max() < 1e-14 * (1 + tokens.abs().max())
    assert torch.equal(prompts.values, full.prompts.draw(0).values)  # the gradients leave the prompts intact


def test_full_model_counts_path_tracks_token_path():
    configs = [SoftmaxConfig.dominant(5, 0.6, d=6, N=12, steps=40, batch=64, log_every=10, seed=s) for s in (0, 1)]
    options = dict(exact_limit=0, count_samples=16)
    assert _max_difference(simulate_full(configs, grad="counts", **options),
                           simulate_full(configs, grad="manual", **options)) < ROUNDOFF


# ----------------------------------------------------------------------------------------------------
# Compiled step == eager step
# ----------------------------------------------------------------------------------------------------
def test_compiled_integers_are_bit_exact():
    keys = stream_keys(torch.tensor([0, 11]), Stream.TOKENS, torch.arange(3))  # (2, 3)
    sampler = InverseCDF(_probabilities([[0.2, 0.0, 0.8], [0.999] + [0.001 / 7] * 7]))
    offsets = counter_offsets(4, 6, "cpu")

    def draw(step):
        bits = bits32(keys_at(keys, step), 4, 12, offsets)  # (2, 4, 12)
        return bits, sampler(bits)

    step = torch.tensor(2)
    for eager, fused in zip(draw(step), torch.compile(draw, dynamic=False)(step)):
        assert torch.equal(eager, fused)


COMPILE_OPTIONS = dict(exact_limit=10, count_samples=8)  # tiny: compilation dominates these tests


# theory.softmax.closed_form.score_gradient calls an lru_cache'd sympy lambdify, which dynamo traces (graph breaks)
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_compiled_reduced_simulation_equals_eager():
    configs = [SoftmaxConfig.balanced(3, steps=6, log_every=3),  # N infinite: the limit "count vector"
               SoftmaxConfig.dominant(4, 0.6, N=20, steps=6, log_every=3, seed=2)]  # Monte Carlo
    assert _max_difference(simulate_reduced(configs, compile=True, **COMPILE_OPTIONS),
                           simulate_reduced(configs, compile=False, **COMPILE_OPTIONS)) < ROUNDOFF


@pytest.mark.parametrize("grad", ["manual", "counts"])
def test_compiled_full_simulation_equals_eager(grad):
    configs = [SoftmaxConfig.balanced(3, d=4, N=5, steps=4, batch=8, log_every=2, seed=1),
               SoftmaxConfig.dominant(4, 0.6, d=4, N=7, steps=4, batch=8, log_every=2, seed=2)]
    assert _max_difference(simulate_full(configs, grad=grad, compile=True, **COMPILE_OPTIONS),
                           simulate_full(configs, grad=grad, compile=False, **COMPILE_OPTIONS)) < ROUNDOFF


def test_compile_setting(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv(COMPILE_ENV, raising=False)
    assert compile_mode(None, cpu) is None and compile_mode(None, cuda) == "default"
    assert compile_mode(True, cpu) == "default" and compile_mode(False, cuda) is None
    assert compile_mode("reduce-overhead", cpu) == "reduce-overhead"
    for value, expected in (("1", "default"), ("0", None), ("auto", None), ("max-autotune", "max-autotune")):
        monkeypatch.setenv(COMPILE_ENV, value)
        assert compile_mode(None, cpu) == expected
    monkeypatch.setenv(COMPILE_ENV, "fast")
    with pytest.raises(InputError, match="compile must be"):
        compile_mode(None, cpu)
    with pytest.raises(InputError, match="compile must be"):
        simulate_reduced(SoftmaxConfig.balanced(3, steps=2), compile="turbo")

    def step(x):
        return x
    assert compiled(step, None) is step


# ----------------------------------------------------------------------------------------------------
# Skipped expectation terms
# ----------------------------------------------------------------------------------------------------
def test_skipped_expectation_terms_leave_the_others_unchanged():
    configs = [SoftmaxConfig.balanced(3, N=4), SoftmaxConfig.dominant(3, 0.5)]  # exact (M = 15) and limit
    counts, weights = CountEnsemble(configs, 3, 1, "cpu", torch.float64).at(0)
    scores = torch.randn(2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))  # (C, K, K)
    attn, grad, loss = expected_quantities(scores, counts, weights)
    assert expected_quantities(scores, counts, weights, grad=False)[1] is None
    partial = expected_quantities(scores, counts, weights, loss=False)
    assert partial[2] is None and torch.equal(partial[0], attn) and torch.equal(partial[1], grad)
    limit_counts, limit_weights = CountEnsemble(configs[1:], 3, 1, "cpu", torch.float64).at(0)  # M = 1
    per_vector = attention(scores[1:, None], limit_counts[:, :, None, :])  # (1, 1, K, K)
    terms = (per_vector, score_gradient(per_vector), per_query_loss(per_vector, torch.arange(3)))
    for fast, term in zip(expected_quantities(scores[1:], limit_counts, limit_weights), terms):
        assert torch.equal(fast, torch.einsum("cm,cm...->c...", limit_weights, term))  # the single-term sum
