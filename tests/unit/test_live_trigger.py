"""The inbox trigger rings for new unprocessed notifications, not again for the same ones until they go stale,
and again after a restart for whatever is still unprocessed; quarantined messages never ring."""
import asyncio
from datetime import timedelta

from sqlalchemy import update

from omnirecon.ledger import models as m
from omnirecon.live.inbox import Inbox
from omnirecon.model.notification import Incoming
from omnirecon.live.trigger import InboxTrigger
from omnirecon.timeutil import utcnow


def put(ledger, event_id, quarantined=None):
    inbox = Inbox(ledger)
    try:
        inbox.put(Incoming("shopify", event_id, "inventory_levels/update", b"{}", quarantined=quarantined), timeout_s=60)
    finally:
        inbox.stop()


async def events(trigger, n, timeout=10.0):
    out, gen = [], trigger.run()
    try:
        while len(out) < n:
            out.append((await asyncio.wait_for(gen.__anext__(), timeout)).payload)
    except asyncio.TimeoutError:
        pass
    finally:
        await gen.aclose()
    return out


def test_rings_once_per_new_notification_and_again_after_a_restart(sqlite_ledger, monkeypatch):
    monkeypatch.setenv("OMNIRECON_LEDGER_URL", str(sqlite_ledger.engine.url))
    put(sqlite_ledger, "a")
    put(sqlite_ledger, "q", quarantined="not JSON")
    trig = InboxTrigger(poll_interval_s=0.05, stale_after_s=3600)
    got = asyncio.run(events(trig, 2, timeout=1.0))
    assert len(got) == 1 and got[0]["pending"] == 1          # quarantined does not count; no second ring
    assert asyncio.run(events(InboxTrigger(poll_interval_s=0.05), 1, timeout=5))[0]["pending"] == 1   # restarted

    async def ring_on_new():
        gen = trig.run()
        first = (await asyncio.wait_for(gen.__anext__(), 5)).payload
        await asyncio.to_thread(put, sqlite_ledger, "b")
        second = (await asyncio.wait_for(gen.__anext__(), 5)).payload
        await gen.aclose()
        return first, second
    first, second = asyncio.run(ring_on_new())
    assert second["newest_id"] > first["newest_id"] and second["pending"] == 2


def test_processed_work_stops_ringing_and_stale_work_rings_again(sqlite_ledger, monkeypatch):
    monkeypatch.setenv("OMNIRECON_LEDGER_URL", str(sqlite_ledger.engine.url))
    put(sqlite_ledger, "a")
    inbox = Inbox(sqlite_ledger)
    inbox.mark_processed([n.id for n in inbox.unprocessed()])
    assert asyncio.run(events(InboxTrigger(poll_interval_s=0.05), 1, timeout=0.5)) == []
    put(sqlite_ledger, "old")
    with sqlite_ledger.session() as s:   # received long ago and never taken: a lost wake-up
        s.execute(update(m.Notification).where(m.Notification.event_id == "old")
                  .values(received_at=utcnow() - timedelta(minutes=10)))
    got = asyncio.run(events(InboxTrigger(poll_interval_s=0.05, stale_after_s=0.2), 2, timeout=3))
    assert len(got) == 2 and all(e["pending"] == 1 for e in got) and got[0]["oldest_age_s"] >= 600


def test_serializes_without_secrets():
    path, kwargs = InboxTrigger(poll_interval_s=2, stale_after_s=60).serialize()
    assert path == "omnirecon.live.trigger.InboxTrigger" and kwargs == {"poll_interval_s": 2.0, "stale_after_s": 60.0,
                                                                        "deadline_lead_s": 25.0}


def test_rings_once_shortly_before_the_deadline_a_live_run_left_to_the_next(sqlite_ledger, monkeypatch):
    from omnirecon.timeutil import iso
    monkeypatch.setenv("OMNIRECON_LEDGER_URL", str(sqlite_ledger.engine.url))
    due = utcnow() + timedelta(seconds=30)
    sqlite_ledger.begin_run("omnirecon_live/1", "live")
    sqlite_ledger.finish_run("omnirecon_live/1", "success", {"next_deadline": iso(due)})
    assert asyncio.run(events(InboxTrigger(poll_interval_s=0.05, deadline_lead_s=10), 1, timeout=0.5)) == []
    got = asyncio.run(events(InboxTrigger(poll_interval_s=0.05, deadline_lead_s=40), 2, timeout=1))
    assert len(got) == 1 and got[0]["deadline"] == iso(due) and got[0]["pending"] == 0
