"""Each defect kind of the living world (world.md), heard only through the platforms' own notifications and reads:
the hop it breaks is found broken (or slow) with the layer domain.md gives it, the healthy hop beside it is not,
mechanisms and delays are learned from what was carried, and every gap is detected within the SLA + 15 s.

Two worlds on the manual clock (tests/support/chain_world.py), 300 clock seconds each, SLA 30 s:
- inventory: an ERP adjustment every 6.3 s (down 1 to 4); erp->shopify skips changes under 3 units (min_delta),
  erp->amazon reads the DROPSHIP location (wrong_location), erp->walmart ignores the safety stock;
- orders: background sales on every channel; shopify->erp fires on fulfilments only (event_filter), amazon->erp
  loses its credentials at +90 s, walmart->erp drops 40 % of the orders, erp->shopify lags 40 s from +60 s to
  +150 s, and erp->amazon is healthy."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from omnirecon.ledger.db import Ledger
from omnirecon.timeutil import parse_ts
from tests.support.chain_world import run_chain_world
from tests.support.world import world_doc

SLA, HORIZON, TICK = 30, 300, 5
NOTIFY_ALL = {"shopify": {}, "amazon": {}, "walmart": {}, "erp": {}}


def _adjusts(deltas: list[int]) -> list[dict]:
    out, t, n = [], 2.3, 0
    while t < HORIZON - 60:
        out.append({"at": f"+{t:.1f}s", "system": "erp", "kind": "adjust", "sku": f"SKU-{n % 3:03d}",
                    "location": "WH-EAST", "delta": -deltas[n % len(deltas)]})
        t, n = t + 6.3, n + 1
    return out


def _ledger(tmp_path_factory, name: str) -> Ledger:
    ledger = Ledger(f"sqlite:///{tmp_path_factory.mktemp(name) / 'ledger.db'}")
    ledger.migrate()
    return ledger


@pytest.fixture(scope="module")
def inventory_world(tmp_path_factory):
    hops = [{"id": "erp-shopify", "from": "erp", "to": "shopify", "kind": "inventory", "mechanism": "event",
             "latency": "3s"},
            {"id": "erp-amazon", "from": "erp", "to": "amazon", "kind": "inventory", "mechanism": "poll",
             "every": "20s", "phase": "5s"},
            {"id": "erp-walmart", "from": "erp", "to": "walmart", "kind": "inventory", "mechanism": "event",
             "latency": "2s"}]
    defects = [{"hop": "erp-shopify", "kind": "min_delta", "units": 3},
               {"hop": "erp-amazon", "kind": "wrong_location", "reads": "DROPSHIP"},
               {"hop": "erp-walmart", "kind": "ignores_safety_stock"}]
    doc = world_doc(on_hand=200, dropship=25, integration={"hops": hops, "defects": defects},
                    events=_adjusts([1, 2, 3, 4]), notifications=NOTIFY_ALL)
    return run_chain_world(_ledger(tmp_path_factory, "inventory"), doc, sla=SLA, horizon_s=HORIZON, tick_s=TICK)


@pytest.fixture(scope="module")
def orders_world(tmp_path_factory):
    hops = [{"id": "erp-shopify", "from": "erp", "to": "shopify", "kind": "inventory", "mechanism": "event",
             "latency": "3s"},
            {"id": "erp-amazon", "from": "erp", "to": "amazon", "kind": "inventory", "mechanism": "event",
             "latency": "2s"},
            {"id": "shopify-erp", "from": "shopify", "to": "erp", "kind": "orders", "mechanism": "event",
             "latency": "5s"},
            {"id": "amazon-erp", "from": "amazon", "to": "erp", "kind": "orders", "mechanism": "poll", "every": "30s"},
            {"id": "walmart-erp", "from": "walmart", "to": "erp", "kind": "orders", "mechanism": "event",
             "latency": "4s"}]
    defects = [{"hop": "shopify-erp", "kind": "event_filter", "fires_on": "fulfillment"},
               {"hop": "amazon-erp", "kind": "expired_credentials", "from": "+90s"},
               {"hop": "walmart-erp", "kind": "drop", "fraction": 0.4, "seed": 4},
               {"hop": "erp-shopify", "kind": "lag", "extra": "40s", "from": "+60s", "until": "+150s"}]
    demand = {"orders_per_minute": 12, "channels": {"shopify": 0.34, "amazon": 0.33, "walmart": 0.33},
              "skus": "SKU-*", "max_quantity": 1, "seed": 11}
    doc = world_doc(on_hand=200, dropship=25, integration={"hops": hops, "defects": defects},
                    events=_adjusts([1, 2]), demand=demand, notifications=NOTIFY_ALL)
    return run_chain_world(_ledger(tmp_path_factory, "orders"), doc, sla=SLA, horizon_s=HORIZON, tick_s=TICK)


def _outcomes(run, hop_id: str) -> Counter:
    return Counter(e["outcome"] for e in run.log(hop_id))


def _detected_within_the_sla(run, hop: str) -> list:
    found = [(d, at) for d, at in run.found if d.hop == hop]
    for d, at in found:
        assert SLA < (d.detected_at - d.changed_at).total_seconds() <= SLA + 15, (d, at)
    return found


# -- inventory defects ----------------------------------------------------------------------------------------
def test_a_quantity_threshold_is_an_erp_trigger_rule(inventory_world):
    """min_delta: the small changes were never carried; the big ones were, each 3 s after it happened."""
    hop = inventory_world.hop("erp", "shopify", "inventory")
    skipped = _outcomes(inventory_world, "erp-shopify")["below_min_delta"]
    assert skipped >= 10
    assert (hop["state"], hop["diagnosis"], hop["mechanism"]) == ("broken", "L4_erp_config", "event")
    assert abs(hop["latency_s"]["p50"] - 3.0) <= 1.0 and hop["latency_s"]["max"] <= 4.0
    assert hop["missed"] == skipped and hop["followed"] == _outcomes(inventory_world, "erp-shopify")["carried"]
    assert _detected_within_the_sla(inventory_world, "erp->shopify")


def test_a_connector_reading_another_location_is_a_location_mapping(inventory_world):
    hop = inventory_world.hop("erp", "amazon", "inventory")
    assert (hop["state"], hop["diagnosis"]) == ("broken", "location_mapping")
    assert hop["followed"] <= 3 and hop["missed"] >= 30          # it shows DROPSHIP's 25 - 2 whatever the ERP does
    assert _detected_within_the_sla(inventory_world, "erp->amazon")


def test_a_feed_that_ignores_the_safety_stock_is_the_marketplace_listing(inventory_world):
    hop = inventory_world.hop("erp", "walmart", "inventory")
    assert (hop["state"], hop["diagnosis"]) == ("broken", "L2_marketplace_listing")
    assert hop["resolution_s"] == 5.0                             # Walmart is read: it notifies only at zero
    assert hop["exposure"]["units_at_risk"] >= 1                  # one unit per SKU more than it should offer
    assert _detected_within_the_sla(inventory_world, "erp->walmart")


# -- order defects and a lag ----------------------------------------------------------------------------------
def test_an_orders_hop_subscribed_to_the_wrong_event_is_the_connector(orders_world):
    hop = orders_world.hop("shopify", "erp", "orders")
    filtered = _outcomes(orders_world, "shopify-erp")["filtered"]
    assert filtered >= 5 and hop["followed"] == 0 and hop["missed"] == filtered
    assert (hop["state"], hop["diagnosis"]) == ("broken", "L3_connector")
    assert _detected_within_the_sla(orders_world, "shopify->erp")


def test_expired_credentials_break_the_hop_since_they_expired(orders_world):
    hop = orders_world.hop("amazon", "erp", "orders")
    log = orders_world.log("amazon-erp")
    assert Counter(e["outcome"] for e in log)["auth_error"] >= 3
    assert (hop["state"], hop["diagnosis"]) == ("broken", "L3_connector") and hop["followed"] >= 1
    expired = orders_world.started + timedelta(seconds=90)
    assert expired - timedelta(seconds=30) <= parse_ts(hop["since"]) <= expired + timedelta(seconds=30)
    assert _detected_within_the_sla(orders_world, "amazon->erp")


def test_dropped_orders_break_the_hop(orders_world):
    hop = orders_world.hop("walmart", "erp", "orders")
    outcomes = _outcomes(orders_world, "walmart-erp")
    assert outcomes["dropped"] >= 3 and outcomes["carried"] >= 3
    assert hop["missed"] == outcomes["dropped"] and hop["followed"] == outcomes["carried"]
    assert (hop["state"], hop["diagnosis"], hop["mechanism"]) == ("broken", "L3_connector", "event")
    assert abs(hop["latency_s"]["p50"] - 4.0) <= 1.0


def test_a_lagging_event_hop_is_slow_not_broken_and_still_an_event(orders_world):
    hop = orders_world.hop("erp", "shopify", "inventory")
    assert (hop["state"], hop["mechanism"], hop["missed"]) == ("slow", "event", 0)
    assert abs(hop["latency_s"]["p50"] - 3.0) <= 1.0 and 40 <= hop["latency_s"]["p95"] <= 45
    assert hop["followed"] == hop["changes_seen"]
    assert _detected_within_the_sla(orders_world, "erp->shopify")   # beyond the SLA while it lagged: a gap


def test_the_healthy_hop_beside_them_is_ok_and_has_no_gap(orders_world):
    """erp->amazon carries every ERP change 2 s later, while Amazon's own sales move its count in between."""
    hop = orders_world.hop("erp", "amazon", "inventory")
    assert (hop["state"], hop["mechanism"], hop["missed"], hop["diagnosis"]) == ("ok", "event", 0, None)
    assert abs(hop["latency_s"]["p50"] - 2.0) <= 1.0 and hop["latency_s"]["p95"] <= 3.0
    assert not [d for d, _ in orders_world.found if d.hop == "erp->amazon"]
