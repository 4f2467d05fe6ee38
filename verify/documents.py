"""The one reader of the verifier's JSON files: size policy first, then parse, then the published schema.

The schemas are ``verify/schemas/report.schema.json`` (report.json) and ``checkpoint.schema.json`` (the
checkpoints of ``--resume``), JSON Schema 2020-12, shipped with the package for CI consumers too. Every
reader (``verify diff``, ``verify show``, ``--resume``) goes through :func:`load`: the file is refused
before parsing when it is over the size limit (:func:`verify.limits.read_json_text`), non-finite numbers
(``NaN``, ``Infinity``, ``1e999``) are refused unless the file kind allows them, and a document that does
not match its schema is refused with the first problem and where it is. Every refusal is one line
(:class:`theory.errors.InputError`, exit 2).
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from theory.errors import InputError
from verify import limits

__all__ = ["SCHEMA_DIR", "SCHEMAS", "schema_path", "validate", "parse", "load"]

SCHEMA_DIR = Path(__file__).with_name("schemas")
SCHEMAS = ("report", "checkpoint")
_MESSAGE_CHARS = 200  # a schema error quotes the offending value: keep the line short


def schema_path(name: str) -> Path:
    """The file of a published schema (``report`` or ``checkpoint``)."""
    return SCHEMA_DIR / f"{name}.schema.json"


@functools.cache
def _validators() -> dict[str, Draft202012Validator]:
    schemas = {name: json.loads(schema_path(name).read_text(encoding="utf-8")) for name in SCHEMAS}
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return {name: Draft202012Validator(s, registry=registry) for name, s in schemas.items()}


def validate(document: Any, name: str, what: str) -> None:
    """Refuse ``document`` (InputError naming ``what``) when it does not match schema ``name``.

    ``name`` is ``report``, ``checkpoint``, or ``checkpoint#result`` / ``checkpoint#chunk`` for one kind.
    """
    schema, _, part = name.partition("#")
    validator = _validators()[schema]
    if part:
        validator = validator.evolve(schema={"$ref": f"{validator.schema['$id']}#/$defs/{part}"})
    error = best_match(validator.iter_errors(document))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "the top level"
        message = " ".join(error.message.split())
        if len(message) > _MESSAGE_CHARS:
            message = message[:_MESSAGE_CHARS] + "..."
        raise InputError(f"{what} does not match {schema_path(schema).name}: {message} (at {where})")


def _refuse_constant(token: str):
    raise ValueError(f"non-finite number {token} (standard JSON has none)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows a float")
    return value


def parse(text: str, what: str, *, allow_nan: bool = False) -> Any:
    """``json.loads`` with one-line errors; non-finite numbers are refused unless ``allow_nan``."""
    hooks = {} if allow_nan else {"parse_constant": _refuse_constant, "parse_float": _finite_float}
    try:
        return json.loads(text, **hooks)
    except RecursionError:
        raise InputError(f"{what} is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise InputError(f"{what} is not valid JSON: {' '.join(str(exc).split())[:_MESSAGE_CHARS]}") from None


def load(path: Path, name: str, what: str, *, allow_nan: bool = False) -> Any:
    """Read, parse and validate one file (see the module docstring); ``what`` names it in errors."""
    label = f"{what} {path}"
    document = parse(limits.read_json_text(path, what), label, allow_nan=allow_nan)
    validate(document, name, label)
    return document
