"""Which steps of a run are logged: shared by every paper's simulators and by plugins."""
from __future__ import annotations

__all__ = ["logged_steps"]


def logged_steps(steps: int, log_every: int) -> list[int]:
    """Steps that are logged: ``0, log_every, 2 log_every, ...`` and always the last step ``steps``."""
    return sorted(set(range(0, steps + 1, log_every)) | {steps})
