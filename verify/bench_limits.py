"""Machine limits measured in the bench's own run and device, and the fraction of them a pass reaches.

Two limits, a roofline: **compute**, the FLOP rate of a matmul of the pass's own shape; **memory**, the
bandwidth of a large copy (bytes read plus bytes written per second, a tensor far larger than the
caches).  A pass doing F FLOPs and moving B bytes per unit of work (a particle pair, a token) cannot
run faster than ``min(matmul_rate / F, bandwidth / B)`` units per second; the smaller of the two names
the bound (``"compute"`` or ``"memory"``) and ``fraction_of_limit`` is the measured rate over it.  F and
B are counted by hand for each pass (see its docstring): transcendental functions count one FLOP,
and every elementwise pass over a tensor larger than the caches moves its 8-byte operands and result.
A pass whose temporaries stay in a cache can exceed the memory limit (fraction > 1): the copy measures
main-memory bandwidth.
"""
from __future__ import annotations

import functools

import torch

from verify.timing import best_time

__all__ = ["copy_bandwidth", "matmul_rate", "roofline"]


@functools.cache
def copy_bandwidth(device: torch.device, mib: int = 256) -> float:
    """Bytes per second of ``dst.copy_(src)`` for two ``mib``-MiB float64 tensors (read + write counted),
    best of 5 after a warm-up; measured once per process and device."""
    n = (mib << 20) // 8
    src = torch.rand(n, device=device, dtype=torch.float64)  # (n,)
    dst = torch.empty_like(src)  # (n,)
    return 2.0 * 8 * n / best_time(lambda: dst.copy_(src), device, repeats=5)


def matmul_rate(device: torch.device, batch: int, n: int, k: int, m: int) -> float:
    """FLOP/s (2 n k m per product) of a float64 (batch, n, k) @ (batch, k, m) matmul, best of 5."""
    a = torch.randn(batch, n, k, device=device, dtype=torch.float64)  # (batch, n, k)
    b = torch.randn(batch, k, m, device=device, dtype=torch.float64)  # (batch, k, m)
    return 2.0 * batch * n * k * m / best_time(lambda: a @ b, device, repeats=5)


def roofline(rate: float, flops: float, bytes_: float, matmul: float, bandwidth: float) -> dict:
    """The two limits of a pass measured at ``rate`` units/s, with ``flops`` and ``bytes_`` per unit.

    Returns
    -------
    dict
        ``flops_per_unit``, ``bytes_per_unit``, ``compute_limit`` (units/s at the matmul's FLOP rate),
        ``memory_limit`` (units/s at the copy bandwidth), ``bound`` (the smaller one: "compute" or
        "memory"), ``fraction_of_limit`` (rate over the bound) and ``fraction_of_compute``.
    """
    compute, memory = matmul / flops, bandwidth / bytes_
    bound = "memory" if memory < compute else "compute"
    return {"flops_per_unit": flops, "bytes_per_unit": bytes_, "compute_limit": compute, "memory_limit": memory,
            "bound": bound, "fraction_of_limit": rate / min(compute, memory), "fraction_of_compute": rate / compute}
