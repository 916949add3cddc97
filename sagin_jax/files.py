"""Reading and writing files: ONE atomic-write helper for every output of the package.

Every output (checkpoint, scenario.json, trace, metrics, CSV, PNG, report, completion marker) is
written to a temporary file in the same directory and moved into place with ``os.replace``, so a
crash or a Ctrl-C leaves either the old file or the new one, never half of one, and no temporary
file behind.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success move it onto ``path``, on any error
    (KeyboardInterrupt included) remove it. For writers that want a file name (``savefig``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file 0600; an output gets the mode a plain open() would give it
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + ``os.replace``)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, doc) -> Path:
    """Write one JSON document atomically (NaN, e.g. the interval of a single seed, is written
    as Python's ``NaN``)."""
    return atomic_write_text(path, json.dumps(doc))


def write_jsonl(path: str | os.PathLike, records) -> Path:
    """Write one JSON object per line atomically."""
    return atomic_write_text(path, "".join(json.dumps(r) + "\n"
                                           for r in records))


def write_csv(path: str | os.PathLike, fields: list[str], rows: list[dict]) -> Path:
    """Write a CSV (header ``fields``, one line per dict of ``rows``) atomically."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def read_json(path: str | os.PathLike):
    """Read a JSON file; malformed JSON becomes a ValueError naming the file, line and column."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed JSON at line {err.lineno} column {err.colno}: "
                         f"{err.msg}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file (byte {err.start}: {err.reason})"
                         ) from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None


def check_writable_dir(path: str | os.PathLike, flag: str) -> None:
    """Check BEFORE any computation that ``path`` is (or can be created as) a writable directory;
    ValueError naming ``flag`` otherwise. Creates nothing."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {p}: exists and is not a directory")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{flag} {p}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {p}: {probe} is not writable")


def check_writable_file(path: str | os.PathLike, flag: str) -> None:
    """Check BEFORE any computation that the file ``path`` can be written: it is not a directory
    and its parent is (or can be created as) a writable directory."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {p}: is an existing directory; give a file name")
    if p.name in ("", ".", ".."):
        raise ValueError(f"{flag} {p}: not a file name")
    check_writable_dir(p.parent if str(p.parent) else Path("."), flag)
