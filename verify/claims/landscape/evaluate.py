"""``verify evaluate landscape``: landscape quantities of a particle measure read from .npz files.

Particle files hold arrays ``a`` (M x k) and ``w`` (M x d). Files are data: shapes are read from the .npy
headers and refused before any array is loaded when they are malformed or over the memory budget
(:mod:`verify.limits`); a truncated payload is refused; values must be finite.
"""
from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from theory.landscape import objective as al
from theory.errors import InputError
from sims.devices import resolve_device
from sims.landscape.config import activation_problem
from verify import atomic, limits

__all__ = ["PARTICLE_COPIES", "load_particles", "evaluation_floats", "default_teacher", "evaluate_landscape",
           "evaluate_landscape_command"]

PARTICLE_COPIES = 3  # a file's arrays as stored, as float64, and as a tensor


def _header_shapes(path: Path, names: tuple[str, ...]) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shapes and dtypes of the arrays ``names`` of an .npz that it holds, read from their headers only."""
    if Path(path).is_dir():
        raise InputError(f"particle file {path} is a directory")
    if Path(path).exists():
        limits.regular_file(path, "particle file", limits.budget()[0])
    try:
        with zipfile.ZipFile(path) as archive:
            out = {}
            for name in names:
                if f"{name}.npy" not in archive.namelist():
                    continue
                with archive.open(f"{name}.npy") as handle:
                    version = np.lib.format.read_magic(handle)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(handle)
                out[name] = (tuple(shape), dtype.str)
            return out
    except FileNotFoundError:
        raise InputError(f"particle file {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"particle file {path} is a directory") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError) as exc:
        raise InputError(f"{path} is not a readable .npz particle file ({type(exc).__name__}: {_line(exc)})") from None


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def load_particles(path: Path, role: str) -> al.ParticleMeasure:
    """Read a particle file: ``a`` (M, k) and ``w`` (M, d), finite, within the memory budget (checked from
    the headers before any array is read); a truncated or corrupt payload is an InputError."""
    shapes = _header_shapes(Path(path), ("a", "w"))
    missing = {"a", "w"} - set(shapes)
    if missing:
        raise InputError(f"{role} file {path} lacks array(s) {sorted(missing)}; it needs a (M x k) and w (M x d)")
    (shape_a, type_a), (shape_w, type_w) = shapes["a"], shapes["w"]
    if len(shape_a) != 2 or len(shape_w) != 2 or shape_a[0] != shape_w[0] or shape_a[0] == 0 or 0 in shape_a + shape_w:
        raise InputError(f"{role} file {path}: a must be (M x k) and w (M x d) with the same M >= 1, "
                         f"got a {shape_a} and w {shape_w}")
    limits.check_floats(f"{role} file {path} ({shape_a[0]} particles x {shape_a[1] + shape_w[1]} numbers)",
                        PARTICLE_COPIES * (math.prod(shape_a) + math.prod(shape_w)))
    if not all(np.dtype(t).kind in "fiu" for t in (type_a, type_w)):
        raise InputError(f"{role} file {path}: a and w must be real numbers, got dtypes {type_a}, {type_w}")
    try:
        with np.load(path, allow_pickle=False) as data:
            a, w = (np.asarray(data[key], dtype=np.float64) for key in ("a", "w"))
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError) as exc:
        raise InputError(f"{role} file {path}: cannot read its arrays, the file is truncated or corrupt "
                         f"({type(exc).__name__}: {_line(exc)})") from None
    for key, arr in (("a", a), ("w", w)):
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{role} file {path}: array {key} contains NaN or inf")
    return al.ParticleMeasure(torch.from_numpy(a), torch.from_numpy(w))


def evaluation_floats(M: int, M_o: int, k: int, d: int, activation: str) -> int:
    """Upper estimate of the floats :func:`evaluate_landscape` holds: as one mean-field step of the same
    measure (:func:`verify.claims.landscape.simulate.working_floats`: particle copies and one kernel tile)."""
    from sims.landscape.flow import MeanFieldConfig
    from verify.claims.landscape.simulate import working_floats

    cfg = MeanFieldConfig(d=d, k=k, M=M, activation=activation, teacher="random", teacher_M=M_o)
    return working_floats(cfg, 1, M_o)


def default_teacher(k: int, d: int) -> al.ParticleMeasure:
    """The default teacher of docs/attention_landscape.md §1 in the unit frame: f°_j(x) = sigma(e_j . x), j = 1..k
    (k particles (k e_j, e_j)); needs d >= k."""
    if d < k:
        raise InputError(f"the default teacher needs d >= k (orthonormal directions), got k = {k}, d = {d}; "
                         "pass --teacher FILE.npz")
    eye = torch.eye(d, dtype=torch.float64)
    return al.ParticleMeasure(k * torch.eye(k, dtype=torch.float64), eye[:k])


def evaluate_landscape(student: al.ParticleMeasure, teacher: al.ParticleMeasure, activation: str) -> dict:
    """Every landscape quantity of docs/attention_landscape.md §2-§5 at ``student``; singular S_mm is an
    InputError."""
    problem = activation_problem(activation)
    if problem:
        raise InputError(problem)
    (M, k), d = student.a.shape, student.w.shape[1]
    if teacher.w.shape[1] != d:
        raise InputError(f"student particles live in d = {d} but the teacher's in d = {teacher.w.shape[1]}")
    if teacher.a.shape[1] != k:
        raise InputError(f"k mismatch: student outputs k = {k}, teacher k = {teacher.a.shape[1]}")
    limits.check_floats(f"verify evaluate landscape of M {M}, M_o {teacher.a.shape[0]}, k {k}, d {d}",
                        evaluation_floats(M, teacher.a.shape[0], k, d, activation))
    cov = al.covariances(activation, student, teacher)
    try:
        lam_min, cond = al.check_conditioning(cov.S_mm)
        W_star = al.optimal_W(cov)
        S_mu = al.schur_complement(cov)
        V = al.first_variation(activation, student, teacher, student.a, student.w)
    except al.SingularCovarianceError as exc:
        raise InputError(f"cannot evaluate the landscape: {exc}") from None
    return {
        "activation": activation, "M": M, "k": k, "d": d,
        "L": float(al.landscape_loss(cov)), "L_TF_at_W_star": float(al.loss_tf(cov, W_star)),
        "W_star": W_star.tolist(), "S_mm": cov.S_mm.tolist(), "S_om": cov.S_om.tolist(), "S_oo": cov.S_oo.tolist(),
        "lambda_min_S_mm": lam_min, "cond_S_mm": cond,
        "spectrum_S_mu": torch.linalg.eigvalsh(S_mu).tolist(),
        "saddle_indicator": float(al.saddle_indicator(cov)),
        "first_variation": V.tolist(),
    }


def evaluate_landscape_command(args) -> int:
    """CLI body: read files, evaluate, print JSON (and write it with --out)."""
    if args.out:
        atomic.check_target(args.out)
    student = load_particles(args.student, "student")
    teacher = load_particles(args.teacher, "teacher") if args.teacher else default_teacher(
        student.a.shape[1], student.w.shape[1])
    result = evaluate_landscape(student, teacher, args.activation)
    text = json.dumps(result, indent=2)
    if args.out:
        atomic.write_text(args.out, text + "\n")
    print(text)
    return 0


def add_arguments(parser) -> None:
    """The options of ``verify evaluate landscape``."""
    parser.add_argument("--student", type=Path, required=True, help="FILE.npz with a (M x k) and w (M x d)")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="FILE.npz likewise (default: f°_j(x) = sigma(e_j . x), j = 1..k)")
    parser.add_argument("--activation", default="erf", help="erf, probit, relu, sigmoid or tanh")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")


def run(args) -> int:
    """``verify evaluate landscape``: on the CPU, with the run's thread policy."""
    resolve_device("cpu")
    return evaluate_landscape_command(args)
