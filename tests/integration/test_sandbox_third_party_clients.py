"""Clients written by others against the real Amazon and Shopify APIs work against the sandbox unchanged,
apart from their base URL and credentials: saleweaver's python-amazon-sp-api and Shopify's ShopifyAPI."""
from __future__ import annotations

import json

import pytest
import yaml

from omnirecon_contract import scenario
from omnirecon_sandbox import Sandbox
from omnirecon_sandbox.clock import ManualClock


@pytest.fixture(scope="module")
def sandbox(demo_scenario_path):
    sc = scenario.from_dict(yaml.safe_load(demo_scenario_path.read_text()))
    with Sandbox(sc, clock=ManualClock()) as sb:            # time moves when a test advances sb.clock
        yield sb


def test_python_amazon_sp_api(sandbox):
    from sp_api.api import ListingsItems, Orders, Reports
    from sp_api.auth import AccessTokenClient
    from sp_api.base import Marketplaces

    conn = sandbox.connections()["omnirecon_amazon"]
    base = sandbox.urls["amazon"]

    class LocalLWA(AccessTokenClient):       # the library's own extension point for the LWA host
        scheme = "http://"
        host = base.split("://", 1)[1]

    creds = {"lwa_app_id": conn["login"], "lwa_client_secret": conn["password"],
             "refresh_token": conn["extra"]["refresh_token"]}

    def client(cls):
        c = cls(credentials=creds, marketplace=Marketplaces.US, auth_token_client_class=LocalLWA)
        c.endpoint = base                     # the base URL
        return c

    orders = client(Orders).get_orders(LastUpdatedAfter="2020-01-01T00:00:00Z").payload["Orders"]
    assert {o["AmazonOrderId"] for o in orders} == {"111-0000000-0000001", "111-0000000-0000003"}
    items = client(Orders).get_order_items("111-0000000-0000003").payload["OrderItems"]
    assert items[0]["SellerSKU"] == "BOOK-XL" and items[0]["QuantityOrdered"] == 1

    seller = conn["extra"]["seller_id"]
    listing = client(ListingsItems).get_listings_item(seller, "TEE-BLK-M-FBM",
                                                      includedData=["summaries", "fulfillmentAvailability"]).payload
    assert listing["fulfillmentAvailability"] == [{"fulfillmentChannelCode": "DEFAULT", "quantity": 8}]
    patched = client(ListingsItems).patch_listings_item(seller, "TEE-BLK-M-FBM", body={
        "productType": "HOME",
        "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                     "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 3}]}]}).payload
    assert patched["status"] == "ACCEPTED"

    def shown():
        return client(ListingsItems).get_listings_item(seller, "TEE-BLK-M-FBM", includedData=["fulfillmentAvailability"]
                                                       ).payload["fulfillmentAvailability"][0]["quantity"]
    assert shown() == 8                       # queued until Amazon has processed the submission
    sandbox.clock.advance(sandbox.options.amazon_listing_seconds)
    assert shown() == 3

    report = client(Reports).create_report(reportType="GET_MERCHANT_LISTINGS_ALL_DATA").payload
    assert report["reportId"]


def test_shopify_python_api(sandbox):
    import shopify

    conn = sandbox.connections()["omnirecon_shopify"]
    version = conn["extra"]["api_version"]
    session = shopify.Session("demo-store.myshopify.com", version, conn["password"])
    shopify.ShopifyResource.activate_session(session)
    try:
        shopify.ShopifyResource.set_site(f"{conn['host']}/admin/api/{version}")     # the base URL
        query = """query($first: Int!, $after: String) {
          productVariants(first: $first, after: $after) {
            nodes { sku inventoryItem { id inventoryLevels(first: 5) { nodes { location { id }
              quantities(names: ["available"]) { name quantity } } } } }
            pageInfo { hasNextPage endCursor } } }"""
        skus, after = [], None
        while True:
            page = json.loads(shopify.GraphQL().execute(query, variables={"first": 10, "after": after}))
            assert "errors" not in page, page
            data = page["data"]["productVariants"]
            skus += [n["sku"] for n in data["nodes"]]
            if not data["pageInfo"]["hasNextPage"]:
                break
            after = data["pageInfo"]["endCursor"]
        assert len(skus) == len(sandbox.state()["shopify"]["variants"]) and "TEE-BLK-M" in skus
        assert "throttleStatus" in page["extensions"]["cost"]
        shop = json.loads(shopify.GraphQL().execute("{ shop { name myshopifyDomain currencyCode } }"))
        assert shop["data"]["shop"]["myshopifyDomain"] == "demo-store.myshopify.com"
        variant = json.loads(shopify.GraphQL().execute(
            "query($id: ID!) { node(id: $id) { ... on ProductVariant { sku price barcode } } }",
            variables={"id": "gid://shopify/ProductVariant/1"}))
        assert variant["data"]["node"]["price"] and "barcode" in variant["data"]["node"]
        wrong = json.loads(shopify.GraphQL().execute("{ shop { nope } }"))
        assert wrong["errors"][0]["message"] == "Field 'nope' doesn't exist on type 'Shop'"
    finally:
        shopify.ShopifyResource.clear_session()
