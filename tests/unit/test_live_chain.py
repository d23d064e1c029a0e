"""live/chain.py without a world: the platforms' bodies as changes, mechanism inference, and the monitor on
hand-made changes (orders hop, a channel-to-channel hop, a change the source took back, closing a gap)."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

from omnirecon.config import settings_from_dict
from omnirecon.live.chain import ChainMonitor, changes_from, infer_mechanism, percentile
from omnirecon.model.change import Change

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=timezone.utc)
SETTINGS = settings_from_dict({
    "locations": [{"erp": "WH-EAST", "shopify": "gid://shopify/Location/1", "amazon": "MFN", "walmart_ship_node": "1"}],
    "channels": {"shopify": {"safety_stock": 0}, "amazon": {"safety_stock": 2}, "walmart": {"safety_stock": 1}},
    "propagation_sla_seconds": 30})


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def ts(s: float) -> str:
    return at(s).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- bodies -> changes --------------------------------------------------------------------------------------------
def test_each_platforms_body_becomes_its_change():
    shop = changes_from("shopify", "inventory_levels/update", json.dumps(
        {"inventory_item_id": 7, "location_id": 1, "available": 4, "updated_at": ts(3)}), item_skus={"7": "MUG"})
    assert shop == [Change("shopify", "inventory", "MUG", at(3), 4, "gid://shopify/Location/1")]
    order = changes_from("shopify", "orders/create", {"admin_graphql_api_id": "gid://shopify/Order/9",
                                                      "created_at": ts(1), "line_items": [{"sku": "MUG"}]})[0]
    assert (order.kind, order.key, order.skus) == ("order", "gid://shopify/Order/9", ("MUG",))
    amazon = changes_from("amazon", "LISTINGS_ITEM_MFN_QUANTITY_CHANGE",
                          {"EventTime": ts(5), "Payload": {"Sku": "MUG", "Quantity": 2}})
    assert amazon == [Change("amazon", "inventory", "MUG", at(5), 2, "MFN")]
    created = changes_from("amazon", "ORDER_CHANGE", {"EventTime": ts(6), "Payload": {"OrderChangeNotification": {
        "AmazonOrderId": "111-1", "OrderChangeTrigger": {"TimeOfOrderChange": ts(6), "ChangeReason": "Order created"},
        "Summary": {"OrderItems": [{"SellerSKU": "MUG"}]}}}})
    assert [(c.kind, c.key) for c in created] == [("order", "111-1")]
    oos = changes_from("walmart", "INVENTORY_OOS", {"source": {"eventTime": ts(7)}, "payload": {
        "sku": "MUG", "shipNodes": [{"shipNode": "1", "availToSellQty": 0}]}})
    assert oos == [Change("walmart", "inventory", "MUG", at(7), 0, "1")]
    erp = changes_from("erp", "salesorder/create", {"recordType": "salesorder", "type": "create", "timestamp": ts(8),
                                                    "salesOrder": {"otherRefNum": "111-1", "channel": "amazon",
                                                                   "lines": [{"item": "MUG"}]},
                                                    "items": [{"item": "MUG", "location": "WH-EAST",
                                                               "quantityAvailable": 9}]})
    assert [(c.kind, c.key, c.value, c.channel) for c in erp] == [("inventory", "MUG", 9, None),
                                                                 ("order", "111-1", "recorded", "amazon")]
    assert changes_from("shopify", "inventory_levels/update", {"inventory_item_id": 8, "available": 1}) == []


# -- inference ------------------------------------------------------------------------------------------------------
def test_constant_delays_are_an_event_spread_delays_a_poll_of_their_period():
    assert infer_mechanism([3.0, 3.0, 4.0, 3.0]) == ("event", None)
    rng = random.Random(5)
    changes = sorted(rng.uniform(0, 1200) for _ in range(40))
    wakes = [next(w for w in range(0, 1400, 60) if w >= c) for c in changes]     # a poll every 60 s
    mech, period = infer_mechanism([w - c for c, w in zip(changes, wakes)], 1.0, [at(w) for w in wakes])
    assert mech == "poll" and abs(period - 60) <= 12
    assert infer_mechanism([1.0, 50.0]) == ("unknown", None)
    assert percentile([1, 2, 3, 4], 0.5) == 2 and percentile([1, 2, 3, 4], 0.95) == 4 and percentile([], 0.5) is None


# -- the monitor on hand-made changes -------------------------------------------------------------------------------
def feed(monitor, changes):
    for c in changes:
        monitor.observe(c)


def test_orders_the_erp_stopped_recording_are_a_broken_hop_with_alert_gaps():
    mon = ChainMonitor(SETTINGS)
    orders = [Change("shopify", "order", f"o{i}", at(i * 20), "placed", skus=("MUG",)) for i in range(8)]
    recorded = [Change("erp", "order", f"o{i}", at(i * 20 + 4), "recorded", channel="shopify") for i in range(4)]
    feed(mon, orders + recorded)
    found = mon.tick(at(200))
    hop = next(h for h in mon.chain()["hops"] if h["kind"] == "orders")
    assert (hop["from"], hop["to"], hop["state"], hop["followed"], hop["missed"]) == ("shopify", "erp", "broken", 4, 4)
    assert hop["since"] == ts(80) and hop["mechanism"] == "event" and hop["diagnosis"] == "L3_connector"
    assert sorted(d.key for d in found) == ["o4", "o5", "o6", "o7"]
    gaps = mon.findings("r1")
    assert {(g["channel"], g["action"], g["sku"]) for g in gaps} == {("erp", "alert", None)}
    assert all(g["detail"].startswith("shopify->erp") and g["order_id"] for g in gaps)


def test_orders_are_expected_in_the_erp_from_its_first_notification_of_any_kind():
    mon = ChainMonitor(SETTINGS)
    feed(mon, [Change("erp", "inventory", "MUG", at(0), 10, "WH-EAST"),      # the ERP notifies; no order yet
               Change("shopify", "order", "o1", at(5), "placed", skus=("MUG",))])
    found = mon.tick(at(5 + 31))
    assert [(d.hop, d.key) for d in found if d.kind == "orders"] == [("shopify->erp", "o1")]


def test_a_gap_closes_when_the_target_follows_and_a_change_taken_back_in_time_is_none():
    mon = ChainMonitor(SETTINGS)
    feed(mon, [Change("erp", "inventory", "MUG", at(0), 10, "WH-EAST"),
               Change("shopify", "inventory", "MUG", at(2), 10, "gid://shopify/Location/1"),
               Change("erp", "inventory", "MUG", at(10), 8, "WH-EAST")])
    [gap] = mon.tick(at(45))
    assert (gap.hop, gap.key, gap.expected, gap.observed) == ("erp->shopify", "MUG", 8, 10)
    mon.observe(Change("shopify", "inventory", "MUG", at(50), 8, "gid://shopify/Location/1"))
    assert mon.tick(at(55)) == []
    assert gap.corrected_at == at(50) and gap.row()["correction_s"] == 40.0 and gap.row()["detection_s"] == 35.0
    # the ERP dips and comes back within the SLA: nothing for the channel to follow
    feed(mon, [Change("erp", "inventory", "MUG", at(60), 7, "WH-EAST"),
               Change("erp", "inventory", "MUG", at(70), 8, "WH-EAST")])
    assert mon.tick(at(120)) == []


def test_a_channel_to_channel_hop_is_mapped_from_changes_the_erp_did_not_start():
    mon = ChainMonitor(SETTINGS)
    feed(mon, [Change("erp", "inventory", "MUG", at(0), 50, "WH-EAST")])
    for i in range(5):   # Shopify's own edits, each relayed to Amazon 10 s later (minus Amazon's safety stock)
        feed(mon, [Change("shopify", "inventory", "MUG", at(100 + 30 * i), 40 - i, "gid://shopify/Location/1"),
                   Change("amazon", "inventory", "MUG", at(110 + 30 * i), 38 - i, "MFN")])
    mon.tick(at(300))
    hops = {(h["from"], h["to"]): h for h in mon.chain()["hops"]}
    relay = hops[("shopify", "amazon")]
    assert relay["followed"] == 5 and relay["mechanism"] == "event" and relay["latency_s"]["p50"] == 10.0
    assert ("amazon", "shopify") not in hops


def test_small_changes_never_carried_while_big_ones_are_is_an_erp_threshold():
    mon = ChainMonitor(SETTINGS, erp_levels={("MUG", "WH-EAST"): 100})
    level, t = 100, 0
    for delta in (-1, -20, -2, -15, -1, -30, -2):
        level += delta
        mon.observe(Change("erp", "inventory", "MUG", at(t), level, "WH-EAST"))
        if abs(delta) >= 10:   # the ERP's trigger fires only on 10 units or more
            mon.observe(Change("shopify", "inventory", "MUG", at(t + 3), level, "gid://shopify/Location/1"))
        t += 60
    mon.tick(at(t + 60))
    hop = next(h for h in mon.chain()["hops"] if h["to"] == "shopify")
    assert hop["state"] == "broken" and hop["diagnosis"] == "L4_erp_config"


def test_a_read_target_moved_by_its_own_sale_has_not_followed_the_erp():
    shown = {"MUG": 9}
    mon = ChainMonitor(SETTINGS, reader=lambda system, keys: {k: shown[k] for k in keys}, readable={"walmart"},
                       erp_levels={("MUG", "WH-EAST"): 10})
    mon.observe(Change("erp", "inventory", "MUG", at(0), 10, "WH-EAST"))   # a walmart order reaches the ERP later
    mon.observe(Change("erp", "inventory", "MUG", at(1), 6, "WH-EAST"))
    assert mon.tick(at(5)) == []                                           # first read: the baseline (9)
    mon.observe(Change("walmart", "order", "po-1", at(7), "placed", skus=("MUG",), units=(2,)))
    shown["MUG"] = 7                                                       # the sale, not the ERP's 5
    assert mon.tick(at(10)) == []
    [gap] = mon.tick(at(35))
    assert (gap.hop, gap.expected, gap.observed, gap.action) == ("erp->walmart", 5, 7, "push")
    shown["MUG"] = 5
    mon.tick(at(40))
    assert gap.corrected_at == at(40)


def test_a_channel_showing_an_unmapped_locations_count_is_a_location_mapping():
    mon = ChainMonitor(SETTINGS, erp_levels={("MUG", "WH-EAST"): 40, ("MUG", "DROPSHIP"): 25})
    mon.observe(Change("amazon", "inventory", "MUG", at(0), 23, "MFN"))     # 25 - safety 2: DROPSHIP's count
    for i, level in enumerate((38, 35, 33, 30)):
        mon.observe(Change("erp", "inventory", "MUG", at(10 + 20 * i), level, "WH-EAST"))
        mon.observe(Change("shopify", "inventory", "MUG", at(13 + 20 * i), level, "gid://shopify/Location/1"))
    mon.tick(at(200))
    hops = {h["to"]: h for h in mon.chain()["hops"]}
    assert hops["amazon"]["state"] == "broken" and hops["amazon"]["diagnosis"] == "location_mapping"
    assert hops["shopify"]["state"] == "ok" and hops["shopify"]["diagnosis"] is None


def test_the_hop_history_is_kept_in_the_ledger_and_its_state_since_carries_over(sqlite_ledger):
    def window(start, follow):
        mon = ChainMonitor(SETTINGS, ledger=sqlite_ledger)
        for i in range(4):
            mon.observe(Change("erp", "inventory", "MUG", at(start + 10 * i), 50 - start // 10 - i, "WH-EAST"))
            if follow:
                mon.observe(Change("shopify", "inventory", "MUG", at(start + 10 * i + 2), 50 - start // 10 - i,
                                   "gid://shopify/Location/1"))
        mon.tick(at(start + 120))
        mon.save()
        return mon.chain()["hops"][0]
    assert window(0, True)["state"] == "ok"
    first = window(200, False)
    again = window(400, False)
    assert first["state"] == again["state"] == "broken" and again["since"] == first["since"] == ts(200)
    from omnirecon.ledger import queries
    with sqlite_ledger.session() as s:
        history = queries.hop_history(s, "erp", "shopify", "inventory")
        detections = queries.detections(s)
    assert [w.state for w in history] == ["ok", "broken", "broken"] and [w.followed for w in history] == [4, 0, 0]
    # one gap per hop and SKU while it stays open: the later changes of a window join it
    assert [(d.hop, d.sku, d.action) for d in detections] == [("erp->shopify", "MUG", "push")] * 2
    assert [d.changed_at.replace(tzinfo=d.changed_at.tzinfo or T0.tzinfo) for d in detections] == [at(200), at(400)]
