"""Remediation against the real sandbox over HTTP through the real hooks: land + verify, idempotent re-push,
compare-and-swap, drop_writes, approvals, feeds."""

import pytest
from sqlalchemy import select
from tests.support.clock import ScaledClock  # noqa: E402
from tests.support.remediation import RUN, add_finding, add_run, fresh_snapshots, make_ledger  # noqa: E402

from omnirecon.config import settings_from_dict  # noqa: E402
from omnirecon.hooks import hook_from_fields  # noqa: E402
from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.remediation import plan as plan_mod  # noqa: E402
from omnirecon.remediation.alerts import collect_alerts  # noqa: E402
from omnirecon.remediation.approvals import decide, pending_approvals  # noqa: E402
from omnirecon.remediation.channels import CONN_IDS  # noqa: E402
from omnirecon.remediation.plan import make_batches, plan_corrections  # noqa: E402
from omnirecon.remediation.push import NOT_APPLIED, push_batch  # noqa: E402
from omnirecon_sandbox import Sandbox  # noqa: E402
from omnirecon_contract.scenario import from_dict  # noqa: E402

LOC = "gid://shopify/Location/1001"
TIME_SCALE = 0.05
QUICK = ScaledClock(0.2)     # push's read-back and feed-poll waits, shortened like the sandbox's clock
SKUS = ["SKU-A", "SKU-B", "SKU-C", "SKU-D"]
SETTINGS = {
    "locations": [{"erp": "WH-EAST", "shopify": LOC, "walmart_ship_node": "10001", "amazon": "MFN"}],
    "channels": {"shopify": {"safety_stock": 0},
                 "amazon": {"safety_stock": 0, "seller_id": "A1SELLERDEMO", "marketplace_id": "ATVPDKIKX0DER"},
                 "walmart": {"safety_stock": 0}},
    "approval_threshold_units": 50, "max_correction_fraction": 1.0, "freshness_minutes": 15,
}
# channel quantities as the "snapshot" saw them
SHOPIFY = {"SKU-A": 8, "SKU-B": 0, "SKU-C": 4, "SKU-D": 7}
AMAZON = {"SKU-A": 3, "SKU-B": 5, "SKU-C": 1, "SKU-D": 2}
WALMART = {"SKU-A": 12, "SKU-B": 6, "SKU-C": 3, "SKU-D": 2}


def scenario(faults=()):
    erp_items = [{"id": 500 + n, "itemid": sku, "type": "InvtPart", "isinactive": False, "last_modified": "-1h",
                  "locations": [{"location": "WH-EAST", "on_hand": 10, "committed": 0, "on_order": 0,
                                 "last_modified": "-1h"}]} for n, sku in enumerate(SKUS)]
    return from_dict({
        "version": 1, "name": "remediation-it", "as_of": "now", "settings": SETTINGS,
        "erp": {"account": "1234567_SB1", "locations": [{"id": 1, "name": "WH-EAST"}], "items": erp_items,
                "sales_orders": []},
        "shopify": {"shop": "it.myshopify.com", "plan": "standard",
                    "locations": [{"id": LOC, "name": "East", "active": True}],
                    "variants": [{"id": f"gid://shopify/ProductVariant/{n}", "sku": sku,
                                  "inventory_item_id": f"gid://shopify/InventoryItem/{n}", "tracked": True,
                                  "inventory_policy": "DENY",
                                  "levels": [{"location_id": LOC, "available": SHOPIFY[sku], "on_hand": SHOPIFY[sku],
                                              "committed": 0, "updated_at": "-1h"}]}
                                 for n, sku in enumerate(SKUS, start=1)],
                    "orders": []},
        "amazon": {"seller_id": "A1SELLERDEMO", "marketplace_id": "ATVPDKIKX0DER",
                   "listings": [{"sku": sku, "asin": f"B0IT{n:06d}", "product_type": "SHIRT", "quantity": AMAZON[sku],
                                 "status": ["BUYABLE", "DISCOVERABLE"], "issues": [], "last_updated": "-1h"}
                                for n, sku in enumerate(SKUS)],
                   "fba_inventory": [], "orders": []},
        "walmart": {"items": [{"sku": sku, "ship_node": "10001", "quantity": WALMART[sku],
                               "published_status": "PUBLISHED", "lifecycle_status": "ACTIVE", "last_updated": "-1h"}
                              for sku in SKUS], "orders": []},
        "faults": list(faults),
    })


