"""The world in real time: the sandbox clock runs from the start, hops carry on their own thread, an API write
over HTTP is seen by the hops like any other change, and GET /_sandbox/world serves the same world on every port."""
from __future__ import annotations

import requests

from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox.core import Sandbox
from tests.support.polling import wait_for
from tests.support.sandbox_http import walmart_token, wm
from tests.support.world import world_doc


def test_world_runs_in_real_time_and_is_served_on_every_port():
    hops = [{"id": "erp-shopify", "from": "erp", "to": "shopify", "kind": "inventory", "mechanism": "event",
             "latency": "300ms"},
            {"id": "walmart-amazon", "from": "walmart", "to": "amazon", "kind": "inventory", "mechanism": "event",
             "latency": "200ms"}]
    doc = world_doc(integration={"hops": hops},
                    events=[{"at": "+0.5s", "system": "erp", "kind": "adjust", "sku": "SKU-000", "location": "WH-EAST",
                             "delta": -4}])
    with Sandbox(from_dict(doc)) as sb:
        carried = lambda: [e for e in requests.get(sb.urls["erp"] + "/_sandbox/world", timeout=5).json()["hop_log"]
                           if e["hop"] == "erp-shopify" and e["outcome"] == "carried"]
        entry = wait_for(carried, 20, "the ERP change carried to Shopify")[0]
        assert entry["value"] == 6 and entry["delay_s"] >= 0.3          # never early; late only by scheduling
        assert sb.systems["shopify"].by_sku["SKU-000"]["levels"][0]["available"] == 6
        r = wm(sb, "PUT", "/v3/inventory?sku=SKU-001&shipNode=10001", walmart_token(sb),
               json={"sku": "SKU-001", "quantity": {"unit": "EACH", "amount": 5}})
        assert r.status_code == 200
        wait_for(lambda: sb.systems["amazon"].listings["SKU-001"]["quantity"] == 3, 20,
                 "the API write on Walmart relayed to Amazon (5 - safety 2)")
        views = [requests.get(url + "/_sandbox/world", timeout=5).json() for url in sb.urls.values()]
        for view in views:
            assert view["clock"]["started_at"] == views[0]["clock"]["started_at"]
            assert [w["by"] for w in view["writes"]][:3] == ["integration", "api", "integration"]
        state = requests.get(sb.urls["shopify"] + "/_sandbox/state", timeout=5).json()
        assert state["world"]["hop_log"][0]["hop"] == "erp-shopify" and "integration" in state


def test_static_scenario_serves_no_world():
    with Sandbox(from_dict(world_doc())) as sb:
        r = requests.get(sb.urls["walmart"] + "/_sandbox/world", timeout=5)
        assert r.status_code == 404
        assert "world" not in requests.get(sb.urls["walmart"] + "/_sandbox/state", timeout=5).json()


def test_orders_the_world_places_are_served_by_the_channel_api():
    doc = world_doc(events=[{"at": "+0.2s", "system": "walmart", "kind": "order", "sku": "SKU-002", "quantity": 2}])
    with Sandbox(from_dict(doc)) as sb:
        orders = sb.systems["walmart"].orders
        wait_for(lambda: orders, 20, "the Walmart sale")
        token = walmart_token(sb)
        po = orders[0]["purchase_order_id"]
        body = wm(sb, "GET", f"/v3/orders/{po}", token).json()["order"]
        assert body["orderLines"]["orderLine"][0]["item"]["sku"] == "SKU-002"
        assert wm(sb, "POST", f"/v3/orders/{po}/acknowledge", token).status_code == 200
        got = wm(sb, "GET", "/v3/inventory?sku=SKU-002&shipNode=10001", token).json()
        assert got["quantity"]["amount"] == 7                # 9 - 2, at once
