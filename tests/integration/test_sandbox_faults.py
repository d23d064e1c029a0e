"""Scenario faults over real HTTP: one test per kind, `count` and `after` counted exactly."""

import pytest
import requests

from tests.support.sandbox_http import gql, lwa_token, scenario_doc, sp, suiteql, walmart_token, wm
from omnirecon_sandbox import Sandbox
from omnirecon_contract.scenario import from_dict

US = "ATVPDKIKX0DER"
INV = "/v3/inventory?sku=TEE-BLK-M&shipNode=10001"


def _sandbox(*faults, **kw):
    return Sandbox(from_dict(scenario_doc(faults=list(faults))), time_scale=kw.pop("time_scale", 0.01), **kw)


def test_http_status_hits_exactly_count_calls_after_after():
    with _sandbox({"system": "walmart", "operation": "getInventory", "kind": "http_status", "status": 503,
                   "count": 2, "after": 1}) as sb:
        token = walmart_token(sb)                       # other operations are not counted
        codes = [wm(sb, "GET", INV, token).status_code for _ in range(5)]
        assert codes == [200, 503, 503, 200, 200]
        assert sb.faults.summary()[0]["calls"] == 5 and sb.faults.summary()[0]["hits"] == 2


def test_expired_token_until_reauth():
    with _sandbox({"system": "amazon", "operation": "getOrders", "kind": "expired_token", "after": 2, "count": 1}) as sb:
        token = lwa_token(sb)
        params = {"MarketplaceIds": US, "CreatedAfter": "2020-01-01T00:00:00Z"}
        codes = [sp(sb, "GET", "/orders/v0/orders", token, params=params).status_code for _ in range(3)]
        assert codes == [200, 200, 403]
        stale = sp(sb, "GET", "/orders/v0/orders", token, params=params)
        assert stale.status_code == 403 and stale.json()["errors"][0]["code"] == "Unauthorized"
        assert sp(sb, "GET", "/orders/v0/orders/111-0000000-0000002", token).status_code == 403   # the token is dead
        fresh = lwa_token(sb)
        assert sp(sb, "GET", "/orders/v0/orders", fresh, params=params).status_code == 200


def test_expired_token_for_ever_rejects_fresh_tokens_too():
    with _sandbox({"system": "walmart", "operation": "*", "kind": "expired_token", "after": 1}) as sb:
        token = walmart_token(sb)                       # call 1 (token calls count for '*')
        r = wm(sb, "GET", INV, token)
        assert r.status_code == 401 and r.json()["error"][0]["code"] == "UNAUTHORIZED.GMP_GATEWAY_API"
        assert wm(sb, "GET", INV, walmart_token(sb)).status_code == 401


def test_timeout_sleeps_scaled_then_answers_or_drops():
    with _sandbox({"system": "erp", "operation": "suiteql", "kind": "timeout", "seconds": 30, "count": 1}) as sb:
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(f"{sb.urls['erp']}/services/rest/query/v1/suiteql", json={"q": "SELECT 1"}, timeout=0.05)
        assert suiteql(sb, "SELECT id FROM item").status_code == 200          # count used up
    with _sandbox({"system": "erp", "operation": "suiteql", "kind": "timeout", "seconds": 1, "count": 1,
                   "x_drop": True}) as sb:
        with pytest.raises(requests.exceptions.ConnectionError):
            suiteql(sb, "SELECT id FROM item")


def test_malformed_body_does_not_parse():
    with _sandbox({"system": "walmart", "operation": "getInventory", "kind": "malformed", "count": 1},
                  {"system": "amazon", "operation": "getOrder", "kind": "malformed", "x_variant": "missing_fields"}) as sb:
        token = walmart_token(sb)
        bad = wm(sb, "GET", INV, token)
        assert bad.status_code == 200
        with pytest.raises(ValueError):
            bad.json()
        assert wm(sb, "GET", INV, token).json()["quantity"]["amount"] == 7
        atoken = lwa_token(sb)
        assert sp(sb, "GET", "/orders/v0/orders/111-0000000-0000002", atoken).json() == {}


