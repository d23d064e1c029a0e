"""Shopify Admin GraphQL imitation over real HTTP."""
import base64
import json

import pytest
import requests

from tests.support.polling import wait_for
from tests.support.sandbox_http import gql, scenario_doc
from omnirecon_sandbox import Sandbox
from omnirecon_sandbox.clock import ManualClock
from omnirecon_contract.scenario import from_dict

VARIANTS = """query($first: Int!, $after: String) { productVariants(first: $first, after: $after) {
  pageInfo { hasNextPage endCursor } edges { cursor node { id sku } } nodes { id sku inventoryPolicy
  inventoryItem { id tracked inventoryLevels(first: 5) { nodes { id location { id name }
  quantities(names: ["available", "on_hand", "committed"]) { name quantity updatedAt } } } } } } }"""

SET = """mutation($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id reason referenceDocumentUri changes { name delta quantityAfterChange item { id } location { id } } }
    userErrors { code field message } } }"""


@pytest.fixture()
def sb():
    with Sandbox(from_dict(scenario_doc()), clock=ManualClock()) as s:
        yield s                                         # time moves only when a test advances s.clock


def _set_input(qty, change_from, item="gid://shopify/InventoryItem/1", loc="gid://shopify/Location/1001", **kw):
    row = {"inventoryItemId": item, "locationId": loc, "quantity": qty, "changeFromQuantity": change_from}
    return dict({"name": "available", "reason": "correction", "referenceDocumentUri": "gid://omnirecon/Correction/1",
                 "quantities": [row]}, **kw)


def test_variants_paging_with_opaque_cursors_and_levels(sb):
    seen, after, pages = [], None, 0
    while True:
        body = gql(sb, VARIANTS, {"first": 2, "after": after}).json()
        conn = body["data"]["productVariants"]
        assert [e["node"]["id"] for e in conn["edges"]] == [n["id"] for n in conn["nodes"]]
        seen += [n["sku"] for n in conn["nodes"]]
        pages += 1
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
        base64.urlsafe_b64decode(after)          # opaque base64
    assert seen == ["TEE-BLK-M", "MUG-WHT", "SOCK-RED"] and pages == 2
    first = gql(sb, VARIANTS, {"first": 1}).json()["data"]["productVariants"]["nodes"][0]
    level = first["inventoryItem"]["inventoryLevels"]["nodes"][0]
    assert level["location"] == {"id": "gid://shopify/Location/1001", "name": "East Warehouse"}
    assert {q["name"]: q["quantity"] for q in level["quantities"]} == {"available": 8, "on_hand": 10, "committed": 2}
    cost = gql(sb, VARIANTS, {"first": 1}).json()["extensions"]["cost"]
    assert cost["requestedQueryCost"] >= cost["actualQueryCost"] > 0
    assert cost["throttleStatus"]["maximumAvailable"] == 1000.0 and cost["throttleStatus"]["restoreRate"] == 100.0


def test_first_over_250_and_missing_first_are_rejected(sb):
    body = gql(sb, "{ productVariants(first: 251) { nodes { id } } }").json()
    assert body["errors"] and body["data"] is None
    body = gql(sb, "{ locations { nodes { id } } }").json()
    assert "first or last" in body["errors"][0]["message"]


def test_invalid_field_fails_validation_and_bad_token_is_401(sb):
    body = gql(sb, "{ productVariants(first: 1) { nodes { notAField } } }").json()
    assert "notAField" in body["errors"][0]["message"]
    r = gql(sb, "{ locations(first: 5) { nodes { id } } }", token="wrong")
    assert r.status_code == 401 and "Invalid API key or access token" in r.json()["errors"]


def test_search_query_inventory_items_and_locations(sb):
    body = gql(sb, '{ productVariants(first: 10, query: "sku:MUG-WHT") { nodes { sku } } '
                   'inventoryItems(first: 10, query: "sku:TEE-BLK-M") { nodes { id sku tracked } } '
                   'locations(first: 10) { nodes { id name isActive } } }').json()["data"]
    assert [n["sku"] for n in body["productVariants"]["nodes"]] == ["MUG-WHT"]
    assert body["inventoryItems"]["nodes"] == [{"id": "gid://shopify/InventoryItem/1", "sku": "TEE-BLK-M", "tracked": True}]
    assert [l["name"] for l in body["locations"]["nodes"]] == ["East Warehouse"]   # inactive excluded by default


