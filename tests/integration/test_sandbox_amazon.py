"""Amazon SP-API + LWA imitation over real HTTP."""
import gzip
import json
from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests.support.sandbox_http import lwa_token, scenario_doc, sp
from omnirecon_sandbox import Sandbox
from omnirecon_sandbox.amazon import DOCUMENT_URL_SECONDS, FBA_TOKEN_SECONDS, RATE_LIMITS
from omnirecon_sandbox.clock import ManualClock
from omnirecon_contract.scenario import from_dict

US = "ATVPDKIKX0DER"


def _iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture()
def sb():
    roomy = {op: (100, 100) for op in RATE_LIMITS}      # rate limits are tested on their own below
    with Sandbox(from_dict(scenario_doc()), clock=ManualClock(), options={"amazon_rate_limits": roomy}) as s:
        yield s                                         # time moves only when a test advances s.clock


@pytest.fixture()
def token(sb):
    return lwa_token(sb)


def test_lwa_token_and_errors(sb):
    conn = sb.connections()["omnirecon_amazon"]
    assert conn["extra"]["lwa_endpoint"] == sb.urls["amazon"] + "/auth/o2/token"
    base = {"grant_type": "refresh_token", "refresh_token": conn["extra"]["refresh_token"],
            "client_id": conn["login"], "client_secret": conn["password"]}
    ok = requests.post(conn["extra"]["lwa_endpoint"], data=base, timeout=10).json()
    assert ok["token_type"] == "bearer" and ok["expires_in"] == 3600 and ok["access_token"].startswith("Atza|")
    bad_grant = requests.post(conn["extra"]["lwa_endpoint"], data=dict(base, refresh_token="Atzr|nope"), timeout=10)
    assert bad_grant.status_code == 400 and bad_grant.json()["error"] == "invalid_grant"
    bad_client = requests.post(conn["extra"]["lwa_endpoint"], data=dict(base, client_secret="x"), timeout=10)
    assert bad_client.status_code == 401 and bad_client.json()["error"] == "invalid_client"
    as_json = requests.post(conn["extra"]["lwa_endpoint"], json=base, timeout=10)         # as some official SDKs send it
    assert as_json.status_code == 200 and as_json.json()["access_token"].startswith("Atza|")
    assert sp(sb, "GET", "/orders/v0/orders/111-0000000-0000002", as_json.json()["access_token"]).status_code == 200
    bad_json = requests.post(conn["extra"]["lwa_endpoint"], json=dict(base, refresh_token="Atzr|nope"), timeout=10)
    assert bad_json.status_code == 400 and bad_json.json()["error"] == "invalid_grant"
    not_object = requests.post(conn["extra"]["lwa_endpoint"], data="[1", headers={"Content-Type": "application/json"},
                               timeout=10)
    assert not_object.status_code == 400 and not_object.json()["error"] == "invalid_request"


def test_access_token_required(sb):
    r = requests.get(sb.urls["amazon"] + "/orders/v0/orders", params={"MarketplaceIds": US}, timeout=10)
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "MissingAuthenticationToken"
    r = sp(sb, "GET", "/orders/v0/orders", "Atza|forged", params={"MarketplaceIds": US})
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "Unauthorized"
    assert r.headers["x-amzn-RequestId"]


def test_get_orders_filters_paging_and_headers(sb, token):
    since = _iso(datetime.now(timezone.utc) - timedelta(days=1))
    r = sp(sb, "GET", "/orders/v0/orders", token, params={"MarketplaceIds": US, "LastUpdatedAfter": since,
                                                          "MaxResultsPerPage": 2})
    assert r.status_code == 200 and r.headers["x-amzn-RateLimit-Limit"] == "100"     # the configured rate
    p1 = r.json()["payload"]
    assert [o["AmazonOrderId"] for o in p1["Orders"]] == ["111-0000000-0000002", "111-0000000-0000003"]
    assert p1["LastUpdatedBefore"] and p1["NextToken"]
    p2 = sp(sb, "GET", "/orders/v0/orders", token, params={"MarketplaceIds": US, "NextToken": p1["NextToken"]}).json()["payload"]
    assert [o["AmazonOrderId"] for o in p2["Orders"]] == ["111-0000000-0000001"] and "NextToken" not in p2
    assert "OrderTotal" not in p1["Orders"][1] and p1["Orders"][0]["OrderTotal"]["Amount"] == "19.99"
    assert p2["Orders"][0]["OrderTotal"]["Amount"] == "39.98"
    mfn = sp(sb, "GET", "/orders/v0/orders", token, params={"MarketplaceIds": US, "CreatedAfter": since,
                                                            "FulfillmentChannels": "AFN"}).json()["payload"]
    assert [o["AmazonOrderId"] for o in mfn["Orders"]] == ["111-0000000-0000003"]


