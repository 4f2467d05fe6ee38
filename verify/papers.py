"""Papers are plugins: discovered through an entry-point group, or loaded from a claim file.

A paper is a :class:`Paper` object (id, title, reference, the modules that register its claims, and
optional extra subcommands). Installed packages expose it under the entry-point group
:data:`ENTRY_POINT_GROUP`; the two built-in papers register exactly that way (see pyproject.toml). An
auditor with one claim of their own writes it in a Python file and passes ``verify run --claims PATH``
(a file or a folder of files): the file registers its paper and claims with
:func:`verify.registry.register_paper` and :func:`verify.registry.register`.

This module names no paper; it only finds them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from theory.errors import InputError

__all__ = ["ENTRY_POINT_GROUP", "Paper", "Subcommand", "discover", "claim_files", "load_claim_file", "file_record",
           "subcommands"]

ENTRY_POINT_GROUP = "icl_theory_verifier.papers"


@dataclass(frozen=True)
class Subcommand:
    """A paper's own ``verify simulate <paper>`` or ``verify evaluate <paper>`` command.

    ``module`` is imported only when the command runs; it defines ``add_arguments(parser)`` (argparse
    options; :mod:`verify.argtypes` has the shared value types) and ``run(args) -> exit code``.
    """

    help: str
    module: str
    description: str | None = None

    def load(self):
        return importlib.import_module(self.module)


@dataclass(frozen=True)
class Paper:
    """One paper of the catalogue.

    ``id`` prefixes its claim ids (``<id>.<name>``); ``claim_modules`` are imported, in order, when the
    catalogue is loaded, and register the paper's claims; ``simulate``/``evaluate`` are optional
    subcommands (``verify simulate <id>``, ``verify evaluate <id>``); ``bench`` optionally names a module
    whose ``SECTIONS`` dict (name -> function of a torch device returning a dict of figures) adds the
    paper's sections to ``verify bench``.
    """

    id: str
    title: str
    reference: str
    claim_modules: tuple[str, ...] = ()
    simulate: Subcommand | None = None
    evaluate: Subcommand | None = None
    bench: str | None = None  # module whose SECTIONS maps a name to a function of the device (verify bench)
    source: str = field(default="", compare=False)  # where it came from: entry point or claim file

    def __post_init__(self):
        if not (self.id and self.id.replace("_", "").replace("-", "").isalnum() and self.id.islower()):
            raise ValueError(f"paper id must be lower-case letters, digits, '-' or '_', not {self.id!r}")

    @property
    def citation(self) -> str:
        return f"{self.title} ({self.reference})"


def discover() -> tuple[list[Paper], list[str]]:
    """Every installed paper (entry points, in name order) and one line per plugin that failed to load.

    A broken plugin never stops the others: the caller prints its line and runs the rest.
    """
    papers, broken = [], []
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            paper = entry.load()
            if not isinstance(paper, Paper):
                raise TypeError(f"{entry.value} is a {type(paper).__name__}, not a verify.plugin.Paper")
        except Exception as exc:  # a third-party plugin may fail in any way; report it in one line
            broken.append(f"paper plugin {entry.name!r} ({entry.value}) failed to load: {type(exc).__name__}: {exc}")
            continue
        papers.append(dataclasses.replace(paper, source=f"entry point {entry.name} = {entry.value}"))
    return papers, broken


def claim_files(path: Path) -> list[Path]:
    """The claim files under ``path``: the file itself, or a folder's ``*.py`` files in name order."""
    path = Path(path)
    if path.is_file() and path.suffix == ".py":
        return [path.resolve()]
    if path.is_dir():
        files = sorted(p.resolve() for p in path.glob("*.py") if not p.name.startswith("_"))
        if files:
            return files
        raise InputError(f"--claims {path}: the folder holds no .py claim file")
    raise InputError(f"--claims {path}: not a .py file or a folder of them")


def file_record(path: Path) -> dict:
    """What a report records of a claim file: its path and the SHA-256 of its bytes."""
    return {"path": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}


def load_claim_file(path: Path) -> None:
    """Import one claim file (it registers its paper and claims); a broken file is a one-line InputError.

    The module is importable on Dask workers by value (cloudpickle), so ``--workers`` runs its claims.
    """
    name = "verify_claimfile_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except InputError:
        del sys.modules[name]
        raise
    except Exception as exc:  # the auditor's file may fail in any way: name it in one line
        del sys.modules[name]
        raise InputError(f"claim file {path} failed to load: {type(exc).__name__}: {exc}") from None
    try:
        import cloudpickle
    except ImportError:  # without Dask there are no workers to ship the module to
        return
    cloudpickle.register_pickle_by_value(module)


def subcommands(kind: str) -> dict[str, Subcommand]:
    """The installed papers' ``simulate`` or ``evaluate`` subcommands by paper id (broken plugins left out:
    the catalogue reports them)."""
    papers, _ = discover()
    return {p.id: getattr(p, kind) for p in papers if getattr(p, kind) is not None}
