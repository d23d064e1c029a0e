"""Shared helpers for the sandbox tests: a small scenario, clients that speak each system's auth."""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import secrets
import time
import uuid
from urllib.parse import parse_qsl, quote, urlsplit

import requests

SCENARIO = {
    "version": 1,
    "name": "sandbox-test",
    "as_of": "now",
    "settings": {
        "locations": [{"erp": "WH-EAST", "shopify": "gid://shopify/Location/1001", "walmart_ship_node": "10001",
                       "amazon": "MFN"}],
        "channels": {"shopify": {"safety_stock": 0}, "walmart": {"safety_stock": 1},
                     "amazon": {"safety_stock": 2, "seller_id": "A1SELLERDEMO", "marketplace_id": "ATVPDKIKX0DER"}},
    },
    "erp": {
        "account": "1234567_SB1",
        "locations": [{"id": 1, "name": "WH-EAST"}, {"id": 2, "name": "FBA-US"}],
        "items": [
            {"id": 501, "itemid": "TEE-BLK-M", "type": "InvtPart", "isinactive": False, "last_modified": "-3h",
             "locations": [{"location": "WH-EAST", "on_hand": 10, "committed": 2, "on_order": 0, "last_modified": "-3h"}]},
            {"id": 502, "itemid": "MUG-WHT", "type": "InvtPart", "isinactive": False, "last_modified": "-2h",
             "locations": [{"location": "WH-EAST", "on_hand": 5, "committed": 0, "last_modified": "-2h"},
                           {"location": "FBA-US", "on_hand": 7, "committed": 1, "last_modified": "-2h"}]},
            {"id": 503, "itemid": "GIFT-CARD", "type": "NonInvtPart", "isinactive": True, "last_modified": "-1d"},
        ],
        "sales_orders": [
            {"id": 9001, "tranid": "SO9001", "channel": "shopify", "channel_order_id": "gid://shopify/Order/1",
             "status": "B", "created": "-2h", "last_modified": "-1h",
             "lines": [{"sku": "TEE-BLK-M", "quantity": 1, "quantity_fulfilled": 0}]},
            {"id": 9002, "tranid": "SO9002", "channel": "amazon", "channel_order_id": "111-0000000-0000001",
             "status": "F", "created": "-5h", "last_modified": "-30m",
             "lines": [{"sku": "MUG-WHT", "quantity": 2, "quantity_fulfilled": 2}],
             "fulfillments": [{"id": 7001, "shipped_at": "-40m"}]},
        ],
    },
    "shopify": {
        "shop": "demo-store.myshopify.com", "plan": "standard",
        "locations": [{"id": "gid://shopify/Location/1001", "name": "East Warehouse", "active": True},
                      {"id": "gid://shopify/Location/1002", "name": "Closed Store", "active": False}],
        "variants": [
            {"id": "gid://shopify/ProductVariant/1", "sku": "TEE-BLK-M", "inventory_item_id": "gid://shopify/InventoryItem/1",
             "tracked": True, "inventory_policy": "DENY",
             "levels": [{"location_id": "gid://shopify/Location/1001", "available": 8, "on_hand": 10, "committed": 2,
                         "updated_at": "-3h"}]},
            {"id": "gid://shopify/ProductVariant/2", "sku": "MUG-WHT", "inventory_item_id": "gid://shopify/InventoryItem/2",
             "tracked": True, "inventory_policy": "CONTINUE",
             "levels": [{"location_id": "gid://shopify/Location/1001", "available": 5, "on_hand": 5, "committed": 0,
                         "updated_at": "-2h"}]},
            {"id": "gid://shopify/ProductVariant/3", "sku": "SOCK-RED", "inventory_item_id": "gid://shopify/InventoryItem/3",
             "tracked": False, "levels": []},
        ],
        "orders": [
            {"id": "gid://shopify/Order/1", "name": "#1001", "created_at": "-2h", "updated_at": "-1h",
             "cancelled_at": None, "display_fulfillment_status": "UNFULFILLED", "display_financial_status": "PAID",
             "line_items": [{"sku": "TEE-BLK-M", "quantity": 1}]},
            {"id": "gid://shopify/Order/2", "name": "#1002", "created_at": "-3d", "updated_at": "-2d",
             "display_fulfillment_status": "FULFILLED", "display_financial_status": "PAID",
             "line_items": [{"sku": "MUG-WHT", "quantity": 2}]},
            {"id": "gid://shopify/Order/3", "name": "#1003", "created_at": "-50m", "updated_at": "-10m",
             "cancelled_at": "-10m", "display_fulfillment_status": "UNFULFILLED", "display_financial_status": "VOIDED",
             "line_items": [{"sku": "MUG-WHT", "quantity": 1}]},
        ],
    },
    "amazon": {
        "seller_id": "A1SELLERDEMO", "marketplace_id": "ATVPDKIKX0DER",
        "listings": [
            {"sku": "TEE-BLK-M", "asin": "B0DEMO0001", "product_type": "SHIRT", "quantity": 6,
             "status": ["BUYABLE", "DISCOVERABLE"], "issues": [], "last_updated": "-3h"},
            {"sku": "MUG-WHT", "asin": "B0DEMO0003", "product_type": "DRINKING_CUP", "quantity": 3,
             "status": ["DISCOVERABLE"], "issues": [{"code": "90220", "severity": "ERROR", "message": "Missing brand"}],
             "last_updated": "-2h"},
        ],
        "fba_inventory": [{"sku": "MUG-WHT-FBA", "asin": "B0DEMO0002", "fulfillable_quantity": 6, "reserved_quantity": 1,
                           "inbound_quantity": 0, "last_updated": "-1h"}],
        "orders": [
            {"amazon_order_id": "111-0000000-0000001", "purchase_date": "-5h", "last_update_date": "-30m",
             "order_status": "Shipped", "fulfillment_channel": "MFN",
             "items": [{"sku": "MUG-WHT", "quantity_ordered": 2, "quantity_shipped": 2}]},
            {"amazon_order_id": "111-0000000-0000002", "purchase_date": "-3h", "last_update_date": "-2h",
             "order_status": "Unshipped", "fulfillment_channel": "MFN",
             "items": [{"sku": "TEE-BLK-M", "quantity_ordered": 1, "quantity_shipped": 0}]},
            {"amazon_order_id": "111-0000000-0000003", "purchase_date": "-1h", "last_update_date": "-1h",
             "order_status": "Pending", "fulfillment_channel": "AFN",
             "items": [{"sku": "MUG-WHT-FBA", "quantity_ordered": 1, "quantity_shipped": 0}]},
        ],
    },
    "walmart": {
        "items": [
            {"sku": "TEE-BLK-M", "ship_node": "10001", "quantity": 7, "published_status": "PUBLISHED",
             "lifecycle_status": "ACTIVE", "last_updated": "-3h"},
            {"sku": "TEE-BLK-M", "ship_node": "10002", "quantity": 3, "published_status": "PUBLISHED",
             "lifecycle_status": "ACTIVE", "last_updated": "-3h"},
            {"sku": "MUG-WHT", "ship_node": "10001", "quantity": 4, "published_status": "UNPUBLISHED",
             "lifecycle_status": "ACTIVE", "last_updated": "-2h"},
        ],
        "orders": [
            {"purchase_order_id": "1796277083022", "customer_order_id": "5281956426648", "order_date": "-2h",
             "last_modified": "-1h", "lines": [{"line_number": "1", "sku": "TEE-BLK-M", "quantity": 1, "status": "Created"}]},
            {"purchase_order_id": "1796277083023", "customer_order_id": "5281956426649", "order_date": "-1d",
             "last_modified": "-20h", "lines": [{"line_number": "1", "sku": "MUG-WHT", "quantity": 2, "status": "Shipped"}]},
        ],
    },
}


