"""Logged trajectories of the mean-field dynamics, their recorder, and the plateau length.

Each logged step keeps L, L_TF at the W in use, the conditioning of S_mm, the spectrum of S_mu, the saddle
indicator and the mean ||grad V||^2 (docs/attention_landscape.md §2-§5). Buffers are preallocated on the
simulation device and written by slicing (no host synchronisation); :meth:`MeanFieldRecorder.result`
copies them to the CPU once.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sims.landscape.config import MeanFieldConfig
from sims.logging_steps import logged_steps
from theory.landscape.objective import ParticleMeasure

__all__ = ["MeanFieldTrajectory", "MeanFieldRecorder", "plateau_length"]

_ARRAYS = ("t", "time", "loss", "loss_tf", "lambda_min", "cond", "s_mu_eig", "saddle", "grad_sq",
           "events", "noise_steps", "failed_at", "a", "w", "W", "teacher_a", "teacher_w")


@dataclass
class MeanFieldTrajectory:
    """C runs logged at T steps (CPU tensors).

    Attributes
    ----------
    configs : tuple of MeanFieldConfig
        In batch order.
    t : Tensor
        (T,) int64 logged step indices (0, log_every, ..., and always ``steps``).
    time : Tensor
        (C, T) mean-field time t * lr.
    loss : Tensor
        (C, T) L(mu_t) + s^2/2 (the landscape, docs/attention_landscape.md §3, plus the label-noise shift).
    loss_tf : Tensor
        (C, T) L_TF(mu_t, W_t) + s^2/2 at the W in use (W* for two-timescale, so = ``loss``).
    lambda_min, cond : Tensor
        (C, T) lowest eigenvalue and condition number of S_mm (these stay logged after a failure).
    s_mu_eig : Tensor
        (C, T, k_o) eigenvalues of S_mu, ascending.
    saddle : Tensor
        (C, T) saddle indicator ||S_mo S_mu||_F.
    grad_sq : Tensor
        (C, T) mean over particles of ||grad_theta V(theta_i)||^2 (= -dL/dt for two-timescale).
    events : Tensor
        (C, T) int64 cumulative birth-death writes applied before the logged step.
    noise_steps : Tensor
        (C, T) int64 cumulative number of steps with noise injected before the logged step.
    failed_at : Tensor
        (C,) int64 first step at which S_mm was non-finite or cond(S_mm) > COND_MAX (-1: never). From
        that step on, every log except ``lambda_min``/``cond`` is NaN and the state is frozen.
    a, w, W : Tensor
        Final state: (C, M, k), (C, M, d), (C, k, k) (W in use at the last step).
    teacher_a, teacher_w : Tensor
        (C, M_o, k), (C, M_o, d) teacher particles (uniform weights).
    """

    configs: tuple[MeanFieldConfig, ...]
    t: Tensor
    time: Tensor
    loss: Tensor
    loss_tf: Tensor
    lambda_min: Tensor
    cond: Tensor
    s_mu_eig: Tensor
    saddle: Tensor
    grad_sq: Tensor
    events: Tensor
    noise_steps: Tensor
    failed_at: Tensor
    a: Tensor
    w: Tensor
    W: Tensor
    teacher_a: Tensor
    teacher_w: Tensor

    @property
    def noise_floor(self) -> Tensor:
        """(C,) label-noise shift s^2/2 included in ``loss`` and ``loss_tf``."""
        return torch.tensor([0.5 * c.label_noise for c in self.configs], dtype=self.loss.dtype)

    def student(self, i: int) -> ParticleMeasure:
        """Final particles of config ``i``."""
        return ParticleMeasure(self.a[i], self.w[i])

    def teacher(self, i: int) -> ParticleMeasure:
        """Teacher of config ``i``."""
        return ParticleMeasure(self.teacher_a[i], self.teacher_w[i])

    def select(self, i: int) -> "MeanFieldTrajectory":
        """The trajectory of config ``i`` alone (C = 1)."""
        fields = {name: getattr(self, name)[i:i + 1] for name in _ARRAYS if name != "t"}
        return MeanFieldTrajectory(configs=(self.configs[i],), t=self.t, **fields)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """numpy arrays for ``np.savez`` (configs as a JSON 0-d string array)."""
        out = {name: getattr(self, name).numpy() for name in _ARRAYS}
        out["configs"] = np.array(json.dumps([c.to_dict() for c in self.configs]))
        return out

    @classmethod
    def from_arrays(cls, arrays) -> "MeanFieldTrajectory":
        """Inverse of :meth:`to_arrays` (accepts the mapping returned by ``np.load``)."""
        configs = tuple(MeanFieldConfig.from_dict(d) for d in json.loads(str(arrays["configs"])))
        return cls(configs=configs, **{n: torch.from_numpy(np.asarray(arrays[n])) for n in _ARRAYS})


class MeanFieldRecorder:
    """Preallocated (C, T, ...) log buffers on the simulation device.

    The per-step quantities of :class:`MeanFieldTrajectory`; no formula. Writing is slicing (no host synchronisation);
    :meth:`result` copies to the CPU once.
    """

    def __init__(self, configs: tuple[MeanFieldConfig, ...], k_o: int, device, dtype):
        self.configs = configs
        self.steps = logged_steps(configs[0].steps, configs[0].log_every)
        self.slot = {step: j for j, step in enumerate(self.steps)}
        C, T = len(configs), len(self.steps)
        new = lambda *shape: torch.full((C, T, *shape), math.nan, dtype=dtype, device=device)
        self.buffers = {name: new() for name in ("loss", "loss_tf", "lambda_min", "cond", "saddle", "grad_sq")}
        self.buffers["s_mu_eig"] = new(k_o)  # (C, T, k_o)
        self.counts = {name: torch.zeros(C, T, dtype=torch.long, device=device)
                       for name in ("events", "noise_steps")}

    def wants(self, step: int) -> bool:
        """Whether ``step`` is logged."""
        return step in self.slot

    def record(self, step: int, alive: Tensor, values: dict[str, Tensor], counts: dict[str, Tensor]) -> None:
        """Write one logged step; entries of configs with ``alive`` False (C,) become NaN, except
        ``lambda_min`` and ``cond``."""
        j = self.slot[step]
        for name, value in values.items():
            keep = alive.view(-1, *([1] * (value.ndim - 1)))
            if name not in ("lambda_min", "cond"):
                value = torch.where(keep, value, torch.full_like(value, math.nan))
            self.buffers[name][:, j] = value
        for name, value in counts.items():
            self.counts[name][:, j] = value

    def result(self, failed_at: Tensor, a: Tensor, w: Tensor, W: Tensor, teacher_a: Tensor,
               teacher_w: Tensor) -> MeanFieldTrajectory:
        """The filled trajectory, on the CPU."""
        t = torch.tensor(self.steps, dtype=torch.long)  # (T,)
        lr = torch.tensor([c.lr for c in self.configs], dtype=torch.float64)  # (C,)
        cpu = {name: buf.cpu() for name, buf in {**self.buffers, **self.counts}.items()}
        return MeanFieldTrajectory(configs=self.configs, t=t, time=lr[:, None] * t[None, :].double(),
                                   failed_at=failed_at.cpu(), a=a.cpu(), w=w.cpu(), W=W.cpu(),
                                   teacher_a=teacher_a.cpu(), teacher_w=teacher_w.cpu(), **cpu)


def plateau_length(traj: MeanFieldTrajectory, drop_fraction: float) -> Tensor:
    """First logged mean-field time at which the excess loss falls below (1 - f) times its start.

    Excess loss E_t = ``loss`` - s^2/2 (the label-noise floor removed); returns, per config, the first
    logged ``time`` with E_t < (1 - drop_fraction) E_0, NaN if that never happens (or the run failed
    first: NaN never compares below). From the exact saddle of docs/attention_landscape.md §6 perturbed by delta this
    is log(1/delta) / |lambda_min| + O(1) (derived). The resolution is the logging interval.

    Returns
    -------
    Tensor
        (C,) float64.
    """
    if not (0.0 < drop_fraction < 1.0):
        raise ValueError(f"drop_fraction must be in (0, 1), got {drop_fraction!r}")
    excess = traj.loss - traj.noise_floor[:, None]  # (C, T)
    below = excess < (1.0 - drop_fraction) * excess[:, :1]  # (C, T)
    first = torch.where(below.any(-1), below.double().argmax(-1), -1)  # (C,)
    time = traj.time.gather(1, first.clamp(min=0)[:, None])[:, 0]  # (C,)
    return torch.where(first >= 0, time, torch.full_like(time, math.nan))
