"""The one seed policy of both papers' simulations and claims.

Accepted seeds are the integers in ``[0, 2^63)`` (:data:`SEED_LIMIT`; int64 tensors of the counter-based
generator hold them, and ``torch.Generator.manual_seed`` takes them): :func:`check` is the one check,
used by the command line and by the sims configs.

Seeds derived from a run seed stay in that range for every accepted run seed, never by a product that can
overflow:

- :func:`derive` ``(seed, counter)``: ``(mix64(seed) + counter) mod 2^63``, a counter stream from a hashed
  base (SplitMix64's finaliser, a bijection of 64-bit words). ``mix64(0) = 0``, so run seed 0 derives the
  counters themselves; distinct run seeds start their streams at unrelated points, so seed s + 1 does not
  reuse the numbers of seed s (which ``seed + counter`` would).
- :func:`successor` ``(seed, i)``: ``(seed + i) mod 2^63``, consecutive seeds a user asks for by number
  (``verify simulate landscape --seed S --seeds N``); they wrap around past 2^63 - 1.
"""
from __future__ import annotations

__all__ = ["SEED_LIMIT", "check", "mix64", "derive", "successor"]

SEED_LIMIT = 1 << 63
_MASK64 = (1 << 64) - 1


def check(value, what: str = "seed") -> int:
    """``value`` as an int when it is an integer in [0, 2^63); otherwise ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{what} must be an integer in [0, 2^63), got {value!r:.40}")
    return value


def mix64(value: int) -> int:
    """SplitMix64 finaliser of a 64-bit word (Steele, Lea & Flood, OOPSLA 2014), as a Python int.

    The same function as :func:`sims.counter_rng.mix64` on tensors (tests/unit/test_seeds.py ties them).
    """
    z = value & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def derive(seed: int, counter: int) -> int:
    """Seed number ``counter`` (>= 0) of the stream of run seed ``seed``, in [0, 2^63)."""
    return (mix64(check(seed)) + counter) % SEED_LIMIT


def successor(seed: int, i: int) -> int:
    """The ``i``-th seed after ``seed`` (``i >= 0``), wrapping around at 2^63."""
    return (check(seed) + i) % SEED_LIMIT
