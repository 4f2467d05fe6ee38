"""Chunking a sweep must not change a result: for every claim of the quick catalogue, measuring its configs
one by one gives the rows of measuring them in one batch (to the rounding of a batch slice, which is not
bit for bit on every CPU: tests/batch_rounding.py), and the rows are plain JSON data that a chunk
checkpoint reads back exactly.  This is what lets ``verify run --workers/--scheduler`` cut
sweeps into tasks (verify/distributed.py) and ``--resume`` continue from chunk checkpoints.
"""
import json

import pytest
import torch
from batch_rounding import first_difference

from verify.registry import RunContext, all_claims

@pytest.mark.slow
@pytest.mark.parametrize("claim", all_claims(), ids=lambda c: c.id)
def test_one_by_one_equals_batched_and_rows_are_plain(claim):
    ctx = RunContext(device=torch.device("cpu"), budget="quick", seed=0)
    configs = claim.configs("quick")
    batched = claim.measure(configs, ctx)
    alone = [row for cfg in configs for row in claim.measure([cfg], ctx)]
    assert first_difference(batched, alone) is None, first_difference(batched, alone)
    assert first_difference(json.loads(json.dumps(batched, allow_nan=True)), batched, exact=True) is None
