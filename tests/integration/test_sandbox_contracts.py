"""Responses of every served SP-API and Walmart operation validated against the official models
(../shared/reference, resolved $refs). Skips only when that directory is absent."""
import json
from functools import lru_cache

import jsonschema
import pytest
import requests
from openapi_schema_validator import OAS30Validator

from tests.support.sandbox_http import lwa_token, scenario_doc, sp, walmart_token, wm
from omnirecon_sandbox import Sandbox
from omnirecon_sandbox.clock import ManualClock
from omnirecon_sandbox.amazon import RATE_LIMITS, reference_dir
from omnirecon_sandbox.walmart import RATE_LIMITS as WM_LIMITS
from omnirecon_contract.scenario import from_dict

REF = reference_dir()
pytestmark = pytest.mark.skipif(not REF.exists(), reason=f"{REF} is absent: no official models to validate against")
US = "ATVPDKIKX0DER"


@lru_cache(maxsize=None)
def _model(folder: str, name: str) -> dict:
    return json.loads((REF / folder / name).read_text())


def sp_validate(model: str, path: str, method: str, status: str, body) -> None:
    doc = _model("sp-api-models", model)
    schema = dict(doc["paths"][path][method]["responses"][status]["schema"], definitions=doc["definitions"])
    jsonschema.Draft4Validator(schema).validate(body)


def wm_validate(model: str, path: str, method: str, body, status: str = "200", original: bool = False) -> None:
    doc = _model("walmart-models/original" if original else "walmart-models", model)
    content = doc["paths"][path][method]["responses"][status]["content"]
    schema = dict(content.get("application/json", next(iter(content.values())))["schema"], components=doc["components"])
    errors = [e for e in OAS30Validator(schema).iter_errors(body) if not _epoch_for_datetime(e)]
    assert not errors, "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def _epoch_for_datetime(err) -> bool:
    """Walmart's order specs type some timestamps as date-time strings while Walmart's own examples (and the
    wire) carry epoch-ms integers there; accept exactly that deviation."""
    return (err.validator == "type" and err.schema.get("format") == "date-time" and isinstance(err.instance, int)
            and err.instance > 10**12)


def test_walmart_examples_use_epoch_ms():
    example = _model("walmart-models/original", "us-mp-orders.json")["paths"]["/v3/orders/{purchaseOrderId}"]["get"][
        "responses"]["200"]["content"]["application/json"]["examples"]["ORDER"]["value"]["order"]
    assert isinstance(example["orderDate"], int)


@pytest.fixture(scope="module")
def sb():
    roomy = {op: (100, 100) for op in RATE_LIMITS}
    with Sandbox(from_dict(scenario_doc()), clock=ManualClock(),
                 options={"amazon_rate_limits": roomy, "walmart_rate_limits": {op: (6000, 6000) for op in WM_LIMITS}}) as s:
        yield s


def _wait(sb, fetch, key, done):
    """Reports and feeds finish once their processing time has passed on the sandbox clock."""
    sb.clock.advance(max(sb.options.amazon_processing_seconds, sb.options.walmart_processing_seconds))
    body = fetch()
    assert body[key] in done, body
    return body


def test_orders_v0(sb):
    t = lwa_token(sb)
    body = sp(sb, "GET", "/orders/v0/orders", t, params={"MarketplaceIds": US, "CreatedAfter": "2020-01-01T00:00:00Z",
                                                         "MaxResultsPerPage": 2}).json()
    sp_validate("ordersV0.json", "/orders/v0/orders", "get", "200", body)
    err = sp(sb, "GET", "/orders/v0/orders", t, params={"MarketplaceIds": US}).json()
    sp_validate("ordersV0.json", "/orders/v0/orders", "get", "400", err)
    for oid in ("111-0000000-0000001", "111-0000000-0000003"):
        sp_validate("ordersV0.json", "/orders/v0/orders/{orderId}", "get", "200",
                    sp(sb, "GET", f"/orders/v0/orders/{oid}", t).json())
        sp_validate("ordersV0.json", "/orders/v0/orders/{orderId}/orderItems", "get", "200",
                    sp(sb, "GET", f"/orders/v0/orders/{oid}/orderItems", t).json())
    denied = requests.get(sb.urls["amazon"] + "/orders/v0/orders", params={"MarketplaceIds": US}, timeout=10).json()
    sp_validate("ordersV0.json", "/orders/v0/orders", "get", "403", denied)


