"""Sandbox benchmark: load time for a 100k-SKU generated scenario and requests/s per system over real HTTP.

Run: .venv/bin/python bench/bench_sandbox.py [--skus 100000] [--requests 300]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from urllib.parse import quote

import requests

from omnirecon_sandbox import Sandbox
from omnirecon_contract.scenario import from_dict

SCENARIO = {
    "version": 1, "name": "bench-sandbox", "as_of": "now",
    "settings": {"locations": [{"erp": "WH-1", "shopify": "gid://shopify/Location/1", "walmart_ship_node": "10001",
                                "amazon": "MFN"}]},
    "erp": {"account": "1234567_SB1", "locations": [{"id": 1, "name": "WH-1"}]},
    "shopify": {"plan": "plus"}, "amazon": {"seller_id": "A1BENCH", "marketplace_id": "ATVPDKIKX0DER"}, "walmart": {},
}
UNLIMITED = {"amazon_rate_limits": {"getListingsItem": (1e6, 1e6)},
             "walmart_rate_limits": {"getMultiNodeInventoryForAllSkuAndAllShipNodes": (1e8, 1e8)},
             "shopify_bucket_size": 1e9, "shopify_restore_rate": 1e9, "netsuite_concurrency": 64}


def _rate(label: str, n: int, fn) -> None:
    session_start = time.perf_counter()
    for i in range(n):
        fn(i)
    elapsed = time.perf_counter() - session_start
    print(f"  {label:<44} {n / elapsed:8.1f} req/s  ({n} requests, {elapsed:.2f} s)")


def _ns_auth(conn: dict, method: str, url: str, query: str) -> str:
    enc = lambda s: quote(str(s), safe="~-._")  # noqa: E731
    oauth = {"oauth_consumer_key": conn["login"], "oauth_token": conn["extra"]["token_id"],
             "oauth_signature_method": "HMAC-SHA256", "oauth_timestamp": str(int(time.time())),
             "oauth_nonce": secrets.token_hex(8), "oauth_version": "1.0"}
    pairs = [tuple(p.split("=", 1)) for p in query.split("&") if p] + list(oauth.items())
    norm = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted((enc(k), enc(v)) for k, v in pairs))
    base = f"{method}&{enc(url)}&{enc(norm)}"
    key = f"{enc(conn['password'])}&{enc(conn['extra']['token_secret'])}".encode()
    sig = base64.b64encode(hmac.new(key, base.encode(), hashlib.sha256).digest()).decode()
    fields = {"realm": conn["extra"]["account"], **oauth, "oauth_signature": sig}
    return "OAuth " + ", ".join(f'{k}="{enc(v)}"' for k, v in fields.items())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skus", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    doc = dict(SCENARIO, generate={"skus": args.skus, "locations": 1, "orders": args.skus // 5,
                                   "drift_fraction": 0.01, "seed": 7})
    t0 = time.perf_counter()
    scenario = from_dict(doc)
    t1 = time.perf_counter()
    sb = Sandbox(scenario, time_scale=0.01, options=UNLIMITED)
    t2 = time.perf_counter()
    sb.start()
    t3 = time.perf_counter()
    print(f"sandbox for {args.skus} SKUs: validate {t1 - t0:.2f} s, build (generate + index + SQLite) {t2 - t1:.2f} s, "
          f"start {t3 - t2:.2f} s")
    try:
        s = requests.Session()
        conn = sb.connections()
        shop = conn["omnirecon_shopify"]
        q = ("query($after: String) { productVariants(first: 250, after: $after) { pageInfo { hasNextPage endCursor } "
             "nodes { id sku inventoryItem { id } } } }")
        cursor = {"after": None}

        def shopify_page(_):
            r = s.post(f"{shop['host']}/admin/api/2026-01/graphql.json", json={"query": q, "variables": cursor},
                       headers={"X-Shopify-Access-Token": shop["password"]}, timeout=30).json()
            info = r["data"]["productVariants"]["pageInfo"]
            cursor["after"] = info["endCursor"] if info["hasNextPage"] else None
        _rate("shopify productVariants(first: 250) pages", max(1, args.requests // 10), shopify_page)

        amz = conn["omnirecon_amazon"]
        token = s.post(amz["extra"]["lwa_endpoint"], data={"grant_type": "refresh_token", "refresh_token": amz["extra"]["refresh_token"],
                                                           "client_id": amz["login"], "client_secret": amz["password"]}).json()["access_token"]
        _rate("amazon getListingsItem", args.requests, lambda i: s.get(
            f"{amz['host']}/listings/2021-08-01/items/A1BENCH/GEN-{i + 1:06d}", params={"marketplaceIds": "ATVPDKIKX0DER"},
            headers={"x-amz-access-token": token}, timeout=30).raise_for_status())

        wal = conn["omnirecon_walmart"]
        basic = base64.b64encode(f"{wal['login']}:{wal['password']}".encode()).decode()
        wtoken = s.post(f"{wal['host']}/v3/token", data={"grant_type": "client_credentials"},
                        headers={"Authorization": f"Basic {basic}", "WM_SVC.NAME": "Walmart Marketplace",
                                 "WM_QOS.CORRELATION_ID": "b", "Accept": "application/json"}).json()["access_token"]
        _rate("walmart getMultiNodeInventory...AllSku (50)", max(1, args.requests // 5), lambda i: s.get(
            f"{wal['host']}/v3/inventories?limit=50", timeout=30, headers={
                "WM_SEC.ACCESS_TOKEN": wtoken, "WM_QOS.CORRELATION_ID": str(uuid.uuid4()),
                "WM_SVC.NAME": "Walmart Marketplace"}).raise_for_status())

        ns = conn["omnirecon_netsuite"]
        last = {"id": 0}

        def suiteql_page(_):
            query = "limit=1000&offset=0"
            url = f"{ns['host']}/services/rest/query/v1/suiteql"
            body = {"q": f"SELECT i.id, i.itemid, iil.quantityavailable FROM item i JOIN inventoryitemlocations iil "
                         f"ON iil.item = i.id WHERE i.id > {last['id']} ORDER BY i.id FETCH FIRST 1000 ROWS ONLY"}
            r = s.post(f"{url}?{query}", data=json.dumps(body), timeout=30, headers={
                "Authorization": _ns_auth(ns, "POST", url, query), "Prefer": "transient",
                "Content-Type": "application/json"}).json()
            last["id"] = int(r["items"][-1]["id"]) if r["items"] else 0
        _rate("netsuite suiteql keyset pages (1000 rows)", max(1, args.requests // 10), suiteql_page)
        t4 = time.perf_counter()
        sb.state()
        print(f"state dump: {time.perf_counter() - t4:.2f} s")
    finally:
        sb.stop()


if __name__ == "__main__":
    main()
