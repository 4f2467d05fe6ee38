"""Teachers, student initialisations, the exact strict saddle and its perturbations.

Every random number comes from the counter-based generator of :mod:`sims.counter_rng`, keyed by a
config's own seed and a stream id of :class:`MeanFieldStream`, so a config's particles never depend on
its batch mates (reproducibility policy: a config's random numbers depend only on its own seed).
docs/attention_landscape.md §1 (teachers) and §6 (the exact saddle).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from sims.counter_rng import normals, stream_keys
from sims.landscape.config import MeanFieldConfig
from theory.landscape.objective import ParticleMeasure, exact_strict_saddle, wasserstein_hessian
from theory.errors import InputError

__all__ = ["MeanFieldStream", "gaussian", "make_teacher", "make_student", "strict_saddle", "perturb",
           "saddle_escape_rate"]


class MeanFieldStream:
    """Stream ids of the mean-field sims (disjoint from :class:`sims.counter_rng.Stream`, which uses 1-5).

    No formula: reproducibility policy (a config's random numbers are a pure
    function of its seed, a stream id and counters)."""

    STUDENT_A = 101
    STUDENT_W = 102
    TEACHER_A = 103
    TEACHER_W = 104
    BIRTH_DEATH = 105  # per step: event uniforms and partner uniforms
    NOISE = 106  # per step: isotropic noise on (a, w)
    PERTURB = 107  # random perturbation direction of :func:`perturb`
    PROMPT_X = 108  # finite-n prompts: tokens and query
    PROMPT_V = 109  # finite-n prompts: task vectors
    PROMPT_EPS = 110  # finite-n prompts: label noise


def gaussian(seeds: Tensor, stream: int, rows: int, cols: int, index: int = 0) -> Tensor:
    """Standard normals (C, rows, cols), float64, a pure function of (seed, stream, index, row, col).

    Uses keys ``2 index`` and ``2 index + 1`` of ``stream`` (Box-Muller radius and angle), so distinct
    ``index`` values (e.g. step numbers) give independent draws. ``cols`` <= 2^20. Box-Muller on
    SplitMix64 counters (:func:`sims.counter_rng.normals`). Provenance: ours (reproducibility policy).
    """
    steps = torch.tensor([2 * index, 2 * index + 1], device=seeds.device)  # (2,)
    keys = stream_keys(seeds, stream, steps)  # (C, 2)
    return normals(keys[:, 0], keys[:, 1], rows, cols)  # (C, rows, cols)


def _seeds(values: Sequence[int], device) -> Tensor:
    return torch.tensor(list(values), dtype=torch.long, device=device)  # (C,)


def make_teacher(configs: Sequence[MeanFieldConfig], *, device="cpu",
                 dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Teacher particles (a° (C, M_o, k), w° (C, M_o, d)) with uniform weights 1/M_o.

    ``orthonormal``: a° = k I_k, w° = u_1..u_k, the Q factor (signs fixed by diag R > 0) of a Gaussian
    (d, k) matrix from the teacher seed, so f°_j(x) = sigma(u_j.x) (docs/attention_landscape.md §1, stated default).
    ``random``: a° ~ N(0, M_o I_k), w° ~ N(0, I_d / d) (ours; the scale keeps h_{mu°} = O(1)).
    Configs of one call must share d, k, teacher and M_o.
    """
    cfg = configs[0]
    seeds = _seeds([c.teacher_key for c in configs], device)  # (C,)
    C, k, d, M_o = len(configs), cfg.k, cfg.d, cfg.n_teacher
    if cfg.teacher == "orthonormal":
        gauss = gaussian(seeds, MeanFieldStream.TEACHER_W, d, k)  # (C, d, k)
        q, r = torch.linalg.qr(gauss)  # (C, d, k), (C, k, k)
        q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]  # (C, d, k)
        a = k * torch.eye(k, dtype=torch.float64, device=device).expand(C, k, k)  # (C, k, k)
        return a.to(dtype).contiguous(), q.mT.to(dtype).contiguous()  # (C, k, k), (C, k, d)
    a = math.sqrt(M_o) * gaussian(seeds, MeanFieldStream.TEACHER_A, M_o, k)  # (C, M_o, k)
    w = gaussian(seeds, MeanFieldStream.TEACHER_W, M_o, d) / math.sqrt(d)  # (C, M_o, d)
    return a.to(dtype), w.to(dtype)