def test_drop_writes_answers_success_changes_nothing():
    with _sandbox({"system": "amazon", "operation": "patchListingsItem", "kind": "drop_writes"},
                  {"system": "shopify", "operation": "inventorySetQuantities", "kind": "drop_writes"}) as sb:
        token = lwa_token(sb)
        patch = {"productType": "SHIRT", "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                                                      "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 0}]}]}
        r = sp(sb, "PATCH", "/listings/2021-08-01/items/A1SELLERDEMO/TEE-BLK-M", token,
               params={"marketplaceIds": US}, json=patch)
        assert r.json()["status"] == "ACCEPTED"
        assert next(l for l in sb.state()["amazon"]["listings"] if l["sku"] == "TEE-BLK-M")["quantity"] == 6
        m = gql(sb, 'mutation { inventorySetQuantities(input: {name: "available", reason: "correction", quantities: '
                    '[{inventoryItemId: "gid://shopify/InventoryItem/1", locationId: "gid://shopify/Location/1001", '
                    'quantity: 1, changeFromQuantity: 8}]}) @idempotent(key: "d1") { userErrors { code } } }').json()
        assert m["data"]["inventorySetQuantities"]["userErrors"] == []
        assert sb.state()["shopify"]["variants"][0]["levels"][0]["available"] == 8
        assert [w["applied"] for w in sb.writes()] == [False, False]


def test_throttle_answers_with_the_systems_throttle_response():
    with _sandbox({"system": "shopify", "operation": "*", "kind": "throttle", "count": 1},
                  {"system": "amazon", "operation": "getOrder", "kind": "throttle", "count": 1},
                  {"system": "erp", "operation": "suiteql", "kind": "throttle", "count": 1}) as sb:
        body = gql(sb, "{ locations(first: 1) { nodes { id } } }").json()
        assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
        assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] < 10
        token = lwa_token(sb)
        r = sp(sb, "GET", "/orders/v0/orders/111-0000000-0000002", token)
        assert r.status_code == 429 and r.json()["errors"][0]["code"] == "QuotaExceeded"
        ns = suiteql(sb, "SELECT id FROM item")
        assert ns.status_code == 429 and ns.json()["o:errorDetails"][0]["o:errorCode"] == "CONCURRENCY_LIMIT_EXCEEDED"
        assert suiteql(sb, "SELECT id FROM item").status_code == 200


def test_down_resets_connections_or_answers_status():
    with _sandbox({"system": "erp", "operation": "*", "kind": "down"},
                  {"system": "walmart", "operation": "*", "kind": "down", "status": 503}) as sb:
        with pytest.raises(requests.exceptions.ConnectionError):
            suiteql(sb, "SELECT id FROM item")
        r = requests.post(sb.urls["walmart"] + "/v3/token", timeout=10)
        assert r.status_code == 503
        assert requests.get(sb.urls["erp"] + "/_sandbox/state", timeout=10).status_code == 200   # state stays readable


def test_state_and_writes_endpoints_on_every_port():
    with _sandbox() as sb:
        token = walmart_token(sb)
        wm(sb, "PUT", INV, token, json={"sku": "TEE-BLK-M", "quantity": {"unit": "EACH", "amount": 2}})
        for url in sb.urls.values():
            state = requests.get(url + "/_sandbox/state", timeout=10).json()
            assert set(sb.urls) <= set(state) and state["name"] == "sandbox-test"
            assert state["walmart"]["items"][0]["quantity"] == 2
            writes = requests.get(url + "/_sandbox/writes", timeout=10).json()
            assert [(w["system"], w["operation"], w["applied"]) for w in writes] == [("walmart", "updateInventoryForAnItem", True)]
            assert set(writes[0]) == {"system", "operation", "key", "body", "query", "at", "applied"}
