"""Expected channel quantities from the ERP (scenario.md formula), in-flight allowance."""
from datetime import datetime, timedelta, timezone

import pandas as pd

from omnirecon.checks import expected as ex
from omnirecon.config import settings_from_dict

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
SETTINGS = settings_from_dict({
    "locations": [{"erp": "WH-EAST", "shopify": "gid://shopify/Location/1", "walmart_ship_node": "N1", "amazon": "MFN"},
                  {"erp": "WH-WEST", "shopify": "gid://shopify/Location/1", "amazon": "MFN"},
                  {"erp": "FBA-US", "amazon": "FBA"}],
    "channels": {"shopify": {"safety_stock": 0}, "amazon": {"safety_stock": 2}, "walmart": {"safety_stock": 1}},
    "safety_stock_overrides": [{"sku": "B", "channel": "amazon", "units": 5}],
    "sku_aliases": [{"sku": "B", "channel": "walmart", "channel_sku": "B-6PK", "units_per_channel_unit": 6}],
    "bundles": [{"sku": "KIT", "components": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]}],
})


def erp(rows):
    return pd.DataFrame([{"sku": s, "location": l, "on_hand": oh, "committed": c, "available": oh - c,
                          "updated_at": pd.Timestamp(NOW)} for s, l, oh, c in rows])


def base_of(frame, channel, sku, loc):
    row = frame[(frame.channel == channel) & (frame.sku == sku) & (frame.channel_location == loc)]
    assert len(row) == 1, (channel, sku, loc)
    return int(row.iloc[0]["base"])


def test_sum_of_mapped_locations_minus_safety_stock_floored_at_zero():
    f = ex.expected_base(erp([("A", "WH-EAST", 10, 2), ("A", "WH-WEST", 5, 0), ("A", "DROP", 99, 0)]),
                         SETTINGS, ["shopify", "amazon", "walmart"])
    assert base_of(f, "shopify", "A", "gid://shopify/Location/1") == 13     # both mapped locations, DROP ignored
    assert base_of(f, "amazon", "A", "MFN") == 11                          # safety stock 2
    assert base_of(f, "walmart", "A", "N1") == 7                           # only WH-EAST on Walmart, safety 1
    low = ex.expected_base(erp([("A", "WH-EAST", 1, 0)]), SETTINGS, ["amazon"])
    assert base_of(low, "amazon", "A", "MFN") == 0                         # max(0, 1 - 2)


def test_override_fba_without_safety_stock_and_bundle_minimum():
    f = ex.expected_base(erp([("A", "WH-EAST", 9, 0), ("B", "WH-EAST", 20, 0), ("B", "FBA-US", 7, 1)]),
                         SETTINGS, ["shopify", "amazon"])
    assert base_of(f, "amazon", "B", "MFN") == 15                          # override 5, not the default 2
    assert base_of(f, "amazon", "B", "FBA") == 6                           # FBA: on_hand - committed, no safety
    assert bool(f[(f.sku == "B") & (f.channel_location == "FBA")]["is_fba"].iloc[0])
    assert base_of(f, "shopify", "KIT", "gid://shopify/Location/1") == 4   # min(9 // 2, 20 // 1)
    assert base_of(f, "amazon", "KIT", "MFN") == 3                         # min((9-2) // 2, (20-5) // 1)


def test_units_per_channel_unit_is_floored_through_the_alias():
    aliases = ex.alias_frame(SETTINGS)
    observed = ex.to_erp_sku(pd.DataFrame({"channel": ["walmart", "walmart"], "channel_sku": ["B-6PK", "A"]}), aliases)
    assert observed[["sku", "units"]].values.tolist() == [["B", 6], ["A", 1]]
    f = ex.expected_base(erp([("B", "WH-EAST", 20, 0)]), SETTINGS, ["walmart"])
    assert base_of(f, "walmart", "B", "N1") // 6 == 3                      # (20 - 1) // 6


def test_unposted_orders_split_in_flight_and_overdue_and_skip_known_or_cancelled():
    orders = pd.DataFrame([
        {"channel": "shopify", "order_id": "young", "status": "placed", "created_at": pd.Timestamp(NOW - timedelta(minutes=5)),
         "fulfillment_channel": None, "lines": [{"sku": "A", "quantity": 2}]},
        {"channel": "shopify", "order_id": "old", "status": "placed", "created_at": pd.Timestamp(NOW - timedelta(hours=2)),
         "fulfillment_channel": None, "lines": [{"sku": "A", "quantity": 1}]},
        {"channel": "shopify", "order_id": "posted", "status": "placed", "created_at": pd.Timestamp(NOW - timedelta(hours=2)),
         "fulfillment_channel": None, "lines": [{"sku": "A", "quantity": 7}]},
        {"channel": "shopify", "order_id": "gone", "status": "cancelled", "created_at": pd.Timestamp(NOW - timedelta(hours=2)),
         "fulfillment_channel": None, "lines": [{"sku": "A", "quantity": 9}]},
        {"channel": "amazon", "order_id": "afn", "status": "acknowledged", "created_at": pd.Timestamp(NOW - timedelta(minutes=5)),
         "fulfillment_channel": "AFN", "lines": [{"sku": "A", "quantity": 4}]},
    ])
    erp_orders = pd.DataFrame([{"channel": "shopify", "order_id": "posted"}])
    unposted = ex.unposted_orders(orders, erp_orders, NOW, ingest_minutes=30)
    assert sorted(unposted["order_id"]) == ["afn", "old", "young"]
    qty = ex.unposted_quantities(unposted, ex.alias_frame(SETTINGS)).set_index(["channel", "sku", "location_kind"])
    assert qty.loc[("shopify", "A", ""), ["in_flight_units", "overdue_units"]].tolist() == [2, 1]
    assert qty.loc[("amazon", "A", "FBA"), "in_flight_units"] == 4          # AFN orders come out of FBA stock
