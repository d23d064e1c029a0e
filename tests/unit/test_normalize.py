"""model/normalize.py: raw payloads -> canonical records or quarantine; counts always add up."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from omnirecon.model import normalize as nz


def _ok(result, n_in):
    records, quarantined = result
    assert len(records) + len(quarantined) == n_in
    return records, quarantined


# --- field parsers ---------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [(5, 5), ("7", 7), ("3.0", 3), (0, 0)])
def test_quantity_accepts_integers_and_integer_strings(value, expected):
    assert nz.quantity(value, "q") == expected


@pytest.mark.parametrize("value,reason", [("2.5", "not an integer"), (-1, "negative"), ("abc", "not an integer"),
                                          (True, "not an integer"), (None, "missing q"), ("nan", "not an integer")])
def test_quantity_rejects_bad_values_with_a_reason(value, reason):
    with pytest.raises(nz.RowError, match=reason):
        nz.quantity(value, "q")


def test_timestamp_parses_iso_epoch_ms_and_netsuite_dates():
    assert nz.timestamp("2026-03-01T10:00:00Z", "t") == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    assert nz.timestamp(1772359200000, "t") == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    assert nz.timestamp("1772359200000", "t") == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    assert nz.timestamp("3/1/2026 10:00 am", "t") == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    with pytest.raises(nz.RowError, match="not a timestamp"):
        nz.timestamp("yesterday-ish", "t")


# --- ERP -------------------------------------------------------------------------------------
ERP = {
    "items": [{"id": "501", "itemid": "TEE-BLK-M", "itemtype": "InvtPart", "isinactive": "F",
               "lastmodifieddate": "2026-03-01T07:00:00Z"},
              {"id": "502", "itemid": "MUG-WHT", "itemtype": "NonInvtPart", "isinactive": "T"},
              {"id": "503", "itemid": "ODD", "itemtype": "Spaceship", "isinactive": "F"}],
    "locations": [{"id": "1", "name": "WH-EAST"}, {"id": "2", "name": "FBA-US"}],
    "levels": [
        {"item": "501", "location": "1", "quantityonhand": "10", "quantitycommitted": "2",
         "lastmodifieddate": "2026-03-01T08:00:00Z"},
        {"item": "501", "location": "2", "quantityonhand": "40"},               # null columns omitted
        {"item": "501", "location": "1", "quantityonhand": "9"},                # duplicate key
        {"item": "999", "location": "1", "quantityonhand": "1"},                # unknown item
        {"item": "502", "location": "1", "quantityonhand": "-3"},               # negative
        {"item": "502", "location": "2", "quantityonhand": "1.5"},              # non-integer
        {"item": "502", "location": "2", "quantityonhand": "1", "lastmodifieddate": "garbage"},
    ],
}


def test_erp_inventory_computes_available_and_quarantines_bad_rows():
    records, quarantined = _ok(nz.erp_inventory(ERP), 7)
    assert len(records) == 2
    first = records[0]
    assert (first.sku, first.location, first.available, first.on_hand, first.committed) == ("TEE-BLK-M", "WH-EAST", 8, 10, 2)
    assert first.updated_at == datetime(2026, 3, 1, 8, tzinfo=timezone.utc)
    assert first.ref == {"item_id": "501", "location_id": "1"}
    second = records[1]
    assert (second.location, second.available, second.committed, second.on_order) == ("FBA-US", 40, 0, 0)
    assert second.updated_at == datetime(2026, 3, 1, 7, tzinfo=timezone.utc)   # falls back to the item's
    reasons = {q.row_index: q.reason for q in quarantined}
    assert reasons == {2: "duplicate of row 0", 3: "unknown item id 999", 4: "quantityonhand is negative: -3",
                       5: "quantityonhand is not an integer: '1.5'",
                       6: "lastmodifieddate is not a timestamp: 'garbage'"}
    assert quarantined[0].payload["quantityonhand"] == "9"


def test_erp_listings_state_type_and_unknown_type():
    records, quarantined = _ok(nz.erp_listings(ERP), 3)
    assert [(r.sku, r.state, r.item_type, r.is_inactive) for r in records] == [
        ("TEE-BLK-M", "active", "InvtPart", False), ("MUG-WHT", "inactive", "NonInvtPart", True)]
    assert quarantined[0].reason == "unknown NetSuite item type 'Spaceship'"


def test_erp_orders_joins_lines_shipments_and_maps_status():
    raw = {
        "orders": [
            {"id": "9001", "tranid": "SO9001", "type": "SalesOrd", "status": "B", "otherrefnum": "gid://shopify/Order/1",
             "custbody_omni_channel": "shopify", "createddate": "2026-03-01T08:00:00Z",
             "lastmodifieddate": "2026-03-01T09:00:00Z"},
            {"id": "9002", "tranid": "SO9002", "status": "H", "otherrefnum": "111-1", "custbody_omni_channel": "amazon",
             "createddate": "2026-03-01T08:00:00Z", "lastmodifieddate": "2026-03-01T09:00:00Z"},
            {"id": "9003", "tranid": "SO9003", "status": "Z", "otherrefnum": "X", "custbody_omni_channel": "walmart",
             "createddate": "2026-03-01T08:00:00Z", "lastmodifieddate": "2026-03-01T09:00:00Z"},
            {"id": "9004", "tranid": "SO9004", "status": "B", "custbody_omni_channel": "walmart",
             "createddate": "2026-03-01T08:00:00Z", "lastmodifieddate": "2026-03-01T09:00:00Z"},
            {"id": "9005", "tranid": "SO9005", "status": "B", "otherrefnum": "Y", "custbody_omni_channel": "ebay",
             "createddate": "2026-03-01T08:00:00Z", "lastmodifieddate": "2026-03-01T09:00:00Z"},
        ],
        "lines": [{"transaction": "9001", "item": None, "quantity": "0"},
                  {"transaction": "9001", "item": "501", "quantity": "-2", "quantityshiprecv": "-1"},
                  {"transaction": "9002", "item": "501", "quantity": "1"}],
        "shipments": [{"id": "7001", "type": "ItemShip", "createdfrom": "9001", "createddate": "2026-03-01T08:30:00Z"}],
        "items": [{"id": "501", "itemid": "TEE-BLK-M"}],
    }
    records, quarantined = _ok(nz.erp_orders(raw), 5)
    so1, so2 = records
    assert (so1.order_id, so1.channel, so1.status, so1.raw_status, so1.erp_ref) == (
        "gid://shopify/Order/1", "shopify", "acknowledged", "B", "SO9001")
    assert so1.lines == [{"sku": "TEE-BLK-M", "quantity": 2, "shipped": 1}]
    assert so1.fulfilled_at == datetime(2026, 3, 1, 8, 30, tzinfo=timezone.utc)
    assert so2.status == "cancelled"   # closed with nothing fulfilled
    reasons = sorted(q.reason for q in quarantined)
    assert reasons == ["missing otherrefnum (channel order id)",
                       "unknown NetSuite sales order status 'Z' (expected A..H)",
                       "unknown custbody_omni_channel 'ebay' (expected shopify, amazon or walmart)"]


# --- Shopify ---------------------------------------------------------------------------------
def _variant(n, sku, levels, tracked=True, policy="DENY"):
    return {"id": f"gid://shopify/ProductVariant/{n}", "sku": sku, "inventoryPolicy": policy,
            "inventoryItem": {"id": f"gid://shopify/InventoryItem/{n}", "tracked": tracked,
                              "inventoryLevels": {"nodes": levels}}}


def _level(loc, available, on_hand=None, at="2026-03-01T08:00:00Z"):
    qs = [{"name": "available", "quantity": available, "updatedAt": at}]
    if on_hand is not None:
        qs.append({"name": "on_hand", "quantity": on_hand, "updatedAt": at})
    return {"location": {"id": f"gid://shopify/Location/{loc}"}, "quantities": qs}


def test_shopify_inventory_one_row_per_level_with_write_refs():
    raw = {"variants": [
        _variant(1, "TEE-BLK-M", [_level(1001, 8, 10), _level(1002, -2, 0)], policy="CONTINUE"),
        _variant(2, "", [_level(1001, 1)]),                       # missing sku
        _variant(3, "MUG", [_level(1001, "x")]),                  # non-integer
        _variant(4, "MUG", [_level(1001, 3, at="not-a-date")]),  # bad timestamp
        _variant(5, "MUG", [_level(1001, 3, on_hand=-1)]),        # negative on_hand
        _variant(6, "MUG", [_level(1001, 4)]),
        _variant(7, "MUG", [_level(1001, 5)]),                    # duplicate (sku, location)
    ]}
    records, quarantined = _ok(nz.shopify_inventory(raw), 8)
    assert [(r.sku, r.location, r.available) for r in records] == [
        ("TEE-BLK-M", "gid://shopify/Location/1001", 8), ("TEE-BLK-M", "gid://shopify/Location/1002", -2),
        ("MUG", "gid://shopify/Location/1001", 4)]
    assert records[0].ref == {"inventory_item_id": "gid://shopify/InventoryItem/1",
                              "variant_id": "gid://shopify/ProductVariant/1", "tracked": True}
    assert records[0].on_hand == 10
    reasons = [q.reason for q in quarantined]
    assert reasons == ["missing sku", "available is not an integer: 'x'",
                       "available updatedAt is not a timestamp: 'not-a-date'", "on_hand is negative: -1",
                       "duplicate of row 6"]


def test_shopify_listings_untracked_and_unknown_policy():
    raw = {"variants": [_variant(1, "A", [], tracked=False), _variant(2, "B", [], policy="MAYBE"),
                        _variant(3, "C", [], policy="CONTINUE")]}
    records, quarantined = _ok(nz.shopify_listings(raw), 3)
    assert [(r.sku, r.state, r.inventory_policy, r.tracked) for r in records] == [
        ("A", "untracked", "DENY", False), ("C", "active", "CONTINUE", True)]
    assert quarantined[0].reason == "unknown inventoryPolicy 'MAYBE' (expected DENY or CONTINUE)"


def test_shopify_orders_status_cancel_and_unknown():
    base = {"createdAt": "2026-03-01T08:00:00Z", "updatedAt": "2026-03-01T09:00:00Z",
            "lineItems": {"nodes": [{"sku": "TEE-BLK-M", "quantity": 1}]}}
    raw = {"orders": [dict(base, id="gid://shopify/Order/1", displayFulfillmentStatus="PARTIALLY_FULFILLED"),
                      dict(base, id="gid://shopify/Order/2", displayFulfillmentStatus="UNFULFILLED",
                           cancelledAt="2026-03-01T08:30:00Z"),
                      dict(base, id="gid://shopify/Order/3", displayFulfillmentStatus="TELEPORTED"),
                      dict(base, id="gid://shopify/Order/4", displayFulfillmentStatus="FULFILLED", updatedAt=None)]}
    records, quarantined = _ok(nz.shopify_orders(raw), 4)
    assert [(r.order_id, r.status) for r in records] == [("gid://shopify/Order/1", "partially_shipped"),
                                                         ("gid://shopify/Order/2", "cancelled")]
    assert records[0].lines == [{"sku": "TEE-BLK-M", "quantity": 1, "shipped": None}]
    assert [q.reason for q in quarantined] == ["unknown Shopify displayFulfillmentStatus 'TELEPORTED'",
                                               "missing updatedAt"]


# --- Amazon ----------------------------------------------------------------------------------
AMAZON = {
    "report": [
        {"seller-sku": "TEE-BLK-M-FBM", "asin1": "B0DEMO0001", "quantity": "8", "status": "Active",
         "fulfillment-channel": "DEFAULT"},
        {"seller-sku": "MUG-FBM", "asin1": "B0DEMO0003", "quantity": "0", "status": "Inactive",
         "fulfillment-channel": "DEFAULT"},
        {"seller-sku": "HAT-FBM", "asin1": "B0DEMO0004", "quantity": "", "status": "Inactive"},
        {"seller-sku": "TEE-BLK-M-FBA", "asin1": "B0DEMO0002", "quantity": "", "status": "Active",
         "fulfillment-channel": "AMAZON_NA"},
        {"seller-sku": "ODD", "asin1": "B0", "quantity": "1", "status": "Vanished"},
    ],
    "fba": [{"sellerSku": "TEE-BLK-M-FBA", "asin": "B0DEMO0002", "fnSku": "X001", "totalQuantity": 42,
             "lastUpdatedTime": "2026-03-01T09:00:00Z",
             "inventoryDetails": {"fulfillableQuantity": 40, "reservedQuantity": {"totalReservedQuantity": 2},
                                  "inboundWorkingQuantity": 1, "inboundShippedQuantity": 0,
                                  "inboundReceivingQuantity": 0}},
            {"sellerSku": "NO-DETAILS", "asin": "B0"}],
    "details": {
        "MUG-FBM": {"sku": "MUG-FBM", "summaries": [{"productType": "MUG", "status": ["DISCOVERABLE"]}],
                    "issues": [{"code": "90220", "severity": "ERROR", "message": "missing image"}]},
        "HAT-FBM": {"sku": "HAT-FBM", "summaries": [{"productType": "HAT", "status": ["DISCOVERABLE"]}],
                    "issues": [{"code": "1", "severity": "WARNING", "message": "minor"}]},
        "ODD": None,
    },
}


def test_amazon_inventory_mfn_from_report_and_fba_from_summaries():
    # input rows: 4 merchant-fulfilled report rows (the AMAZON_NA row is FBA stock) + 2 FBA summaries
    records, quarantined = _ok(nz.amazon_inventory(AMAZON), 6)
    by_key = {(r.sku, r.location): r for r in records}
    mfn = by_key[("TEE-BLK-M-FBM", "MFN")]
    assert mfn.available == 8 and mfn.ref["asin"] == "B0DEMO0001"
    assert by_key[("MUG-FBM", "MFN")].ref["product_type"] == "MUG"
    fba = by_key[("TEE-BLK-M-FBA", "FBA")]
    assert (fba.available, fba.reserved, fba.on_hand, fba.on_order) == (40, 2, 42, 1)
    assert fba.updated_at == datetime(2026, 3, 1, 9, tzinfo=timezone.utc)
    assert sorted(q.reason for q in quarantined) == ["missing inventoryDetails (request details=true)",
                                                     "missing quantity"]


def test_amazon_listing_states_from_report_summaries_and_issues():
    records, quarantined = _ok(nz.amazon_listings(AMAZON), 5)
    states = {r.sku: r.state for r in records}
    assert states == {"TEE-BLK-M-FBM": "active", "MUG-FBM": "suppressed", "HAT-FBM": "inactive",
                      "TEE-BLK-M-FBA": "active"}
    mug = next(r for r in records if r.sku == "MUG-FBM")
    assert mug.issues[0]["code"] == "90220" and mug.ref["product_type"] == "MUG"
    assert quarantined[0].reason == "unknown listing report status 'Vanished'"


def test_amazon_inactive_but_buyable_summary_is_active():
    state, _ = nz.amazon_listing_state("inactive", {"summaries": [{"status": ["BUYABLE", "DISCOVERABLE"]}]})
    assert state == "active"


def test_amazon_orders():
    raw = {"orders": [
        {"AmazonOrderId": "111-1", "OrderStatus": "Unshipped", "PurchaseDate": "2026-03-01T08:00:00Z",
         "LastUpdateDate": "2026-03-01T09:00:00Z", "FulfillmentChannel": "MFN",
         "OrderItems": [{"SellerSKU": "TEE-BLK-M-FBM", "QuantityOrdered": 2, "QuantityShipped": 0}]},
        {"AmazonOrderId": "111-2", "OrderStatus": "Lost", "PurchaseDate": "2026-03-01T08:00:00Z",
         "LastUpdateDate": "2026-03-01T09:00:00Z"},
        {"AmazonOrderId": "111-1", "OrderStatus": "Shipped", "PurchaseDate": "2026-03-01T08:00:00Z",
         "LastUpdateDate": "2026-03-01T09:00:00Z"},
    ]}
    records, quarantined = _ok(nz.amazon_orders(raw), 3)
    assert (records[0].status, records[0].fulfillment_channel, records[0].lines) == (
        "acknowledged", "MFN", [{"sku": "TEE-BLK-M-FBM", "quantity": 2, "shipped": 0}])
    assert [q.reason for q in quarantined] == ["unknown Amazon OrderStatus 'Lost'", "duplicate of row 0"]


# --- Walmart ---------------------------------------------------------------------------------
def test_walmart_inventory_one_row_per_node():
    raw = {"inventories": [
        {"sku": "TEE-BLK-M", "nodes": [
            {"shipNode": "10001", "inputQty": {"unit": "EACH", "amount": 8},
             "availToSellQty": {"unit": "EACH", "amount": 7}, "reservedQty": {"unit": "EACH", "amount": 1}},
            {"shipNode": "10002", "inputQty": {"unit": "EACH", "amount": -1}}]},
        {"sku": "MUG", "nodes": []},
        {"nodes": [{"shipNode": "10001", "inputQty": {"amount": 1}}]},
    ]}
    records, quarantined = _ok(nz.walmart_inventory(raw), 4)
    assert [(r.sku, r.location, r.available, r.reserved) for r in records] == [("TEE-BLK-M", "10001", 8, 1)]
    assert [q.reason for q in quarantined] == ["inputQty.amount is negative: -1", "inventory entry has no ship nodes",
                                               "missing sku"]


@pytest.mark.parametrize("published,lifecycle,state", [
    ("PUBLISHED", "ACTIVE", "active"), ("UNPUBLISHED", "ACTIVE", "unpublished"),
    ("SYSTEM_PROBLEM", "ACTIVE", "unpublished"), ("PUBLISHED", "RETIRED", "inactive"),
    ("PUBLISHED", "ARCHIVED", "inactive")])
def test_walmart_listing_states(published, lifecycle, state):
    records, _ = nz.walmart_listings({"items": [{"sku": "A", "publishedStatus": published,
                                                 "lifecycleStatus": lifecycle}]})
    assert records[0].state == state


def test_walmart_listing_unknown_status_quarantined():
    records, quarantined = _ok(nz.walmart_listings({"items": [{"sku": "A", "publishedStatus": "GLOWING"}]}), 1)
    assert quarantined[0].reason == "unknown publishedStatus 'GLOWING'"


def test_walmart_orders_roll_up_lines():
    def line(n, status, qty="1", sku="TEE-BLK-M"):
        return {"lineNumber": str(n), "item": {"sku": sku}, "orderLineQuantity": {"unitOfMeasurement": "EACH", "amount": qty},
                "statusDate": 1772359200000,
                "orderLineStatuses": {"orderLineStatus": [{"status": status, "statusQuantity": {"amount": qty}}]}}
    raw = {"orders": [
        {"purchaseOrderId": "1", "orderDate": 1772355600000, "orderLines": {"orderLine": [line(1, "Shipped"), line(2, "Created")]}},
        {"purchaseOrderId": "2", "orderDate": 1772355600000, "orderLines": {"orderLine": [line(1, "Eaten")]}},
        {"purchaseOrderId": "3", "orderDate": "soon", "orderLines": {"orderLine": [line(1, "Created")]}},
        {"purchaseOrderId": "4", "orderDate": 1772355600000, "orderLines": {"orderLine": [line(1, "Delivered", qty="2")]}},
    ]}
    records, quarantined = _ok(nz.walmart_orders(raw), 4)
    assert [(r.order_id, r.status) for r in records] == [("1", "partially_shipped"), ("4", "delivered")]
    assert records[0].lines == [{"sku": "TEE-BLK-M", "quantity": 1, "shipped": 1},
                                {"sku": "TEE-BLK-M", "quantity": 1, "shipped": 0}]
    assert records[0].updated_at == datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    assert [q.reason for q in quarantined] == ["unknown Walmart order line status 'Eaten'",
                                               "orderDate is not a timestamp: 'soon'"]


def test_dispatch_and_high_water():
    from omnirecon.adapters import get_adapter
    records, _ = get_adapter("erp").normalize("inventory", ERP)
    assert nz.high_water(records) == datetime(2026, 3, 1, 8, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="unknown system"):
        get_adapter("ebay")
    with pytest.raises(ValueError, match="no normaliser"):
        get_adapter("erp").normalize("returns", {})


def test_rows_that_are_not_objects_are_quarantined_not_dropped():
    records, quarantined = _ok(nz.walmart_listings({"items": ["oops", {"sku": "A", "publishedStatus": "PUBLISHED"}]}), 2)
    assert quarantined[0].reason == "row is not an object: str"
