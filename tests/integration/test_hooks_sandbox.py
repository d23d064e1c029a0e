"""The four hooks against the sandbox over real HTTP: auth, paging, pacing, writes, read-back, audit."""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from omnirecon_contract import scenario as scenario_mod
from omnirecon.adapters import get_adapter
from omnirecon.hooks import hook_from_fields
from omnirecon.hooks.base import ApiError
from omnirecon_sandbox import Sandbox
from omnirecon.timeutil import utcnow

DEMO = Path(__file__).resolve().parents[2] / "include" / "scenarios" / "demo.yaml"
SCALE = 0.01
CONN = {"shopify": "omnirecon_shopify", "amazon": "omnirecon_amazon", "walmart": "omnirecon_walmart",
        "erp": "omnirecon_netsuite"}


@pytest.fixture
def sandbox():
    started = []

    def make(faults=(), generate=None, drop=(), mutate=None):
        doc = yaml.safe_load(DEMO.read_text())
        if mutate:
            mutate(doc)
        doc["faults"] = list(faults)
        if generate:
            doc["generate"] = generate
        for system in drop:
            doc.pop(system, None)
        sb = Sandbox(scenario_mod.from_dict(doc), time_scale=SCALE).start()
        started.append(sb)
        return sb
    yield make
    for sb in started:
        sb.stop()


def hook(sb, system, **kwargs):
    kwargs.setdefault("time_scale", SCALE)
    kwargs.setdefault("timeout", 5.0)
    return hook_from_fields(system, sb.connections()[CONN[system]], **kwargs)


def wait_until(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


# --- Shopify ---------------------------------------------------------------------------------------
def test_shopify_set_available_compare_and_swap_idempotency_and_read_back(sandbox):
    sb = sandbox()
    h = hook(sb, "shopify")
    audits = []
    h.audit = lambda **kw: audits.append(kw)
    variant = next(v for v in sb.state()["shopify"]["variants"] if v.get("tracked", True) and v.get("levels"))
    level = variant["levels"][0]
    pair = (variant["inventory_item_id"], level["location_id"])
    before = h.read_available([pair])
    assert before == {pair: level["available"]}

    change = {"inventory_item_id": pair[0], "location_id": pair[1], "quantity": level["available"] + 3,
              "change_from": level["available"]}
    result = h.set_available([change], "idem-key-1", reference_document_uri="gid://omnirecon/Correction/1")
    assert result["ok"] and result["user_errors"] == []
    assert h.read_available([pair]) == {pair: level["available"] + 3}

    replay = h.set_available([change], "idem-key-1", reference_document_uri="gid://omnirecon/Correction/1")
    assert replay["ok"]
    assert h.read_available([pair]) == {pair: level["available"] + 3}   # applied once

    stale = h.set_available([dict(change, quantity=1, change_from=level["available"])], "idem-key-2")
    assert not stale["ok"] and stale["user_errors"][0]["code"] == "CHANGE_FROM_QUANTITY_STALE"
    assert h.read_available([pair]) == {pair: level["available"] + 3}

    assert [a["outcome"] for a in audits] == ["ok", "ok", "rejected"]
    assert audits[0]["system"] == "shopify" and audits[0]["operation"] == "inventorySetQuantities"
    assert audits[0]["request"]["idempotency_key"] == "idem-key-1" and audits[0]["target"] == f"{pair[0]}@{pair[1]}"


def test_shopify_paged_listing_equals_bulk_export(sandbox):
    sb = sandbox()
    h = hook(sb, "shopify")
    h.page_size = 4
    bulk = h.fetch_variants()
    paged = h.fetch_variants(use_bulk=False)
    assert bulk["method"] == "bulk" and paged["method"] == "paged"
    shopify = get_adapter("shopify")
    assert shopify.normalize("inventory", bulk) == shopify.normalize("inventory", paged)
    assert h.core.calls_by_operation["productVariants"] >= 2


def test_shopify_orders_window(sandbox):
    sb = sandbox()
    h = hook(sb, "shopify")
    now = utcnow()
    orders = h.fetch_orders(now - timedelta(days=30), now + timedelta(minutes=1))
    assert {o["id"] for o in orders} == {o["id"] for o in sb.state()["shopify"]["orders"]}
    assert h.fetch_orders(now + timedelta(minutes=1), now + timedelta(minutes=2)) == []


def test_shopify_bad_token_is_a_clear_error(sandbox):
    sb = sandbox()
    fields = dict(sb.connections()["omnirecon_shopify"], password="shpat_wrong_token")
    h = hook_from_fields("shopify", fields, time_scale=SCALE)
    with pytest.raises(ApiError, match="HTTP 401") as e:
        h.fetch_variants(use_bulk=False)
    assert "shpat_wrong_token" not in str(e.value)


# --- Amazon ----------------------------------------------------------------------------------------
def test_amazon_lwa_token_is_cached_and_refreshed(sandbox):
    sb = sandbox()
    h = hook(sb, "amazon")
    first = h.access_token()
    assert h.access_token() == first and h.core.calls_by_operation["token"] == 1
    h._token_expires = time.monotonic() - 1          # past the refresh point (55 of 60 minutes)
    h.read_quantity(sb.state()["amazon"]["listings"][0]["sku"])
    assert h.core.calls_by_operation["token"] == 2


def test_amazon_patch_quantity_and_read_back(sandbox):
    sb = sandbox()
    h = hook(sb, "amazon")
    audits = []
    h.audit = lambda **kw: audits.append(kw)
    listing = sb.state()["amazon"]["listings"][0]
    assert h.read_quantity(listing["sku"]) == listing["quantity"]
    result = h.patch_quantity(listing["sku"], listing.get("product_type"), listing["quantity"] + 2)
    assert result["status"] == "ACCEPTED" and result["submission_id"]
    assert wait_until(lambda: h.read_quantity(listing["sku"]) == listing["quantity"] + 2)
    assert audits[0]["operation"] == "patchListingsItem" and audits[0]["outcome"] == "ok"
    assert h.read_quantity("NO-SUCH-SKU") is None


def test_amazon_listings_feed_round_trip(sandbox):
    sb = sandbox()
    h = hook(sb, "amazon")
    listing = sb.state()["amazon"]["listings"][0]
    message = {"sku": listing["sku"], "operationType": "PATCH", "productType": listing.get("product_type", "PRODUCT"),
               "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                            "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 3}]}]}
    feed_id = h.submit_listings_feed([message])
    result = wait_until(lambda: (r := h.feed_result(feed_id))["status"] in ("DONE", "FATAL", "CANCELLED") and r)
    assert result["status"] == "DONE"
    assert result["report"]["summary"]["messagesAccepted"] == 1
    assert h.read_quantity(listing["sku"]) == 3