def scenario_doc(**overrides) -> dict:
    doc = copy.deepcopy(SCENARIO)
    doc.update(overrides)
    return doc


# -- Shopify -------------------------------------------------------------------------------------------------------
def gql(sb, query: str, variables: dict | None = None, version: str = "2026-01", token: str | None = None):
    token = token or sb.connections()["omnirecon_shopify"]["password"]
    return requests.post(f"{sb.urls['shopify']}/admin/api/{version}/graphql.json",
                         json={"query": query, "variables": variables or {}},
                         headers={"X-Shopify-Access-Token": token, "Content-Type": "application/json",
                                  "Accept": "application/json"}, timeout=10)


# -- Amazon --------------------------------------------------------------------------------------------------------
def lwa_token(sb) -> str:
    conn = sb.connections()["omnirecon_amazon"]
    r = requests.post(conn["extra"]["lwa_endpoint"], data={
        "grant_type": "refresh_token", "refresh_token": conn["extra"]["refresh_token"],
        "client_id": conn["login"], "client_secret": conn["password"]}, timeout=10)
    r.raise_for_status()
    return r.json()["access_token"]


def sp(sb, method: str, path: str, token: str, **kw):
    return requests.request(method, sb.urls["amazon"] + path, headers={"x-amz-access-token": token}, timeout=10, **kw)


