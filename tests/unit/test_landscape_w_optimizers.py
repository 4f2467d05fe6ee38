"""The W optimisers of joint training (sims/landscape/optim.py; docs/attention_landscape.md §9)."""
import pytest
import torch

from sims.landscape.flow import MeanFieldConfig, simulate
from sims.landscape.config import W_OPTIMIZERS
from sims.landscape.optim import ADAM_EPS, WOptimizerState, w_step
from theory.landscape import objective as AL
from theory.errors import InputError

DT = torch.float64
EPS = torch.finfo(DT).eps


def _problem(C=3, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(C, k, k, generator=g, dtype=DT)
    S_mm = A @ A.mT + torch.eye(k, dtype=DT)  # (C, k, k) SPD
    S_om = torch.randn(C, k, k, generator=g, dtype=DT)
    W = torch.randn(C, k, k, generator=g, dtype=DT)
    grad = torch.stack([AL.grad_W_loss_tf(AL.Covariances(S_mm[c], S_om[c], S_om[c] @ S_om[c].T), W[c])
                        for c in range(C)])
    return S_mm, S_om, W, grad, torch.linalg.inv(S_mm)


def _step(name, W, grad, W_star, rate):
    kinds = torch.full((W.shape[0],), W_OPTIMIZERS.index(name), dtype=torch.long)
    return w_step(kinds, W, grad, W_star, torch.full((W.shape[0],), rate, dtype=DT), WOptimizerState.zeros(W))


def test_gd_is_a_plain_gradient_step_bit_for_bit():
    _, _, W, grad, W_star = _problem()
    assert torch.equal(_step("gd", W, grad, W_star, 0.3), W - 0.3 * grad)


def test_precond_is_S_mo_S_om_times_the_distance_to_W_star():
    S_mm, S_om, W, grad, W_star = _problem()
    expected = W - 0.2 * S_om.mT @ S_om @ (W - W_star)
    assert torch.allclose(_step("precond", W, grad, W_star, 0.2), expected, atol=1e3 * EPS)


def test_natural_relaxes_to_W_star_and_reaches_it_at_rate_one():
    _, _, W, grad, W_star = _problem()
    assert torch.allclose(_step("natural", W, grad, W_star, 0.25), 0.75 * W + 0.25 * W_star, atol=16 * EPS)
    assert torch.allclose(_step("natural", W, grad, W_star, 1.0), W_star, atol=16 * EPS)


def test_adam_first_step_moves_every_entry_by_the_step_size():
    """Bias-corrected first moments are the gradient itself: the first step is -rate g / (|g| + eps)."""
    _, _, W, grad, W_star = _problem()
    moved = _step("adam", W, grad, W_star, 0.01)
    assert torch.allclose(moved, W - 0.01 * grad / (grad.abs() + ADAM_EPS), atol=16 * EPS)


def test_each_config_of_a_batch_uses_its_own_optimiser():
    _, _, W, grad, W_star = _problem(C=4)
    kinds = torch.tensor([W_OPTIMIZERS.index(n) for n in ("gd", "adam", "precond", "natural")])
    out = w_step(kinds, W, grad, W_star, torch.full((4,), 0.1, dtype=DT), WOptimizerState.zeros(W))
    for c, name in enumerate(("gd", "adam", "precond", "natural")):
        alone = _step(name, W[c:c + 1], grad[c:c + 1], W_star[c:c + 1], 0.1)
        assert torch.allclose(out[c], alone[0], atol=16 * EPS)


def test_natural_joint_training_at_full_speed_lags_static_by_one_step():
    """With rate lr * w_speed = 1 the natural step sets W_{n+1} = W*(mu_n): at a fixed measure (lr tiny for
    the particles' effect) the joint L_TF equals the static L after one step."""
    base = dict(d=4, k=2, M=6, steps=3, log_every=1, lr=1e-9, seed=1)
    static, joint = simulate([MeanFieldConfig(**base),
                              MeanFieldConfig(**base, dynamics="joint", w_optimizer="natural", w_speed=1e9,
                                              w_init="zero")]).loss_tf
    assert torch.allclose(joint[1:], static[1:], rtol=1e-6)


def test_unknown_w_optimizer_is_refused():
    with pytest.raises(InputError, match="unknown w_optimizer 'sgd'"):
        MeanFieldConfig(d=3, k=2, M=2, w_optimizer="sgd").validate()
