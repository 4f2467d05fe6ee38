"""GPU path: the same configs give the same numbers on CUDA as on the CPU (float64). Skipped without CUDA."""
import pytest
import torch

from sims.softmax.dynamics import SoftmaxConfig, simulate_full, simulate_reduced

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _close(a, b):
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-11)
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=1e-11)


def test_reduced_cuda_equals_cpu():
    cfgs = [SoftmaxConfig.dominant(K, 0.6, steps=300, N=N) for K, N in ((5, None), (8, None), (3, 10), (6, 200))]
    _close(simulate_reduced(cfgs, device="cuda"), simulate_reduced(cfgs, device="cpu"))


def test_full_model_cuda_equals_cpu():
    cfgs = [SoftmaxConfig.balanced(4, d=6, N=32, steps=20, batch=256, seed=s) for s in range(3)]
    _close(simulate_full(cfgs, device="cuda"), simulate_full(cfgs, device="cpu"))
