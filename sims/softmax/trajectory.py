"""Logged trajectories of the softmax in-context model and the recorder that fills them.

docs/softmax_dynamics.md §2.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from sims.logging_steps import logged_steps
from sims.softmax.config import SoftmaxConfig

__all__ = ["SoftmaxTrajectory", "TrajectoryRecorder"]

_ARRAYS = ("t", "scores", "attn", "loss_per_query", "loss")


@dataclass
class SoftmaxTrajectory:
    """Logged state of C configs over T logged steps (docs/softmax_dynamics.md §2 quantities), on the CPU.

    Attributes
    ----------
    configs : the C configs, in batch order.
    t : (T,) int64 logged step indices (``t[0] = 0`` is the initial state, ``t[-1] = steps``).
    scores : (C, T, K, K) ``s_{k,n} = v_n^T Q v_k`` (row = query k, column = feature n).
    attn : (C, T, K, K) expected total attention ``E[Attn_n]`` of query row k.
    loss_per_query : (C, T, K) ``E[l_k]``.
    loss : (C, T) ``L = sum_k p_k E[l_k]``.
    model : ``"reduced"`` or ``"full"``.

    ``K`` is the largest K of the batch; entries of a config with fewer features are padded with zeros and
    trimmed by :meth:`select`.  For N infinite the expectations are exact values; for finite N see
    :mod:`sims.softmax.counts` (exact enumeration or Monte Carlo).
    """

    configs: tuple[SoftmaxConfig, ...]
    t: torch.Tensor
    scores: torch.Tensor
    attn: torch.Tensor
    loss_per_query: torch.Tensor
    loss: torch.Tensor
    model: str = "reduced"

    @property
    def A(self) -> torch.Tensor:
        """(C, T, K) target weights ``A_k = s_{k,k}`` (docs/softmax_dynamics.md §2)."""
        return torch.diagonal(self.scores, dim1=-2, dim2=-1)  # (C, T, K)

    @property
    def B(self) -> torch.Tensor:
        """(C, T, K, K) off-target weights ``B_{k,n} = s_{k,n}``, n != k, diagonal 0 (docs/softmax_dynamics.md §2)."""
        eye = torch.eye(self.scores.shape[-1], dtype=torch.bool)  # (K, K)
        return self.scores.masked_fill(eye, 0.0)  # (C, T, K, K)

    @property
    def target_attention(self) -> torch.Tensor:
        """(C, T, K) ``E[Attn_k]`` of each query on its own feature (diagonal of ``attn``)."""
        return torch.diagonal(self.attn, dim1=-2, dim2=-1)  # (C, T, K)

    def select(self, i: int) -> "SoftmaxTrajectory":
        """The trajectory of config ``i`` alone (C = 1), trimmed to its own K."""
        K = self.configs[i].K
        return SoftmaxTrajectory(
            configs=(self.configs[i],), t=self.t,
            scores=self.scores[i:i + 1, :, :K, :K], attn=self.attn[i:i + 1, :, :K, :K],
            loss_per_query=self.loss_per_query[i:i + 1, :, :K], loss=self.loss[i:i + 1], model=self.model)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays for ``np.savez`` (configs and model as JSON/str 0-d arrays); A and B included."""
        out = {name: getattr(self, name).numpy() for name in _ARRAYS}
        out.update(A=self.A.numpy(), B=self.B.numpy(), model=np.array(self.model),
                   configs=np.array(json.dumps([cfg.to_dict() for cfg in self.configs])))
        return out

    @classmethod
    def from_arrays(cls, arrays) -> "SoftmaxTrajectory":
        """Inverse of :meth:`to_arrays` (accepts the mapping returned by ``np.load``)."""
        configs = tuple(SoftmaxConfig.from_dict(d) for d in json.loads(str(arrays["configs"])))
        tensors = {name: torch.from_numpy(np.asarray(arrays[name])) for name in _ARRAYS}
        return cls(configs=configs, model=str(arrays["model"]), **tensors)

    def to_json_dict(self) -> dict:
        """JSON-ready nested lists (per config, trimmed to its K): t, A, B, attn, loss_per_query, loss."""
        runs = []
        for i in range(len(self.configs)):
            one = self.select(i)
            runs.append({"config": one.configs[0].to_dict(), "A": one.A[0].tolist(), "B": one.B[0].tolist(),
                         "attn": one.attn[0].tolist(), "loss_per_query": one.loss_per_query[0].tolist(),
                         "loss": one.loss[0].tolist()})
        return {"model": self.model, "t": self.t.tolist(), "runs": runs}


class TrajectoryRecorder:
    """Preallocated log buffers on the simulation device; :meth:`record` writes one logged step.

    Writing is slicing into buffers (no host synchronisation); :meth:`result` copies to the CPU once.
    Rows of padded query features are zeroed so that padding never looks like data.
    """

    def __init__(self, configs: Sequence[SoftmaxConfig], p: torch.Tensor):
        self.configs = tuple(configs)
        steps, log_every = configs[0].steps, configs[0].log_every
        self.steps = logged_steps(steps, log_every)
        self.slot = {step: j for j, step in enumerate(self.steps)}
        C, K = p.shape
        T = len(self.steps)
        self.p = p  # (C, K)
        sizes = torch.tensor([c.K for c in configs], device=p.device)  # (C,)
        self.real = (torch.arange(K, device=p.device) < sizes[:, None]).to(p.dtype)  # (C, K) 1 for real features
        self.scores = torch.zeros(C, T, K, K, device=p.device, dtype=p.dtype)  # (C, T, K, K)
        self.attn = torch.zeros_like(self.scores)  # (C, T, K, K)
        self.loss_per_query = torch.zeros(C, T, K, device=p.device, dtype=p.dtype)  # (C, T, K)

    def wants(self, step: int) -> bool:
        """Whether ``step`` is logged."""
        return step in self.slot

    def record(self, step: int, scores: torch.Tensor, attn: torch.Tensor, loss_per_query: torch.Tensor) -> None:
        """Store scores (C, K, K), expected attention (C, K, K) and per-query loss (C, K) of ``step``."""
        j = self.slot[step]
        self.scores[:, j] = scores
        self.attn[:, j] = attn * self.real[:, :, None]  # (C, K, K)
        self.loss_per_query[:, j] = loss_per_query * self.real  # (C, K)

    def result(self, model: str) -> SoftmaxTrajectory:
        """The filled trajectory, copied to the CPU."""
        loss = (self.loss_per_query * self.p[:, None, :]).sum(-1)  # (C, T)
        return SoftmaxTrajectory(
            configs=self.configs, t=torch.tensor(self.steps, dtype=torch.long), scores=self.scores.cpu(),
            attn=self.attn.cpu(), loss_per_query=self.loss_per_query.cpu(), loss=loss.cpu(), model=model)
