"""One change-driven run (live/cycle.py, the `watch` task of omnirecon_live) on a living world on the manual sandbox
clock: the platforms' notifications reach a real Receiver, the ERP -> Walmart hop is suspended, and the run (which
waits on the clock until the propagation deadline passes) finds the gap as a trigger_gap finding with push evidence
within the SLA + 15 s; the ordinary outbox then closes it through Walmart's API; a gap the integration keeps
re-opening after omnirecon closed it is alerted, naming the hop, instead of pushed again."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from omnirecon.config import settings_from_dict
from omnirecon.ledger import models as m
from omnirecon.ledger import queries
from omnirecon.adapters import get_adapter
from omnirecon.live.cycle import close_gaps, live_cycle, overwrites
from omnirecon.adapters.shopify.notifications import ShopifySubscriptions
from omnirecon.model.values import Action, Check
from omnirecon.remediation.plan import plan_corrections
from omnirecon.remediation.push import push_batch
from omnirecon.runner import hooks_from_connections
from omnirecon.snapshot import snapshot_system
from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox.clock import ManualClock
from omnirecon_sandbox.core import Sandbox
from tests.support.polling import wait_for
from tests.support.world import world_doc
from tests.support.chain_world import listening

SLA = 20
SECRET = "live-cycle-secret-0123"
START = 120                 # clock seconds the first snapshots may take (Shopify's bulk export runs on the clock)
SUSPENDED_FROM, CHANGE_AT = START + 20, START + 30
HOPS = [{"id": "erp-shopify", "from": "erp", "to": "shopify", "kind": "inventory", "mechanism": "event", "latency": "2s"},
        {"id": "erp-walmart", "from": "erp", "to": "walmart", "kind": "inventory", "mechanism": "event", "latency": "2s"}]
QUIET_CHANGE_AT = CHANGE_AT + 60     # after Shopify's subscription is deleted: Shopify changes, says nothing
EVENTS = [{"at": f"+{t}s", "system": "erp", "kind": "adjust", "sku": "SKU-000", "location": "WH-EAST", "delta": -3}
          for t in (START + 5, START + 10, START + 15, CHANGE_AT)] + [
    {"at": f"+{QUIET_CHANGE_AT}s", "system": "erp", "kind": "adjust", "sku": "SKU-001", "location": "WH-EAST", "delta": -2}]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from omnirecon.ledger.db import Ledger
    tmp = tmp_path_factory.mktemp("live")
    ledger = Ledger(f"sqlite:///{tmp / 'ledger.db'}")
    ledger.migrate()
    doc = world_doc(skus=10, on_hand=50, integration={"hops": HOPS, "defects": [
        {"hop": "erp-walmart", "kind": "suspended", "from": f"+{SUSPENDED_FROM}s"}]},
        events=EVENTS, notifications={"shopify": {}, "erp": {}})
    scenario = from_dict(doc)
    clock = ManualClock(scenario.as_of)
    settings = settings_from_dict(dict(doc["settings"], propagation_sla_seconds=SLA))
    with Sandbox(scenario, clock=clock, options={"notify_timeout": 2.0}) as sb:
        conns = sb.connections()
        hooks = hooks_from_connections(conns, time_scale=0.01)   # hook waits (bulk polls, pacing) in ms
        def snapshot(run_id, systems):       # the scheduled safety net's snapshots, while the clock ticks on
            ledger.begin_run(run_id, "snapshot")
            done = threading.Event()
            ticker = threading.Thread(target=lambda: [sb.world.advance(0.5)
                                                      for _ in iter(lambda: done.wait(0.02), True)])
            ticker.start()
            try:
                for system in systems:
                    snapshot_system(system, ledger=ledger, run_id=run_id, settings=settings, hook=hooks[system],
                                    window_start=scenario.as_of - timedelta(days=1), window_end=clock.now())
            finally:
                done.set()
                ticker.join()

        snapshot("snapshot/1", hooks)
        assert (clock.now() - scenario.as_of).total_seconds() < START, "snapshots ran into the world's events"
        with listening(ledger, conns["omnirecon_shopify"]["extra"]["client_secret"], hooks, SECRET) as rx:

            def advance(seconds: float) -> None:       # the run's sleep: the world moves on, deliveries land
                for _ in range(max(1, round(seconds))):
                    sb.world.advance(1.0)
                    wait_for(lambda: sb.notifications.outbox.pending() == 0, 20, "this second's deliveries")

            advance(CHANGE_AT + 3 - (clock.now() - scenario.as_of).total_seconds())
            ledger.begin_run("omnirecon_live/1", "live")
            out = tmp / "out"
            result = live_cycle(ledger, settings, run_id="omnirecon_live/1", out_dir=out, now=clock.now, sleep=advance,
                                wait_ahead_s=SLA,
                                reader=get_adapter("walmart").quantity_reader(hooks["walmart"], settings), readable=("walmart",))
            ended = clock.now()
            plan = plan_corrections(ledger, settings, run_id="omnirecon_live/1", mode="apply", now=ended)
            for batch in plan.batches:
                push_batch(ledger, settings, batch, hook_factory=lambda channel: hooks[channel])
            walmart = {i["sku"]: i["quantity"] for i in sb.state()["walmart"]["items"]}
            writes = list(sb.world.writes)
            yield {"ledger": ledger, "settings": settings, "result": result, "plan": plan, "walmart": walmart,
                   "writes": writes, "as_of": scenario.as_of, "ended": ended, "out": out, "clock": clock,
                   "advance": advance, "snapshot": snapshot, "hooks": hooks, "receiver": rx}


def _gaps(ledger):
    with ledger.session() as s:
        return list(s.scalars(select(m.Finding).where(m.Finding.run_id == "omnirecon_live/1",
                                                      m.Finding.check == Check.TRIGGER_GAP)))


def test_the_suspended_hop_is_a_trigger_gap_with_push_evidence_within_the_sla(live):
    gaps = _gaps(live["ledger"])
    assert [(g.channel, g.sku, g.action) for g in gaps] == [("walmart", "SKU-000", "push")]
    g = gaps[0]
    assert g.detail.startswith("erp->walmart") and g.location == "WH-EAST"
    # the ERP went 50 -> 38 by four adjustments; Walmart (safety stock 1) stopped following after the third
    assert g.evidence["push"]["to_qty"] == 50 - 12 - 1 and g.evidence["push"]["from_qty"] == 50 - 9 - 1
    assert g.evidence["push"]["channel_location"] == "10001"
    detected = (live["ended"] - live["as_of"]).total_seconds()
    assert CHANGE_AT + SLA - 1 <= detected <= CHANGE_AT + SLA + 15   # waited on the clock (timestamps: whole s)
    assert live["result"]["notifications"] > 0 and live["result"]["broken"] == 1


def test_no_gap_on_the_healthy_hop_and_the_outputs_are_written(live):
    assert {g.channel for g in _gaps(live["ledger"])} == {"walmart"}
    assert (live["out"] / "trigger_chain.json").exists() and (live["out"] / "detections.csv").exists()
    with live["ledger"].session() as s:
        assert not s.scalars(select(m.Notification).where(m.Notification.processed_at.is_(None))).all()


def test_the_outbox_closes_the_gap_through_walmarts_api(live):
    assert live["plan"].counts == {"planned": 1}
    assert live["walmart"]["SKU-000"] == 50 - 12 - 1
    assert [w for w in live["writes"] if w["system"] == "walmart" and w["by"] == "api"
            and w["sku"] == "SKU-000"][-1]["value"] == 37
    with live["ledger"].session() as s:
        c = s.scalars(select(m.Correction).where(m.Correction.run_id == "omnirecon_live/1")).one()
    assert (c.channel, c.status, c.from_qty, c.to_qty) == ("walmart", "verified", 40, 37)


def test_a_gap_the_integration_keeps_reopening_is_alerted_not_pushed_again(live):
    ledger, settings = live["ledger"], live["settings"]
    for n in (2, 3):
        ledger.begin_run(f"omnirecon_live/{n}", "live")
    with ledger.session() as s:                          # two more rounds the integration undid
        c = s.scalars(select(m.Correction).where(m.Correction.run_id == "omnirecon_live/1")).one()
        for n in (2, 3):
            s.add(m.Correction(idempotency_key=f"{n:064d}", run_id=f"omnirecon_live/{n}", channel="walmart",
                               sku="SKU-000", channel_sku="SKU-000", location="WH-EAST", from_qty=40, to_qty=37,
                               status="verified", verified_at=c.verified_at))
    def gap():
        return {"channel": "walmart", "sku": "SKU-000", "expected": "37", "observed": "40", "action": Action.PUSH,
                "detail": "erp->walmart: ...", "evidence": {"hop": "erp->walmart"}}
    [out] = close_gaps(ledger, settings, [gap()], c.verified_at + timedelta(minutes=1))
    assert out["action"] == Action.ALERT and "push" not in out["evidence"]
    assert len(out["evidence"]["overwrites"]) == 3 and "fix hop erp->walmart" in out["detail"]
    with ledger.session() as s:                          # a correction that found the target already there
        s.add(m.Correction(idempotency_key=f"{4:064d}", run_id="omnirecon_live/3", channel="walmart", sku="SKU-001",
                           channel_sku="SKU-001", location="WH-EAST", from_qty=37, to_qty=37, status="verified",
                           verified_at=c.verified_at))
    assert overwrites(ledger, "walmart", "SKU-001", c.verified_at - timedelta(minutes=1)) == []   # undid nothing
    [fresh] = close_gaps(ledger, settings, [gap()], c.verified_at + timedelta(hours=2))   # the rounds start again
    assert fresh["action"] == Action.PUSH and fresh["evidence"]["push"]["to_qty"] == 37


def test_a_platform_that_stopped_notifying_is_a_finding_and_is_subscribed_again(live):
    """Shopify's subscription is deleted; the ERP changes and the integration carries it to Shopify, which says
    nothing; the next snapshot shows the change: a freshness finding (L3_connector, alert) naming the last
    notification, and the subscription created again through Shopify's API."""
    ledger, settings, hooks, clock = live["ledger"], live["settings"], live["hooks"], live["clock"]
    subs = ShopifySubscriptions(hooks["shopify"])
    url = live["receiver"].url + "/notifications/shopify"
    [(topic, sub_id)] = subs.existing(url, ("INVENTORY_LEVELS_UPDATE",)).items()
    hooks["shopify"].graphql("mutation($id: ID!) { webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId"
                             " userErrors { message } } }", {"id": sub_id}, operation="webhookSubscriptionDelete")
    live["advance"](QUIET_CHANGE_AT + 5 - (clock.now() - live["as_of"]).total_seconds())
    live["snapshot"]("snapshot/2", ("erp", "shopify"))
    ledger.begin_run("omnirecon_live/9", "live")
    made = []
    result = live_cycle(ledger, settings, run_id="omnirecon_live/9", now=clock.now, sleep=live["advance"],
                        max_watch_s=0, resubscribe=lambda system: made.extend(subs.ensure(url, (topic,))) or system)
    assert result["silent"] == ["shopify"] and [a for _, _, a in made] == ["created"]
    with ledger.session() as s:
        f = s.scalars(select(m.Finding).where(m.Finding.run_id == "omnirecon_live/9",
                                              m.Finding.check == Check.FRESHNESS)).one()
        state = s.scalars(select(m.FindingState).where(m.FindingState.fingerprint == f.fingerprint)).one()
    assert (f.channel, f.diagnosis, f.action) == ("shopify", "L3_connector", "alert") and state.status == "open"
    assert f.evidence["changes_after"] >= 1 and f.evidence["examples"][0]["sku"] == "SKU-001"
    assert "has sent no change notification since" in f.detail
    assert subs.existing(url, (topic,))                      # subscribed again