# -- Walmart -------------------------------------------------------------------------------------------------------
def walmart_token(sb) -> str:
    conn = sb.connections()["omnirecon_walmart"]
    basic = base64.b64encode(f"{conn['login']}:{conn['password']}".encode()).decode()
    r = requests.post(sb.urls["walmart"] + "/v3/token", data={"grant_type": "client_credentials"}, timeout=10,
                      headers={"Authorization": f"Basic {basic}", "WM_SVC.NAME": "Walmart Marketplace",
                               "WM_QOS.CORRELATION_ID": str(uuid.uuid4()), "Accept": "application/json"})
    r.raise_for_status()
    return r.json()["access_token"]


def wm(sb, method: str, path: str, token: str, **kw):
    headers = {"WM_SEC.ACCESS_TOKEN": token, "WM_QOS.CORRELATION_ID": str(uuid.uuid4()),
               "WM_SVC.NAME": "Walmart Marketplace", "Accept": "application/json"}
    headers.update(kw.pop("headers", {}))
    return requests.request(method, sb.urls["walmart"] + path, headers=headers, timeout=10, **kw)


# -- NetSuite: an independent OAuth 1.0a HMAC-SHA256 signer (RFC 5849) ------------------------------------------------
def _enc(s: str) -> str:
    return quote(str(s), safe="~-._")


def netsuite_auth(sb, method: str, url: str, nonce: str | None = None, timestamp: int | None = None,
                  consumer_secret: str | None = None) -> str:
    conn = sb.connections()["omnirecon_netsuite"]
    oauth = {"oauth_consumer_key": conn["login"], "oauth_token": conn["extra"]["token_id"],
             "oauth_signature_method": "HMAC-SHA256", "oauth_timestamp": str(timestamp or int(time.time())),
             "oauth_nonce": nonce or secrets.token_hex(12), "oauth_version": "1.0"}
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True) + list(oauth.items())
    norm = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(params, key=lambda kv: (_enc(kv[0]), _enc(kv[1]))))
    base = f"{method.upper()}&{_enc(f'{parts.scheme}://{parts.netloc}{parts.path}')}&{_enc(norm)}"
    key = f"{_enc(consumer_secret or conn['password'])}&{_enc(conn['extra']['token_secret'])}"
    sig = base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()).decode()
    fields = {"realm": conn["extra"]["account"], **oauth, "oauth_signature": sig}
    return "OAuth " + ", ".join(f'{k}="{_enc(v)}"' for k, v in fields.items())


def suiteql(sb, q: str, limit: int = 1000, offset: int = 0, **auth_kw):
    url = f"{sb.urls['erp']}/services/rest/query/v1/suiteql?limit={limit}&offset={offset}"
    return requests.post(url, json={"q": q}, timeout=10, headers={
        "Authorization": netsuite_auth(sb, "POST", url, **auth_kw), "Prefer": "transient",
        "Content-Type": "application/json"})


def ns_get(sb, path: str):
    url = f"{sb.urls['erp']}{path}"
    return requests.get(url, headers={"Authorization": netsuite_auth(sb, "GET", url)}, timeout=10)
