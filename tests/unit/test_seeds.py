"""The one seed policy (sims/seeds.py): accepted range, derived seeds in range for every accepted run seed,
and both papers' claims built from run seeds up to 2^63 - 1."""
import pytest
import torch

from sims.counter_rng import mix64 as mix64_tensor
from sims.seeds import SEED_LIMIT, check, derive, mix64, successor
from verify.registry import RunContext

TOP = SEED_LIMIT - 1


def test_python_mix64_is_the_counter_generator_s():
    values = [0, 1, 2, 12345, 2 ** 62 + 7, TOP]
    bits = mix64_tensor(torch.tensor(values, dtype=torch.long)).tolist()
    assert [b & (2 ** 64 - 1) for b in bits] == [mix64(v) for v in values]


@pytest.mark.parametrize("bad", [-1, SEED_LIMIT, 2 ** 64, 1.5, "3", True, None])
def test_check_refuses_everything_outside_the_range(bad):
    with pytest.raises(ValueError, match=r"in \[0, 2\^63\)"):
        check(bad)


def test_derived_seeds_stay_in_range_and_seed_zero_keeps_its_counters():
    assert [derive(0, k) for k in range(5)] == [0, 1, 2, 3, 4]  # reports of seed 0 keep their numbers
    for seed in (0, 1, 2 ** 62, TOP - 1, TOP):
        for counter in (0, 1, 7, 10_007, 2 ** 40):
            assert 0 <= derive(seed, counter) < SEED_LIMIT
    assert successor(TOP, 0) == TOP and successor(TOP, 1) == 0 and successor(TOP - 1, 3) == 1


def test_neighbouring_run_seeds_do_not_share_derived_seeds():
    """seed + offset would give run seed 1's config 0 the numbers of run seed 0's config 1."""
    derived = {derive(seed, offset) for seed in range(50) for offset in range(50)}
    assert len(derived) == 50 * 50


@pytest.mark.parametrize("seed", [0, TOP])
def test_both_papers_build_their_configs_from_any_accepted_seed(seed):
    from verify.claims.landscape.common import config, measures
    from verify.claims.landscape.dynamics import _mf_config
    from verify.claims.softmax.common import balanced, sim_config

    ctx = RunContext(device=torch.device("cpu"), seed=seed)
    student, _ = measures(config("erf", 2, 3, 4, seed_offset=3), ctx)
    assert student.a.shape == (4, 2) and bool(torch.isfinite(student.a).all())
    assert _mf_config({"activation": "erf", "k": 2, "d": 3, "M": 4, "seed_offset": 9}, ctx).seed == derive(seed, 9)
    assert sim_config(balanced(3, steps=2, seed_offset=5), ctx).validate().seed == derive(seed, 5)
