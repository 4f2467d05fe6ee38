"""Counter-based random numbers: every draw is a pure function of (seed, stream, step, counter).

Why not ``torch.Generator``: a batch of C configs needs C independent streams inside one step, and a
config's numbers must not depend on which other configs share its batch (reproducibility policy:
a config's random numbers depend only on its own seed).  A counter-based generator gives that without a
Python loop over configs, draws the same numbers on CPU and CUDA, and needs no state.

The mixing function is the SplitMix64 finaliser (Steele, Lea & Flood, "Fast splittable pseudorandom
number generators", OOPSLA 2014), written with wrap-around int64 tensor arithmetic; the logical right
shift is an arithmetic shift followed by a mask.  ``tests/unit/test_sims_softmax.py`` checks it bit for
bit against a pure-Python uint64 reference.

Because a draw depends only on the seed (never on the config's hyperparameters or batch position),
configs that share a seed share their random numbers; :class:`Groups` lets a sampler draw them once per
distinct seed and copy them to every config of the group (one copy instead of the ~15 integer passes of
a draw), with numbers identical to drawing per config.
"""
from __future__ import annotations

import math
from typing import Hashable, Sequence

import torch

__all__ = ["COUNTER_STRIDE", "Stream", "Groups", "mix64", "stream_keys", "keys_at", "counter_offsets", "words",
           "bits32", "uniforms", "uniforms32", "normals"]

_TWO64 = 1 << 64


