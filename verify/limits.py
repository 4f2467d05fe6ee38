"""The one memory and size policy: every command estimates what an input would allocate, and refuses it
before allocating when the estimate is over the budget.

Budget: ``$VERIFY_MEMORY_BUDGET`` when set (bytes, optionally with a K/M/G/T suffix in powers of 1024, or a
percentage such as ``30%`` of the usable memory), else :data:`DEFAULT_SHARE` (half) of the usable memory:
the smallest of the machine's physical memory, the cgroup (container) limit, and what the address-space
limit (``ulimit -v``, RLIMIT_AS) leaves above what the process already maps. Half, because the estimates
are upper bounds of the largest arrays, not of every temporary and the interpreter around them.

Every path that allocates in proportion to its input calls :func:`check` (or :func:`check_floats`) first:
``simulate``, ``evaluate``, ``run`` (claims' ``fits in memory`` assumptions: :func:`assume_floats`), ``diff``,
``show`` and ``--resume`` (JSON files are read with :func:`read_json_text`: size checked before a byte is
parsed, at most ``limit + 1`` bytes read). A refusal is one line (:class:`theory.errors.InputError`,
exit 2) naming the input, the estimate and the limit.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from theory.errors import InputError

__all__ = ["BUDGET_ENV", "DEFAULT_SHARE", "FLOAT_BYTES", "JSON_EXPANSION", "usable_memory", "budget", "describe",
           "check", "check_floats", "assume_floats", "regular_file", "json_limit", "read_json_text"]

BUDGET_ENV = "VERIFY_MEMORY_BUDGET"
DEFAULT_SHARE = 0.5
FLOAT_BYTES = 8  # float64 and int64
#: Bytes of Python objects per byte of JSON text parsed: measured (tracemalloc) 2.1 for a report, 1.6 for a
#: chunk checkpoint of float curves, and 18 for the worst text we found, a list of empty objects (a 64-byte
#: dict and an 8-byte slot per 4 characters ``{}, ``; 24 without the spaces). A JSON file may be at most
#: budget / JSON_EXPANSION bytes.
JSON_EXPANSION = 32
_FALLBACK_MEMORY = 8 << 30  # when the platform tells nothing (no sysconf): assume 8 GiB
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _physical() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return _FALLBACK_MEMORY


def _cgroup_limit() -> int | None:
    """The container's memory limit (cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes``), if any."""
    for name in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(name).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


def _address_space_left() -> int | None:
    """RLIMIT_AS (soft) minus the address space already mapped, when a limit is set."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        mapped = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError, IndexError):
        return None
    return max(0, soft - mapped)


def usable_memory() -> int:
    """Bytes this process may use at most: physical memory, capped by a cgroup and an RLIMIT_AS limit."""
    limits = [_physical(), _cgroup_limit(), _address_space_left()]
    return min(v for v in limits if v is not None)


def budget() -> tuple[int, str]:
    """(bytes, where they come from) of the memory budget; a malformed $VERIFY_MEMORY_BUDGET is bad input."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        usable = usable_memory()
        return int(DEFAULT_SHARE * usable), (f"{DEFAULT_SHARE:.0%} of the {_fmt(usable)} of usable memory; "
                                             f"set {BUDGET_ENV} to change it")
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(%|[KMGT]?)(?:i?B)?", raw, flags=re.IGNORECASE)
    value = float(match.group(1)) if match else 0.0
    if not match or value <= 0 or (match.group(2) == "%" and value > 100):
        raise InputError(f"{BUDGET_ENV}={raw!r}: expected a positive size such as 4G, 500M, 1000000 (bytes) "
                         "or a percentage of the usable memory such as 30%")
    if match.group(2) == "%":
        return int(value / 100 * usable_memory()), f"{BUDGET_ENV}={raw}"
    return int(value * _UNITS[match.group(2).upper()]), f"{BUDGET_ENV}={raw}"


def describe() -> str:
    """The budget in words, e.g. '11.8 GiB (50% of the 23.5 GiB usable; set VERIFY_MEMORY_BUDGET)'."""
    limit, source = budget()
    return f"{_fmt(limit)} ({source})"


def _fmt(nbytes: int) -> str:
    if nbytes >= 1 << 70:
        return f"about 10^{len(str(int(nbytes))) - 1} bytes"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if nbytes < 1024 or unit == "EiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.3g} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def check(what: str, nbytes: int, hint: str = "") -> None:
    """Refuse (InputError, one line) when ``what`` would need more than the budget."""
    limit, source = budget()
    if nbytes > limit:
        raise InputError(f"{what} would need {_fmt(nbytes)}, over the memory limit of {_fmt(limit)} ({source})"
                         + (f"; {hint}" if hint else ""))


def check_floats(what: str, count: int, hint: str = "") -> None:
    """:func:`check` of ``count`` float64 (or int64) values."""
    check(what, count * FLOAT_BYTES, hint)


def assume_floats(what: str, count: int, hint: str = "") -> bool:
    """For a claim's ``fits in memory`` assumption: True, or the InputError of :func:`check_floats` (so that
    the refusal names the estimate and the limit)."""
    check_floats(what, count, hint)
    return True


def regular_file(path: Path, what: str, limit: int) -> int:
    """The size of ``path``, refused (InputError naming ``what``) unless it is a regular file of at most
    ``limit`` bytes. Checked before the file is opened: a FIFO would block the open, and a device such as
    /dev/zero reads forever."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or type(exc).__name__}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"cannot read {what} {path}: not a regular file")
    if info.st_size > limit:
        raise InputError(f"{what} {path} has {_fmt(info.st_size)}, over the limit of {_fmt(limit)} "
                         f"(memory budget {describe()})")
    return info.st_size


def json_limit() -> int:
    """Largest JSON file (bytes) a reader parses: the budget over :data:`JSON_EXPANSION`."""
    return budget()[0] // JSON_EXPANSION


def read_json_text(path: Path, what: str) -> str:
    """The text of a JSON file, refused (InputError naming ``what`` and ``path``) before it is parsed when
    it is not a regular file, is larger than :func:`json_limit` (1/JSON_EXPANSION of the memory budget), or
    is not UTF-8; reads at most limit + 1 bytes, so a file that grows while it is read is refused too."""
    limit = json_limit()
    regular_file(path, what, limit)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > limit:
        raise InputError(f"{what} {path} grew past the limit of {_fmt(limit)} for JSON files while it was read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not valid JSON: not UTF-8 text at byte {exc.start}") from None
