"""Per-correction claim locks that live exactly as long as their holder, outside any database transaction.

A pusher holds them across its channel calls so a duplicate pusher of the same corrections waits, while every
other ledger writer goes on (no transaction, no row lock is open during HTTP). A killed holder releases them
with its process: PostgreSQL ends its session's advisory locks, the kernel drops its fcntl locks.
- PostgreSQL: session-level advisory locks (pg_advisory_lock) on a dedicated autocommit connection;
- SQLite: one byte-range fcntl lock per id in `<database>.claims`, plus an in-process lock per id (fcntl locks
  belong to the process, so two threads of one process would not exclude each other).
Ids are locked in ascending order: two holders of overlapping sets never deadlock.
"""
from __future__ import annotations

import fcntl
import os
import threading
from contextlib import ExitStack, contextmanager

from sqlalchemy import text

ADVISORY_CLASS = 7468012          # pg_advisory_lock(class, id); 7468011 is the migration lock
_local: dict[tuple[str, int], threading.Lock] = {}
_local_guard = threading.Lock()


def _thread_lock(scope: str, cid: int) -> threading.Lock:
    with _local_guard:
        return _local.setdefault((scope, cid), threading.Lock())


@contextmanager
def claim_locks(ledger, ids):
    """Hold a lock on each correction id (blocking until other holders let go)."""
    ordered = sorted({int(i) for i in ids})
    if not ordered:
        yield
        return
    if ledger.dialect == "postgresql":
        with _advisory(ledger, ordered):
            yield
        return
    database = ledger.engine.url.database or ":memory:"
    with ExitStack() as stack:
        for cid in ordered:
            lock = _thread_lock(database, cid)
            lock.acquire()
            stack.callback(lock.release)
        if database != ":memory:":
            fd = os.open(f"{database}.claims", os.O_RDWR | os.O_CREAT, 0o644)
            stack.callback(os.close, fd)
            for cid in ordered:
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, cid)
                stack.callback(fcntl.lockf, fd, fcntl.LOCK_UN, 1, cid)
        yield


@contextmanager
def _advisory(ledger, ordered: list[int]):
    conn = ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        for cid in ordered:
            conn.execute(text("SELECT pg_advisory_lock(:c, :i)"), {"c": ADVISORY_CLASS, "i": cid & 0x7FFFFFFF})
        yield
    finally:
        try:
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
        finally:
            conn.close()
