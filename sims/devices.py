"""The device a simulation runs on and whether its step is compiled (shared by every ``sims`` module)."""
from __future__ import annotations

import os
from typing import Callable

import torch

from theory.errors import InputError

__all__ = ["COMPILE_ENV", "COMPILE_MODES", "checked_device", "compile_mode", "compiled"]

COMPILE_ENV = "VERIFY_COMPILE"
"""Environment variable read when ``compile=None``: 0/1 (off/on), auto (on with CUDA), or a mode name."""

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``torch.compile`` modes accepted by ``compile=`` (``"reduce-overhead"`` captures CUDA graphs)."""


def checked_device(device) -> torch.device:
    """``torch.device`` of ``device``; InputError when it is malformed or names CUDA and none is available."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available")
    return resolved


def compile_mode(setting: bool | str | None, device: torch.device) -> str | None:
    """The ``torch.compile`` mode of a simulator's ``compile=`` setting, or None for eager.

    ``setting``: True (mode "default"), False, a name in :data:`COMPILE_MODES`, or None: read
    ``$VERIFY_COMPILE`` (0/1/auto or a mode; unset means auto), auto meaning on exactly when ``device`` is CUDA.
    """
    if setting is None:
        setting = os.environ.get(COMPILE_ENV, "auto").strip().lower()
        setting = {"": "auto", "0": False, "1": True, "false": False, "true": True}.get(setting, setting)
        setting = device.type == "cuda" if setting == "auto" else setting
    if setting is True:
        return "default"
    if setting is False:
        return None
    if setting not in COMPILE_MODES:
        raise InputError(f"compile must be True, False or one of {list(COMPILE_MODES)} (also in ${COMPILE_ENV}, "
                         f"where 0, 1 and auto are accepted), got {setting!r}")
    return setting


def compiled(step: Callable, mode: str | None) -> Callable:
    """``step`` compiled by ``torch.compile`` in ``mode`` (from :func:`compile_mode`); ``step`` itself for None.

    Static shapes (``dynamic=False``): one graph per batch shape, as CUDA graphs need.
    """
    if mode is None:
        return step
    return torch.compile(step, mode=None if mode == "default" else mode, dynamic=False)