def start(faults=()):
    sb = Sandbox(scenario(faults), time_scale=TIME_SCALE).start()
    conns = sb.connections()

    def factory(channel):
        fields = dict(conns[CONN_IDS[channel]])
        fields["extra"] = {**fields.get("extra", {}), "time_scale": TIME_SCALE}
        return hook_from_fields(channel, fields)
    return sb, factory


def setup_ledger(tmp_path, findings):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    fresh_snapshots(ledger, SKUS)
    for f in findings:
        add_finding(ledger, **f)
    settings = settings_from_dict(SETTINGS, {"mode": "apply"})
    return ledger, settings


def shopify_finding(sku, to_qty, from_qty=None):
    n = SKUS.index(sku) + 1
    return dict(channel="shopify", sku=sku, from_qty=SHOPIFY[sku] if from_qty is None else from_qty, to_qty=to_qty,
                ref={"inventory_item_id": f"gid://shopify/InventoryItem/{n}", "location_id": LOC})


def amazon_finding(sku, to_qty):
    return dict(channel="amazon", sku=sku, from_qty=AMAZON[sku], to_qty=to_qty, ref={"product_type": "SHIRT"})


def walmart_finding(sku, to_qty):
    return dict(channel="walmart", sku=sku, from_qty=WALMART[sku], to_qty=to_qty, ref={"ship_node": "10001"})


def statuses(ledger):
    with ledger.session() as s:
        return {(c.channel, c.sku): (c.status, c.detail) for c in s.scalars(select(m.Correction))}


def channel_state(sb):
    st = sb.state()
    shop = {v["sku"]: v["levels"][0]["available"] for v in st["shopify"]["variants"]}
    amazon = {x["sku"]: x["quantity"] for x in st["amazon"]["listings"]}
    walmart = {x["sku"]: x["quantity"] for x in st["walmart"]["items"]}
    return shop, amazon, walmart


def push_all(ledger, settings, batches, factory):
    return [push_batch(ledger, settings, b, hook_factory=factory, clock=QUICK) for b in batches]


def test_corrections_land_verify_and_a_second_push_writes_nothing(tmp_path):
    sb, factory = start()
    try:
        ledger, settings = setup_ledger(tmp_path, [
            shopify_finding("SKU-A", 10), shopify_finding("SKU-C", 6),
            amazon_finding("SKU-A", 7), walmart_finding("SKU-A", 9),
            shopify_finding("SKU-D", 1, from_qty=9),          # the channel shows 7, not 9: changed since
        ])
        plan = plan_corrections(ledger, settings, run_id=RUN, mode="apply")
        assert plan.counts == {"planned": 5}
        push_all(ledger, settings, plan.batches, factory)
        st = statuses(ledger)
        assert {k: v[0] for k, v in st.items()} == {
            ("shopify", "SKU-A"): "verified", ("shopify", "SKU-C"): "verified", ("amazon", "SKU-A"): "verified",
            ("walmart", "SKU-A"): "verified", ("shopify", "SKU-D"): "skipped_changed"}
        shop, amazon, walmart = channel_state(sb)
        assert (shop["SKU-A"], shop["SKU-C"], shop["SKU-D"], amazon["SKU-A"], walmart["SKU-A"]) == (10, 6, 7, 7, 9)
        writes = len(sb.writes())

        again = plan_corrections(ledger, settings, run_id=RUN, mode="apply")
        assert again.created == 0 and again.batches == []
        push_all(ledger, settings, plan.batches, factory)                 # the same batches, re-run
        assert len(sb.writes()) == writes and statuses(ledger) == st
        with ledger.session() as s:
            hook_audits = s.scalars(select(m.AuditLog.operation).where(m.AuditLog.actor == "omnirecon.hooks")).all()
        assert {"inventorySetQuantities", "patchListingsItem", "updateInventoryForAnItem"} <= set(hook_audits)
    finally:
        sb.stop()


