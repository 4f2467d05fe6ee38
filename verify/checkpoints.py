"""Checkpoints of a run under ``OUT/.checkpoints`` so that ``--resume`` loses nothing already computed.

Two kinds, both written atomically (:mod:`verify.atomic`):

- ``<claim id>.json``: a finished claim, ``{"fingerprint", "result"}`` (the report row).
- ``<claim id>.chunks/<start>.json``: the rows of one measured sweep chunk of a claim that has not
  finished yet, ``{"fingerprint", "start", "configs", "rows", "seconds"}``; removed once the claim's
  own checkpoint is written.  Rows are stored with Python's ``NaN``/``Infinity`` JSON tokens so that every
  float (an event not reached is NaN) reads back bit for bit.

Their layout is published as verify/schemas/checkpoint.schema.json. A checkpoint of another run (different
fingerprint — id, budget, seed, device, dtype, params, overrides — or, for a chunk, different configs) is
ignored and recomputed.  One that cannot be read, is over the size limit (:mod:`verify.limits`) or does not
match the schema is bad input: :class:`theory.errors.InputError` naming the file, and the file is left as
it is.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from theory.errors import InputError
from verify import atomic, documents

__all__ = ["CHECKPOINT_DIR", "Partial", "ClaimCheckpoints"]

CHECKPOINT_DIR = ".checkpoints"


@dataclass
class Partial:
    """Rows already measured for some configs of a claim (index in the sweep -> row) and their cost."""

    rows: dict[int, dict] = field(default_factory=dict)
    seconds: float = 0.0


def _read(path: Path, kind: str) -> dict:
    """Read a checkpoint of ``kind`` (``result`` or ``chunk``) through :func:`verify.documents.load`: size
    policy, then verify/schemas/checkpoint.schema.json; any failure is an InputError naming the file.
    Result checkpoints are standard JSON; chunk rows may hold NaN and Infinity (module docstring)."""
    try:
        saved = documents.load(path, f"checkpoint#{kind}", "checkpoint", allow_nan=kind == "chunk")
    except InputError as exc:
        raise InputError(f"corrupt checkpoint {path}: {exc}; delete it or run without --resume") from None
    if kind == "chunk" and len(saved["configs"]) != len(saved["rows"]):
        raise InputError(f"corrupt checkpoint {path}: {len(saved['rows'])} rows for {len(saved['configs'])} configs "
                         "(they must be of equal length); delete it or run without --resume")
    return saved


@dataclass(frozen=True)
class ClaimCheckpoints:
    """The checkpoints of one claim in one run.

    Parameters
    ----------
    root : the run's checkpoint folder (``OUT/.checkpoints``).
    claim_id : the claim's id (file names derive from it).
    fingerprint : plain-JSON identity of the run as far as this claim is concerned.
    configs : the claim's swept configs as plain JSON (chunks are matched against them).
    """

    root: Path
    claim_id: str
    fingerprint: dict
    configs: list

    @property
    def result_path(self) -> Path:
        """File of the finished claim."""
        return self.root / f"{self.claim_id}.json"

    @property
    def chunk_dir(self) -> Path:
        """Folder of the measured chunks of the unfinished claim."""
        return self.root / f"{self.claim_id}.chunks"

    def load_result(self) -> dict | None:
        """The finished claim's result, or None when there is none for this run."""
        if not self.result_path.exists():
            return None
        saved = _read(self.result_path, "result")
        if saved["result"]["id"] != self.claim_id:
            raise InputError(f"corrupt checkpoint {self.result_path}: it holds claim {saved['result']['id']!r:.80}; "
                             "delete it or run without --resume")
        return saved["result"] if saved["fingerprint"] == self.fingerprint else None

    def save_result(self, result: dict) -> None:
        """Checkpoint the finished claim, then drop its chunk files (now redundant)."""
        atomic.write_json(self.result_path, {"fingerprint": self.fingerprint, "result": result})
        shutil.rmtree(self.chunk_dir, ignore_errors=True)

    def load_partial(self) -> Partial:
        """Rows of this run's configs measured by chunks of an interrupted run (empty when none)."""
        partial = Partial()
        if not self.chunk_dir.is_dir():
            return partial
        for path in sorted(self.chunk_dir.iterdir()):
            if path.name.startswith("."):  # an atomic write's temp file, left by a killed process
                continue
            saved = _read(path, "chunk")
            start, rows = saved["start"], saved["rows"]
            if saved["fingerprint"] != self.fingerprint or saved["configs"] != self.configs[start:start + len(rows)]:
                continue  # another run's chunk
            partial.rows.update(enumerate(rows, start))
            partial.seconds += float(saved["seconds"])
        return partial

    def save_chunk(self, start: int, rows: list[dict], seconds: float) -> None:
        """Checkpoint the rows of configs ``start .. start + len(rows) - 1``."""
        saved = {"fingerprint": self.fingerprint, "start": start, "configs": self.configs[start:start + len(rows)],
                 "rows": rows, "seconds": seconds}
        atomic.write_json(self.chunk_dir / f"{start}.json", saved, allow_nan=True)