def test_amazon_fba_paging_and_orders_with_items(sandbox):
    sb = sandbox(generate={"skus": 120, "locations": 1, "orders": 30, "drift_fraction": 0.0, "seed": 3},
                 drop=("shopify", "walmart"))
    h = hook(sb, "amazon")
    summaries = h.fba_summaries()
    assert len({s["sellerSku"] for s in summaries}) == len(sb.state()["amazon"].get("fba_inventory", []))
    now = utcnow()
    raw = h.fetch_orders(now - timedelta(days=60), now)
    assert raw["window_end"] <= utcnow() - timedelta(minutes=2)
    expected = {o["amazon_order_id"] for o in sb.state()["amazon"]["orders"]
                if o["last_update_date"] < raw["window_end"].strftime("%Y-%m-%dT%H:%M:%S")}
    assert {o["AmazonOrderId"] for o in raw["orders"]} == expected
    assert all("OrderItems" in o and o["OrderItems"] for o in raw["orders"])


# --- Walmart ---------------------------------------------------------------------------------------
def test_walmart_update_read_back_and_feed(sandbox):
    sb = sandbox()
    h = hook(sb, "walmart")
    audits = []
    h.audit = lambda **kw: audits.append(kw)
    item = sb.state()["walmart"]["items"][0]
    assert h.read_inventory(item["sku"], item["ship_node"]) == item["quantity"]
    h.update_inventory(item["sku"], item["ship_node"], item["quantity"] + 4)
    assert h.read_inventory(item["sku"], item["ship_node"]) == item["quantity"] + 4
    feed_id = h.submit_inventory_feed([{"sku": item["sku"], "ship_node": item["ship_node"], "amount": 2}])
    status = wait_until(lambda: (s := h.feed_status(feed_id))["status"] in ("PROCESSED", "ERROR") and s)
    assert status["status"] == "PROCESSED"
    assert h.read_inventory(item["sku"], item["ship_node"]) == 2
    assert [a["operation"] for a in audits] == ["updateInventoryForAnItem", "updateBulkInventory"]