def test_a_push_leaves_out_orders_the_erp_has_not_recorded_yet(live):
    gap = {"channel": "walmart", "sku": "SKU-000", "expected": "37", "observed": "40", "action": Action.PUSH,
           "detail": "erp->walmart: ...", "evidence": {"hop": "erp->walmart"}}
    [out] = close_gaps(live["ledger"], live["settings"], [gap], live["ended"] + timedelta(hours=3), {"SKU-000": 4})
    assert out["evidence"]["push"]["to_qty"] == 33 and out["evidence"]["unposted_units"] == 4


def test_a_sku_whose_correction_is_still_on_its_way_is_not_pushed_twice(live):
    """The next run's watch may start while a run's push still reads back (two live runs active): a gap on a SKU
    whose correction another run planned or the channel accepted but has not shown yet is recorded, not pushed."""
    ledger, settings, at = live["ledger"], live["settings"], live["ended"] + timedelta(hours=4)
    for n in (20, 21):
        ledger.begin_run(f"omnirecon_live/{n}", "live")
    with ledger.session() as s:
        s.add(m.Correction(idempotency_key=f"{20:064d}", run_id="omnirecon_live/20", channel="walmart", sku="SKU-002",
                           channel_sku="SKU-002", location="WH-EAST", from_qty=49, to_qty=45, status="applied",
                           updated_at=at - timedelta(seconds=5)))

    def gap(sku, run_id="omnirecon_live/21"):
        return {"run_id": run_id, "channel": "walmart", "sku": sku, "expected": "45", "observed": "49",
                "action": Action.PUSH, "detail": "erp->walmart: ...", "evidence": {"hop": "erp->walmart"}}
    held, other, own = close_gaps(ledger, settings, [gap("SKU-002"), gap("SKU-003"),
                                                     gap("SKU-002", "omnirecon_live/20")], at)
    assert held["action"] == Action.NONE and "push" not in held["evidence"]
    assert held["evidence"]["in_flight"] == [{"run_id": "omnirecon_live/20", "to_qty": 45, "status": "applied"}]
    assert "still on its way to walmart" in held["detail"]
    assert other["action"] == Action.PUSH and other["evidence"]["push"]["to_qty"] == 45   # another SKU: pushed
    assert own["action"] == Action.PUSH                        # its own run's correction is not another's push
    [later] = close_gaps(ledger, settings, [gap("SKU-002")], at + timedelta(minutes=20))
    assert later["action"] == Action.PUSH                      # a crashed push's leftover does not block forever


