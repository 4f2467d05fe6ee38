"""The device a simulation runs on, checked once (shared by every ``sims`` module)."""
from __future__ import annotations

import torch

from theory.errors import InputError

__all__ = ["checked_device"]


def checked_device(device) -> torch.device:
    """``torch.device`` of ``device``; InputError when it is malformed or names CUDA and none is available."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available")
    return resolved
