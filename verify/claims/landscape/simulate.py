"""``verify simulate landscape``: raw mean-field trajectories on the attention landscape (JSON or NPZ).

docs/attention_landscape.md §1, §6 and §9; the dynamics are :func:`sims.landscape.flow.simulate`,
run here for one config and ``--seeds`` consecutive seeds in one batch. The initial student is the
config's random initialisation, a particle file (``--student``), or the exact strict saddle of
docs/attention_landscape.md §6 (``--saddle``), optionally perturbed by ``--delta`` along ``--direction``; the
teacher is the config's, a particle file (``--teacher FILE.npz``) or the saddle's. Sizes that would
exhaust memory are refused before anything is allocated (:func:`check_resources`). JSON output is standard JSON: NaN and
infinities (logs of a failed run, an infinite noise threshold) are written as the strings "nan", "inf",
"-inf" (:func:`verify.runner.jsonable`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sims.landscape.flow import (
    MeanFieldConfig, MeanFieldTrajectory, perturb, preset, simulate, strict_saddle,
)
from sims.landscape.kernels import tile_side
from theory.landscape.objective import ParticleMeasure
from theory.errors import InputError
from verify import argtypes
from theory.landscape.gaussian import CLOSED_FORM, DEFAULT_ORDER, DEFAULT_TILE
from theory.landscape.hermite import HERMITE, table_floats
from sims.seeds import successor
from verify import atomic, limits
from verify.claims.landscape.evaluate import load_particles
from verify.runner import jsonable

__all__ = ["CONFIG_OPTIONS", "DEFAULT_SHAPE", "STATE_COPIES", "TILE_COPIES", "MAX_HESSIAN_ROWS", "LandscapeRun",
           "build_run", "logged_floats", "working_floats", "run_floats", "config_floats", "check_resources",
           "run_landscape", "to_json_dict", "simulate_landscape_command"]

#: MeanFieldConfig fields set by a command-line option of the same name (``--log-every`` -> log_every).
#: ``teacher`` is not among them: ``--teacher`` names a teacher kind or a particle file.
CONFIG_OPTIONS: tuple[str, ...] = (
    "d", "k", "M", "activation", "teacher_M", "teacher_seed", "init_scale", "a_scale", "lr", "steps", "log_every",
    "seed", "dynamics", "w_speed", "w_init", "birth_death", "noise", "noise_threshold", "label_noise", "quad_order")
#: Shape without --preset or particle files (ours: small enough for stdout, large enough to train).
#: With --saddle the default M is k, the smallest exact saddle.
DEFAULT_SHAPE = {"d": 10, "k": 3, "M": 64}
#: Copies of the particle state (C, M + M_o, k + d) alive during one step: a, w, their gradients and
#: updates, kernel sources and coefficients (about 9 measured by peak RSS on the CPU; rounded up).
STATE_COPIES = 12
#: Temporaries per entry of one kernel tile (C, t1, t2, quadrature nodes), autograd's saved tensors
#: included (about 9 measured for erf by peak RSS on the CPU; rounded up).
TILE_COPIES = 12
#: Largest M (k + d) for ``--direction hessian``: theory's autograd Hessian has (M (k + d))^2 entries and
#: costs one backward pass per row (measured 13 s at 1560 rows on one core, growing quadratically).
MAX_HESSIAN_ROWS = 2000


@dataclasses.dataclass
class LandscapeRun:
    """Everything one ``simulate landscape`` call runs: the batch and where its particles come from.

    Attributes
    ----------
    configs : tuple of MeanFieldConfig
        One per seed, in seed order (the batch of :func:`sims.landscape.flow.simulate`).
    init, teachers : list of ParticleMeasure or None
        One per config, or None for the config's own initialisation / teacher.
    init_source, teacher_source : str
        ``"config"``, ``"file PATH"``, ``"saddle"`` or ``"saddle + delta D along DIRECTION"``.
    """

    configs: tuple[MeanFieldConfig, ...]
    init: list[ParticleMeasure] | None
    teachers: list[ParticleMeasure] | None
    init_source: str
    teacher_source: str


def logged_floats(C: int, steps: int, log_every: int, k: int) -> int:
    """Values logged by C runs: loss, loss_tf, lambda_min, cond, saddle, grad_sq, time, events and
    noise_steps (C, T) and the spectrum of S_mu (C, T, k); T <= steps // log_every + 2."""
    return C * (steps // log_every + 2) * (k + 9)


def working_floats(cfg: MeanFieldConfig, C: int, M_o: int) -> int:
    """Upper estimate of the floats one step of C configs holds at once.

    The particle state and its copies, STATE_COPIES x (C, M + M_o, k + d); one kernel tile with its
    temporaries, TILE_COPIES x (C, t1, t2) times the quadrature nodes (order^2 / 2, the bound
    :func:`sims.landscape.kernels.tile_side` uses) for sigmoid/tanh with a quadrature order, or their Hermite
    tables (:func:`theory.landscape.hermite.table_floats`) without one; and the precomputed counter keys of
    birth-death (C, steps) and noise (C, steps, 2). No formula: memory policy (refuse
    sizes that would exhaust memory before allocating).
    """
    name, M = cfg.activation, cfg.M
    side = tile_side(name, C, DEFAULT_TILE, cfg.quad_order)
    series = name in HERMITE and cfg.quad_order is None
    order = DEFAULT_ORDER.get(name, 1) if cfg.quad_order is None else cfg.quad_order
    nodes = 1 if name in CLOSED_FORM or series else max(1, order * order // 2)
    tile = C * min(M, side) * min(M + M_o, side) * nodes  # (C, t1, t2, nodes)
    keys = C * cfg.steps * ((cfg.birth_death > 0) + 2 * (cfg.noise > 0 and cfg.noise_threshold > 0))
    tables = table_floats(C, M, M + M_o) if series else 0
    return STATE_COPIES * C * (M + M_o) * (cfg.k + cfg.d) + TILE_COPIES * tile + keys + tables


def run_floats(cfg: MeanFieldConfig, C: int, M_o: int) -> int:
    """Upper estimate of the floats a batch of C runs of ``cfg`` holds: its logs and one step's working set."""
    return logged_floats(C, cfg.steps, cfg.log_every, cfg.k) + working_floats(cfg, C, M_o)


def config_floats(fields: Mapping[str, Any]) -> int:
    """:func:`run_floats` of one run of a claim's config dict (its MeanFieldConfig fields; others ignored)."""
    names = {f.name for f in dataclasses.fields(MeanFieldConfig)}
    cfg = MeanFieldConfig(**{key: value for key, value in fields.items() if key in names})
    return run_floats(cfg, 1, cfg.n_teacher)


def check_resources(cfg: MeanFieldConfig, C: int, M_o: int) -> None:
    """Refuse (InputError) a batch over the memory budget (:mod:`verify.limits`), before allocating."""
    limits.check_floats(f"verify simulate landscape of {C} run(s), M {cfg.M}, M_o {M_o}, k {cfg.k}, d {cfg.d}, "
                        f"{cfg.steps} steps logged every {cfg.log_every}", run_floats(cfg, C, M_o),
                        "lower --M, --d, --k, --seeds or --steps, or raise --log-every")


def _explicit(args) -> dict:
    """Config fields given on the command line."""
    return {name: getattr(args, name) for name in CONFIG_OPTIONS if getattr(args, name) is not None}


def _adopt_shape(fields: dict, measure: ParticleMeasure, role: str, names: tuple[str, ...]) -> None:
    """Take M, k or d from a particle file; an explicit option or earlier file that differs is an error."""
    found = {"M": measure.a.shape[0], "k": measure.a.shape[1], "d": measure.w.shape[1]}
    for name in names:
        if fields.get(name, found[name]) != found[name]:
            raise InputError(f"{name} mismatch: {role} file has {name} = {found[name]}, "
                             f"but {name} = {fields[name]} was given")
        fields[name] = found[name]


def _base_config(args, fields: dict) -> MeanFieldConfig:
    if args.preset is not None:
        return preset(args.preset, **fields)
    shape = {**DEFAULT_SHAPE, "M": fields.get("k", DEFAULT_SHAPE["k"])} if args.saddle else DEFAULT_SHAPE
    return MeanFieldConfig(**{**shape, **fields}).validate()


def _saddle_start(configs: tuple[MeanFieldConfig, ...], args) -> tuple[list[ParticleMeasure], ParticleMeasure, str]:
    """The exact saddle of docs/attention_landscape.md §6 for every config, perturbed by --delta along --direction
    (the random direction is drawn from each config's seed); returns (init, teacher, init_source)."""
    cfg = configs[0]
    if cfg.activation != "erf":
        raise InputError(f"--saddle is exact for the erf activation only, got {cfg.activation!r}")
    if cfg.d < cfg.k + 1:
        raise InputError(f"--saddle needs d >= k + 1 (a direction orthogonal to the teacher), got d = {cfg.d}, "
                         f"k = {cfg.k}")
    delta, direction = args.delta or 0.0, args.direction or "hessian"
    if delta > 0 and direction == "hessian" and cfg.M * (cfg.k + cfg.d) > MAX_HESSIAN_ROWS:
        raise InputError(f"--direction hessian needs M (k + d) <= {MAX_HESSIAN_ROWS} (an autograd Hessian), got "
                         f"{cfg.M * (cfg.k + cfg.d)}; use --direction random or a smaller --M")
    student, teacher = strict_saddle(cfg.d, cfg.k, cfg.M)
    if delta == 0:
        return [student] * len(configs), teacher, "saddle"
    if direction == "hessian":
        init = [perturb(student, delta, direction="hessian", teacher=teacher, activation="erf")] * len(configs)
    else:
        init = [perturb(student, delta, c.seed, direction="random") for c in configs]
    return init, teacher, f"saddle + delta {delta:g} along {direction}"


def build_run(args) -> LandscapeRun:
    """Parse the options into a checked batch; refuses bad input and oversized runs before allocating.

    Raises
    ------
    InputError
        One line naming the problem (see the module docstring and :func:`check_resources`).
    """
    if args.seeds < 1:
        raise InputError(f"--seeds must be >= 1, got {args.seeds}")
    perturbation = args.delta is not None or args.direction is not None
    if args.delta is not None and not (math.isfinite(args.delta) and args.delta >= 0):
        raise InputError(f"--delta must be finite and >= 0, got {args.delta}")
    if perturbation and not args.saddle:
        raise InputError("--delta and --direction perturb the saddle: add --saddle")
    teacher_file = args.teacher is not None and (args.teacher.endswith(".npz") or Path(args.teacher).exists())
    if args.saddle and (args.student is not None or args.teacher is not None):
        raise InputError("--saddle brings its own student and orthonormal teacher; drop --student/--teacher")
    fields = _explicit(args)
    student = load_particles(args.student, "student") if args.student is not None else None
    teacher = load_particles(Path(args.teacher), "teacher") if teacher_file else None
    if student is not None:
        _adopt_shape(fields, student, "student", ("M", "k", "d"))
    if teacher is not None:
        _adopt_shape(fields, teacher, "teacher", ("k", "d"))
        fields.update(teacher="random", teacher_M=teacher.a.shape[0])  # the shape of the file's teacher
    elif args.teacher is not None:
        fields["teacher"] = args.teacher
    cfg = _base_config(args, fields)
    C = args.seeds
    check_resources(cfg, C, cfg.n_teacher)
    configs = tuple(dataclasses.replace(cfg, seed=successor(cfg.seed, i)).validate() for i in range(C))
    if args.saddle:
        init, saddle_teacher, init_source = _saddle_start(configs, args)
        return LandscapeRun(configs, init, [saddle_teacher] * C, init_source, "saddle")
    return LandscapeRun(configs, None if student is None else [student] * C,
                        None if teacher is None else [teacher] * C,
                        "config" if student is None else f"file {args.student}",
                        "config" if teacher is None else f"file {args.teacher}")


def run_landscape(run: LandscapeRun, device) -> MeanFieldTrajectory:
    """:func:`sims.landscape.flow.simulate` of the whole batch on ``device`` (float64)."""
    return simulate(run.configs, device=device, init=run.init, teachers=run.teachers)


def to_json_dict(traj: MeanFieldTrajectory, run: LandscapeRun) -> dict:
    """Standard JSON (NaN and infinities written as the strings "nan", "inf", "-inf").

    Layout: ``model``, ``t`` (T,), ``init``, ``teacher`` (the sources of :class:`LandscapeRun`) and
    ``runs``, one per config with its ``config`` and the arrays of
    :meth:`sims.landscape.trajectory.MeanFieldTrajectory.to_arrays` without the config axis: time, loss,
    loss_tf, lambda_min, cond, saddle, grad_sq, events, noise_steps (T,), s_mu_eig (T, k), failed_at,
    final a (M, k), w (M, d), W (k, k), teacher_a (M_o, k), teacher_w (M_o, d).
    """
    arrays = traj.to_arrays()
    t = arrays.pop("t")
    del arrays["configs"]
    runs = [{"config": cfg.to_dict(), **{name: value[i] for name, value in arrays.items()}}
            for i, cfg in enumerate(traj.configs)]
    return jsonable({"model": "landscape", "t": t, "init": run.init_source, "teacher": run.teacher_source,
                     "runs": runs})


def simulate_landscape_command(args) -> int:
    """CLI body: build and check the batch, simulate, write JSON/NPZ (``--out``) or print JSON.

    The NPZ holds :meth:`~sims.landscape.trajectory.MeanFieldTrajectory.to_arrays` (readable with
    ``MeanFieldTrajectory.from_arrays``) plus 0-d strings ``init`` and ``teacher`` (the sources).
    """
    from sims.devices import resolve_device

    out: Path | None = args.out
    if out is not None and out.suffix not in (".json", ".npz"):
        raise InputError(f"--out must end in .json or .npz, got {out}")
    if out is not None:
        atomic.check_target(out)
    device = resolve_device(args.device)
    run = build_run(args)
    traj = run_landscape(run, device)
    if out is None:
        print(json.dumps(to_json_dict(traj, run), allow_nan=False))
        return 0
    if out.suffix == ".json":
        atomic.write_json(out, to_json_dict(traj, run))
    else:
        atomic.write_npz(out, {**traj.to_arrays(), "init": np.array(run.init_source),
                               "teacher": np.array(run.teacher_source)})
    final = ", ".join(f"{cfg.seed}: {float(loss):.6g}" for cfg, loss in zip(traj.configs, traj.loss[:, -1]))
    failed = [cfg.seed for cfg, step in zip(traj.configs, traj.failed_at) if step >= 0]
    print(f"wrote {out}: {len(traj.configs)} run(s) x {len(traj.t)} logged steps to t = {int(traj.t[-1])}; "
          f"final loss by seed {{{final}}}" + (f"; S_mm singular for seeds {failed}" if failed else ""))
    return 0


def add_arguments(parser) -> None:
    """The options of ``verify simulate landscape``."""
    parser.add_argument("--preset", default=None, help="base config: paper (sigmoid, joint W) or paper-probit")
    for flag, kind, text in (("--d", int, "input dimension"), ("--k", int, "feature (output) dimension"),
                             ("--M", int, "student particles"),
                             ("--activation", str, "erf, probit, relu, sigmoid or tanh"),
                             ("--teacher-M", int, "particles of the random teacher"),
                             ("--teacher-seed", argtypes.seed, "teacher seed (default: each run's --seed)"),
                             ("--init-scale", float, "E|w_i|^2 = init-scale^2 at initialisation"),
                             ("--a-scale", float, "a_i ~ N(0, a-scale^2 I) at initialisation"),
                             ("--lr", float, "Euler step in mean-field time"), ("--steps", int, "Euler steps"),
                             ("--log-every", int, "log every N steps (and the last)"),
                             ("--seed", argtypes.seed, "seed of the first run, in [0, 2^63)"),
                             ("--dynamics", str, "two-timescale (W = W*) or joint (explicit W)"),
                             ("--w-speed", float, "joint: W learning-rate ratio"),
                             ("--w-init", str, "joint: optimal or zero"),
                             ("--birth-death", float, "birth-death rate (0 = off)"),
                             ("--noise", float, "noise injection scale (0 = off)"),
                             ("--noise-threshold", float, "inject noise while mean |grad V|^2 < this (inf: always)"),
                             ("--label-noise", float, "label noise variance s^2"),
                             ("--quad-order", int, "force 2-D Gauss-Hermite quadrature of this order for sigmoid/tanh (default: their Hermite series)")):
        parser.add_argument(flag, type=kind, default=None, help=text)
    parser.add_argument("--teacher", default=None, help="orthonormal, random, or FILE.npz with a (M_o x k), w (M_o x d)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--student", type=Path, default=None, help="FILE.npz: initial a (M x k), w (M x d)")
    start.add_argument("--saddle", action="store_true", help="start at the exact strict saddle (erf, d >= k + 1)")
    parser.add_argument("--delta", type=float, default=None, help="with --saddle: perturbation size (default 0)")
    parser.add_argument("--direction", choices=("hessian", "random"), default=None,
                        help="with --saddle: perturbation direction (default hessian)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N", help="run seeds seed..seed+N-1 (mod 2^63) in one batch")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", type=Path, default=None,
                        help="FILE.json (NaN/inf as strings) or FILE.npz (default: JSON on stdout)")


run = simulate_landscape_command
