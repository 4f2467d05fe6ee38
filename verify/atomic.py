"""Atomic file writes: a temp file in the same folder, fsync, then rename over the target."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from theory.errors import InputError

__all__ = ["check_target", "write_text", "write_json", "write_npz"]


def check_target(path: Path) -> None:
    """Refuse, before any work, a file path that cannot be written (InputError); leaves nothing behind.

    ``path`` must not be a folder, and its nearest existing ancestor must be a folder in which this process
    can create a file: tried with an empty temp file, removed at once (permission bits alone do not tell:
    root may write anywhere by them, yet not under /proc or /sys, nor on a read-only mount). The missing
    folders in between are created at the first write.
    """
    path = Path(path).absolute()
    try:
        if path.is_dir():
            raise InputError(f"cannot write {path}: it is a folder")
        existing = next(p for p in path.parents if p.exists())
        if not existing.is_dir():
            raise InputError(f"cannot write {path}: {existing} is not a writable folder")
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".verify-probe.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    os.close(fd)
    os.unlink(probe)


def _write_atomically(path: Path, mode: str, write) -> None:
    """Call ``write(handle)`` on a temp file in ``path``'s folder, fsync, then rename over ``path``.

    An OSError (a folder that cannot be created, a full disk) is an InputError naming ``path``; the old
    file, if any, is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; reports are meant to be read
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old file or the whole new one."""
    _write_atomically(path, "w", lambda handle: handle.write(text))


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Atomic ``np.savez`` of ``arrays`` to ``path``."""
    _write_atomically(path, "wb", lambda handle: np.savez(handle, **arrays))


def write_json(path: Path, obj, *, allow_nan: bool = False) -> None:
    """Atomic JSON dump with sorted keys.

    Standard JSON by default: the caller sanitises non-finite floats (``verify.runner.jsonable``) and any
    left raise ValueError.  ``allow_nan=True`` writes Python's ``NaN``/``Infinity`` tokens instead, for
    internal files (checkpointed rows) that must read back every float exactly.
    """
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=allow_nan) + "\n")