@pytest.mark.parametrize("params", [
    {},                                                                     # neither After
    {"CreatedAfter": "2026-01-01T00:00:00Z", "LastUpdatedAfter": "2026-01-01T00:00:00Z"},
    {"CreatedAfter": "2026-01-01T00:00:00Z", "LastUpdatedBefore": "2026-01-02T00:00:00Z"},
    {"LastUpdatedAfter": "2026-01-02T00:00:00Z", "LastUpdatedBefore": "2026-01-01T00:00:00Z"},   # Before < After
    {"CreatedAfter": "2020-01-01T00:00:00Z", "CreatedBefore": "now-30s"},                       # too recent
    {"CreatedAfter": "2020-01-01T00:00:00Z", "MaxResultsPerPage": "101"},
])
def test_get_orders_input_rules(sb, token, params):
    if params.get("CreatedBefore") == "now-30s":
        params = dict(params, CreatedBefore=_iso(sb.clock.now() - timedelta(seconds=30)))
    r = sp(sb, "GET", "/orders/v0/orders", token, params=dict(params, MarketplaceIds=US))
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "InvalidInput"
    assert sp(sb, "GET", "/orders/v0/orders", token, params={"CreatedAfter": "2020-01-01T00:00:00Z"}).status_code == 400


def test_get_order_and_items(sb, token):
    o = sp(sb, "GET", "/orders/v0/orders/111-0000000-0000002", token).json()["payload"]
    assert o["OrderStatus"] == "Unshipped" and o["NumberOfItemsUnshipped"] == 1
    items = sp(sb, "GET", "/orders/v0/orders/111-0000000-0000002/orderItems", token).json()["payload"]
    assert items["AmazonOrderId"] == "111-0000000-0000002"
    assert items["OrderItems"][0]["SellerSKU"] == "TEE-BLK-M" and items["OrderItems"][0]["ASIN"] == "B0DEMO0001"
    assert sp(sb, "GET", "/orders/v0/orders/999-0000000-0000000", token).status_code == 404


def test_fba_inventory_summaries_and_token_expiry(sb, token):
    params = {"granularityType": "Marketplace", "granularityId": US, "marketplaceIds": US, "details": "true"}
    body = sp(sb, "GET", "/fba/inventory/v1/summaries", token, params=params).json()
    s = body["payload"]["inventorySummaries"][0]
    assert s["sellerSku"] == "MUG-WHT-FBA" and s["inventoryDetails"]["fulfillableQuantity"] == 6
    assert s["totalQuantity"] == 7 and "pagination" not in body
    assert sp(sb, "GET", "/fba/inventory/v1/summaries", token, params=dict(params, granularityType="Seller")).status_code == 400
    system = sb.systems["amazon"]
    system.fba.extend({"sku": f"FBA-{i:03d}", "fulfillable_quantity": i} for i in range(60))
    page1 = sp(sb, "GET", "/fba/inventory/v1/summaries", token, params=params).json()
    nxt = page1["pagination"]["nextToken"]
    page2 = sp(sb, "GET", "/fba/inventory/v1/summaries", token, params=dict(params, nextToken=nxt)).json()
    assert len(page1["payload"]["inventorySummaries"]) == 50 and len(page2["payload"]["inventorySummaries"]) == 11
    sb.clock.advance(FBA_TOKEN_SECONDS - 1)
    assert sp(sb, "GET", "/fba/inventory/v1/summaries", token, params=dict(params, nextToken=nxt)).status_code == 200
    sb.clock.advance(2)
    expired = sp(sb, "GET", "/fba/inventory/v1/summaries", token, params=dict(params, nextToken=nxt))
    assert expired.status_code == 400 and "expired" in expired.json()["errors"][0]["message"]


