"""Argument types of the command line, shared by the framework and the papers' own subcommands.

User strings are data: parsed, never evaluated. Each type raises ``argparse.ArgumentTypeError``, which the
CLI turns into a one-line error (exit 2).
"""
from __future__ import annotations

import argparse
import math

__all__ = ["int_or_inf", "seed", "float_list", "finite_float", "tolerance"]


def int_or_inf(text: str):
    if text.lower() in ("inf", "infinity"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'inf', got {text!r}") from None
    return value


def seed(text: str) -> int:
    """A seed: an integer in [0, 2^63), the range of :mod:`sims.seeds` (checked here, once)."""
    from sims.seeds import check

    try:
        return check(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) if "2^63" in str(exc) else f"expected an integer, got {text!r}") \
            from None


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def tolerance(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a tolerance >= 0, got {text!r}")
    return value
