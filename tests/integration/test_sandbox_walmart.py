"""Walmart Marketplace imitation over real HTTP."""
import base64
import json
import time
import uuid
from xml.etree import ElementTree
from urllib.parse import urlencode

import pytest
import requests

from tests.support.sandbox_http import scenario_doc, walmart_token, wm
from omnirecon_sandbox import Sandbox
from omnirecon_sandbox.clock import ManualClock
from omnirecon_contract.scenario import from_dict


@pytest.fixture()
def sb():
    with Sandbox(from_dict(scenario_doc()), clock=ManualClock()) as s:
        yield s                                         # time moves only when a test advances s.clock


@pytest.fixture()
def token(sb):
    return walmart_token(sb)


def test_token_requires_basic_auth_and_headers(sb):
    url = sb.urls["walmart"] + "/v3/token"
    headers = {"WM_SVC.NAME": "Walmart Marketplace", "WM_QOS.CORRELATION_ID": str(uuid.uuid4()), "Accept": "application/json"}
    bad = requests.post(url, data={"grant_type": "client_credentials"}, timeout=10,
                        headers=dict(headers, Authorization="Basic " + base64.b64encode(b"x:y").decode()))
    assert bad.status_code == 401 and bad.json()["error"][0]["code"] == "UNAUTHORIZED.GMP_GATEWAY_API"
    no_svc = requests.post(url, data={"grant_type": "client_credentials"}, timeout=10,
                           headers={"WM_QOS.CORRELATION_ID": "x"})
    assert no_svc.status_code == 400 and no_svc.json()["errors"][0]["code"] == "MISSING_REQUEST_HEADER"
    tok = walmart_token(sb)
    assert tok


@pytest.mark.parametrize("missing", ["WM_SEC.ACCESS_TOKEN", "WM_QOS.CORRELATION_ID", "WM_SVC.NAME"])
def test_required_headers(sb, token, missing):
    headers = {"WM_SEC.ACCESS_TOKEN": token, "WM_QOS.CORRELATION_ID": "c", "WM_SVC.NAME": "Walmart Marketplace"}
    del headers[missing]
    r = requests.get(sb.urls["walmart"] + "/v3/inventory?sku=TEE-BLK-M", headers=headers, timeout=10)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == missing


def test_bad_token_is_401_with_singular_error(sb):
    r = wm(sb, "GET", "/v3/inventory?sku=TEE-BLK-M", "forged")
    assert r.status_code == 401 and r.json()["error"][0]["code"] == "UNAUTHORIZED.GMP_GATEWAY_API"


def test_inventory_get_put_and_multinode(sb, token):
    r = wm(sb, "GET", "/v3/inventory?sku=TEE-BLK-M&shipNode=10002", token)
    assert r.json() == {"sku": "TEE-BLK-M", "quantity": {"unit": "EACH", "amount": 3}}
    assert r.headers["x-current-token-count"].isdigit() and r.headers["x-next-replenish-time"].isdigit()
    put = wm(sb, "PUT", "/v3/inventory?sku=TEE-BLK-M&shipNode=10001", token,
             json={"sku": "TEE-BLK-M", "quantity": {"unit": "EACH", "amount": 5}})
    assert put.status_code == 200 and put.json()["quantity"]["amount"] == 5
    nodes = wm(sb, "GET", "/v3/inventories/TEE-BLK-M", token).json()["nodes"]
    assert [(n["shipNode"], n["inputQty"]["amount"], n["availToSellQty"]["amount"]) for n in nodes] == [("10001", 5, 5), ("10002", 3, 3)]
    assert sb.writes()[-1] == {**sb.writes()[-1], "system": "walmart", "operation": "updateInventoryForAnItem",
                               "key": "TEE-BLK-M@10001", "applied": True}
    assert wm(sb, "PUT", "/v3/inventory?sku=TEE-BLK-M", token, json={"quantity": {"unit": "EACH", "amount": -1}}).status_code == 400
    assert wm(sb, "GET", "/v3/inventory?sku=NOPE", token).status_code == 404


