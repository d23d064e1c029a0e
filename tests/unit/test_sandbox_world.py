"""The living world (shared/contracts/world.md) on the manual sandbox clock: schema, hop mechanisms and their
latency distributions, every defect kind, orders and status hops, oversell accounting, determinism."""
from __future__ import annotations

import random
import statistics
import threading

import pytest

from omnirecon_contract.errors import ConfigError
from omnirecon_contract.scenario import from_dict, load
from omnirecon_sandbox.clock import ManualClock
from omnirecon_sandbox.core import Sandbox
from tests.support.world import SHOP_LOC, delays, manual_world, outcomes, quartiles, world_doc

HOP_ES = {"id": "erp-shopify", "from": "erp", "to": "shopify", "kind": "inventory", "mechanism": "event", "latency": "3s"}
HOP_EW = {"id": "erp-walmart", "from": "erp", "to": "walmart", "kind": "inventory", "mechanism": "poll", "every": "60s",
          "phase": "20s"}
HOP_EA = {"id": "erp-amazon", "from": "erp", "to": "amazon", "kind": "inventory", "mechanism": "event", "latency": "2s"}


def _adjust(at: float, sku: str, delta: int, location: str = "WH-EAST") -> dict:
    return {"at": f"+{at:.3f}s", "system": "erp", "kind": "adjust", "sku": sku, "location": location, "delta": delta}