def test_the_monitor_starts_from_what_each_channel_showed_at_its_mapped_locations(live):
    """The live path's monitor takes its starting picture of the channels from their latest complete inventory
    snapshots (a per-location notification then adds up to the SKU's total), only at locations the ERP's implied
    value counts."""
    from omnirecon.live.chain import ChainMonitor
    ledger, settings = live["ledger"], live["settings"]
    monitor = ChainMonitor(settings, ledger=ledger)
    with ledger.session() as s:
        shop = queries.latest_snapshot(s, "shopify", "inventory")
        rows = {(r.sku, r.location): r.available for r in s.scalars(
            select(m.InventoryRow).where(m.InventoryRow.snapshot_id == shop.id))}
    shown = {(k, loc): v for (ch, k, loc), v in monitor.channel_levels.items() if ch == "shopify"}
    assert shown and shown == {k: v for k, v in rows.items() if k[1] == "gid://shopify/Location/1001"}
    assert {ch for ch, _k, _loc in monitor.channel_levels} <= {"shopify", "walmart", "amazon"}
    assert all(loc == "10001" for ch, _k, loc in monitor.channel_levels if ch == "walmart")
    assert monitor._baseline("shopify", "SKU-001") == rows[("SKU-001", "gid://shopify/Location/1001")]