def test_listings_get_and_patch_quantity(sb, token):
    path = "/listings/2021-08-01/items/A1SELLERDEMO/TEE-BLK-M"
    item = sp(sb, "GET", path, token, params={"marketplaceIds": US,
                                              "includedData": "summaries,attributes,issues,offers,fulfillmentAvailability"}).json()
    assert item["summaries"][0]["status"] == ["BUYABLE", "DISCOVERABLE"]
    assert item["fulfillmentAvailability"] == [{"fulfillmentChannelCode": "DEFAULT", "quantity": 6}]
    patch = {"productType": "SHIRT", "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                                                  "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 4}]}]}
    r = sp(sb, "PATCH", path, token, params={"marketplaceIds": US}, json=patch)
    assert r.status_code == 200 and r.json()["status"] == "ACCEPTED" and r.json()["submissionId"]
    assert sb.writes()[-1]["operation"] == "patchListingsItem" and sb.writes()[-1]["applied"] is True

    def shown():
        return sp(sb, "GET", path, token, params={"marketplaceIds": US, "includedData": "fulfillmentAvailability"}
                  ).json()["fulfillmentAvailability"][0]["quantity"]
    # ACCEPTED is queued, not applied: the read-back sees the old quantity until Amazon has processed it
    assert shown() == 6
    sb.clock.advance(sb.options.amazon_listing_seconds - 1)
    assert shown() == 6
    sb.clock.advance(1)
    assert shown() == 4 and next(l for l in sb.state()["amazon"]["listings"] if l["sku"] == "TEE-BLK-M")["quantity"] == 4
    missing_type = sp(sb, "PATCH", path, token, params={"marketplaceIds": US}, json={"patches": patch["patches"]})
    assert missing_type.status_code == 400
    assert sp(sb, "GET", "/listings/2021-08-01/items/A1SELLERDEMO/NOPE", token, params={"marketplaceIds": US}).status_code == 404


def test_merchant_listings_report(sb, token):
    r = sp(sb, "POST", "/reports/2021-06-30/reports", token,
           json={"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplaceIds": [US]})
    assert r.status_code == 202
    rid = r.json()["reportId"]
    seen = []
    for _ in range(3):                              # 4 s of processing: a quarter in the queue, then in progress
        rep = sp(sb, "GET", f"/reports/2021-06-30/reports/{rid}", token).json()
        seen.append(rep["processingStatus"])
        sb.clock.advance(sb.options.amazon_processing_seconds / 2)
    assert seen == ["IN_QUEUE", "IN_PROGRESS", "DONE"] and "reportDocumentId" in rep
    doc = sp(sb, "GET", f"/reports/2021-06-30/documents/{rep['reportDocumentId']}", token).json()
    assert doc["compressionAlgorithm"] == "GZIP"
    text = gzip.decompress(requests.get(doc["url"], timeout=10).content).decode("cp1252")
    header, *rows = text.strip().split("\n")
    cols = header.split("\t")
    assert cols[:4] == ["item-name", "item-description", "listing-id", "seller-sku"] and cols[-1] == "status"
    table = {r.split("\t")[cols.index("seller-sku")]: r.split("\t") for r in rows}
    assert table["TEE-BLK-M"][cols.index("quantity")] == "6" and table["MUG-WHT"][cols.index("status")] == "Inactive"
    sb.clock.advance(DOCUMENT_URL_SECONDS - 1)
    assert requests.get(doc["url"], timeout=10).status_code == 200
    sb.clock.advance(2)
    assert requests.get(doc["url"], timeout=10).status_code == 403