def test_walmart_orders_cursor_paging_and_empty_window(sandbox):
    sb = sandbox(generate={"skus": 30, "locations": 1, "orders": 40, "drift_fraction": 0.0, "seed": 5},
                 drop=("shopify", "amazon"))
    h = hook(sb, "walmart")
    h.orders_page_size = 7
    now = utcnow()
    orders = h.fetch_orders(now - timedelta(days=60), now + timedelta(minutes=1))
    expected = {o["purchase_order_id"] for o in sb.state()["walmart"]["orders"]}
    assert [o["purchaseOrderId"] for o in orders].__len__() == len(expected)
    assert {o["purchaseOrderId"] for o in orders} == expected
    assert h.core.calls_by_operation["getAllOrders"] >= 2
    assert h.fetch_orders(now + timedelta(days=1), now + timedelta(days=2)) == []


def test_walmart_token_refreshed_once_on_401(sandbox):
    sb = sandbox([{"system": "walmart", "operation": "getMultiNodeInventoryForAllSkuAndAllShipNodes",
                   "kind": "expired_token", "count": 1}])
    h = hook(sb, "walmart")
    inventories = h.fetch_inventories()
    assert {i["sku"] for i in inventories} == {i["sku"] for i in sb.state()["walmart"]["items"]}
    assert h.core.calls_by_operation["token"] == 2


# --- NetSuite --------------------------------------------------------------------------------------
def test_netsuite_keyset_paging_goes_past_one_page(sandbox):
    sb = sandbox(generate={"skus": 1300, "locations": 1, "orders": 0, "drift_fraction": 0.0, "seed": 11},
                 drop=("shopify", "amazon", "walmart"))
    h = hook(sb, "erp")
    raw = h.fetch_inventory()
    state = sb.state()["erp"]
    assert len(raw["items"]) == len(state["items"]) > 1000
    assert len({r["id"] for r in raw["items"]}) == len(raw["items"])
    levels = sum(len(i.get("locations", [])) for i in state["items"])
    assert len(raw["levels"]) == levels
    assert len({(r["item"], r["location"]) for r in raw["levels"]}) == levels
    assert h.core.calls_by_operation["suiteql"] >= 4


def test_netsuite_orders_with_lines_and_fulfilments(sandbox):
    sb = sandbox()
    h = hook(sb, "erp")
    now = utcnow()
    raw = h.fetch_orders(now - timedelta(days=30), now + timedelta(minutes=1))
    records, quarantined = get_adapter("erp").normalize("orders", raw)
    state = sb.state()["erp"]["sales_orders"]
    assert quarantined == []
    assert {r.order_id for r in records} == {so["channel_order_id"] for so in state}
    by_id = {r.order_id: r for r in records}
    for so in state:
        got = by_id[so["channel_order_id"]]
        assert sorted((l["sku"], l["quantity"]) for l in got.lines) == \
            sorted((l["sku"], l["quantity"]) for l in so["lines"])
        assert (got.fulfilled_at is not None) == bool(so.get("fulfillments"))


def test_netsuite_wrong_token_secret_is_rejected_not_retried(sandbox):
    sb = sandbox()
    fields = sb.connections()["omnirecon_netsuite"]
    fields = dict(fields, extra=dict(fields["extra"], token_secret="not-the-secret"))
    h = hook_from_fields("erp", fields, time_scale=SCALE)
    with pytest.raises(ApiError, match="HTTP 401"):
        h.fetch_locations()
    assert h.api_calls == 1


def test_amazon_expired_fba_next_token_restarts_the_listing(sandbox):
    from omnirecon.hooks.base import TokenBucket
    def many_fba(doc):
        doc["amazon"]["fba_inventory"] = [
            {"sku": f"FBA-{n:03d}", "asin": f"B0FBA{n:05d}", "fulfillable_quantity": n, "reserved_quantity": 0,
             "inbound_quantity": 0, "last_updated": "-1h"} for n in range(120)]
    sb = sandbox(mutate=many_fba, drop=("shopify", "walmart"))
    h = hook(sb, "amazon")
    expected = len(sb.state()["amazon"]["fba_inventory"])
    assert expected > 50   # more than one page of 50
    class SlowBucket(TokenBucket):
        def set_rate(self, rate):   # ignore x-amzn-RateLimit-Limit: stay slow
            pass
    # pace the first pass so slowly that the 30 s token (0.3 s here) lapses between pages
    h._buckets["getInventorySummaries"] = SlowBucket(rate=1.0, burst=1)
    restarts = []

    def on_event(**kw):
        if "nextToken expired" in kw["message"]:
            restarts.append(kw)
            h._buckets["getInventorySummaries"] = TokenBucket(rate=200.0, burst=2)
    h.on_event = on_event
    summaries = h.fba_summaries()
    assert len(restarts) == 1
    assert len({s["sellerSku"] for s in summaries}) == len(summaries) == expected
