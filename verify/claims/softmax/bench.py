"""Softmax figures of ``verify bench``: batched sweeps against one-by-one runs, the full-model step's FLOP
rate beside its roofline (a plain matmul and a large copy timed in the same run,
:mod:`verify.bench_limits`), and the peer a researcher would write instead: the same step in plain torch
with ``torch.multinomial`` prompts, an explicit token embedding and autograd.
"""
from __future__ import annotations

import torch
from torch import Tensor

from sims.softmax.dynamics import SoftmaxConfig, compile_mode, compiled, simulate_full, simulate_reduced
from sims.softmax.full import FullStep
from verify.bench_limits import copy_bandwidth, roofline
from verify.timing import best_time

__all__ = ["SECTIONS", "softmax_sweep", "full_model_flops", "plain_softmax_step", "softmax_vs_plain_torch"]


def softmax_sweep(device: torch.device, C: int = 64, steps: int = 400, K: int = 10) -> dict:
    """C configs (different eta and dominant c) in one batched reduced run vs the same C one by one.

    Also a Monte Carlo eta sweep (16 configs, N = 50, count vectors drawn every step) whose configs share
    one seed, so their draws are made once (``shared_seed_s``), against the same configs with 16 seeds.
    """
    configs = [SoftmaxConfig.dominant(K, 0.3 + 0.4 * i / (C - 1), eta=0.5 + 1.5 * (i % 8) / 7, steps=steps,
                                      log_every=10) for i in range(C)]
    batched = best_time(lambda: simulate_reduced(configs, device=device), device, repeats=2)
    single = best_time(lambda: [simulate_reduced([c], device=device) for c in configs], device, repeats=1)
    sweep = {seeds: [SoftmaxConfig.dominant(K, 0.5, eta=0.5 + 0.1 * i, N=50, steps=steps // 20, seed=i % seeds)
                     for i in range(16)] for seeds in (1, 16)}
    sampled = {seeds: best_time(lambda: simulate_reduced(cfgs, device=device), device, repeats=2)
               for seeds, cfgs in sweep.items()}
    return {"configs": C, "K": K, "steps": steps, "batched_s": batched, "one_by_one_s": single,
            "speedup": single / batched, "config_steps_per_s": C * steps / batched,
            "shared_seed_s": sampled[1], "distinct_seeds_s": sampled[16], "sharing_speedup": sampled[16] / sampled[1]}


def full_model_flops(device: torch.device, C: int = 16, batch: int = 1024, N: int = 64, K: int = 16,
                     steps: int = 20) -> dict:
    """Achieved FLOP/s of the full-model GD step against a plain matmul of comparable size, same run.

    FLOPs of a step are counted analytically for the useful work of the token-level model: per token,
    forward score gather, softmax (exp, sum, divide: 3), weighted label sum (2), and the backward (6) —
    11 per token — plus the two (d x d x K) products of V^T Q V and V G^T V^T (drawing the prompts is
    not counted).  The comparison matmul multiplies a (C*batch, N) by an (N, N) matrix, the token
    tensor's shape.  ``step_s`` times :class:`sims.softmax.full.FullStep` alone (compiled where
    :func:`sims.softmax.dynamics.compile_mode` says so: on CUDA); ``counts_step_s`` the same step through
    count vectors (``grad="counts"``; its FLOP/s are per token-model FLOP, ``counts_gflops_equiv``);
    ``run_s_per_step`` a whole ``simulate_full`` run (setup, first and last log, ``steps`` steps) divided
    by ``steps``.

    The token-level step's roofline (:mod:`verify.bench_limits`, per token): the FLOPs above, and
    192 bytes counted on the code as 8-byte passes over the (C, batch, N) token tensors: the drawn
    token index (written, 8), its flat score index (16), the score gather (16), softmax (16), label
    gather (16), attention times labels and its sum (32), labels - y_hat (16), the three in-place
    scalings of dz (16 + 24 + 16) and the scatter-add (16); the draw's integer hashing is not counted,
    as in the FLOPs.  Limits: the matmul above and the large-copy bandwidth.
    """
    cfgs = [SoftmaxConfig.balanced(K, N=N, batch=batch, steps=steps, log_every=steps, seed=i) for i in range(C)]
    run_s = best_time(lambda: simulate_full(cfgs, device=device), device, repeats=2) / steps
    mode = compile_mode(None, device)
    step_s = {}
    for grad in ("manual", "counts"):
        full = FullStep.build(cfgs, device, torch.float64, grad)
        step = compiled(full, mode)
        step_s[grad] = best_time(lambda: full.run(steps, step), device) / steps
    flops = C * (11.0 * batch * N + 4.0 * 2 * K ** 3)
    a = torch.randn(C * batch, N, device=device, dtype=torch.float64)
    b = torch.randn(N, N, device=device, dtype=torch.float64)
    mm_s = best_time(lambda: a @ b, device, repeats=5)
    mm_flops = 2.0 * C * batch * N * N
    tokens = C * batch * N
    bw = copy_bandwidth(device)
    limits = roofline(tokens / step_s["manual"], flops / tokens, 192.0, mm_flops / mm_s, bw)
    return {"configs": C, "batch": batch, "N": N, "K": K, "compile": mode or "eager", "step_s": step_s["manual"],
            "step_gflops": flops / step_s["manual"] / 1e9, "matmul_gflops": mm_flops / mm_s / 1e9,
            "fraction_of_matmul": (flops / step_s["manual"]) / (mm_flops / mm_s),
            "counts_step_s": step_s["counts"], "counts_gflops_equiv": flops / step_s["counts"] / 1e9,
            "run_s_per_step": run_s, "tokens_per_s": tokens / step_s["manual"], "copy_gbs": bw / 1e9, **limits}


def plain_softmax_step(Q: Tensor, V: Tensor, p: Tensor, eta: Tensor, batch: int, N: int,
                       gen: torch.Generator) -> Tensor:
    """One GD step of the full softmax model as a researcher would write it (C configs batched).

    Query and N tokens per prompt by ``torch.multinomial(p)``, w ~ N(0, I_d), token vectors x = v_f
    gathered from V, scores x_i^T Q x_q, softmax attention, prediction sum_i attn_i <w, x_i> against
    <w, x_q>, loss 1/2 mean (y_hat - y)^2 per config, gradient by autograd; Q (C, d, d), V (C, d, K),
    p (C, K), eta (C,).
    """
    C, d, _ = V.shape
    idx = torch.multinomial(p, batch * (N + 1), replacement=True, generator=gen).view(C, batch, N + 1)
    X = torch.gather(V.mT, 1, idx.view(C, -1, 1).expand(-1, -1, d)).view(C, batch, N + 1, d)  # (C, B, N+1, d)
    w = torch.randn(C, batch, d, generator=gen, dtype=V.dtype, device=V.device)  # (C, B, d)
    xq, xs = X[:, :, 0], X[:, :, 1:]  # (C, B, d), (C, B, N, d)
    leaf = Q.detach().requires_grad_()
    scores = (xs @ (xq @ leaf.mT).unsqueeze(-1)).squeeze(-1)  # (C, B, N): x_i^T Q x_q
    y_hat = (torch.softmax(scores, -1) * (xs @ w.unsqueeze(-1)).squeeze(-1)).sum(-1)  # (C, B)
    loss = 0.5 * (y_hat - (xq * w).sum(-1)).square().mean(1).sum()
    return Q - eta[:, None, None] * torch.autograd.grad(loss, leaf)[0]  # (C, d, d)


def softmax_vs_plain_torch(device: torch.device, C: int = 16, batch: int = 1024, N: int = 64, K: int = 16,
                           steps: int = 5) -> dict:
    """Seconds per GD step of :class:`sims.softmax.full.FullStep` (token level, eager) against
    :func:`plain_softmax_step` on the same shapes (the ``full_model_flops`` bench shape), best of 3
    runs of ``steps`` steps each."""
    cfgs = [SoftmaxConfig.balanced(K, N=N, batch=batch, steps=steps, log_every=steps, seed=i) for i in range(C)]
    full = FullStep.build(cfgs, device, torch.float64)
    p = torch.full((C, K), 1.0 / K, device=device, dtype=torch.float64)  # (C, K): the balanced configs' p
    gen = torch.Generator(device=device).manual_seed(0)

    def peer():
        Q = torch.zeros(C, K, K, device=device, dtype=torch.float64)
        for _ in range(steps):
            Q = plain_softmax_step(Q, full.V, p, full.eta[:, 0, 0], batch, N, gen)
        return Q

    ours_s = best_time(lambda: full.run(steps), device) / steps
    peer_s = best_time(peer, device) / steps
    return {"configs": C, "batch": batch, "N": N, "K": K, "ours_s": ours_s, "peer_s": peer_s,
            "speedup": peer_s / ours_s}


#: This paper's sections of ``verify bench`` (name -> function of the device), in order.
SECTIONS = {"softmax_sweep": softmax_sweep, "full_model_flops": full_model_flops,
            "softmax_vs_plain_torch": softmax_vs_plain_torch}