def test_orders_window_sorted_by_updated_at(sb):
    state = sb.state()["shopify"]["orders"]
    lo = state[0]["updated_at"]            # -1h
    q = ('query($q: String!) { orders(first: 10, query: $q, sortKey: UPDATED_AT) { pageInfo { hasNextPage endCursor } '
         'nodes { id name createdAt updatedAt cancelledAt displayFulfillmentStatus displayFinancialStatus '
         'lineItems(first: 10) { nodes { sku quantity } } fulfillments { id status createdAt } } } }')
    nodes = gql(sb, q, {"q": f"updated_at:>='{lo}' AND updated_at:<'2999-01-01T00:00:00Z'"}).json()["data"]["orders"]["nodes"]
    assert [n["name"] for n in nodes] == ["#1001", "#1003"]
    assert nodes[1]["cancelledAt"] and nodes[0]["lineItems"]["nodes"] == [{"sku": "TEE-BLK-M", "quantity": 1}]
    old = gql(sb, q, {"q": f"updated_at:<'{lo}'"}).json()["data"]["orders"]["nodes"]
    assert [n["name"] for n in old] == ["#1002"] and old[0]["fulfillments"][0]["status"] == "SUCCESS"


def test_set_quantities_applies_and_replays_idempotently(sb):
    r = gql(sb, SET, {"input": _set_input(3, 8), "key": "k-1"}).json()
    payload = r["data"]["inventorySetQuantities"]
    assert payload["userErrors"] == []
    change = next(c for c in payload["inventoryAdjustmentGroup"]["changes"] if c["name"] == "available")
    assert change["delta"] == -5 and change["quantityAfterChange"] == 3
    level = sb.state()["shopify"]["variants"][0]["levels"][0]
    assert level["available"] == 3 and level["on_hand"] == 5
    again = gql(sb, SET, {"input": _set_input(3, 8), "key": "k-1"}).json()["data"]["inventorySetQuantities"]
    assert again["inventoryAdjustmentGroup"]["id"] == payload["inventoryAdjustmentGroup"]["id"]
    assert sb.state()["shopify"]["variants"][0]["levels"][0]["available"] == 3
    mismatch = gql(sb, SET, {"input": _set_input(4, 3), "key": "k-1"}).json()["data"]["inventorySetQuantities"]
    assert mismatch["userErrors"][0]["code"] == "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
    writes = [w for w in sb.writes() if w["operation"] == "inventorySetQuantities"]
    assert [w["applied"] for w in writes] == [True, False]
    read = gql(sb, '{ inventoryLevel(id: "gid://shopify/InventoryLevel/1001?inventory_item_id=1") { quantities(names: ["available"]) { quantity } } '
                   'inventoryItem(id: "gid://shopify/InventoryItem/1") { inventoryLevel(locationId: "gid://shopify/Location/1001") { quantities(names: ["available"]) { quantity } } } }').json()["data"]
    assert read["inventoryLevel"]["quantities"][0]["quantity"] == 3
    assert read["inventoryItem"]["inventoryLevel"]["quantities"][0]["quantity"] == 3