def test_inventory_speaks_xml_as_the_spec_says(sb, token):
    xml = ('<?xml version="1.0" encoding="UTF-8"?><inventory xmlns="http://walmart.com/"><sku>TEE-BLK-M</sku>'
           '<quantity><unit>EACH</unit><amount>7</amount></quantity></inventory>')
    xml_headers = {"Content-Type": "application/xml", "Accept": "application/xml"}
    put = wm(sb, "PUT", "/v3/inventory?sku=TEE-BLK-M&shipNode=10001", token, data=xml, headers=xml_headers)
    assert put.status_code == 200 and put.headers["Content-Type"] == "application/xml"
    doc = ElementTree.fromstring(put.content)
    ns = {"w": "http://walmart.com/"}
    assert doc.tag == "{http://walmart.com/}inventory" and doc.findtext("w:sku", namespaces=ns) == "TEE-BLK-M"
    assert doc.findtext("w:quantity/w:amount", namespaces=ns) == "7"
    assert doc.findtext("w:quantity/w:unit", namespaces=ns) == "EACH"
    qty = {(i["sku"], i["ship_node"]): i["quantity"] for i in sb.state()["walmart"]["items"]}
    assert qty[("TEE-BLK-M", "10001")] == 7
    # an XML body answered in JSON, and a JSON read answered in XML: the format Accept asks for
    plain = wm(sb, "PUT", "/v3/inventory?sku=TEE-BLK-M&shipNode=10001", token,
               data=xml.replace(">7<", ">6<"), headers={"Content-Type": "application/xml"})
    assert plain.json() == {"sku": "TEE-BLK-M", "quantity": {"unit": "EACH", "amount": 6}}
    got = wm(sb, "GET", "/v3/inventory?sku=TEE-BLK-M&shipNode=10001", token, headers={"Accept": "application/xml"})
    assert ElementTree.fromstring(got.content).findtext("w:quantity/w:amount", namespaces=ns) == "6"
    for bad in ("<inventory><sku>TEE-BLK-M</sku><quantity><amount>-1</amount></quantity></inventory>",
                "<inventory><sku>TEE-BLK-M</sku>", "<feed/>"):
        r = wm(sb, "PUT", "/v3/inventory?sku=TEE-BLK-M", token, data=bad, headers={"Content-Type": "application/xml"})
        assert r.status_code == 400, bad


def test_all_inventories_cursor_paging(sb, token):
    first = wm(sb, "GET", "/v3/inventories?limit=1", token).json()
    assert first["meta"]["totalCount"] == 2 and first["elements"]["inventories"][0]["sku"] == "TEE-BLK-M"
    second = wm(sb, "GET", "/v3/inventories?" + urlencode({"limit": 1, "nextCursor": first["meta"]["nextCursor"]}), token).json()
    assert second["elements"]["inventories"][0]["sku"] == "MUG-WHT" and "nextCursor" not in second["meta"]
    assert wm(sb, "GET", "/v3/inventories?limit=51", token).status_code == 400


def test_items_listing(sb, token):
    body = wm(sb, "GET", "/v3/items?limit=1", token).json()
    assert body["totalItems"] == 2 and body["ItemResponse"][0]["sku"] == "TEE-BLK-M" and body["nextCursor"]
    nxt = wm(sb, "GET", "/v3/items?" + urlencode({"limit": 1, "nextCursor": body["nextCursor"]}), token).json()
    item = nxt["ItemResponse"][0]
    assert item["sku"] == "MUG-WHT" and item["publishedStatus"] == "UNPUBLISHED" and item["lifecycleStatus"] == "ACTIVE"