def test_fba_inventory(sb):
    t = lwa_token(sb)
    body = sp(sb, "GET", "/fba/inventory/v1/summaries", t, params={
        "granularityType": "Marketplace", "granularityId": US, "marketplaceIds": US, "details": "true"}).json()
    sp_validate("fbaInventory.json", "/fba/inventory/v1/summaries", "get", "200", body)


def test_listings_items(sb):
    t = lwa_token(sb)
    path = "/listings/2021-08-01/items/{sellerId}/{sku}"
    item = sp(sb, "GET", "/listings/2021-08-01/items/A1SELLERDEMO/MUG-WHT", t, params={
        "marketplaceIds": US, "includedData": "summaries,attributes,issues,offers,fulfillmentAvailability"}).json()
    sp_validate("listingsItems_2021-08-01.json", path, "get", "200", item)
    patch = {"productType": "DRINKING_CUP", "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                                                         "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 3}]}]}
    resp = sp(sb, "PATCH", "/listings/2021-08-01/items/A1SELLERDEMO/MUG-WHT", t, params={"marketplaceIds": US}, json=patch).json()
    sp_validate("listingsItems_2021-08-01.json", path, "patch", "200", resp)
    invalid = sp(sb, "PATCH", "/listings/2021-08-01/items/A1SELLERDEMO/GHOST", t, params={"marketplaceIds": US}, json=patch).json()
    sp_validate("listingsItems_2021-08-01.json", path, "patch", "200", invalid)
    missing = sp(sb, "GET", "/listings/2021-08-01/items/A1SELLERDEMO/GHOST", t, params={"marketplaceIds": US}).json()
    sp_validate("listingsItems_2021-08-01.json", path, "get", "404", missing)


def test_reports(sb):
    t = lwa_token(sb)
    created = sp(sb, "POST", "/reports/2021-06-30/reports", t,
                 json={"reportType": "GET_MERCHANT_LISTINGS_ALL_DATA", "marketplaceIds": [US]}).json()
    sp_validate("reports_2021-06-30.json", "/reports/2021-06-30/reports", "post", "202", created)
    first = sp(sb, "GET", f"/reports/2021-06-30/reports/{created['reportId']}", t).json()
    sp_validate("reports_2021-06-30.json", "/reports/2021-06-30/reports/{reportId}", "get", "200", first)
    done = _wait(sb, lambda: sp(sb, "GET", f"/reports/2021-06-30/reports/{created['reportId']}", t).json(),
                 "processingStatus", ("DONE",))
    sp_validate("reports_2021-06-30.json", "/reports/2021-06-30/reports/{reportId}", "get", "200", done)
    doc = sp(sb, "GET", f"/reports/2021-06-30/documents/{done['reportDocumentId']}", t).json()
    sp_validate("reports_2021-06-30.json", "/reports/2021-06-30/documents/{reportDocumentId}", "get", "200", doc)


def test_feeds_and_processing_report(sb):
    t = lwa_token(sb)
    created = sp(sb, "POST", "/feeds/2021-06-30/documents", t, json={"contentType": "application/json; charset=UTF-8"}).json()
    sp_validate("feeds_2021-06-30.json", "/feeds/2021-06-30/documents", "post", "201", created)
    example = json.loads((REF / "sp-api-models" / "listings-feed-schema-v2.example.json").read_text())
    requests.put(created["url"], data=json.dumps(example), timeout=10)
    feed = sp(sb, "POST", "/feeds/2021-06-30/feeds", t, json={
        "feedType": "JSON_LISTINGS_FEED", "marketplaceIds": [US], "inputFeedDocumentId": created["feedDocumentId"]}).json()
    sp_validate("feeds_2021-06-30.json", "/feeds/2021-06-30/feeds", "post", "202", feed)
    done = _wait(sb, lambda: sp(sb, "GET", f"/feeds/2021-06-30/feeds/{feed['feedId']}", t).json(), "processingStatus",
                 ("DONE", "FATAL"))
    sp_validate("feeds_2021-06-30.json", "/feeds/2021-06-30/feeds/{feedId}", "get", "200", done)
    doc = sp(sb, "GET", f"/feeds/2021-06-30/documents/{done['resultFeedDocumentId']}", t).json()
    sp_validate("feeds_2021-06-30.json", "/feeds/2021-06-30/documents/{feedDocumentId}", "get", "200", doc)
    report = requests.get(doc["url"], timeout=10).json()
    jsonschema.Draft7Validator(_model("sp-api-models", "listings-feed-processing-report-schema-v2.json")).validate(report)
    assert report["summary"]["messagesProcessed"] == len(example["messages"])
    quota = sp(sb, "GET", "/feeds/2021-06-30/feeds/404", t).json()
    sp_validate("feeds_2021-06-30.json", "/feeds/2021-06-30/feeds/{feedId}", "get", "404", quota)