def _random_adjusts(n: int, horizon: float, skus: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    times = sorted(rng.uniform(1, horizon) for _ in range(n))
    return [_adjust(t, f"SKU-{rng.randrange(skus):03d}", rng.choice([-1, 1]) * rng.randint(1, 3)) for t in times]


def _shopify(sb, sku):
    return sb.systems["shopify"].by_sku[sku]["levels"][0]["available"]


def _walmart(sb, sku):
    return sb.systems["walmart"]._rows(sku)[0]["quantity"]


def _amazon(sb, sku):
    return sb.systems["amazon"].listings[sku]["quantity"]


# -- schema ------------------------------------------------------------------------------------------------------
def test_static_scenario_has_no_world_block_and_no_thread():
    sb = Sandbox(load("include/scenarios/demo.yaml")).start()
    try:
        assert sb.world is None
        assert "world" not in sb.state()
        assert not any(t.name == "sandbox-world" for t in threading.enumerate())
    finally:
        sb.stop()


def test_bundled_world_scenario_loads_with_every_mechanism_and_defect_kind():
    s = load("include/scenarios/world.yaml")
    assert {h["mechanism"] for h in s.data["integration"]["hops"]} == {"event", "poll"}
    assert {d["kind"] for d in s.data["integration"]["defects"]} == {
        "suspended", "min_delta", "wrong_location", "drop", "event_filter", "expired_credentials", "lag",
        "ignores_safety_stock"}
    assert {h["kind"] for h in s.data["integration"]["hops"]} == {"inventory", "orders", "status"}


def test_bundled_world_runs_and_its_state_reloads_as_a_scenario():
    s = load("include/scenarios/world.yaml")
    sb = Sandbox(s, clock=ManualClock(s.as_of))
    sb.world.advance(420)
    state = sb.state()
    from_dict(state)                                      # sandbox_state.json stays a valid scenario
    world = state["world"]
    assert {"channel": "amazon", "sku": "TEE-BLK-M", "orders": 1, "units": 7} in world["oversells"]
    seen = {(e["hop"], e["outcome"]) for e in world["hop_log"]}
    assert {("erp-shopify", "below_min_delta"), ("erp-walmart", "suspended"), ("shopify-erp", "filtered"),
            ("amazon-erp", "auth_error"), ("shopify-amazon", "dropped"), ("erp-shopify-status", "carried")} <= seen
    assert all(e["outcome"] == "applied" for e in world["events"])
    assert sb.systems["shopify"].orders_by_id["gid://shopify/Order/2"]["display_fulfillment_status"] == "FULFILLED"


@pytest.mark.parametrize("blocks, message", [
    ({"integration": {"hops": [HOP_ES], "defects": [{"hop": "nope", "kind": "suspended"}]}},
     "integration.defects[0].hop: unknown hop 'nope'"),
    ({"integration": {"hops": [HOP_ES, HOP_ES]}}, "integration.hops[1].id: duplicate hop id"),
    ({"integration": {"hops": [dict(HOP_ES, id="Bad_Id")]}}, "integration.hops[0].id: must match"),
    ({"integration": {"hops": [dict(HOP_ES, to="ebay")]}}, "integration.hops[0].to: must be one of"),
    ({"integration": {"hops": [dict(HOP_ES, kind="orders")]}}, "integration.hops[0].to: a orders hop runs channel->erp"),
    ({"integration": {"hops": [{k: v for k, v in HOP_ES.items() if k != "latency"}]}},
     "integration.hops[0]: 'latency' is required"),
    ({"integration": {"hops": [dict(HOP_ES, speed=1)]}}, "integration.hops[0]: unknown key(s) speed"),
    ({"integration": {"hops": [HOP_ES], "defects": [{"hop": "erp-shopify", "kind": "event_filter",
                                                     "fires_on": "creation"}]}},
     "integration.defects[0].kind: event_filter applies to orders hops"),
    ({"integration": {"hops": [HOP_ES], "defects": [{"hop": "erp-shopify", "kind": "wrong_location", "reads": "MARS"}]}},
     "integration.defects[0].reads: unknown ERP location 'MARS'"),
    ({"integration": {"hops": [HOP_ES], "defects": [{"hop": "erp-shopify", "kind": "drop"}]}},
     "integration.defects[0]: 'fraction' is required"),
    ({"events": [_adjust(1, "NOPE", 1)]}, "events[0].sku: unknown erp SKU 'NOPE'"),
    ({"events": [_adjust(1, "SKU-000", 1, location="MARS")]}, "events[0].location: unknown ERP location 'MARS'"),
    ({"events": [{"at": "+1s", "system": "walmart", "kind": "cancel", "order": "404"}]},
     "events[0].order: unknown walmart order '404'"),
    ({"events": [{"at": "+1s", "system": "erp", "kind": "order", "sku": "SKU-000", "quantity": 1}]},
     "events[0].kind: erp events are adjust, receive, ship"),
    ({"events": [{"at": "soon", "system": "erp", "kind": "ship", "channel_order": "x"}]}, "events[0].at"),
    ({"demand": {"orders_per_minute": 5, "channels": {"shopify": 1}, "skus": "ZZ-*"}},
     "demand.skus: 'ZZ-*' matches no ERP SKU"),
    ({"demand": {"orders_per_minute": 0, "channels": {"shopify": 1}}}, "demand.orders_per_minute"),
    ({"notifications": {"defects": [{"system": "shopify", "kind": "stop_after"}]}},
     "notifications.defects[0]: 'deliveries' is required"),
    ({"notifications": {"shopify": {"bogus": 1}}}, "notifications.shopify: unknown key(s) bogus"),
])
def test_world_blocks_rejected_naming_the_field(blocks, message):
    with pytest.raises(ConfigError) as e:
        from_dict(world_doc(**blocks))
    assert message in str(e.value)


# -- mechanisms --------------------------------------------------------------------------------------------------
def test_event_hop_delays_cluster_at_latency_with_uniform_jitter():
    hop = dict(HOP_ES, jitter="1s")
    sb = manual_world(world_doc(skus=20, on_hand=500, integration={"hops": [hop]},
                                events=_random_adjusts(400, 3000, 20, seed=5)))
    sb.world.advance(3100)
    d = delays(sb, "erp-shopify")
    assert len(d) == 400                                  # one attempt per change, none lost
    assert min(d) >= 2.0 and max(d) <= 4.0                # latency 3s +- jitter 1s
    assert abs(statistics.median(d) - 3.0) < 0.15
    q1, _, q3 = quartiles(d)
    assert abs(q1 - 2.5) < 0.15 and abs(q3 - 3.5) < 0.15  # uniform jitter, not a constant


def test_event_hop_without_jitter_is_constant():
    sb = manual_world(world_doc(integration={"hops": [HOP_ES]}, events=[_adjust(1 + i, "SKU-000", -1) for i in range(5)]))
    sb.world.advance(20)
    assert delays(sb, "erp-shopify") == [3.0] * 5
    assert _shopify(sb, "SKU-000") == 5                  # 10 - 5, the formula with safety 0


def test_poll_hop_delays_spread_evenly_over_its_period():
    sb = manual_world(world_doc(skus=400, on_hand=500, integration={"hops": [HOP_EW]},
                                events=_random_adjusts(600, 6000, 400, seed=9)))
    sb.world.advance(6100)
    d = delays(sb, "erp-walmart")
    wakes = sorted({e["at"] for e in sb.world.hop_log if e["hop"] == "erp-walmart"})
    assert len(d) > 400 and min(d) >= 0 and max(d) < 60.0
    q1, q2, q3 = quartiles(d)
    assert abs(q1 - 15) < 4 and abs(q2 - 30) < 4 and abs(q3 - 45) < 4   # uniform over the 60 s period
    stamps = [float(w[17:23]) for w in wakes]                            # seconds field of each wake instant
    first = sb.world.clock.started_at.second + sb.world.clock.started_at.microsecond / 1e6
    assert all(abs(((s - first - 20) % 60 + 30) % 60 - 30) < 0.01 for s in stamps)   # wakes at phase + k * every


def test_poll_carries_the_value_current_at_the_wake():
    sb = manual_world(world_doc(integration={"hops": [HOP_EW]},
                                events=[_adjust(1, "SKU-000", -2), _adjust(5, "SKU-000", -3)]))
    sb.world.advance(19)
    assert _walmart(sb, "SKU-000") == 9
    sb.world.advance(2)
    carried = [e for e in sb.world.hop_log if e["hop"] == "erp-walmart"]
    assert [(e["sku"], e["value"], e["delay_s"]) for e in carried] == [("SKU-000", 4, 19.0)]   # 10-5 minus safety 1
    assert _walmart(sb, "SKU-000") == 4


# -- defects -----------------------------------------------------------------------------------------------------
def test_suspended_from_carries_nothing_then_catches_up_after_until():
    sb = manual_world(world_doc(integration={"hops": [HOP_EW], "defects": [
        {"hop": "erp-walmart", "kind": "suspended", "from": "+60s", "until": "+150s"}]},
        events=[_adjust(5, "SKU-000", -1), _adjust(70, "SKU-001", -4)]))
    sb.world.advance(100)
    assert _walmart(sb, "SKU-000") == 8 and _walmart(sb, "SKU-001") == 9     # the first carried, the second not
    assert outcomes(sb, "erp-walmart") == ["carried", "suspended"]
    sb.world.advance(100)                                                      # wake at 200 s: resumed
    assert _walmart(sb, "SKU-001") == 5
    assert outcomes(sb, "erp-walmart") == ["carried", "suspended", "suspended", "carried"]


def test_min_delta_ignores_small_changes_and_carries_current_value_on_a_big_one():
    sb = manual_world(world_doc(on_hand=30, integration={"hops": [HOP_ES], "defects": [
        {"hop": "erp-shopify", "kind": "min_delta", "units": 10}]},
        events=[_adjust(1, "SKU-000", -6), _adjust(10, "SKU-000", -5), _adjust(20, "SKU-000", -12)]))
    sb.world.advance(15)
    assert outcomes(sb, "erp-shopify") == ["below_min_delta", "below_min_delta"]
    assert _shopify(sb, "SKU-000") == 30                  # 30 -> 19 never reached Shopify
    sb.world.advance(10)
    assert _shopify(sb, "SKU-000") == 7                   # 30 - 6 - 5 - 12


def test_wrong_location_reads_the_other_erp_location():
    sb = manual_world(world_doc(integration={"hops": [HOP_EA], "defects": [
        {"hop": "erp-amazon", "kind": "wrong_location", "reads": "DROPSHIP"}]},
        events=[_adjust(1, "SKU-000", -1)]))
    sb.world.advance(5)
    assert _amazon(sb, "SKU-000") == 23                   # DROPSHIP 25 - safety 2, not WH-EAST 9 - 2


def test_drop_loses_its_fraction_of_changes_seeded():
    def run():
        sb = manual_world(world_doc(skus=50, on_hand=500, integration={"hops": [HOP_ES], "defects": [
            {"hop": "erp-shopify", "kind": "drop", "fraction": 0.3, "seed": 4}]},
            events=_random_adjusts(500, 1000, 50, seed=1)))
        sb.world.advance(1100)
        return outcomes(sb, "erp-shopify")
    first = run()
    assert first == run()                                 # seeded: the same changes are lost every time
    assert set(first) == {"carried", "dropped"} and len(first) == 500
    assert 0.25 < first.count("dropped") / 500 < 0.35


def test_event_filter_lets_only_the_subscribed_event_through():
    hop = {"id": "shopify-erp", "from": "shopify", "to": "erp", "kind": "orders", "mechanism": "event", "latency": "5s"}
    sb = manual_world(world_doc(integration={"hops": [hop], "defects": [
        {"hop": "shopify-erp", "kind": "event_filter", "fires_on": "cancellation"}]},
        events=[{"at": "+1s", "system": "shopify", "kind": "order", "sku": "SKU-000", "quantity": 2}]))
    sb.world.advance(10)
    assert outcomes(sb, "shopify-erp") == ["filtered"]
    assert sb.systems["erp"].data["sales_orders"] == []   # the order never reached the ERP
    order = sb.systems["shopify"].orders[0]["id"]
    sb.systems["shopify"].cancel_order(order)
    sb.world.advance(10)
    assert outcomes(sb, "shopify-erp") == ["filtered", "carried"]


def test_expired_credentials_stops_the_hop_and_logs_auth_errors():
    hop = {"id": "amazon-erp", "from": "amazon", "to": "erp", "kind": "orders", "mechanism": "poll", "every": "60s"}
    sb = manual_world(world_doc(integration={"hops": [hop], "defects": [
        {"hop": "amazon-erp", "kind": "expired_credentials", "from": "+100s"}]},
        events=[{"at": "+10s", "system": "amazon", "kind": "order", "sku": "SKU-000", "quantity": 1},
                {"at": "+110s", "system": "amazon", "kind": "order", "sku": "SKU-001", "quantity": 1}]))
    sb.world.advance(250)
    log = [e for e in sb.world.hop_log if e["hop"] == "amazon-erp"]
    assert [e["outcome"] for e in log] == ["carried"] + ["auth_error"] * 3    # wakes at 60; 120, 180, 240
    assert all("401" in e["error"] for e in log[1:])
    erp = sb.systems["erp"]
    assert [so["lines"][0]["sku"] for so in erp.data["sales_orders"]] == ["SKU-000"]


def test_lag_adds_its_extra_only_inside_its_window():
    sb = manual_world(world_doc(integration={"hops": [HOP_ES], "defects": [
        {"hop": "erp-shopify", "kind": "lag", "extra": "40s", "from": "+10s", "until": "+20s"}]},
        events=[_adjust(5, "SKU-000", -1), _adjust(15, "SKU-001", -1), _adjust(25, "SKU-002", -1)]))
    sb.world.advance(100)
    assert delays(sb, "erp-shopify") == [3.0, 3.0, 43.0]   # sorted by carry time: 8, 28, 58


def test_ignores_safety_stock():
    sb = manual_world(world_doc(integration={"hops": [HOP_EW], "defects": [
        {"hop": "erp-walmart", "kind": "ignores_safety_stock"}]}, events=[_adjust(1, "SKU-000", -3)]))
    sb.world.advance(30)
    assert _walmart(sb, "SKU-000") == 7                    # 10 - 3, without Walmart's safety stock 1


# -- kinds -------------------------------------------------------------------------------------------------------
def test_channel_to_channel_relays_source_minus_target_safety():
    hop = {"id": "shopify-amazon", "from": "shopify", "to": "amazon", "kind": "inventory", "mechanism": "poll",
           "every": "90s"}
    sb = manual_world(world_doc(integration={"hops": [hop]},
                                events=[{"at": "+1s", "system": "shopify", "kind": "set", "sku": "SKU-000", "quantity": 4},
                                        {"at": "+2s", "system": "shopify", "kind": "set", "sku": "SKU-001", "quantity": 1}]))
    sb.world.advance(100)
    assert _amazon(sb, "SKU-000") == 2 and _amazon(sb, "SKU-001") == 0   # 4 - 2; 1 - 2 floored at 0
    assert [(w["system"], w["by"], w["value"]) for w in sb.world.writes] == [
        ("shopify", "api", 4), ("shopify", "api", 1), ("amazon", "integration", 2), ("amazon", "integration", 0)]


def test_orders_hop_commits_at_the_first_mapped_location_and_status_hop_ships_the_channel_order():
    hops = [{"id": "walmart-erp", "from": "walmart", "to": "erp", "kind": "orders", "mechanism": "event", "latency": "4s"},
            dict(HOP_EW, every="30s", phase="0s"),
            {"id": "erp-walmart-status", "from": "erp", "to": "walmart", "kind": "status", "mechanism": "event",
             "latency": "10s"}]
    sb = manual_world(world_doc(integration={"hops": hops},
                                events=[{"at": "+1s", "system": "walmart", "kind": "order", "sku": "SKU-000",
                                         "quantity": 3}]))
    sb.world.advance(2)
    wm, erp = sb.systems["walmart"], sb.systems["erp"]
    po = wm.orders[0]["purchase_order_id"]
    assert _walmart(sb, "SKU-000") == 6                    # the channel decrements at once: 9 - 3
    sb.world.advance(4)
    so = erp.so_by_channel_order[po]
    assert so["status"] == "B" and so["channel"] == "walmart" and so["lines"] == [
        {"sku": "SKU-000", "quantity": 3, "quantity_fulfilled": 0}]
    assert erp.available("SKU-000", "WH-EAST") == 7       # committed 3 at WH-EAST
    sb.world.advance(30)
    assert _walmart(sb, "SKU-000") == 6                    # ERP 7 - safety 1 written back by the poll
    erp.fulfil(po)                                         # the ERP ships it (as the `ship` event does)
    sb.world.advance(11)
    assert wm.orders_by_id[po]["lines"][0]["status"] == "Shipped"
    assert erp.so_by_channel_order[po]["status"] == "F" and erp.available("SKU-000", "WH-EAST") == 7


def test_erp_changes_are_visible_to_suiteql():
    sb = manual_world(world_doc(events=[_adjust(1, "SKU-000", -4)]))
    sb.world.advance(2)
    rows = sb.systems["erp"].db.execute(
        "SELECT quantityonhand, quantityavailable FROM inventoryitemlocations WHERE item = 500 AND location = 1").fetchall()
    assert rows == [(6, 6)]


# -- oversells ---------------------------------------------------------------------------------------------------
def test_oversells_counted_exactly_on_a_hand_computed_case():
    """ERP SKU-000: 3 at WH-EAST. Shopify orders reach the ERP after 5 s; Amazon orders never do.
    t=1 shopify 2: ATS 3, pending 0 -> ok, pending 2; t=6 it reaches the ERP: ATS 1, pending 0
    t=10 shopify 1: 1 - 0 >= 1 -> ok (pending 1); t=11 amazon 1: 1 - 1 = 0 < 1 -> oversold (pending 2)
    t=15 the t=10 order reaches the ERP: ATS 0, pending 1 (amazon); t=20 amazon 1: 0 - 1 < 1 -> oversold
    t=21 shopify 1 refused: Shopify shows 0 (DENY)."""
    hop = {"id": "shopify-erp", "from": "shopify", "to": "erp", "kind": "orders", "mechanism": "event", "latency": "5s"}
    doc = world_doc(skus=2, on_hand=3, integration={"hops": [hop]}, events=[
        {"at": "+1s", "system": "shopify", "kind": "order", "sku": "SKU-000", "quantity": 2},
        {"at": "+10s", "system": "shopify", "kind": "order", "sku": "SKU-000", "quantity": 1},
        {"at": "+11s", "system": "amazon", "kind": "order", "sku": "SKU-000", "quantity": 1},
        {"at": "+20s", "system": "amazon", "kind": "set", "sku": "SKU-000", "quantity": 1},
        {"at": "+20.5s", "system": "amazon", "kind": "order", "sku": "SKU-000", "quantity": 1},
        {"at": "+21s", "system": "shopify", "kind": "order", "sku": "SKU-000", "quantity": 1}])
    sb = manual_world(doc)
    sb.world.advance(30)
    assert sb.world.oversells() == [{"channel": "amazon", "sku": "SKU-000", "orders": 2, "units": 2}]
    assert [e["outcome"] for e in sb.world.event_log] == ["applied"] * 5 + ["rejected"]


def test_oversell_counts_a_continue_variant_selling_past_zero():
    doc = world_doc(skus=1, on_hand=1, events=[
        {"at": "+1s", "system": "shopify", "kind": "order", "sku": "SKU-000", "quantity": 1},
        {"at": "+2s", "system": "shopify", "kind": "order", "sku": "SKU-000", "quantity": 2}])
    doc["shopify"]["variants"][0]["inventory_policy"] = "CONTINUE"
    sb = manual_world(doc)
    sb.world.advance(5)
    assert sb.world.oversells() == [{"channel": "shopify", "sku": "SKU-000", "orders": 1, "units": 2}]
    assert _shopify(sb, "SKU-000") == -2


# -- demand and determinism --------------------------------------------------------------------------------------
def _demand_world(seed: int):
    hops = [HOP_ES, HOP_EW, {"id": "shopify-erp", "from": "shopify", "to": "erp", "kind": "orders",
                             "mechanism": "event", "latency": "5s"}]
    sb = manual_world(world_doc(skus=10, on_hand=20, integration={"hops": hops},
                                demand={"orders_per_minute": 120, "channels": {"shopify": 0.5, "amazon": 0.5},
                                        "skus": "SKU-00*", "max_quantity": 2, "seed": seed}))
    sb.world.advance(600)
    return sb


def test_demand_is_seeded_poisson_and_the_world_deterministic():
    a, b, c = _demand_world(11), _demand_world(11), _demand_world(12)
    strip = lambda sb: [{k: v for k, v in e.items() if k not in ("at", "changed_at")} for e in sb.world.hop_log]
    assert strip(a) == strip(b) and a.world.oversells() == b.world.oversells()
    assert strip(a) != strip(c)
    stats = a.world.demand_stats
    assert 1100 < stats["arrivals"] < 1300                 # 120/min for 10 min, Poisson
    assert stats["rejected"] > 0                           # channels refuse once they show 0
    skus = {o["line_items"][0]["sku"] for o in a.systems["shopify"].orders}
    assert skus <= {f"SKU-00{i}" for i in range(10)}
    assert a.world.oversells()                             # Amazon orders never reach this ERP


def test_api_writes_are_logged_as_api_and_hops_react_to_them():
    hop = {"id": "shopify-amazon", "from": "shopify", "to": "amazon", "kind": "inventory", "mechanism": "event",
           "latency": "1s"}
    sb = manual_world(world_doc(integration={"hops": [hop]}))
    sb.systems["shopify"].set_available("SKU-000", SHOP_LOC, 6)   # the code path inventorySetQuantities runs
    sb.world.advance(2)
    assert [(w["system"], w["by"]) for w in sb.world.writes] == [("shopify", "api"), ("amazon", "integration")]
    assert _amazon(sb, "SKU-000") == 4