def test_mp_inventory_feed_multipart(sb, token):
    feed = {"inventoryHeader": {"version": "1.5"}, "inventory": [
        {"sku": "TEE-BLK-M", "shipNodes": [{"shipNode": "10001", "quantity": {"unit": "EACH", "amount": 1}},
                                           {"shipNode": "10002", "quantity": {"unit": "EACH", "amount": 0}}]},
        {"sku": "NOPE", "shipNodes": [{"shipNode": "10001", "quantity": {"unit": "EACH", "amount": 1}}]}]}
    r = wm(sb, "POST", "/v3/feeds?feedType=MP_INVENTORY", token,
           files={"file": ("inventory.json", json.dumps(feed), "application/json")})
    assert r.status_code == 200
    fid = r.json()["feedId"]
    statuses = []
    for _ in range(3):                              # 4 s of processing: a quarter received, then in progress
        body = wm(sb, "GET", f"/v3/feeds/{fid}?includeDetails=true", token).json()
        statuses.append(body["feedStatus"])
        sb.clock.advance(sb.options.walmart_processing_seconds / 2)
    assert statuses == ["RECEIVED", "INPROGRESS", "PROCESSED"]
    assert (body["itemsReceived"], body["itemsSucceeded"], body["itemsFailed"]) == (3, 2, 1)
    ingest = body["itemDetails"]["itemIngestionStatus"]
    assert [i["ingestionStatus"] for i in ingest] == ["SUCCESS", "SUCCESS", "DATA_ERROR"]
    qty = {(i["sku"], i["ship_node"]): i["quantity"] for i in sb.state()["walmart"]["items"]}
    assert qty[("TEE-BLK-M", "10001")] == 1 and qty[("TEE-BLK-M", "10002")] == 0


def test_orders_cursor_is_a_ready_made_query_string(sb, token):
    r = wm(sb, "GET", "/v3/orders?limit=1&createdStartDate=2020-01-01", token)
    body = r.json()["list"]
    assert body["meta"]["totalCount"] == 2 and body["meta"]["nextCursor"].startswith("?")
    order = body["elements"]["order"][0]
    assert order["purchaseOrderId"] == "1796277083023" and isinstance(order["orderDate"], int)
    line = order["orderLines"]["orderLine"][0]
    assert line["orderLineQuantity"]["amount"] == "2"
    assert line["orderLineStatuses"]["orderLineStatus"][0]["status"] == "Shipped"
    nxt = wm(sb, "GET", "/v3/orders" + body["meta"]["nextCursor"], token).json()["list"]
    assert [o["purchaseOrderId"] for o in nxt["elements"]["order"]] == ["1796277083022"] and "nextCursor" not in nxt["meta"]
    empty = wm(sb, "GET", "/v3/orders?lastModifiedStartDate=2999-01-01", token)
    assert empty.status_code == 404 and empty.json()["errors"][0]["code"].startswith("CONTENT_NOT_FOUND")
    assert wm(sb, "GET", "/v3/orders?limit=201", token).status_code == 400


def test_acknowledge_order(sb, token):
    r = wm(sb, "POST", "/v3/orders/1796277083022/acknowledge", token)
    assert r.json()["order"]["orderLines"]["orderLine"][0]["orderLineStatuses"]["orderLineStatus"][0]["status"] == "Acknowledged"
    assert sb.state()["walmart"]["orders"][0]["lines"][0]["status"] == "Acknowledged"


def test_token_bucket_429():
    with Sandbox(from_dict(scenario_doc()), time_scale=1.0,
                 options={"walmart_rate_limits": {"getInventory": (1, 2)}}) as sb:
        token = walmart_token(sb)
        codes = [wm(sb, "GET", "/v3/inventory?sku=TEE-BLK-M", token).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = wm(sb, "GET", "/v3/inventory?sku=TEE-BLK-M", token)
        assert r.headers["x-current-token-count"] == "0" and int(r.headers["x-next-replenish-time"]) > time.time() * 1000
