"""Counter-based random numbers: every draw is a pure function of (seed, stream, step, counter).

Why not ``torch.Generator``: a batch of C configs needs C independent streams inside one step, and a
config's numbers must not depend on which other configs share its batch (architecture.md, "Numerics,
devices, reproducibility").  A counter-based generator gives that without a Python loop over configs,
draws the same numbers on CPU and CUDA, and needs no state.

The mixing function is the SplitMix64 finaliser (Steele, Lea & Flood, "Fast splittable pseudorandom
number generators", OOPSLA 2014), written with wrap-around int64 tensor arithmetic; the logical right
shift is an arithmetic shift followed by a mask.  ``tests/unit/test_sims_softmax.py`` checks it bit for
bit against a pure-Python uint64 reference.
"""
from __future__ import annotations

import math

import torch

__all__ = ["COUNTER_STRIDE", "Stream", "mix64", "stream_keys", "uniforms", "uniforms32", "normals"]

_TWO64 = 1 << 64


def _signed(value: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    return value - _TWO64 if value >= 1 << 63 else value


_GAMMA = _signed(0x9E3779B97F4A7C15)  # golden-ratio increment of SplitMix64
_MUL1 = _signed(0xBF58476D1CE4E5B9)
_MUL2 = _signed(0x94D049BB133111EB)
_MANTISSA = (1 << 53) - 1

COUNTER_STRIDE = 1 << 20
"""Counter of element ``(row, col)`` is ``row * COUNTER_STRIDE + col``, independent of any padding."""


class Stream:
    """Stream ids: one per independent use of randomness, so that uses never share numbers."""

    COUNTS = 1  # Monte Carlo count vectors of the expectation over prompts
    TOKENS = 2  # query and token features of the full model's prompts
    W_RADIUS = 3  # first uniform of the Box-Muller pair for the task vectors w
    W_ANGLE = 4  # second uniform of that pair
    FEATURES = 5  # random orthonormal feature matrix V


def _shift_right_logical(z: torch.Tensor, s: int) -> torch.Tensor:
    return (z >> s) & ((1 << (64 - s)) - 1)  # same shape as z


def _mix_(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser applied in place to an int64 tensor the caller owns (saves temporaries)."""
    shifted = torch.empty_like(z)  # same shape as z
    for s, multiplier in ((30, _MUL1), (27, _MUL2), (31, None)):
        torch.bitwise_right_shift(z, s, out=shifted)
        shifted &= (1 << (64 - s)) - 1  # logical shift
        z ^= shifted
        if multiplier is not None:
            z *= multiplier  # wraps mod 2^64
    return z


def mix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser of an int64 tensor (bits read as uint64), elementwise; ``z`` is not modified."""
    return _mix_(z.clone())


def stream_keys(seeds: torch.Tensor, stream: int, steps: torch.Tensor) -> torch.Tensor:
    """Keys of ``stream`` for every (config, step): a (C, T) int64 tensor.

    Parameters
    ----------
    seeds : (C,) int64 tensor of config seeds.
    stream : one of :class:`Stream`.
    steps : (T,) int64 tensor of step indices (or any other second coordinate).
    """
    per_stream = mix64(mix64(seeds * _GAMMA + stream))  # (C,)
    return mix64(per_stream[:, None] + (steps[None, :] + 1) * _GAMMA)  # (C, T)


def _bits(keys: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Raw 64-bit words of shape (C, rows, cols) for (C,) keys; element counter row * stride + col."""
    if cols > COUNTER_STRIDE:
        raise ValueError(f"at most {COUNTER_STRIDE} words per row, got {cols}")
    counters = (torch.arange(rows, device=keys.device)[:, None] * COUNTER_STRIDE
                + torch.arange(cols, device=keys.device)[None, :])  # (rows, cols)
    return _mix_(keys[:, None, None] + (counters + 1) * _GAMMA)  # (C, rows, cols)


def uniforms(keys: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Float64 uniforms on [0, 1) of shape (C, rows, cols), 53 random bits each.

    Element ``(c, i, j)`` depends only on ``keys[c]``, ``i`` and ``j`` (``cols <= COUNTER_STRIDE``), so
    drawing a larger padded block leaves the numbers of the unpadded block unchanged.
    """
    return (_shift_right_logical(_bits(keys, rows, cols), 11) & _MANTISSA).to(torch.float64) * 2.0 ** -53


def uniforms32(keys: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Float64 uniforms on [0, 1) of shape (C, rows, cols) with 32 random bits each, two per 64-bit word.

    Half the hashing of :func:`uniforms`; used for inverse-CDF sampling of features, where it quantises
    each probability to a multiple of 2^-32 (error < 2.4e-10).  Element ``(c, i, j)`` is half ``j % 2``
    of word ``(i, j // 2)``, so padding ``cols`` leaves the unpadded block unchanged.
    """
    words = _bits(keys, rows, (cols + 1) // 2)  # (C, rows, W)
    halves = torch.stack([_shift_right_logical(words, 32), words & 0xFFFFFFFF], -1)  # (C, rows, W, 2)
    return halves.reshape(*words.shape[:2], -1)[..., :cols].to(torch.float64) * 2.0 ** -32  # (C, rows, cols)


def normals(radius_keys: torch.Tensor, angle_keys: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Standard normals (C, rows, cols), float64, by Box-Muller from two independent uniform streams."""
    u_radius = 1.0 - uniforms(radius_keys, rows, cols)  # (C, rows, cols) in (0, 1]
    u_angle = uniforms(angle_keys, rows, cols)  # (C, rows, cols)
    return torch.sqrt(-2.0 * torch.log(u_radius)) * torch.cos(2.0 * math.pi * u_angle)  # (C, rows, cols)
