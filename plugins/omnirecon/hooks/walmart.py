"""Walmart Marketplace (US) hook (reference/channel-apis.md §3, walmart-models/).

Client-credentials token (15 min, refreshed before expiry and once on a 401), the WM_ headers with a
fresh correlation id on every call, pacing from `x-current-token-count` / `x-next-replenish-time`,
cursor paging (`nextCursor` sent verbatim for orders).
"""
from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import requests

from omnirecon.hooks.base import ApiError, MalformedResponse, Reauthenticate
from omnirecon.hooks.connector import CachedBearerToken, ConnectorHook
from omnirecon.timeutil import iso, utcnow

TOKEN_COUNT_HEADERS = ("x-current-token-count",)
REPLENISH_HEADERS = ("x-next-replenish-time", "x-next-replenishment-time")


def _header(resp: requests.Response, names) -> str | None:
    for n in names:   # requests' headers are case-insensitive
        if resp.headers.get(n) not in (None, ""):
            return resp.headers[n]
    return None


class WalmartHook(CachedBearerToken, ConnectorHook):
    refresh_margin_s = 120.0   # refresh the 900 s token two minutes early
    non_idempotent_operations = frozenset({"updateBulkInventory"})
    conn_name_attr = "walmart_conn_id"
    default_conn_name = "omnirecon_walmart"
    conn_type = "omnirecon_walmart"
    hook_name = "Walmart Marketplace (omnirecon)"
    system = "walmart"

    inventory_page_size = 50     # /v3/inventories: "Cannot be more than 50"
    orders_page_size = 200
    items_page_size = 200
    max_pacing_wait = 60.0

    def __init__(self, walmart_conn_id: str | None = None, **kwargs):
        super().__init__(walmart_conn_id, **kwargs)
        self._init_token_cache()
        self._quota: dict[str, tuple[int, float | None]] = {}   # operation -> (tokens left, replenish epoch s)

    # -- auth -------------------------------------------------------------------------
    def _basic(self) -> str:
        raw = f"{self.fields['login'] or ''}:{self.fields['password'] or ''}".encode()
        value = "Basic " + base64.b64encode(raw).decode()
        self.core.add_secret(base64.b64encode(raw).decode())
        return value

    def _wm_headers(self, cid: str) -> dict:
        h = {"WM_SVC.NAME": self.extra("svc_name", "Walmart Marketplace"), "WM_QOS.CORRELATION_ID": cid,
             "Accept": "application/json"}
        if self.extra("channel_type"):
            h["WM_CONSUMER.CHANNEL.TYPE"] = self.extra("channel_type")
        return h

    def _refresh_token(self) -> None:
        def prepare(call, cid):
            call["headers"].update(self._wm_headers(cid))
            call["headers"].update({"Authorization": self._basic(),
                                    "Content-Type": "application/x-www-form-urlencoded"})
        resp = self.core.request("POST", self.base_url + "/v3/token", operation="token", prepare=prepare,
                                 data={"grant_type": "client_credentials"})
        body = self.core.json(resp, "token")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise MalformedResponse(self.system, "token", "token answer has no access_token")
        self._store_token(token, float(body.get("expires_in") or 900))

    def _prepare(self, call: dict, cid: str) -> None:
        call["headers"].update(self._wm_headers(cid))
        call["headers"].update({"Authorization": self._basic(), "WM_SEC.ACCESS_TOKEN": self.access_token()})

    # -- pacing -----------------------------------------------------------------------
    def _pace(self, operation: str) -> None:
        left, replenish = self._quota.get(operation, (1, None))
        if left > 0 or replenish is None:
            return
        wait_real = replenish - time.time()
        if wait_real > 0:
            wait_doc = min(wait_real / self.time_scale, self.max_pacing_wait)
            self.core.event(operation, "throttled", None, f"no tokens left; waiting {wait_doc:.2f}s for replenish")
            self.wait(wait_doc)

    def _note_quota(self, operation: str, resp: requests.Response) -> None:
        count = _header(resp, TOKEN_COUNT_HEADERS)
        if count is None:
            return
        try:
            left = int(float(count))
        except ValueError:
            return
        replenish = None
        raw = _header(resp, REPLENISH_HEADERS)
        if raw:
            try:
                value = float(raw)
                replenish = value / 1000.0 if value > 1e11 else value   # epoch ms (documented) or seconds
            except ValueError:
                replenish = None
        self._quota[operation] = (left, replenish)

    def call(self, method: str, path: str, operation: str, *, params: dict | None = None, body: Any = None,
             ok_statuses: tuple = (), raw_query: str | None = None, parse=None, **kwargs) -> Any:
        url = self.base_url + path + (raw_query or "")

        def inspect(resp):
            self._note_quota(operation, resp)
            if resp.status_code == 401:
                raise Reauthenticate("access token rejected", 401)

        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        return self.core.request(method, url, operation=operation, prepare=self._prepare, inspect=inspect,
                                 reauthenticate=lambda: self.access_token(force=True),
                                 pace=lambda: self._pace(operation), params=params,
                                 ok=lambda r: r.status_code < 400 or r.status_code in ok_statuses,
                                 parse=parse, **kwargs)

    def ping(self) -> None:
        self.access_token(force=True)

    # -- inventory and items ----------------------------------------------------------
    def fetch_inventories(self) -> list[dict]:
        """GET /v3/inventories (every SKU, every ship node), cursor-paged."""
        out: list[dict] = []
        cursor = None
        op = "getMultiNodeInventoryForAllSkuAndAllShipNodes"
        seen: set[str] = set()
        while True:
            params = {"limit": self.inventory_page_size}
            if cursor:
                params["nextCursor"] = cursor
            body = self.call_json("GET", "/v3/inventories", op, params=params, shape=("elements.inventories",))
            page = body["elements"]["inventories"]
            if not isinstance(page, list):
                raise MalformedResponse(self.system, op, "elements.inventories is not a list")
            out.extend(page)
            cursor = (body.get("meta") or {}).get("nextCursor")
            if not cursor or not page:
                return out
            if cursor in seen:
                raise MalformedResponse(self.system, op, "nextCursor repeats: paging would never end")
            seen.add(cursor)

    def fetch_items(self) -> list[dict]:
        """GET /v3/items (published and lifecycle status), cursor-paged from nextCursor=*."""
        out: list[dict] = []
        cursor = "*"
        seen: set[str] = set()
        while True:
            parser = self.core.json_parser("getAllItems", "ItemResponse")
            body = self.call("GET", "/v3/items", "getAllItems", ok_statuses=(404,),
                             params={"limit": self.items_page_size, "nextCursor": cursor},
                             parse=lambda r: None if r.status_code == 404 else parser(r))
            if body is None:
                return out   # 404 CONTENT_NOT_FOUND: no (more) items
            page = body["ItemResponse"]
            if not isinstance(page, list):
                raise MalformedResponse(self.system, "getAllItems", "ItemResponse is not a list")
            out.extend(page)
            cursor = body.get("nextCursor")
            if not cursor or not page:
                return out
            if cursor in seen:
                raise MalformedResponse(self.system, "getAllItems", "nextCursor repeats: paging would never end")
            seen.add(cursor)

    def fetch_inventory_snapshot(self) -> dict:
        return {"inventories": self.fetch_inventories(), "items": self.fetch_items()}

    # -- orders -----------------------------------------------------------------------
    def fetch_orders(self, start: datetime, end: datetime) -> list[dict]:
        """GET /v3/orders by lastModified window; 404 CONTENT_NOT_FOUND means no orders."""
        params = {"lastModifiedStartDate": iso(start), "lastModifiedEndDate": iso(end),
                  "createdStartDate": (utcnow() - timedelta(days=180)).strftime("%Y-%m-%d"),
                  "limit": self.orders_page_size}
        raw_query = "?" + urlencode(params)
        out: list[dict] = []
        seen: set[str] = set()
        while True:
            parser = self.core.json_parser("getAllOrders", "list.elements.order")
            body = self.call("GET", "/v3/orders", "getAllOrders", raw_query=raw_query, ok_statuses=(404,),
                             parse=lambda r: None if r.status_code == 404 else parser(r))
            if body is None:
                return out   # 404 CONTENT_NOT_FOUND: nothing (more) matches
            lst = body["list"]
            orders = lst["elements"]["order"]
            if not isinstance(orders, list):
                raise MalformedResponse(self.system, "getAllOrders", "list.elements.order is not a list")
            out.extend(orders)
            cursor = (lst.get("meta") or {}).get("nextCursor")
            if not cursor or not orders:
                return out
            if cursor in seen:
                raise MalformedResponse(self.system, "getAllOrders", "nextCursor repeats: paging would never end")
            seen.add(cursor)
            raw_query = cursor if cursor.startswith("?") else "?" + cursor   # verbatim: never re-encode

    # -- writes and read-back ---------------------------------------------------------
    def update_inventory(self, sku: str, ship_node: str, amount: int) -> dict:
        body = {"sku": sku, "quantity": {"unit": "EACH", "amount": int(amount)}}
        params = {"sku": sku, "shipNode": ship_node}
        target = f"{sku}@{ship_node}"
        try:
            resp = self.call("PUT", "/v3/inventory", "updateInventoryForAnItem", params=params, body=body)
        except ApiError as e:
            self.record_write("updateInventoryForAnItem", target, body, e.status_code, "error", str(e))
            raise
        answer = self.core.json(resp, "updateInventoryForAnItem")
        self.record_write("updateInventoryForAnItem", target, body, resp.status_code, "ok")
        return answer if isinstance(answer, dict) else {"raw": answer}

    def read_inventory(self, sku: str, ship_node: str) -> int | None:
        parser = self.core.json_parser("getInventory", "quantity.amount")
        body = self.call("GET", "/v3/inventory", "getInventory", params={"sku": sku, "shipNode": ship_node},
                         ok_statuses=(404,), parse=lambda r: None if r.status_code == 404 else parser(r))
        return None if body is None else int(body["quantity"]["amount"])

    def submit_inventory_feed(self, items: list[dict]) -> str:
        """MP_INVENTORY (spec 1.5, multi-node) as multipart/form-data. Returns the feed id."""
        by_sku: dict[str, list] = {}
        for it in items:
            by_sku.setdefault(it["sku"], []).append(
                {"shipNode": str(it["ship_node"]), "quantity": {"unit": "EACH", "amount": int(it["amount"])}})
        feed = {"inventoryHeader": {"version": "1.5"},
                "inventory": [{"sku": sku, "shipNodes": nodes} for sku, nodes in by_sku.items()]}
        summary = {"feedType": "MP_INVENTORY", "items": len(items), "skus": list(by_sku)[:50]}
        files = {"file": ("inventory.json", json.dumps(feed).encode("utf-8"), "application/json")}
        try:
            resp = self.call("POST", "/v3/feeds", "updateBulkInventory", params={"feedType": "MP_INVENTORY"},
                             files=files)
        except ApiError as e:
            self.record_write("updateBulkInventory", "MP_INVENTORY", summary, e.status_code, "error", str(e))
            raise
        body = self.core.json(resp, "updateBulkInventory")
        feed_id = body.get("feedId") if isinstance(body, dict) else None
        if not feed_id:
            raise MalformedResponse(self.system, "updateBulkInventory", "answer has no feedId")
        self.record_write("updateBulkInventory", feed_id, summary, resp.status_code, "ok")
        return feed_id

    def feed_status(self, feed_id: str) -> dict:
        body = self.call_json("GET", f"/v3/feeds/{quote(feed_id, safe='@')}", "getFeedItemStatus",
                              params={"includeDetails": "true", "offset": 0, "limit": 1000})
        details = ((body.get("itemDetails") or {}).get("itemIngestionStatus")) or []
        return {"feed_id": feed_id, "status": body.get("feedStatus"), "items_received": body.get("itemsReceived"),
                "items_succeeded": body.get("itemsSucceeded"), "items_failed": body.get("itemsFailed"),
                "items_processing": body.get("itemsProcessing"), "items": details, "raw": body}
