"""``verify evaluate landscape``: landscape quantities of a particle measure read from .npz files.

Particle files hold arrays ``a`` (M x k) and ``w`` (M x d) (architecture.md, CLI contract). Files are
data: shapes are read from the .npy headers and refused before any array is loaded when they are
malformed or too large; values must be finite.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from theory import attention_landscape as al
from theory.errors import InputError
from theory.gaussian import ACTIVATIONS

__all__ = ["MAX_PARTICLE_FLOATS", "load_particles", "default_teacher", "evaluate_landscape",
           "evaluate_landscape_command"]

MAX_PARTICLE_FLOATS = 50_000_000  # 400 MB of float64 per file


def _header_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Shapes and dtypes of every array in an .npz, read from the headers only."""
    try:
        with zipfile.ZipFile(path) as archive:
            out = {}
            for name in archive.namelist():
                with archive.open(name) as handle:
                    version = np.lib.format.read_magic(handle)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(handle)
                out[name.removesuffix(".npy")] = (tuple(shape), dtype.str)
            return out
    except FileNotFoundError:
        raise InputError(f"particle file {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"particle file {path} is a directory") from None
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise InputError(f"{path} is not a readable .npz particle file ({type(exc).__name__}: {exc})") from None


def load_particles(path: Path, role: str) -> al.ParticleMeasure:
    """Read a particle file: ``a`` (M, k) and ``w`` (M, d), finite, within the size limit."""
    shapes = _header_shapes(Path(path))
    missing = {"a", "w"} - set(shapes)
    if missing:
        raise InputError(f"{role} file {path} lacks array(s) {sorted(missing)}; it needs a (M x k) and w (M x d)")
    (shape_a, type_a), (shape_w, type_w) = shapes["a"], shapes["w"]
    if len(shape_a) != 2 or len(shape_w) != 2 or shape_a[0] != shape_w[0] or shape_a[0] == 0 or 0 in shape_a + shape_w:
        raise InputError(f"{role} file {path}: a must be (M x k) and w (M x d) with the same M >= 1, "
                         f"got a {shape_a} and w {shape_w}")
    if np.prod(shape_a) + np.prod(shape_w) > MAX_PARTICLE_FLOATS:
        raise InputError(f"{role} file {path}: {shape_a[0]} particles x {shape_a[1] + shape_w[1]} numbers exceed "
                         f"the limit of {MAX_PARTICLE_FLOATS:.0e} floats")
    if not all(np.dtype(t).kind in "fiu" for t in (type_a, type_w)):
        raise InputError(f"{role} file {path}: a and w must be real numbers, got dtypes {type_a}, {type_w}")
    with np.load(path, allow_pickle=False) as data:
        a, w = (np.asarray(data[key], dtype=np.float64) for key in ("a", "w"))
    for key, arr in (("a", a), ("w", w)):
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{role} file {path}: array {key} contains NaN or inf")
    return al.ParticleMeasure(torch.from_numpy(a), torch.from_numpy(w))


def default_teacher(k: int, d: int) -> al.ParticleMeasure:
    """The spec's default teacher: f°_j(x) = sigma(e_j . x), j = 1..k (k particles (k e_j, e_j)); needs d >= k."""
    if d < k:
        raise InputError(f"the default teacher needs d >= k (orthonormal directions), got k = {k}, d = {d}; "
                         "pass --teacher FILE.npz")
    eye = torch.eye(d, dtype=torch.float64)
    return al.ParticleMeasure(k * torch.eye(k, dtype=torch.float64), eye[:k])


def evaluate_landscape(student: al.ParticleMeasure, teacher: al.ParticleMeasure, activation: str) -> dict:
    """Every landscape quantity of spec sections 2-3 at ``student``; singular S_mm is an InputError."""
    if activation not in ACTIVATIONS:
        raise InputError(f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
    (M, k), d = student.a.shape, student.w.shape[1]
    if teacher.w.shape[1] != d:
        raise InputError(f"student particles live in d = {d} but the teacher's in d = {teacher.w.shape[1]}")
    if teacher.a.shape[1] != k:
        raise InputError(f"k mismatch: student outputs k = {k}, teacher k = {teacher.a.shape[1]}")
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
    student = load_particles(args.student, "student")
    teacher = load_particles(args.teacher, "teacher") if args.teacher else default_teacher(
        student.a.shape[1], student.w.shape[1])
    result = evaluate_landscape(student, teacher, args.activation)
    text = json.dumps(result, indent=2)
    if args.out:
        from verify import atomic

        atomic.write_text(args.out, text + "\n")
    print(text)
    return 0