def test_the_planner_holds_a_push_whose_target_another_runs_correction_is_still_on_its_way_to(live):
    """Live runs overlap: run 31 plans the same Walmart correction while run 30's is still planned (not pushed yet)
    -> held with the reason, nothing written to the outbox; once run 30's is verified, run 32 plans it. A correction
    whose fresh read found the target already there wrote nothing, so it is no round of the integration fight."""
    ledger, settings, at = live["ledger"], live["settings"], live["ended"]
    for n in (30, 31, 32):
        ledger.begin_run(f"omnirecon_live/{n}", "live")
    with ledger.session() as s:
        [gap] = s.scalars(select(m.Finding).where(m.Finding.run_id == "omnirecon_live/1",
                                                  m.Finding.check == Check.TRIGGER_GAP)).all()
        fields = {c: getattr(gap, c) for c in ("fingerprint", "check", "severity", "channel", "sku", "location",
                                                "order_id", "expected", "observed", "delta", "diagnosis", "action",
                                                "detail", "evidence")}
        for n in (31, 32):
            s.add(m.Finding(run_id=f"omnirecon_live/{n}", **fields))
        s.add(m.Correction(idempotency_key=f"{30:064d}", run_id="omnirecon_live/30", channel="walmart", sku="SKU-000",
                           channel_sku="SKU-000", location="10001", from_qty=40, to_qty=37, status="planned",
                           updated_at=at))
    held = plan_corrections(ledger, settings, run_id="omnirecon_live/31", mode="apply", now=at)
    assert held.created == 0 and held.counts == {} and held.batches == []
    assert [u["reason"] for u in held.unplannable] == [
        "a correction to 37 of run omnirecon_live/30 is still on its way (planned): not pushed twice"]
    with ledger.session() as s:
        assert [a.outcome for a in queries.audit_entries(s, "omnirecon_live/31", "plan_correction")] == ["held"]
        c = s.scalars(select(m.Correction).where(m.Correction.run_id == "omnirecon_live/30")).one()
        c.status, c.external_id, c.verified_at = "verified", m.NOTHING_WRITTEN, at
    assert plan_corrections(ledger, settings, run_id="omnirecon_live/32", mode="apply", now=at).counts == {"planned": 1}
    undone = [o["run_id"] for o in overwrites(ledger, "walmart", "SKU-000", at - timedelta(hours=1))]
    assert "omnirecon_live/1" in undone and "omnirecon_live/30" not in undone