def test_dropped_write_is_failed_and_alerted(tmp_path):
    sb, factory = start([{"system": "amazon", "operation": "patchListingsItem", "kind": "drop_writes"}])
    try:
        ledger, settings = setup_ledger(tmp_path, [amazon_finding("SKU-B", 9)])
        plan = plan_corrections(ledger, settings, run_id=RUN, mode="apply")
        push_all(ledger, settings, plan.batches, factory)
        status, detail = statuses(ledger)[("amazon", "SKU-B")]
        assert status == "failed" and detail.startswith(NOT_APPLIED)
        assert channel_state(sb)[1]["SKU-B"] == AMAZON["SKU-B"]
        digest = collect_alerts(ledger, settings, run_id=RUN)
        failed = [i for i in digest.items if i.kind == "write_failed"]
        assert len(failed) == 1 and failed[0].severity == "critical" and NOT_APPLIED in failed[0].detail
        with ledger.session() as s:      # the finding behind it is now a critical alert, not a push
            f = s.scalars(select(m.Finding).where(m.Finding.run_id == RUN, m.Finding.sku == "SKU-B")).one()
            assert (f.severity, f.action) == ("critical", "alert") and "accepted the correction" in f.detail
    finally:
        sb.stop()


def test_large_moves_wait_for_approval_then_approve_and_reject_behave(tmp_path):
    sb, factory = start()
    try:
        ledger, settings = setup_ledger(tmp_path, [shopify_finding("SKU-B", 80), walmart_finding("SKU-B", 90)])
        plan = plan_corrections(ledger, settings, run_id=RUN, mode="apply")
        assert plan.counts == {"pending_approval": 2} and plan.batches == []
        writes = len(sb.writes())
        waiting = {p["channel"]: p["correction_id"] for p in pending_approvals(ledger, RUN)}
        assert set(waiting) == {"shopify", "walmart"} and len(sb.writes()) == writes

        decide(ledger, waiting["shopify"], "approved", by="alice")
        decide(ledger, waiting["walmart"], "rejected", by="bob")
        batches = make_batches(ledger, RUN)
        assert [b["channel"] for b in batches] == ["shopify"]
        push_all(ledger, settings, batches, factory)
        st = statuses(ledger)
        assert st[("shopify", "SKU-B")][0] == "verified" and st[("walmart", "SKU-B")][0] == "rejected"
        shop, _, walmart = channel_state(sb)
        assert shop["SKU-B"] == 80 and walmart["SKU-B"] == WALMART["SKU-B"]
    finally:
        sb.stop()


def test_feeds_carry_large_sets_and_are_verified(tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "PER_SKU_MAX", 1)          # force the feed path with a small catalogue
    sb, factory = start()
    try:
        ledger, settings = setup_ledger(tmp_path, [amazon_finding("SKU-C", 4), amazon_finding("SKU-D", 6),
                                                   walmart_finding("SKU-C", 5), walmart_finding("SKU-D", 8)])
        plan = plan_corrections(ledger, settings, run_id=RUN, mode="apply")
        assert sorted((b["channel"], b["method"]) for b in plan.batches) == [("amazon", "feed"), ("walmart", "feed")]
        push_all(ledger, settings, plan.batches, factory)
        assert {v[0] for v in statuses(ledger).values()} == {"verified"}
        _, amazon, walmart = channel_state(sb)
        assert (amazon["SKU-C"], amazon["SKU-D"], walmart["SKU-C"], walmart["SKU-D"]) == (4, 6, 5, 8)
        with ledger.session() as s:
            assert all(c.external_id for c in s.scalars(select(m.Correction)))
    finally:
        sb.stop()


@pytest.mark.parametrize("per_sku_max", [100, 1], ids=["per-sku", "feed"])
def test_one_hook_per_batch_one_token_fetch(tmp_path, monkeypatch, per_sku_max):
    monkeypatch.setattr(plan_mod, "PER_SKU_MAX", per_sku_max)
    sb, factory = start()
    try:
        tokens = {ch: sb.faults.add({"system": ch, "operation": "token", "kind": "down", "count": 0})
                  for ch in ("amazon", "walmart")}           # never fires: counts the token requests
        ledger, settings = setup_ledger(tmp_path, [amazon_finding(s, 9) for s in ("SKU-A", "SKU-C", "SKU-D")]
                                        + [walmart_finding(s, 9) for s in ("SKU-A", "SKU-C", "SKU-D")])
        plan = plan_corrections(ledger, settings, run_id=RUN, mode="apply")
        assert sorted(b["channel"] for b in plan.batches) == ["amazon", "walmart"]
        push_all(ledger, settings, plan.batches, factory)
        assert {v[0] for v in statuses(ledger).values()} == {"verified"}
        assert {ch: f.calls for ch, f in tokens.items()} == {"amazon": 1, "walmart": 1}
    finally:
        sb.stop()
