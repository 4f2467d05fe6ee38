"""The device a simulation runs on and whether its step is compiled (shared by every ``sims`` module)."""
from __future__ import annotations

import os
from typing import Callable

import torch

from theory.errors import InputError

__all__ = ["COMPILE_ENV", "COMPILE_MODES", "THREADS_ENV", "checked_device", "resolve_device", "compile_mode", "compiled"]

COMPILE_ENV = "VERIFY_COMPILE"
"""Environment variable read when ``compile=None``: 0/1 (off/on), auto (on with CUDA), or a mode name."""

THREADS_ENV = "VERIFY_THREADS"
"""Environment variable with the CPU intra-op thread count of a run (default 1)."""

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


def resolve_device(name: str, threads: int | None = None) -> torch.device:
    """auto -> cuda when present else cpu; asking for cuda without CUDA is bad input.

    On the CPU, torch uses ``threads`` intra-op threads (default 1, or $VERIFY_THREADS, :data:`THREADS_ENV`): the dynamics
    are many small tensor ops, for which intra-op threading costs more than it gains (measured 5-20x
    slower with 2 threads on a loaded 2-core machine); parallelism across claims comes from --workers.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA device is available")
    if name == "cpu":
        threads = threads or int(os.environ.get(THREADS_ENV, "1"))
        if threads < 1:
            raise InputError(f"thread count must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.device(name)


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
