"""Phase events read off logged trajectories (docs/softmax_dynamics.md §5, §6; boundaries are ours).

Every function is vectorised over the configs of a trajectory and returns a float64 numpy array (C,)
of *logged* step indices, ``NaN`` where the event is not reached within the logged steps.  With
``log_every > 1`` an event is located to the first logged step at or after it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sims.softmax.trajectory import SoftmaxTrajectory
from theory.errors import InputError

__all__ = ["first_step", "first_attention_step", "first_loss_step", "UnderrepresentedEvents",
           "underrepresented_events"]


def first_step(traj: SoftmaxTrajectory, condition: torch.Tensor) -> np.ndarray:
    """First logged step (C,) at which ``condition`` (C, T) holds; NaN where it never does."""
    reached = condition.any(1)  # (C,)
    first = condition.to(torch.int8).argmax(1)  # (C,) index of the first True (0 when none)
    return torch.where(reached, traj.t[first].to(torch.float64), torch.nan).numpy()  # (C,)


def _check_query(traj: SoftmaxTrajectory, k: int) -> None:
    smallest = min(cfg.K for cfg in traj.configs)
    if not 0 <= k < smallest:
        raise InputError(f"query index k = {k} is outside 0..{smallest - 1} (0-based, smallest K of the batch)")


def first_attention_step(traj: SoftmaxTrajectory, k: int, a: float) -> np.ndarray:
    """First logged step (C,) with ``E[Attn_k] >= a`` for query k (0-based); NaN if not reached.

    docs/softmax_dynamics.md §5.
    """
    _check_query(traj, k)
    return first_step(traj, traj.target_attention[:, :, k] >= a)


def first_loss_step(traj: SoftmaxTrajectory, k: int, eps: float) -> np.ndarray:
    """First logged step (C,) with ``E[l_k] <= eps`` for query k (0-based); NaN if not reached.

    docs/softmax_dynamics.md §5.
    """
    _check_query(traj, k)
    return first_step(traj, traj.loss_per_query[:, :, k] <= eps)


@dataclass
class UnderrepresentedEvents:
    """Ends of the four regimes of an under-represented query, each (C,) with NaN (docs/softmax_dynamics.md §6).

    Attributes
    ----------
    offtarget_peak : step of the maximum of ``B_{k,n}`` averaged over n not in {dominant, k} (the other
        under-represented features are exchangeable, so the average equals each of them); 0 when it only
        falls (c below the threshold of docs/softmax_dynamics.md §7); NaN when the maximum is the last logged step
        (still rising) or K = 2 (no such n).
    overtakes_dominant : first step with ``E[Attn_k] > E[Attn_dominant]`` (query row k).
    half_attention : first step with ``E[Attn_k] >= 1/2``.
    converged : first step with ``E[l_k] <= eps``.
    """

    offtarget_peak: np.ndarray
    overtakes_dominant: np.ndarray
    half_attention: np.ndarray
    converged: np.ndarray


def _offtarget_peak(traj: SoftmaxTrajectory, k: int, dominant: int) -> np.ndarray:
    K = traj.scores.shape[-1]
    sizes = torch.tensor([cfg.K for cfg in traj.configs])  # (C,)
    n = torch.arange(K)  # (K,)
    others = ((n != k) & (n != dominant))[None, :] & (n[None, :] < sizes[:, None])  # (C, K)
    count = others.sum(1)  # (C,)
    mean_b = (traj.scores[:, :, k, :] * others[:, None, :]).sum(-1) / count.clamp(min=1)[:, None]  # (C, T)
    peak = mean_b.argmax(1)  # (C,) first maximum
    valid = (count > 0) & ((peak < len(traj.t) - 1) | (len(traj.t) == 1))  # (C,)
    return torch.where(valid, traj.t[peak].to(torch.float64), torch.nan).numpy()  # (C,)


def underrepresented_events(traj: SoftmaxTrajectory, k: int, eps: float, dominant: int = 0) -> UnderrepresentedEvents:
    """Regime boundaries of query ``k`` (0-based, ``k != dominant``) for every config (docs/softmax_dynamics.md §6).

    Provenance: the four regimes are *derived* from the exact dynamics (docs/softmax_dynamics.md §6, §7); the
    boundaries (peak, overtaking, 1/2, eps) are our operational definitions.
    """
    _check_query(traj, k)
    _check_query(traj, dominant)
    if k == dominant:
        raise InputError(f"query k = {k} is the dominant feature; pick an under-represented one")
    attn_row = traj.attn[:, :, k, :]  # (C, T, K)
    return UnderrepresentedEvents(
        offtarget_peak=_offtarget_peak(traj, k, dominant),
        overtakes_dominant=first_step(traj, attn_row[..., k] > attn_row[..., dominant]),
        half_attention=first_attention_step(traj, k, 0.5),
        converged=first_loss_step(traj, k, eps),
    )