def make_student(configs: Sequence[MeanFieldConfig], *, device="cpu",
                 dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Student particles (a (C, M, k), w (C, M, d)), uniform weights 1/M.

    a_i ~ N(0, a_scale^2 I_k), w_i ~ N(0, init_scale^2 I_d / d), iid, from each config's ``seed``
    (ours; the paper's initialisation is not known to us).
    """
    cfg = configs[0]
    seeds = _seeds([c.seed for c in configs], device)  # (C,)
    a_scale = torch.tensor([c.a_scale for c in configs], dtype=torch.float64, device=device)  # (C,)
    w_scale = torch.tensor([c.init_scale / math.sqrt(c.d) for c in configs], dtype=torch.float64,
                           device=device)  # (C,)
    a = a_scale[:, None, None] * gaussian(seeds, MeanFieldStream.STUDENT_A, cfg.M, cfg.k)  # (C, M, k)
    w = w_scale[:, None, None] * gaussian(seeds, MeanFieldStream.STUDENT_W, cfg.M, cfg.d)  # (C, M, d)
    return a.to(dtype), w.to(dtype)


def strict_saddle(d: int, k: int, M: int | None = None, *, seed: int | None = None,
                  dtype: torch.dtype = torch.float64,
                  device: torch.device | str = "cpu") -> tuple[ParticleMeasure, ParticleMeasure]:
    """The exact strict saddle of docs/attention_landscape.md §6 with M student particles (use the erf activation).

    Built by :func:`theory.landscape.objective.exact_strict_saddle` (k teacher particles (k e_j, u_j);
    student: the neurons of f°_1..f°_{k-1} and (k e_k, v), v orthogonal to every u_j; L = c/2,
    c = (2/pi) arcsin(2/3), V = 0 identically). For M > k each student particle is repeated M / k
    times (M must be a multiple of k): the measure, hence h, L and V, is unchanged, and the weights stay
    uniform 1/M. Provenance: derived (docs/attention_landscape.md §6).

    Parameters
    ----------
    d, k : int
        Needs d >= k + 1.
    M : int, optional
        Student particles (default k).
    seed : int, optional
        None: the frame (u_1..u_k, v) is e_1..e_{k+1}, for which the saddle is exact in floating point
        (orthogonal directions give kernel entries that are exactly 0). Otherwise a random orthonormal
        frame from ``torch.Generator().manual_seed(seed)`` (exact to rounding, ~1e-16).

    Returns
    -------
    (ParticleMeasure, ParticleMeasure)
        (student, teacher), both with ``p`` None (uniform).
    """
    M = k if M is None else M
    if not (isinstance(M, int) and M >= k and M % k == 0):
        raise InputError(f"the strict saddle needs M a positive multiple of k = {k}, got M = {M!r}")
    try:
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        student, teacher = exact_strict_saddle(k, d, generator=gen, dtype=dtype, device=device)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    reps = M // k
    student = ParticleMeasure(student.a.repeat_interleave(reps, 0),
                              student.w.repeat_interleave(reps, 0))  # (M, k), (M, d)
    return student, teacher


def _unstable_direction(name: str, student: ParticleMeasure,
                        teacher: ParticleMeasure) -> tuple[Tensor, Tensor]:
    """(lambda_min, z) of theory's Wasserstein Hessian P^{-1/2} H P^{-1/2}; sign of z fixed so its
    largest-magnitude entry is positive (eigenvectors have no sign of their own)."""
    H = wasserstein_hessian(name, student, teacher)  # (M (k + d), M (k + d))
    evals, evecs = torch.linalg.eigh(H)
    z = evecs[:, 0]  # (M (k + d),)
    return evals[0], z * torch.sign(z[z.abs().argmax()])


def saddle_escape_rate(student: ParticleMeasure, teacher: ParticleMeasure, name: str = "erf") -> float:
    """|lambda_min| of the particle Wasserstein Hessian (theory's
    :func:`~theory.landscape.objective.wasserstein_hessian`): the linear growth rate of a perturbation
    along the unstable direction, so the predicted plateau is log(1/delta) / |lambda_min| + O(1)
    (docs/attention_landscape.md §6; derived). Autograd Hessian: small M only. Returns 0 if lambda_min >= 0."""
    lam, _ = _unstable_direction(name, student, teacher)
    return max(0.0, -float(lam))


def perturb(measure: ParticleMeasure, delta: float, seed: int = 0, *, direction: str = "hessian",
            teacher: ParticleMeasure | None = None, activation: str = "erf") -> ParticleMeasure:
    """A perturbation of size ``delta`` of a uniform particle measure, theta_i -> theta_i + delta e_i.

    The size is the L2(mu) (Wasserstein-2, same-coupling) norm: (sum_i p_i |e_i|^2)^{1/2} = 1, with
    e_i in R^{k + d} acting on (a_i, w_i).

    - ``direction="hessian"``: e = P^{-1/2} z with z the unit eigenvector of the lowest eigenvalue of
      the particle Wasserstein Hessian P^{-1/2} H P^{-1/2} (theory's
      :func:`~theory.landscape.objective.wasserstein_hessian`; needs ``teacher``; small M). Along it the
      linearised flow d e/dt = -P^{-1} H e grows as exp(|lambda_min| t), so from a saddle the plateau
      lasts log(1/delta) / |lambda_min| + O(1) (docs/attention_landscape.md §6; derived). ``seed`` is unused.
    - ``direction="random"``: e_i iid standard normal in R^{k + d} from the counter-based stream
      :attr:`MeanFieldStream.PERTURB` of ``seed``, rescaled to unit L2(mu) norm. It has a component of
      size ~ delta / sqrt(M (k + d)) along the unstable direction, so the plateau is longer by about
      log(sqrt(M (k + d))) / |lambda_min|.

    Returns
    -------
    ParticleMeasure
        The perturbed measure (same weights).
    """
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta >= 0):
        raise InputError(f"perturbation size delta must be finite and >= 0, got {delta!r}")
    M, k = measure.a.shape
    d = measure.w.shape[1]
    p = measure.weights  # (M,)
    if direction == "hessian":
        if teacher is None:
            raise InputError("perturb(direction='hessian') needs the teacher measure")
        _, z = _unstable_direction(activation, measure, teacher)
        e = (z.view(M, k + d) * p.rsqrt()[:, None])  # (M, k + d): P^{-1/2} z
    elif direction == "random":
        seeds = torch.tensor([seed], dtype=torch.long, device=measure.a.device)
        e = gaussian(seeds, MeanFieldStream.PERTURB, M, k + d)[0].to(measure.a.dtype)  # (M, k + d)
        e = e / torch.sqrt((p[:, None] * e * e).sum())
    else:
        raise InputError(f"unknown perturbation direction {direction!r}; choose from hessian, random")
    e = delta * e.detach()  # (M, k + d)
    return ParticleMeasure(measure.a + e[:, :k], measure.w + e[:, k:], measure.p)
