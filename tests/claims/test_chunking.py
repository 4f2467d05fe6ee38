"""Chunking a sweep must not change a number: for every claim of the quick catalogue, measuring its configs
one by one gives the rows of measuring them in one batch, bit for bit, and the rows are plain JSON data
that a chunk checkpoint reads back exactly.  This is what lets ``verify run --workers/--scheduler`` cut
sweeps into tasks (verify/distributed.py) and ``--resume`` continue from chunk checkpoints.
"""
import json
import math

import pytest
import torch

from verify.registry import RunContext, all_claims

PLAIN = (dict, list, str, int, float, bool, type(None))


def _same(a, b, where="row") -> str | None:
    """Where ``a`` and ``b`` differ in type or value (NaN equals NaN); None when identical."""
    if type(a) is not type(b) or type(a) not in PLAIN:
        return f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        if list(a) != list(b) or not all(isinstance(k, str) for k in a):
            return f"{where}: keys {list(a)} vs {list(b)}"
        return next((d for k in a if (d := _same(a[k], b[k], f"{where}.{k}"))), None)
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: length {len(a)} vs {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := _same(x, y, f"{where}[{i}]"))), None)
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return None
    return None if a == b else f"{where}: {a!r} vs {b!r}"


@pytest.mark.slow
@pytest.mark.parametrize("claim", all_claims(), ids=lambda c: c.id)
def test_one_by_one_equals_batched_and_rows_are_plain(claim):
    ctx = RunContext(device=torch.device("cpu"), budget="quick", seed=0)
    configs = claim.configs("quick")
    batched = claim.measure(configs, ctx)
    alone = [row for cfg in configs for row in claim.measure([cfg], ctx)]
    assert _same(batched, alone) is None, _same(batched, alone)
    assert _same(json.loads(json.dumps(batched, allow_nan=True)), batched) is None
