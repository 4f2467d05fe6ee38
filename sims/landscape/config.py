"""One run of the mean-field attention dynamics (docs/attention_landscape.md §1, §6, §9).

:class:`MeanFieldConfig` holds the model (d, k, M, activation, teacher), the initialisation and the
dynamics (two-timescale or joint W, birth-death, noise injection, label noise) of one simulation;
:func:`check_batch` validates a batch and the shapes its configs must share; :data:`PRESETS` names the
paper's experiment shape.  Construction only normalises types; :meth:`MeanFieldConfig.validate` names
the first problem in a one-line :class:`theory.errors.InputError`.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sims.seeds import SEED_LIMIT
from theory.errors import InputError
from theory.landscape.gaussian import ACTIVATIONS

__all__ = ["DYNAMICS", "TEACHERS", "W_INITS", "W_OPTIMIZERS", "MeanFieldConfig", "PRESETS", "preset", "check_batch",
           "BATCH_SHARED", "activation_problem", "choice_problem"]

#: Dynamics of the student: W = W*(mu) at every step, or an explicit W trained alongside.
DYNAMICS: tuple[str, ...] = ("two-timescale", "joint")
#: Teacher kinds: k orthonormal neurons, or a random measure of ``teacher_M`` neurons (docs/attention_landscape.md §1).
TEACHERS: tuple[str, ...] = ("orthonormal", "random")
#: Initial explicit W of joint dynamics: W*(mu_0) = S_mm(mu_0)^{-1}, or the zero matrix.
W_INITS: tuple[str, ...] = ("optimal", "zero")
#: Update rule of the explicit W of joint dynamics (:mod:`sims.landscape.optim`).
W_OPTIMIZERS: tuple[str, ...] = ("gd", "adam", "precond", "natural")
#: Fields that every config of one batch must share (they fix tensor shapes, kernels and the loop).
BATCH_SHARED: tuple[str, ...] = ("d", "k", "M", "activation", "teacher", "teacher_M", "steps",
                                 "log_every", "quad_order")

_MAX_SEED = SEED_LIMIT - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, float) and not math.isnan(value)


def choice_problem(what: str, value: Any, choices: tuple[str, ...]) -> str | None:
    """Why ``value`` is not one of ``choices`` (one line), or None: every named option of a mean-field run
    (activation, teacher, dynamics, w_init, w_optimizer) is checked by this one function."""
    return None if value in choices else f"unknown {what} {value!r}; choose from {', '.join(choices)}"


def activation_problem(name: Any) -> str | None:
    """Why ``name`` is not an activation of :data:`theory.landscape.gaussian.ACTIVATIONS`, or None."""
    return choice_problem("activation", name, ACTIVATIONS)


@dataclass(frozen=True)
class MeanFieldConfig:
    """Model, initialisation and dynamics of one mean-field run.

    docs/attention_landscape.md §1, §6, §9 (conventions ours).

    Attributes
    ----------
    d, k, M : int
        Input dimension, output (feature) dimension, number of student particles theta_i = (a_i, w_i).
    activation : str
        One of :data:`theory.landscape.gaussian.ACTIVATIONS` (erf, probit, relu, sigmoid, tanh).
    teacher : str
        ``"orthonormal"``: k particles (k e_j, u_j), weights 1/k, so f°_j(x) = sigma(u_j.x) with u_1..u_k
        orthonormal (needs d >= k; the frame is the Q factor of a Gaussian d x k matrix drawn from
        ``teacher_seed``). ``"random"``: ``teacher_M`` particles, a°_l ~ N(0, teacher_M I_k) (so that
        h_{mu°} = O(1)), w°_l ~ N(0, I_d / d).
    teacher_M : int or None
        Teacher particles of the random teacher (None: k). Ignored (k) for the orthonormal teacher.
    init_scale, a_scale : float
        Student initialisation: w_i ~ N(0, init_scale^2 I_d / d) (so E|w_i|^2 = init_scale^2) and
        a_i ~ N(0, a_scale^2 I_k), iid over particles, from ``seed``.
    lr : float
        Explicit Euler step in mean-field time: theta_i -= lr grad_theta V(theta_i).
    steps, log_every : int
        Number of Euler steps; the state is logged at steps 0, log_every, ... and always at ``steps``.
    seed : int
        Seed of the student's initialisation, birth-death and noise draws (counter-based, per config).
    teacher_seed : int or None
        Seed of the teacher (None: ``seed``); several student seeds can share one teacher.
    dynamics : str
        ``"two-timescale"`` (W = W*(mu_t) each step, the attention landscape) or ``"joint"``.
    w_speed : float
        Joint dynamics only: W -= lr * w_speed * grad_W L_TF(mu_t, W) each step.
    w_init : str
        Joint dynamics only: initial W, ``"optimal"`` (W*(mu_0)) or ``"zero"``.
    w_optimizer : str
        Joint dynamics only: the W update rule, one of :data:`W_OPTIMIZERS` (:mod:`sims.landscape.optim`;
        ``"gd"``: W -= lr * w_speed * grad_W L_TF).
    birth_death : float
        Rate parameter alpha of birth-death (0 = off): particle i has an event in a step with
        probability 1 - exp(-alpha lr |V_i - mean V|); see :mod:`sims.landscape.noise`.
    noise, noise_threshold : float
        Noise injection (0 = off): when the mean ||grad V||^2 over particles is below
        ``noise_threshold``, every particle gets isotropic N(0, noise^2 lr I_{k+d}) added.
        ``noise_threshold = inf`` injects at every step; 0 never.
    label_noise : float
        Label noise variance s^2: adds s^2/2 to L and L_TF (docs/attention_landscape.md §8, stated); the dynamics
        are unchanged at n = infinity.
    quad_order : int or None
        None (default): sigmoid/tanh kernels by their certified Hermite series
        (:mod:`theory.landscape.hermite`, within 1e-15 up to |w| ~ 3 for tanh, ~ 6 for sigmoid); an
        integer forces 2-D Gauss-Hermite quadrature of that order instead (the slow reference route).
    """

    d: int
    k: int
    M: int
    activation: str = "erf"
    teacher: str = "orthonormal"
    teacher_M: int | None = None
    init_scale: float = 1.0
    a_scale: float = 1.0
    lr: float = 0.1
    steps: int = 100
    log_every: int = 1
    seed: int = 0
    teacher_seed: int | None = None
    dynamics: str = "two-timescale"
    w_speed: float = 10.0
    w_init: str = "optimal"
    w_optimizer: str = "gd"
    birth_death: float = 0.0
    noise: float = 0.0
    noise_threshold: float = 0.0
    label_noise: float = 0.0
    quad_order: int | None = None

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if isinstance(value, numbers.Integral):
                value = int(value)
                if f.type == "float":
                    value = float(value)
                object.__setattr__(self, f.name, value)
            elif isinstance(value, numbers.Real) and f.type == "float":
                object.__setattr__(self, f.name, float(value))

    # ----------------------------------------------------------------------------------- derived
    @property
    def n_teacher(self) -> int:
        """Teacher particles M_o: k for the orthonormal teacher, ``teacher_M`` (default k) for random."""
        if self.teacher == "random" and self.teacher_M is not None:
            return self.teacher_M
        return self.k

    @property
    def teacher_key(self) -> int:
        """The seed the teacher is drawn from (``teacher_seed``, else ``seed``)."""
        return self.seed if self.teacher_seed is None else self.teacher_seed

    # ----------------------------------------------------------------------------------- checks
    def validate(self) -> "MeanFieldConfig":
        """Raise :class:`InputError` naming the first violated condition (one line); return self."""
        problem = self._problem()
        if problem:
            raise InputError(f"invalid mean-field config: {problem}")
        return self

    def _problem(self) -> str | None:
        for name, lowest in (("d", 1), ("k", 1), ("M", 1), ("steps", 1), ("log_every", 1)):
            value = getattr(self, name)
            if not (_is_int(value) and value >= lowest):
                return f"{name} must be an integer >= {lowest}, got {value!r}"
        choices = (("activation", ACTIVATIONS), ("teacher", TEACHERS), ("dynamics", DYNAMICS), ("w_init", W_INITS),
                   ("w_optimizer", W_OPTIMIZERS))
        problem = next(filter(None, (choice_problem(name, getattr(self, name), allowed) for name, allowed in choices)), None)
        if problem:
            return problem
        if self.teacher == "orthonormal" and self.k > self.d:
            return f"an orthonormal teacher needs d >= k, got d = {self.d}, k = {self.k}"
        if self.teacher_M is not None and not (_is_int(self.teacher_M) and self.teacher_M >= 1):
            return f"teacher_M must be an integer >= 1 or None, got {self.teacher_M!r}"
        if self.quad_order is not None and not (_is_int(self.quad_order) and self.quad_order >= 1):
            return f"quad_order must be an integer >= 1 or None, got {self.quad_order!r}"
        for name in ("seed", "teacher_seed"):
            value = getattr(self, name)
            if value is None and name == "teacher_seed":
                continue
            if not (_is_int(value) and 0 <= value <= _MAX_SEED):
                return f"{name} must be an integer in [0, 2^63), got {value!r}"
        for name in ("lr", "init_scale", "a_scale", "w_speed"):
            value = getattr(self, name)
            if not (_is_real(value) and math.isfinite(value) and value > 0):
                return f"{name} must be finite and > 0, got {value!r}"
        for name in ("birth_death", "noise", "label_noise"):
            value = getattr(self, name)
            if not (_is_real(value) and math.isfinite(value) and value >= 0):
                return f"{name} must be finite and >= 0, got {value!r}"
        if not (_is_real(self.noise_threshold) and self.noise_threshold >= 0):
            return f"noise_threshold must be >= 0 (inf allowed), got {self.noise_threshold!r}"
        return None

    # ----------------------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (inf thresholds stay floats; ``json`` writes them as Infinity)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MeanFieldConfig":
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`InputError`. Not validated."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown mean-field config keys {unknown}; allowed: {sorted(names)}")
        missing = sorted(n for n in ("d", "k", "M") if n not in data)
        if missing:
            raise InputError(f"mean-field config is missing required keys {missing}")
        return cls(**data)


#: Named configs. ``"paper"``: the experiment shape of Kim & Suzuki (arXiv 2402.01258;
#: docs/attention_landscape.md §9, stated): d = 20, k = 5, 500 sigmoid neurons, W trained jointly. Everything
#: else is ours (not given in what we could read of the paper): orthonormal sigmoid teacher; a_scale = 22
#: ~ sqrt(M), so that h_mu = O(1) and S_mm = O(1) at initialisation; W starts at 0 (``w_init="zero"``) with
#: w_speed = 1 and lr = 0.1. Starting W at W*(mu_0) instead diverges within a few steps: the W
#: Hessian E -> S_mo S_om E S_mm has a condition number ~1e5 at a random initialisation, so plain
#: gradient descent cannot keep W near W*, and the fixed-W particle gradient (of size ~W ~ S_mm^{-1})
#: blows up (measured with probit; ``failed_at`` = 4). With W_0 = 0 the probit twin trains stably
#: (L_TF 0.83 -> 0.054 by t = 30). Sigmoid has no closed-form kernel: its Hermite series
#: (:mod:`theory.landscape.hermite`) costs ~0.08 s per step single-threaded.
#: ``"paper-probit"``: the same with the probit activation, the sigmoid-shaped activation with a
#: closed-form kernel (docs/attention_landscape.md §1), ~0.03 s per step.
PRESETS: dict[str, MeanFieldConfig] = {
    "paper": MeanFieldConfig(d=20, k=5, M=500, activation="sigmoid", teacher="orthonormal",
                             dynamics="joint", a_scale=22.0, w_init="zero", w_speed=1.0, lr=0.1,
                             steps=1000, log_every=10),
    "paper-probit": MeanFieldConfig(d=20, k=5, M=500, activation="probit", teacher="orthonormal",
                                    dynamics="joint", a_scale=22.0, w_init="zero", w_speed=1.0,
                                    lr=0.1, steps=1000, log_every=10),
}


def preset(name: str, **overrides: Any) -> MeanFieldConfig:
    """The named config of :data:`PRESETS` with ``overrides`` replaced (e.g. ``seed=3``), validated.

    Provenance: the paper's shape is stated (docs/attention_landscape.md §9); the other fields are ours (see
    :data:`PRESETS`).

    Raises
    ------
    InputError
        For an unknown name, an unknown field or an invalid resulting config.
    """
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    try:
        cfg = dataclasses.replace(PRESETS[name], **overrides)
    except TypeError as exc:
        raise InputError(f"invalid override for preset {name!r}: {exc}") from None
    return cfg.validate()


def check_batch(configs: Sequence[MeanFieldConfig] | MeanFieldConfig) -> tuple[MeanFieldConfig, ...]:
    """Validate every config and that they share :data:`BATCH_SHARED` (a single config is accepted).

    Everything else (lr, seeds, dynamics, w_speed, birth-death, noise, scales, label noise) may differ
    between the configs of one batch. No formula: batching policy (configs are batched along a leading
    config axis).

    Raises
    ------
    InputError
        Naming the first invalid config or the first field the batch does not share.
    """
    batch = (configs,) if isinstance(configs, MeanFieldConfig) else tuple(configs)
    if not batch:
        raise InputError("no configs to simulate")
    for index, cfg in enumerate(batch):
        if not isinstance(cfg, MeanFieldConfig):
            raise InputError(f"config {index} is a {type(cfg).__name__}, not a MeanFieldConfig")
        cfg.validate()
    for name in BATCH_SHARED:
        values = {getattr(cfg, name) for cfg in batch}
        if len(values) > 1:
            raise InputError(f"configs of one batch must share {name}; got {sorted(values, key=repr)}")
    return batch