def test_walmart_token_inventory_feeds_orders(sb):
    url = sb.urls["walmart"]
    conn = sb.connections()["omnirecon_walmart"]
    raw = requests.post(url + "/v3/token", data={"grant_type": "client_credentials"}, auth=(conn["login"], conn["password"]),
                        headers={"WM_SVC.NAME": "Walmart Marketplace", "WM_QOS.CORRELATION_ID": "c",
                                 "Accept": "application/json"}, timeout=10).json()
    wm_validate("us-mp-auth.json", "/v3/token", "post", raw)
    t = walmart_token(sb)
    wm_validate("us-mp-inventory.json", "/v3/inventory", "get", wm(sb, "GET", "/v3/inventory?sku=TEE-BLK-M", t).json())
    put = wm(sb, "PUT", "/v3/inventory?sku=TEE-BLK-M&shipNode=10001", t,
             json={"sku": "TEE-BLK-M", "quantity": {"unit": "EACH", "amount": 7}}).json()
    wm_validate("us-mp-inventory.json", "/v3/inventory", "put", put)
    wm_validate("us-mp-inventory.json", "/v3/inventories/{sku}", "get", wm(sb, "GET", "/v3/inventories/TEE-BLK-M", t).json())
    # The SDK-cleaned copy points `elements` at the update-request DTO (contradicting its own example);
    # Walmart's original spec has the list of {sku, nodes}.
    wm_validate("us-mp-inventory.json", "/v3/inventories", "get", wm(sb, "GET", "/v3/inventories?limit=1", t).json(),
                original=True)
    feed = {"inventoryHeader": {"version": "1.5"}, "inventory": [
        {"sku": "MUG-WHT", "shipNodes": [{"shipNode": "10001", "quantity": {"unit": "EACH", "amount": 4}}]}]}
    created = wm(sb, "POST", "/v3/feeds?feedType=MP_INVENTORY", t, files={"file": ("f.json", json.dumps(feed), "application/json")}).json()
    wm_validate("us-mp-inventory.json", "/v3/feeds", "post", created)
    status = _wait(sb, lambda: wm(sb, "GET", f"/v3/feeds/{created['feedId']}?includeDetails=true", t).json(), "feedStatus",
                   ("PROCESSED",))
    wm_validate("us-mp-feeds.json", "/v3/feeds/{feedId}", "get", status)
    # The SDK-cleaned orders copy resolves orderLine to the refund-request DTO; Walmart's original spec is used.
    orders = wm(sb, "GET", "/v3/orders?limit=1&createdStartDate=2020-01-01", t).json()
    wm_validate("us-mp-orders.json", "/v3/orders", "get", orders, original=True)        # epoch ms: int64 here
    one = wm(sb, "GET", "/v3/orders/1796277083022", t).json()
    assert set(one) == {"order"}      # the spec's own example wraps the order; its schema describes the inner object
    wm_validate("us-mp-orders.json", "/v3/orders/{purchaseOrderId}", "get", one["order"], original=True)
    wm_validate("us-mp-orders.json", "/v3/orders/{purchaseOrderId}/acknowledge", "post",
                wm(sb, "POST", "/v3/orders/1796277083022/acknowledge", t).json(), original=True)
    wm_validate("us-mp-orders.json", "/v3/orders/released", "get",
                wm(sb, "GET", "/v3/orders/released?createdStartDate=2020-01-01", t).json(), original=True)
