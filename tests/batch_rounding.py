"""Comparing results computed in different batches (chunked sweeps, distributed runs, --resume) or on
different CPUs.

In exact arithmetic a config's numbers do not depend on its batch mates; in float64 the rounding does: a
batch slice may be reduced in another order than a lone config (SIMD body vs scalar tail, MKL's
alignment-dependent batched matmul), which moves a value by a few ulps, and a rounding residual (a
quantity that is 0 in exact arithmetic, e.g. a row sum of 1e-15) by up to 100% of itself. Bit-for-bit
equality holds on many machines and is guaranteed on none, so results are compared within ``verify
diff``'s tolerances, ``DEFAULT_ATOL + DEFAULT_RTOL |x|``: the standard for reports of different CPUs,
where the quick catalogue measured tracked numbers within 1.6e-13 relative and residuals within 4e-13
absolute (verify/diff.py). Strings, integers and structure must be equal.
"""
from __future__ import annotations

import math

from verify.diff import DEFAULT_ATOL, DEFAULT_RTOL

__all__ = ["first_difference"]

PLAIN = (dict, list, str, int, float, bool, type(None))


def first_difference(a, b, where: str = "row", *, exact: bool = False) -> str | None:
    """Where plain-JSON values ``a`` and ``b`` differ in type, structure or value (floats beyond the
    tolerance, or at all with ``exact``; NaN equals NaN); None when they agree."""
    if type(a) is not type(b) or type(a) not in PLAIN:
        return f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        if list(a) != list(b) or not all(isinstance(k, str) for k in a):
            return f"{where}: keys {list(a)} vs {list(b)}"
        return next((d for k in a if (d := first_difference(a[k], b[k], f"{where}.{k}", exact=exact))), None)
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: length {len(a)} vs {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b))
                     if (d := first_difference(x, y, f"{where}[{i}]", exact=exact))), None)
    if isinstance(a, float) and (math.isnan(a) or math.isnan(b)):
        return None if math.isnan(a) and math.isnan(b) else f"{where}: {a!r} vs {b!r}"
    if isinstance(a, float) and not exact and math.isfinite(a) and math.isfinite(b):
        return None if abs(a - b) <= DEFAULT_ATOL + DEFAULT_RTOL * abs(a) else f"{where}: {a!r} vs {b!r}"
    return None if a == b else f"{where}: {a!r} vs {b!r}"
