"""The event trigger behind the change-driven runs: it wakes Airflow when the ledger inbox holds notifications
no run has taken yet.

The ledger is the durable record; this trigger is only the doorbell, and it may be lossy without losing anything:
a live run takes *every* unprocessed notification (several wake-ups folded into one run are fine), a restarted
triggerer rings again for whatever is still unprocessed, and work left unprocessed for `stale_after_s` (a wake-up
lost while the DAG was paused, a failed run) rings again. One trigger per deployment polls the inbox; the
query is an index range scan on `processed_at`.

It also rings for time passing: a live run records the earliest propagation deadline still ahead of it
(`next_deadline` in its stats) and leaves it to the next run instead of waiting for it; the trigger rings
`deadline_lead_s` before that deadline, so that run is already running when the deadline passes.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseEventTrigger, TriggerEvent


DEADLINE_LEAD_S = 25.0     # woken this long before the deadline it is for: asset event -> watch task running took
                           # 17 s (median) on this loaded machine (bench/README.md)


def next_deadline(ledger):
    """The propagation deadline the latest finished live run left to the next one (None: none)."""
    from sqlalchemy import select
    from omnirecon.ledger import models as m
    from omnirecon.timeutil import parse_ts
    with ledger.session() as s:
        stats = s.scalar(select(m.Run.stats).where(m.Run.kind == "live", m.Run.status == "success")
                         .order_by(m.Run.finished_at.desc()).limit(1))
    due = (stats or {}).get("next_deadline")
    return parse_ts(due) if due else None


def pending(ledger) -> tuple[int, int, float | None]:
    """(newest unprocessed id, unprocessed count, age in seconds of the oldest unprocessed) of the inbox."""
    from sqlalchemy import func, select
    from omnirecon.ledger import models as m
    from omnirecon.timeutil import utcnow
    with ledger.session() as s:
        newest, count, oldest = s.execute(
            select(func.max(m.Notification.id), func.count(m.Notification.id), func.min(m.Notification.received_at))
            .where(m.Notification.processed_at.is_(None), m.Notification.quarantined.is_(None))).one()
    if not count:
        return 0, 0, None
    if oldest.tzinfo is None:   # SQLite hands back naive UTC
        from datetime import timezone
        oldest = oldest.replace(tzinfo=timezone.utc)
    return int(newest), int(count), (utcnow() - oldest).total_seconds()


class InboxTrigger(BaseEventTrigger):
    def __init__(self, poll_interval_s: float = 1.0, stale_after_s: float = 120.0,
                 deadline_lead_s: float = DEADLINE_LEAD_S, **kwargs):
        super().__init__(**kwargs)
        self.poll_interval_s, self.stale_after_s = float(poll_interval_s), float(stale_after_s)
        self.deadline_lead_s = float(deadline_lead_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"poll_interval_s": self.poll_interval_s, "stale_after_s": self.stale_after_s,
                 "deadline_lead_s": self.deadline_lead_s})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from omnirecon.ledger import get_ledger
        from omnirecon.timeutil import iso, utcnow
        ledger = await asyncio.to_thread(get_ledger)
        rung_for, rung_at, rung_due = 0, 0.0, None
        while True:
            newest, count, age = await asyncio.to_thread(pending, ledger)
            due = await asyncio.to_thread(next_deadline, ledger)
            now = time.monotonic()
            stale = count and age is not None and age >= self.stale_after_s and now - rung_at >= self.stale_after_s
            soon = due is not None and (due - utcnow()).total_seconds() <= self.deadline_lead_s
            # another newest than the one rung for: new work, or (lower) one that committed after a higher id
            # and that the run which took the higher one never read
            if count and (newest != rung_for or stale):
                rung_for, rung_at = newest, now
                rung_due = due if soon else rung_due          # the run this wakes sees that deadline too
                yield TriggerEvent({"newest_id": newest, "pending": count, "oldest_age_s": round(age or 0.0, 3)})
            elif soon and due != rung_due:
                rung_due = due
                yield TriggerEvent({"deadline": iso(due), "pending": count})
            await asyncio.sleep(self.poll_interval_s)