@pytest.mark.parametrize("change, code", [
    (dict(reason="because"), "INVALID_REASON"),
    (dict(name="reserved"), "INVALID_NAME"),
    (dict(qty=-1), "INVALID_QUANTITY_NEGATIVE"),
    (dict(change_from=7), "CHANGE_FROM_QUANTITY_STALE"),
    (dict(item="gid://shopify/InventoryItem/999"), "INVALID_INVENTORY_ITEM"),
    (dict(loc="gid://shopify/Location/4242"), "INVALID_LOCATION"),
    (dict(loc="gid://shopify/Location/1002"), "ITEM_NOT_STOCKED_AT_LOCATION"),
])
def test_set_quantities_user_errors_change_nothing(sb, change, code):
    args = {"qty": 1, "change_from": 8}
    args.update({k: change.pop(k) for k in list(change) if k in ("qty", "change_from", "item", "loc")})
    inp = _set_input(args["qty"], args["change_from"], **{k: v for k, v in args.items() if k in ("item", "loc")}, **change)
    payload = gql(sb, SET, {"input": inp, "key": f"k-{code}"}).json()["data"]["inventorySetQuantities"]
    assert payload["inventoryAdjustmentGroup"] is None
    assert payload["userErrors"][0]["code"] == code and payload["userErrors"][0]["field"][0] == "input"
    assert sb.state()["shopify"]["variants"][0]["levels"][0]["available"] == 8


def test_idempotent_directive_mandatory_from_2026_04(sb):
    q = SET.replace(" @idempotent(key: $key)", "").replace(", $key: String!", "")
    body = gql(sb, q, {"input": _set_input(2, 8)}, version="2026-04").json()
    assert "@idempotent" in body["errors"][0]["message"]
    assert sb.state()["shopify"]["variants"][0]["levels"][0]["available"] == 8


