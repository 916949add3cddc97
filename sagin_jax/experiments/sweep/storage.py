"""Where a sweep's studies live, and who may write a sweep's outputs.

The default storage is Optuna's journal file ``OUT/study.journal`` (``JournalStorage`` over
``JournalFileBackend``): an append-only log of every change, written under a file lock and
replayed into memory, from which every read is served; several processes on one host share it.
Optuna's backend fsyncs every append, so a told trial survives even a power cut of the machine:
5,971 appends for the 256 trials of the committed sweep's DDRL-NRA study, at 2.8 ms each
on the 2-core machine's disk (``experiments/sweeps/bookkeeping.py`` times the bookkeeping).
Across machines the study lives in PostgreSQL or MySQL (``RDBStorage``), which Optuna recommends
for parallel work (never SQLite).

Every process that writes into ``OUT`` holds an ``flock`` on its own lock file there for its whole
run: the sweep that creates the studies ``OUT/.lock``, worker NAME ``OUT/.lock.NAME``; a second
writer of the same files is refused with one line. The outputs (CSV, plots, README, summary) are
written under ``OUT/.outputs.lock``, held only while they are written.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.engine import make_url

JOURNAL = "study.journal"
RDB_SCHEMES = ("postgresql", "mysql")
WORKER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_storage_url(url: str | None) -> None:
    """``None`` (the journal file under ``--out``) or a ``postgresql://`` / ``mysql://`` URL
    (a driver may be named: ``mysql+pymysql://``); ValueError naming ``--storage`` otherwise."""
    if url is None:
        return
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme.split("+", 1)[0] not in RDB_SCHEMES:
        raise ValueError(f"--storage {url!r}: must be a postgresql://... or mysql://... URL "
                         "(default: the journal file OUT/study.journal)")


def check_worker_name(name: str | None) -> None:
    if name is not None and not WORKER_NAME.fullmatch(name):
        raise ValueError(f"--worker {name!r}: must be 1 to 64 letters, digits, '_' or '-'")


def _sqlalchemy_url(url: str) -> str:
    # plain postgresql:// means SQLAlchemy's psycopg2 driver; the declared driver is psycopg 3
    return "postgresql+psycopg://" + url[len("postgresql://"):] \
        if url.startswith("postgresql://") else url


def shown_url(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return url


def open_storage(url: str | None, out: Path) -> optuna.storages.BaseStorage:
    """The study storage: the journal file ``out/study.journal`` for ``None``, else an
    ``RDBStorage`` on ``url``. A database that cannot be reached is a ValueError naming
    ``--storage``."""
    if url is None:
        return JournalStorage(JournalFileBackend(str(out / JOURNAL)))
    try:
        return RDBStorage(_sqlalchemy_url(url), engine_kwargs={"pool_pre_ping": True})
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as e:
        detail = " ".join(str(getattr(e, "orig", None) or e).split())
        raise ValueError(f"--storage {shown_url(url)}: cannot open the database ({detail})"
                         ) from None


def study_name(sweep_name: str, algo: str) -> str:
    return f"{sweep_name}-{algo}"


def lock_file(out: Path, worker: str | None) -> Path:
    """The lock file of the sweep that creates the studies (``worker`` None) or of a worker."""
    return out / (".lock" if worker is None else f".lock.{worker}")


@contextlib.contextmanager
def writer_lock(out: Path, worker: str | None):
    """Hold ``lock_file(out, worker)`` for the block; ValueError naming ``--out`` when another
    process holds it (``flock``: released by the kernel when a holder dies)."""
    path = lock_file(out, worker)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        who = "a sweep" if worker is None else f"worker {worker!r}"
        raise ValueError(f"--out {out}: {who} is already running there (it holds {path})"
                         ) from None
    try:
        yield path
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def outputs_lock(out: Path):
    """Wait for, then hold, the lock under which a sweep's outputs are written."""
    fd = os.open(out / ".outputs.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