def test_json_listings_feed_applies_quantities_and_reports(sb, token):
    created = sp(sb, "POST", "/feeds/2021-06-30/documents", token, json={"contentType": "application/json; charset=UTF-8"})
    assert created.status_code == 201
    doc_id, url = created.json()["feedDocumentId"], created.json()["url"]
    feed = {"header": {"sellerId": "A1SELLERDEMO", "version": "2.0"}, "messages": [
        {"messageId": 1, "sku": "TEE-BLK-M", "operationType": "PATCH", "productType": "SHIRT",
         "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                      "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 2}]}]},
        {"messageId": 2, "sku": "MUG-WHT", "operationType": "PARTIAL_UPDATE", "productType": "DRINKING_CUP",
         "attributes": {"fulfillment_availability": [{"fulfillment_channel_code": "DEFAULT", "quantity": 9}]}},
        {"messageId": 3, "sku": "GHOST", "operationType": "PATCH", "productType": "SHIRT",
         "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                      "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 1}]}]},
        {"messageId": 4, "sku": "TEE-BLK-M", "operationType": "EXPLODE"}]}
    assert requests.put(url, data=json.dumps(feed), headers={"Content-Type": "application/json; charset=UTF-8"},
                        timeout=10).status_code == 200
    r = sp(sb, "POST", "/feeds/2021-06-30/feeds", token,
           json={"feedType": "JSON_LISTINGS_FEED", "marketplaceIds": [US], "inputFeedDocumentId": doc_id})
    assert r.status_code == 202
    fid = r.json()["feedId"]
    assert sp(sb, "GET", f"/feeds/2021-06-30/feeds/{fid}", token).json()["processingStatus"] == "IN_QUEUE"
    sb.clock.advance(sb.options.amazon_processing_seconds)
    f = sp(sb, "GET", f"/feeds/2021-06-30/feeds/{fid}", token).json()
    assert f["processingStatus"] == "DONE"
    rd = sp(sb, "GET", f"/feeds/2021-06-30/documents/{f['resultFeedDocumentId']}", token).json()
    report = requests.get(rd["url"], timeout=10).json()
    assert report["summary"] == {"errors": 2, "warnings": 0, "messagesProcessed": 4, "messagesAccepted": 2,
                                 "messagesInvalid": 2}
    assert sorted(i["messageId"] for i in report["issues"]) == [3, 4]
    qty = {l["sku"]: l["quantity"] for l in sb.state()["amazon"]["listings"]}
    assert qty["TEE-BLK-M"] == 2 and qty["MUG-WHT"] == 9 and "GHOST" not in qty


def test_rate_limit_429_quota_exceeded():
    with Sandbox(from_dict(scenario_doc()), time_scale=1.0) as sb:
        token = lwa_token(sb)
        path = "/orders/v0/orders/111-0000000-0000002"
        codes = [sp(sb, "GET", path, token).status_code for _ in range(31)]    # getOrder: burst 30, 0.5/s
        assert codes[:30] == [200] * 30 and codes[30] == 429
        r = sp(sb, "GET", path, token)
        assert r.json()["errors"][0]["code"] == "QuotaExceeded" and r.headers["x-amzn-RequestId"]
        orders = sp(sb, "GET", "/orders/v0/orders", token, params={"MarketplaceIds": US, "CreatedAfter": "2020-01-01T00:00:00Z"})
        assert orders.headers["x-amzn-RateLimit-Limit"] == "0.0167"                # the model's default
    with Sandbox(from_dict(scenario_doc()), clock=ManualClock(time_scale=0.001)) as fast:    # same burst, refill 1000x faster
        token = lwa_token(fast)
        for _ in range(30):
            sp(fast, "GET", "/orders/v0/orders/111-0000000-0000002", token)
        assert sp(fast, "GET", "/orders/v0/orders/111-0000000-0000002", token).status_code == 429
        fast.clock.advance(fast.clock.scaled(2))                           # 2 s of refill at 0.5/s, scaled
        assert sp(fast, "GET", "/orders/v0/orders/111-0000000-0000002", token).status_code == 200