def test_throttled_when_bucket_is_empty_and_max_cost():
    sc = from_dict(scenario_doc())
    with Sandbox(sc, time_scale=1.0, options={"shopify_bucket_size": 50, "shopify_restore_rate": 1}) as sb:
        q = "{ productVariants(first: 24) { nodes { id inventoryItem { id } } } }"   # 2 + 24 * 2 = 50 points
        first = gql(sb, q).json()
        assert "data" in first
        second = gql(sb, q)
        assert second.status_code == 200
        body = second.json()
        assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
        assert body["extensions"]["cost"]["throttleStatus"]["maximumAvailable"] == 50
        big = gql(sb, "{ productVariants(first: 250) { nodes { inventoryItem { inventoryLevels(first: 250) { nodes { id } } } } } }").json()
        assert big["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


def test_bulk_operation_lifecycle_and_jsonl(sb):
    run = """mutation { bulkOperationRunQuery(query: \"\"\"{ productVariants { edges { node { id sku
      inventoryItem { id inventoryLevels { edges { node { id location { id } quantities(names: ["available"]) { name quantity } } } } } } } } }\"\"\") {
      bulkOperation { id status } userErrors { field message code } } }"""
    payload = gql(sb, run).json()["data"]["bulkOperationRunQuery"]
    assert payload["userErrors"] == [] and payload["bulkOperation"]["status"] == "CREATED"
    op_id = payload["bulkOperation"]["id"]

    def poll():
        op = gql(sb, 'query($id: ID!) { bulkOperation(id: $id) { id status objectCount rootObjectCount url } '
                     'currentBulkOperation { id status } }', {"id": op_id}).json()["data"]
        assert op["currentBulkOperation"]["id"] == op_id
        return op
    sb.clock.advance(sb.options.shopify_bulk_seconds / 2)
    assert poll()["bulkOperation"]["status"] == "RUNNING"
    sb.clock.advance(sb.options.shopify_bulk_seconds / 2)
    # the file is built on a thread of its own: COMPLETED once it is written
    op = wait_for(lambda: (got := poll())["bulkOperation"]["status"] == "COMPLETED" and got, 10, "bulk COMPLETED")
    lines = [json.loads(l) for l in requests.get(op["bulkOperation"]["url"], timeout=10).text.splitlines()]
    variants = [l for l in lines if "__parentId" not in l]
    levels = [l for l in lines if "__parentId" in l]
    assert [v["sku"] for v in variants] == ["TEE-BLK-M", "MUG-WHT", "SOCK-RED"]
    assert {l["__parentId"] for l in levels} == {"gid://shopify/ProductVariant/1", "gid://shopify/ProductVariant/2"}
    assert op["bulkOperation"]["objectCount"] == str(len(lines)) and op["bulkOperation"]["rootObjectCount"] == "3"
    tampered = op["bulkOperation"]["url"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert requests.get(tampered, timeout=10).status_code == 403


def test_bulk_concurrency_limits():
    with Sandbox(from_dict(scenario_doc()), clock=ManualClock()) as sb:    # time stands still: operations stay open
        run = 'mutation { bulkOperationRunQuery(query: "{ productVariants { edges { node { id } } } }") { bulkOperation { id } userErrors { code } } }'
        codes = [gql(sb, run).json()["data"]["bulkOperationRunQuery"]["userErrors"] for _ in range(6)]
        assert codes[:5] == [[]] * 5 and codes[5] == [{"code": "LIMIT_REACHED"}]
        old = gql(sb, run, version="2025-10").json()["data"]["bulkOperationRunQuery"]["userErrors"]
        assert old == [{"code": "OPERATION_IN_PROGRESS"}]
        bad = gql(sb, 'mutation { bulkOperationRunQuery(query: "{ location(id: \\"x\\") { id } }") { userErrors { code } } }').json()
        assert bad["data"]["bulkOperationRunQuery"]["userErrors"] == [{"code": "INVALID"}]


BULK_PRODUCTS = ('mutation { bulkOperationRunQuery(query: """{ products { edges { node { id variants { edges { node '
                 '{ id sku inventoryItem { id } } } } } } } }""") { bulkOperation { id status } userErrors { field message code } } }')


def test_products_with_variants_and_the_documented_bulk_query(sb):
    page = gql(sb, "{ products(first: 2) { nodes { id title variants(first: 5) { nodes { sku product { id } } } } "
                   "pageInfo { hasNextPage } } }").json()["data"]["products"]
    assert [p["title"] for p in page["nodes"]] == ["TEE-BLK-M", "MUG-WHT"] and page["pageInfo"]["hasNextPage"]
    first = page["nodes"][0]
    assert first["variants"]["nodes"] == [{"sku": "TEE-BLK-M", "product": {"id": first["id"]}}]
    # the bulk query of reference/channel-apis.md §1.8, verbatim
    payload = gql(sb, BULK_PRODUCTS).json()["data"]["bulkOperationRunQuery"]
    assert payload["userErrors"] == []
    sb.clock.advance(sb.options.shopify_bulk_seconds)
    op = wait_for(lambda: (got := gql(sb, 'query($id: ID!) { bulkOperation(id: $id) { status url } }',
                                      {"id": payload["bulkOperation"]["id"]}).json()["data"]["bulkOperation"])
                  ["status"] == "COMPLETED" and got, 10, "bulk COMPLETED")
    lines = [json.loads(l) for l in requests.get(op["url"], timeout=10).text.splitlines()]
    products = [l["id"] for l in lines if "__parentId" not in l]
    variants = [l for l in lines if "__parentId" in l]
    assert len(products) == 3 and {v["__parentId"] for v in variants} == set(products)
    assert [v["sku"] for v in variants] == ["TEE-BLK-M", "MUG-WHT", "SOCK-RED"]


def test_admin_objects_as_ordinary_apps_query_them(sb):
    shop = gql(sb, "{ shop { id name myshopifyDomain currencyCode ianaTimezone plan { publicDisplayName shopifyPlus } "
                   "primaryDomain { host url } } }").json()["data"]["shop"]
    assert shop["myshopifyDomain"] == "demo-store.myshopify.com" and shop["currencyCode"] == "USD"
    assert shop["plan"] == {"publicDisplayName": "Basic", "shopifyPlus": False} and shop["primaryDomain"]["host"] == shop["myshopifyDomain"]
    node = gql(sb, '{ node(id: "gid://shopify/ProductVariant/1") { id __typename ... on ProductVariant { sku price '
                   'barcode availableForSale selectedOptions { name value } inventoryItem { requiresShipping } } } }'
               ).json()["data"]["node"]
    assert node["__typename"] == "ProductVariant" and node["sku"] == "TEE-BLK-M" and node["price"] == "19.99"
    assert node["barcode"] is None and node["availableForSale"] and node["inventoryItem"]["requiresShipping"]
    nodes = gql(sb, '{ nodes(ids: ["gid://shopify/Location/1001", "gid://shopify/Location/1002", "gid://shopify/Order/999", '
                    '"gid://shopify/InventoryLevel/1001?inventory_item_id=1"]) { __typename id '
                    '... on Location { isActive fulfillsOnlineOrders shipsInventory address { formatted city countryCode } } '
                    '... on InventoryLevel { canDeactivate quantities(names: ["available"]) { quantity } } } }'
                ).json()["data"]["nodes"]
    assert [n and n["__typename"] for n in nodes] == ["Location", "Location", None, "InventoryLevel"]
    assert nodes[0]["fulfillsOnlineOrders"] is True and nodes[1]["fulfillsOnlineOrders"] is False
    assert nodes[0]["address"]["formatted"] == [] and nodes[3]["quantities"] == [{"quantity": 8}]
    order = gql(sb, '{ orders(first: 5, sortKey: ID) { nodes { id name tags test currencyCode '
                    'totalPriceSet { shopMoney { amount currencyCode } } lineItems(first: 5) { nodes { id sku '
                    'variant { id sku } product { id } originalUnitPriceSet { shopMoney { amount } } } } '
                    'fulfillments { id name totalQuantity order { id } } } } }').json()["data"]["orders"]["nodes"][0]
    line = order["lineItems"]["nodes"][0]
    assert line["variant"]["sku"] == line["sku"] and line["product"]["id"].startswith("gid://shopify/Product/")
    assert order["totalPriceSet"]["shopMoney"]["currencyCode"] == "USD" and order["tags"] == [] and order["test"] is False
    again = gql(sb, 'query($id: ID!) { node(id: $id) { ... on LineItem { sku } } }', {"id": line["id"]}).json()
    assert again["data"]["node"] == {"sku": line["sku"]}


def test_bulk_operation_polled_through_node(sb):
    """shopify.dev's way to poll a bulk operation: node(id:) ... on BulkOperation."""
    run = gql(sb, BULK_PRODUCTS).json()["data"]["bulkOperationRunQuery"]["bulkOperation"]
    poll = 'query($id: ID!) { node(id: $id) { ... on BulkOperation { id status objectCount url } } }'
    assert gql(sb, poll, {"id": run["id"]}).json()["data"]["node"]["status"] == "CREATED"
    sb.clock.advance(sb.options.shopify_bulk_seconds)
    done = wait_for(lambda: (got := gql(sb, poll, {"id": run["id"]}).json()["data"]["node"])["status"] == "COMPLETED"
                    and got, 10, "bulk COMPLETED")
    assert done["id"] == run["id"] and done["url"] and int(done["objectCount"]) == 6


@pytest.mark.parametrize("query, message, path, extensions", [
    ("{ nope }", "Field 'nope' doesn't exist on type 'QueryRoot'", ["query", "nope"],
     {"code": "undefinedField", "typeName": "QueryRoot", "fieldName": "nope"}),
    ("query Stock { shop { name inventory } }", "Field 'inventory' doesn't exist on type 'Shop'",
     ["query Stock", "shop", "inventory"], {"code": "undefinedField", "typeName": "Shop", "fieldName": "inventory"}),
    ("{ shop(first: 1) { name } }", "Field 'shop' doesn't accept argument 'first'", ["query", "shop", "first"],
     {"code": "argumentNotAccepted", "name": "shop", "typeName": "Field", "argumentName": "first"}),
    ("{ product { id } }", "Field 'product' is missing required arguments: id", ["query", "product"],
     {"code": "missingRequiredArguments", "className": "Field", "name": "product", "arguments": "id"}),
    ("{ shop }", "Field must have selections (field 'shop' returns Shop! but has no selections. Did you mean 'shop { ... }'?)",
     ["query", "shop"], {"code": "selectionMismatch", "nodeName": "field 'shop'", "typeName": "Shop!"}),
])
def test_validation_errors_speak_shopify(sb, query, message, path, extensions):
    r = gql(sb, query)
    assert r.status_code == 200 and "data" not in r.json()
    (error,) = r.json()["errors"]
    assert error["message"] == message and error["path"] == path and error["extensions"] == extensions
    assert error["locations"] and set(error["locations"][0]) == {"line", "column"}
