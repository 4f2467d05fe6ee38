"""One simulation config of the softmax in-context model (docs/softmax_dynamics.md §1)."""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sims.seeds import SEED_LIMIT
from theory.errors import InputError

__all__ = ["SoftmaxConfig", "check_batch", "embedding_dim"]

_P_TOLERANCE = 1e-9
_MAX_SEED = SEED_LIMIT - 1


def embedding_dim(K: Any, d: Any = None) -> Any:
    """The embedding dimension of a config: ``d``, which defaults to ``K`` (the smallest dimension holding K
    orthonormal features). The one place this default is written; values are checked by validation."""
    return K if d is None else d


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SoftmaxConfig:
    """Data, model and training settings of one run (docs/softmax_dynamics.md §1; stated model, conventions ours).

    Attributes
    ----------
    K : number of orthonormal features (``2 <= K <= d``).
    p : tuple of K feature probabilities (tokens and query are drawn i.i.d. from p).
    d : embedding dimension; defaults to K (:func:`embedding_dim`).
    eta : GD step size.
    steps : number of GD steps.
    N : prompt length; ``None`` means infinity (population limit; reduced model only).
        ``math.inf`` and the string ``"inf"`` are accepted and stored as ``None``.
    seed : seed of every random draw of the run (>= 0, < 2^63).
    batch : prompts per GD step of the full model (ignored by the reduced model).
    log_every : log the state every this many steps (step 0 and the last step are always logged).

    Construction only normalises types (numpy scalars to Python, ``"inf"`` to ``None``) and raises
    :class:`InputError` only for a ``p`` that is not a sequence of numbers; :meth:`validate` names any
    other problem (the simulators call it).
    """

    K: int
    p: tuple[float, ...]
    d: int | None = None
    eta: float = 1.0
    steps: int = 1000
    N: int | None = None
    seed: int = 0
    batch: int = 512
    log_every: int = 1

    def __post_init__(self):
        try:
            object.__setattr__(self, "p", tuple(float(v) for v in self.p))
        except (TypeError, ValueError):
            raise InputError(f"invalid softmax config: p must be a list of numbers, got {self.p!r}") from None
        for name in ("K", "d", "steps", "N", "seed", "batch", "log_every"):  # numpy integers -> int
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                object.__setattr__(self, name, int(value))
        if isinstance(self.eta, numbers.Real) and not isinstance(self.eta, bool):
            object.__setattr__(self, "eta", float(self.eta))
        object.__setattr__(self, "d", embedding_dim(self.K, self.d))
        if self.N == "inf" or (isinstance(self.N, float) and self.N == math.inf):
            object.__setattr__(self, "N", None)

    @classmethod
    def balanced(cls, K: int, **kwargs) -> "SoftmaxConfig":
        """Balanced features ``p_k = 1/K`` (docs/softmax_dynamics.md §1)."""
        return cls(K=K, p=(1.0 / K,) * K, **kwargs)

    @classmethod
    def dominant(cls, K: int, c: float, **kwargs) -> "SoftmaxConfig":
        """One dominant feature: ``p_1 = c``, the rest ``(1-c)/(K-1)`` (docs/softmax_dynamics.md §1)."""
        return cls(K=K, p=(float(c),) + ((1.0 - c) / (K - 1),) * (K - 1), **kwargs)

    @property
    def infinite(self) -> bool:
        """True when ``N`` is infinite (``None``)."""
        return self.N is None

    def validate(self) -> "SoftmaxConfig":
        """Raise :class:`theory.errors.InputError` naming the first violated condition; return self."""
        problem = self._problem()
        if problem:
            raise InputError(f"invalid softmax config: {problem}")
        return self

    def _problem(self) -> str | None:
        for name, lowest in (("K", 2), ("d", 1), ("steps", 1), ("batch", 1), ("log_every", 1)):
            value = getattr(self, name)
            if not (_is_int(value) and value >= lowest):
                return f"{name} must be an integer >= {lowest}, got {value!r}"
        total = math.fsum(self.p)
        checks = (
            (lambda: self.K <= self.d, f"K = {self.K} features cannot be orthonormal in d = {self.d} dimensions "
                                       "(need K <= d)"),
            (lambda: len(self.p) == self.K, f"p has {len(self.p)} entries but K = {self.K}"),
            (lambda: all(math.isfinite(v) and v >= 0 for v in self.p),
             f"p must be finite and nonnegative, got {list(self.p)}"),
            (lambda: abs(total - 1.0) <= _P_TOLERANCE,
             f"p must sum to 1 (tolerance {_P_TOLERANCE}), sums to {total!r}"),
            (lambda: isinstance(self.eta, float) and math.isfinite(self.eta) and self.eta > 0,
             f"eta must be finite and > 0, got {self.eta!r}"),
            (lambda: self.N is None or (_is_int(self.N) and self.N >= 1),
             f"N must be an integer >= 1 or inf, got {self.N!r}"),
            (lambda: _is_int(self.seed) and 0 <= self.seed <= _MAX_SEED,
             f"seed must be an integer in [0, 2^63), got {self.seed!r}"),
        )
        return next((message for ok, message in checks if not ok()), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``N`` infinite is ``None``, i.e. JSON null)."""
        out = dataclasses.asdict(self)
        out["p"] = list(self.p)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SoftmaxConfig":
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`InputError`. Not validated."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown softmax config keys {unknown}; allowed: {sorted(names)}")
        missing = sorted(n for n in ("K", "p") if n not in data)
        if missing:
            raise InputError(f"softmax config is missing required keys {missing}")
        return cls(**data)


def check_batch(configs: Sequence[SoftmaxConfig] | SoftmaxConfig) -> tuple[SoftmaxConfig, ...]:
    """Validate every config of a batch and that they share ``steps`` and ``log_every``.

    A single config is accepted and returned as a one-element tuple.
    """
    batch = (configs,) if isinstance(configs, SoftmaxConfig) else tuple(configs)
    if not batch:
        raise InputError("no configs to simulate")
    for index, cfg in enumerate(batch):
        if not isinstance(cfg, SoftmaxConfig):
            raise InputError(f"config {index} is a {type(cfg).__name__}, not a SoftmaxConfig")
        cfg.validate()
    for name in ("steps", "log_every"):
        values = sorted({getattr(cfg, name) for cfg in batch})
        if len(values) > 1:
            raise InputError(f"configs of one batch must share {name}; got {values}")
    return batch
