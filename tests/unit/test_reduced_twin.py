"""`verify simulate softmax --reduced` (N = infinity) against a plain numpy loop written from
docs/softmax_dynamics.md §2 alone.

The twin uses nothing from theory/ or sims/: the model (Attn_n = p_n e^{s_{k,n}} /
sum_m p_m e^{s_{k,m}}, l_k = 1/2 [(1 - Attn_k)^2 + sum_{n != k} Attn_n^2], L = sum_k p_k l_k) and its exact GD update
(A_k += eta p_k Attn_k 2 l_k; B_{k,n} -= eta p_k Attn_n (Attn_n + Attn_k - S), S = sum_m Attn_m^2), from
scores 0. Tolerance: both are float64 recursions of the same map summed in different orders; a few hundred
steps accumulate ~1e-14 relative, so 1e-12 (as ROUNDOFF in test_sims_softmax.py).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from verify.cli import main

ROUNDOFF = 1e-12


def _twin(p: np.ndarray, eta: float, steps: int) -> dict[str, np.ndarray]:
    K = len(p)
    s = np.zeros((K, K))  # s[k, n]: query k, feature n
    log = {"A": [], "B": [], "attn": [], "loss_per_query": [], "loss": []}
    for step in range(steps + 1):
        weights = p[None, :] * np.exp(s - s.max(axis=1, keepdims=True))
        attn = weights / weights.sum(axis=1, keepdims=True)  # (K, K)
        target = np.diag(attn)
        S = (attn ** 2).sum(axis=1)  # (K,)
        l = 0.5 * ((1 - target) ** 2 + S - target ** 2)  # (K,)
        log["A"].append(np.diag(s).copy())
        log["B"].append(s * (1 - np.eye(K)))
        log["attn"].append(attn)
        log["loss_per_query"].append(l)
        log["loss"].append(float(p @ l))
        if step == steps:
            break
        grad = attn * (attn + target[:, None] - S[:, None])  # (K, K): -dl_k/ds_{k,n} for n != k
        new = s - eta * p[:, None] * grad
        np.fill_diagonal(new, np.diag(s) + eta * p * target * 2 * l)
        s = new
    return {key: np.array(value) for key, value in log.items()}


@pytest.mark.parametrize("p,eta,steps", [
    ((0.25, 0.25, 0.25, 0.25), 1.0, 300),
    ((0.4, 0.3, 0.2, 0.1), 0.5, 300),
    ((0.6, 0.1, 0.1, 0.1, 0.1), 2.0, 200),
])
def test_cli_reduced_dynamics_equal_the_spec_written_twin(p, eta, steps, capsys):
    argv = ["simulate", "softmax", "--K", str(len(p)), "--p", ",".join(map(str, p)), "--eta", str(eta),
            "--steps", str(steps), "--reduced", "--device", "cpu"]
    assert main(argv) == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    twin = _twin(np.array(p), eta, steps)
    for key, expected in twin.items():
        got = np.array(run[key])
        assert got.shape == expected.shape, key
        np.testing.assert_allclose(got, expected, rtol=ROUNDOFF, atol=ROUNDOFF, err_msg=key)
    assert twin["A"][-1].min() > twin["A"][0].min()  # the run actually moved (not a trivial agreement at 0)