def _signed(value: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    return value - _TWO64 if value >= 1 << 63 else value


_GAMMA = _signed(0x9E3779B97F4A7C15)  # golden-ratio increment of SplitMix64
_MUL1 = _signed(0xBF58476D1CE4E5B9)
_MUL2 = _signed(0x94D049BB133111EB)

COUNTER_STRIDE = 1 << 20
"""Counter of element ``(row, col)`` is ``row * COUNTER_STRIDE + col``, independent of any padding."""


class Stream:
    """Stream ids: one per independent use of randomness, so that uses never share numbers."""

    COUNTS = 1  # Monte Carlo count vectors of the expectation over prompts
    TOKENS = 2  # query and token features of the full model's prompts
    W_RADIUS = 3  # first uniform of the Box-Muller pair for the task vectors w
    W_ANGLE = 4  # second uniform of that pair
    FEATURES = 5  # random orthonormal feature matrix V


class Groups:
    """A partition of C configs into U groups of equal ``labels`` (e.g. seeds), for drawing once per group.

    Attributes
    ----------
    first : list of U config indices, the first config of each group (in order of first appearance).
    index : (U,) int64 tensor of ``first``; pick the groups' rows of a per-config (C, ...) tensor with it.
    shared : True when U < C (some configs share a group).
    """

    def __init__(self, labels: Sequence[Hashable], device):
        group: dict[Hashable, int] = {}
        self.first: list[int] = []
        for i, label in enumerate(labels):
            if label not in group:
                group[label] = len(self.first)
                self.first.append(i)
        member = [group[label] for label in labels]  # group of each config
        self.index = torch.tensor(self.first, device=device, dtype=torch.long)  # (U,)
        self.shared = len(group) < len(labels)
        self._member = torch.tensor(member, device=device, dtype=torch.long)  # (C,)

    def spread(self, x: torch.Tensor) -> torch.Tensor:
        """The (C, ...) per-config tensor from the (U, ...) per-group one (``x`` itself when nothing is shared)."""
        return x.index_select(0, self._member) if self.shared else x  # (C, ...)


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


def keys_at(table: torch.Tensor, step: int | torch.Tensor) -> torch.Tensor:
    """Column ``step`` (C,) of a (C, T) key table; ``step`` is a Python int or a 0-d int64 tensor.

    A tensor step is read on its device (``index_select``): a step loop that carries its step counter as
    a tensor needs no host synchronisation and gives ``torch.compile`` one graph for every step.
    """
    if isinstance(step, int):
        return table[:, step]  # (C,)
    return table.index_select(1, step.reshape(1))[:, 0]  # (C,)


def counter_offsets(rows: int, cols: int, device) -> torch.Tensor:
    """(rows, cols) int64 ``(counter + 1) * gamma`` with ``counter = row * COUNTER_STRIDE + col``.

    Fixed for a given block shape: samplers build it once and pass it to :func:`words` at every step.
    """
    if cols > COUNTER_STRIDE:
        raise ValueError(f"at most {COUNTER_STRIDE} words per row, got {cols}")
    counters = (torch.arange(rows, device=device)[:, None] * COUNTER_STRIDE
                + torch.arange(cols, device=device)[None, :])  # (rows, cols)
    return (counters + 1) * _GAMMA  # (rows, cols)


def words(keys: torch.Tensor, rows: int, cols: int, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """Raw 64-bit words (C, rows, cols) for (C,) keys: ``mix64(key + (counter + 1) gamma)``.

    ``offsets``: :func:`counter_offsets` of ``(rows, cols)`` when the caller keeps it (built here otherwise).
    """
    offsets = counter_offsets(rows, cols, keys.device) if offsets is None else offsets  # (rows, cols)
    return _mix_(keys[:, None, None] + offsets)  # (C, rows, cols)


def bits32(keys: torch.Tensor, rows: int, cols: int, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """Random 32-bit integers (C, rows, cols) in [0, 2^32), as int64, two per 64-bit word (high half first).

    Element ``(c, i, j)`` is half ``j % 2`` of word ``(i, j // 2)`` of :func:`words`, so padding ``cols``
    leaves the unpadded block unchanged.  ``offsets``: :func:`counter_offsets` of ``(rows, ceil(cols / 2))``.
    """
    word = words(keys, rows, (cols + 1) // 2, offsets)  # (C, rows, W)
    shifts = 32 - 32 * torch.arange(2, device=word.device)  # (2,) = [32, 0]: high half, then low half
    halves = torch.bitwise_right_shift(word[..., None], shifts).bitwise_and_(0xFFFFFFFF)  # (C, rows, W, 2)
    return halves.view(*word.shape[:2], -1)[..., :cols]  # (C, rows, cols)


def uniforms(keys: torch.Tensor, rows: int, cols: int, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """Float64 uniforms on [0, 1) of shape (C, rows, cols), 53 random bits each.

    Element ``(c, i, j)`` depends only on ``keys[c]``, ``i`` and ``j`` (``cols <= COUNTER_STRIDE``), so
    drawing a larger padded block leaves the numbers of the unpadded block unchanged.  ``offsets``:
    :func:`counter_offsets` of ``(rows, cols)`` when the caller keeps it.
    """
    word = words(keys, rows, cols, offsets)  # (C, rows, cols)
    return _shift_right_logical(word, 11).to(torch.float64) * 2.0 ** -53  # (C, rows, cols); top 53 bits


def uniforms32(keys: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Float64 uniforms on [0, 1) of shape (C, rows, cols): :func:`bits32` times 2^-32.

    Half the hashing of :func:`uniforms`; each probability is quantised to a multiple of 2^-32 (error
    < 2.4e-10).  Feature sampling compares :func:`bits32` with integer thresholds instead
    (:class:`sims.softmax.counts.InverseCDF`): the same features without the float conversion.
    """
    return bits32(keys, rows, cols).to(torch.float64) * 2.0 ** -32  # (C, rows, cols)


def normals(radius_keys: torch.Tensor, angle_keys: torch.Tensor, rows: int, cols: int,
            offsets: torch.Tensor | None = None) -> torch.Tensor:
    """Standard normals (C, rows, cols), float64, by Box-Muller from two independent uniform streams.

    ``offsets``: :func:`counter_offsets` of ``(rows, cols)`` when the caller keeps it.
    """
    u_radius = 1.0 - uniforms(radius_keys, rows, cols, offsets)  # (C, rows, cols) in (0, 1]
    u_angle = uniforms(angle_keys, rows, cols, offsets)  # (C, rows, cols)
    return torch.sqrt(-2.0 * torch.log(u_radius)) * torch.cos(2.0 * math.pi * u_angle)  # (C, rows, cols)
