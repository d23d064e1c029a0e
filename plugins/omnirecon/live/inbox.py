"""The notification inbox: durable, de-duplicating, group-committed. Owner of the `notifications` table.

`Inbox.put()` returns only once the transaction holding the notification has committed (SQLite with
synchronous=FULL, PostgreSQL's default), so a receiver that answers 2xx after it never acknowledges something
it could still lose. Concurrent callers share one transaction (group commit), which is what makes hundreds of
notifications a second cheap; a duplicate (same source and platform event id, in the same batch or already
stored) is reported as such and not stored twice. Any number of receiver processes may share one ledger: the
unique (source, event_id) constraint de-duplicates across them.
"""
from __future__ import annotations

import queue
import threading

from sqlalchemy import event, select, update
from sqlalchemy.exc import IntegrityError

from omnirecon.ledger import models as m
from omnirecon.ledger.db import Ledger
from omnirecon.model.notification import Incoming
from omnirecon.timeutil import utcnow


class InboxUnavailable(RuntimeError):
    """The notification could not be made durable: the caller must not acknowledge it."""


class _Pending:
    __slots__ = ("item", "done", "stored", "error")

    def __init__(self, item: Incoming):
        self.item, self.done, self.stored, self.error = item, threading.Event(), False, None


class Inbox:
    def __init__(self, ledger: Ledger, max_batch: int = 500):
        self.ledger, self.max_batch = ledger, max_batch
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._writer = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self.counts = {"stored": 0, "duplicate": 0, "failed": 0}
        if ledger.dialect == "sqlite":   # durable at commit (WAL's NORMAL may lose the last commits on power loss)
            event.listen(ledger.engine, "checkout", _sqlite_full_sync)

    def start(self) -> "Inbox":
        with self._lock:
            if not self._started:
                self._writer.start()
                self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self._queue.put(None)
            self._writer.join(timeout=30)

    def put(self, item: Incoming, timeout_s: float = 4.0) -> bool:
        """Store durably -> True (new) or False (a duplicate). Raises InboxUnavailable when not stored."""
        self.start()
        pending = _Pending(item)
        self._queue.put(pending)
        if not pending.done.wait(timeout_s):
            raise InboxUnavailable(f"not committed within {timeout_s:.1f}s")
        if pending.error is not None:
            raise InboxUnavailable(str(pending.error)) from pending.error
        return pending.stored

    # -- the writer thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            try:
                try:
                    new = self._write(batch)
                except IntegrityError:   # another receiver stored one of these keys meanwhile: now a duplicate
                    new = self._write(batch)
                for p in batch:
                    p.stored = id(p) in new
                    self.counts["stored" if p.stored else "duplicate"] += 1
            except Exception as e:   # noqa: BLE001 - every waiting caller hears of it and answers 5xx
                for p in batch:
                    p.error = e
                self.counts["failed"] += len(batch)
            finally:
                for p in batch:
                    p.done.set()

    def _write(self, batch: list[_Pending]) -> set[int]:
        """Insert what is not stored yet, in one transaction; -> ids (of the _Pending objects) that were new."""
        first_of: dict[tuple[str, str], _Pending] = {}
        for p in batch:
            first_of.setdefault((p.item.source, p.item.event_id), p)
        keys = list(first_of)
        with self.ledger.Session() as s:
            existing: set[tuple[str, str]] = set()
            for i in range(0, len(keys), 400):
                chunk = keys[i:i + 400]
                for source in {k[0] for k in chunk}:
                    ids = [k[1] for k in chunk if k[0] == source]
                    existing |= {(source, e) for e in s.scalars(select(m.Notification.event_id).where(
                        m.Notification.source == source, m.Notification.event_id.in_(ids)))}
            fresh = [first_of[k] for k in keys if k not in existing]
            now = utcnow()
            s.add_all([m.Notification(source=p.item.source, event_id=p.item.event_id, topic=p.item.topic,
                                      occurred_at=p.item.occurred_at, received_at=now,
                                      body=p.item.body.decode("utf-8", errors="replace"),
                                      headers=p.item.headers or None, quarantined=p.item.quarantined)
                       for p in fresh])
            s.commit()
        return {id(p) for p in fresh}

    # -- readers (the live reconcile) --------------------------------------------------------------------
    def unprocessed(self, limit: int = 10_000) -> list[m.Notification]:
        with self.ledger.session() as s:
            return list(s.scalars(select(m.Notification).where(m.Notification.processed_at.is_(None),
                                                               m.Notification.quarantined.is_(None))
                                  .order_by(m.Notification.id).limit(limit)))

    def mark_processed(self, ids: list[int]) -> None:
        with self.ledger.session() as s:
            s.execute(update(m.Notification).where(m.Notification.id.in_(ids)).values(processed_at=utcnow()))


def _sqlite_full_sync(dbapi_conn, *_):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()
