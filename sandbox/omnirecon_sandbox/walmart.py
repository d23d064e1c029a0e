"""Walmart Marketplace (US) imitation: token, inventory (single and multi-node), items, MP_INVENTORY feeds,
orders, with Walmart's required headers, gateway error shapes and token buckets."""
from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import secrets
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import timedelta
from urllib.parse import urlencode

from omnirecon_sandbox.http import Request, Response
from omnirecon_sandbox.ratelimit import TokenBucket
from omnirecon_sandbox.changes import INVENTORY, ORDER_CANCELLED, ORDER_CREATED, ORDER_FULFILLED, STATUS
from omnirecon_sandbox.system import BearerTokens, Call, System
from omnirecon_contract.timeutil import epoch_ms, iso, parse_ts

# operationId -> (tokens per minute, bucket size). Walmart does not publish production numbers; configurable.
RATE_LIMITS = {
    "tokenAPI": (100, 100), "getInventory": (200, 200), "updateInventoryForAnItem": (200, 200),
    "getMultiNodeInventoryForSkuAndAllShipnodes": (200, 200), "getMultiNodeInventoryForAllSkuAndAllShipNodes": (200, 200),
    "updateBulkInventory": (0.5, 30), "getFeedItemStatus": (600, 600), "getAllItems": (300, 300),
    "getAllOrders": (5000, 5000), "getAllReleasedOrders": (5000, 5000), "getAnOrder": (5000, 5000),
    "acknowledgeOrders": (60, 60),
}
INVENTORIES_MAX = 50
ITEMS_MAX = 200
ORDERS_MAX = 200
REQUIRED_HEADERS = ("WM_SEC.ACCESS_TOKEN", "WM_QOS.CORRELATION_ID", "WM_SVC.NAME")
UNIT_PRICE = 19.99
WALMART_NS = "http://walmart.com/"


def _gateway_error(code: str, field: str, description: str, info: str, category: str = "DATA",
                   severity: str = "ERROR") -> dict:
    return {"code": code, "field": field, "description": description, "info": info, "severity": severity,
            "category": category, "causes": [], "errorIdentifiers": {}}


def _qty(amount: int) -> dict:
    return {"unit": "EACH", "amount": int(amount)}


def _wants_xml(req: Request) -> bool:
    accept = req.header("accept") or ""
    return "xml" in accept and "json" not in accept


def _inventory_xml(sku: str, amount: int) -> str:
    """The Inventory schema as XML (us-mp-inventory.json: root `inventory`), as Walmart answers Accept: application/xml."""
    root = ET.Element("inventory", xmlns=WALMART_NS)
    ET.SubElement(root, "sku").text = sku
    qty = ET.SubElement(root, "quantity")
    ET.SubElement(qty, "unit").text = "EACH"
    ET.SubElement(qty, "amount").text = str(int(amount))
    return '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + ET.tostring(root, encoding="unicode")


def _inventory_from_xml(body: bytes) -> dict:
    """<inventory [xmlns="http://walmart.com/"]><sku/><quantity><unit/><amount/></quantity></inventory> -> the JSON shape."""
    root = ET.fromstring(body)
    local = {el.tag.rsplit("}", 1)[-1]: el for el in root.iter()}
    if root.tag.rsplit("}", 1)[-1] != "inventory" or "quantity" not in local or "amount" not in local:
        raise ValueError("not an inventory document")
    text = (local["amount"].text or "").strip()
    amount = int(text) if text.lstrip("-").isdigit() else text
    unit = (local["unit"].text or "").strip() if "unit" in local else "EACH"
    sku = (local["sku"].text or "").strip() if "sku" in local else None
    return {"sku": sku, "quantity": {"unit": unit, "amount": amount}}


class WalmartSystem(BearerTokens, System):
    token_header = "wm_sec.access_token"
    name = "walmart"
    token_operation = "token"

    def __init__(self, sandbox, data: dict):
        super().__init__(sandbox, data)
        self.items = data.setdefault("items", [])
        for row in self.items:
            row.setdefault("ship_node", "10001")
            row.setdefault("quantity", 0)
        self.orders = data.setdefault("orders", [])
        self.orders_by_id = {o["purchase_order_id"]: o for o in self.orders}
        self._order_seq = len(self.orders)
        self._groups = None
        self._by_sku: dict = {}
        self._init_tokens()
        limits = dict(RATE_LIMITS, **sandbox.options.walmart_rate_limits)
        self.buckets = {op: TokenBucket(per_min / 60.0, size, sandbox.clock) for op, (per_min, size) in limits.items()}
        self.feeds: dict[str, dict] = {}
        r = self.router
        r.add("POST", "/v3/token", "token", self.token)
        r.add("GET", "/v3/inventory", "getInventory", self.get_inventory)
        r.add("PUT", "/v3/inventory", "updateInventoryForAnItem", self.put_inventory)
        r.add("GET", "/v3/inventories", "getMultiNodeInventoryForAllSkuAndAllShipNodes", self.get_inventories)
        r.add("GET", "/v3/inventories/{sku}", "getMultiNodeInventoryForSkuAndAllShipnodes", self.get_sku_inventories)
        r.add("GET", "/v3/items", "getAllItems", self.get_items)
        r.add("POST", "/v3/feeds", "updateBulkInventory", self.post_feed)
        r.add("GET", "/v3/feeds/{feedId}", "getFeedItemStatus", self.get_feed)
        r.add("GET", "/v3/orders", "getAllOrders", self.get_orders)
        r.add("GET", "/v3/orders/released", "getAllReleasedOrders", self.get_released_orders)
        r.add("GET", "/v3/orders/{purchaseOrderId}", "getAnOrder", self.get_order)
        r.add("POST", "/v3/orders/{purchaseOrderId}/acknowledge", "acknowledgeOrders", self.acknowledge)

    # -- state changes (API writes, the retailer's integration, the world's sales) ------------------------------
    def set_quantity(self, row: dict, amount: int) -> None:
        """One ship node's quantity, as PUT /v3/inventory or a bulk inventory feed sets it."""
        with self.sb.lock:
            delta = int(amount) - int(row.get("quantity", 0))
            row["quantity"] = int(amount)
            row["last_updated"] = self.stamp()
        if delta:
            self.world_changed(INVENTORY, sku=row["sku"], location=row["ship_node"], value=int(amount),
                               detail={"delta": delta})

    def set_sku_quantity(self, sku: str, ship_node: str | None, amount: int) -> bool:
        rows = [r for r in self._rows(sku) if ship_node is None or r["ship_node"] == ship_node]
        if not rows:
            return False
        self.set_quantity(rows[0], amount)
        return True

    def set_published(self, sku: str, published: bool, reasons: list[str] | None = None) -> bool:
        """An item's publish status (Walmart unpublishes for price, content or compliance reasons)."""
        rows = self._rows(sku)
        status = "PUBLISHED" if published else "UNPUBLISHED"
        if not rows or all(r.get("published_status", "PUBLISHED") == status for r in rows):
            return False
        with self.sb.lock:
            for r in rows:
                r["published_status"] = status
        self.world_changed(STATUS, sku=sku, detail={"published": published, "reasons": list(reasons or [])})
        return True

    def accepts(self, sku: str, quantity: int) -> bool:
        return any(r.get("published_status", "PUBLISHED") == "PUBLISHED" and int(r.get("quantity", 0)) >= quantity
                   for r in self._rows(sku))

    def create_order(self, sku: str, quantity: int) -> str | None:
        """A sale: the ship node's quantity drops at once; the purchase order is Created."""
        if not self.accepts(sku, quantity):
            return None
        row = next(r for r in self._rows(sku) if r.get("published_status", "PUBLISHED") == "PUBLISHED"
                   and int(r.get("quantity", 0)) >= quantity)
        now = self.stamp()
        with self.sb.lock:
            self._order_seq += 1
            po = str(1800000000000 + self._order_seq * 7)
            order = {"purchase_order_id": po, "customer_order_id": str(5200000000000 + self._order_seq * 13),
                     "order_date": now, "last_modified": now,
                     "lines": [{"line_number": "1", "sku": sku, "quantity": int(quantity), "status": "Created",
                                "x_ship_node": row["ship_node"]}]}
            self.orders.append(order)
            self.orders_by_id[po] = order
        self.set_quantity(row, int(row["quantity"]) - quantity)
        self.world_changed(ORDER_CREATED, sku=sku, order=po, value=int(quantity))
        return po

    def _set_lines(self, order_id: str, status: str) -> dict | None:
        order = self.orders_by_id.get(order_id)
        if order is None or any(l.get("status") in ("Cancelled", "Shipped", "Delivered") for l in order.get("lines", [])):
            return None
        with self.sb.lock:
            for line in order.get("lines", []):
                line["status"] = status
            order["last_modified"] = self.stamp()
        return order

    def cancel_order(self, order_id: str) -> bool:
        order = self._set_lines(order_id, "Cancelled")
        if order is None:
            return False
        for line in order.get("lines", []):
            rows = [r for r in self._rows(line["sku"]) if r["ship_node"] == line.get("x_ship_node")] or self._rows(line["sku"])
            if rows:
                self.set_quantity(rows[0], int(rows[0]["quantity"]) + int(line["quantity"]))
        self.world_changed(ORDER_CANCELLED, order=order_id)
        return True

    def ship_order(self, order_id: str) -> bool:
        if self._set_lines(order_id, "Shipped") is None:
            return False
        self.world_changed(ORDER_FULFILLED, order=order_id)
        return True

    # -- System hooks ---------------------------------------------------------------------------------------
    def operations(self, req: Request, operation: str, params: dict) -> list[str]:
        return ["token", "tokenAPI"] if operation == "token" else [operation]

    def error(self, status: int, code: str, message: str) -> Response:
        category = "REQUEST" if status < 500 else "SYSTEM"
        return Response.json({"errors": [_gateway_error(code, "", message, message, category)]}, status)

    def throttled(self, operations: list[str]) -> Response:
        self.drain_buckets(operations)
        return self._too_many(operations[-1])

    def _too_many(self, op: str) -> Response:
        bucket = self.buckets.get(op)
        wait = bucket.seconds_until() if bucket else 1.0   # replenish times are epoch ms on the client's wall clock
        return Response.json({"errors": [_gateway_error(
            "REQUEST_THRESHOLD_VIOLATED.GMP_GATEWAY_API", "REQUEST_THRESHOLD_VIOLATED", "Too Many Requests",
            "Request threshold violated: the API's token bucket is empty.")]}, 429,
            {"x-current-token-count": "0", "x-next-replenish-time": str(int((time.time() + wait) * 1000))})

    def decorate(self, resp: Response, operations: list[str]) -> Response:
        bucket = self.buckets.get(operations[-1] if operations else "")
        if bucket is not None and "x-current-token-count" not in resp.headers:
            resp.headers["x-current-token-count"] = str(int(bucket.available()))
            resp.headers["x-next-replenish-time"] = str(int((time.time() + bucket.seconds_until(bucket.available() + 1)) * 1000))
        resp.headers.setdefault("WM_QOS.CORRELATION_ID", str(uuid.uuid4()))
        return resp

    # -- auth and headers ---------------------------------------------------------------------------------------
    @staticmethod
    def _unauthorized() -> Response:
        return Response.json({"error": [_gateway_error(
            "UNAUTHORIZED.GMP_GATEWAY_API", "UNAUTHORIZED", "Unauthorized",
            "Unauthorized token or incorrect authorization header. Please verify correct format and values.")]}, 401)

    @staticmethod
    def _missing(header: str) -> Response:
        return Response.json({"errors": [_gateway_error(
            "MISSING_REQUEST_HEADER", header, f"Required header {header} is missing",
            f"Required request header '{header}' is missing.", "REQUEST")]}, 400)

    def token(self, call: Call) -> Response:
        req = call.req
        for h in ("WM_QOS.CORRELATION_ID", "WM_SVC.NAME"):
            if not req.header(h):
                return self._missing(h)
        creds = self.sb.credentials
        expected = "Basic " + base64.b64encode(f"{creds.walmart_client_id}:{creds.walmart_client_secret}".encode()).decode()
        if req.header("authorization") != expected:
            return self._unauthorized()
        if req.form().get("grant_type") != "client_credentials":
            return Response.json({"errors": [_gateway_error("INVALID_REQUEST_CONTENT", "grant_type",
                                                            "Invalid grant_type", "grant_type must be client_credentials",
                                                            "REQUEST")]}, 400)
        bucket = self.buckets.get("tokenAPI")
        if bucket and not bucket.take():
            return self._too_many("tokenAPI")
        token = "eyJraWQiOi" + secrets.token_urlsafe(48)
        lifetime = self.sb.options.walmart_token_seconds
        self.issue_token(token, lifetime)
        if "json" not in (req.header("accept") or ""):
            xml = (f"<OAuthTokenDTO><accessToken>{token}</accessToken><tokenType>Bearer</tokenType>"
                   f"<expiresIn>{lifetime}</expiresIn></OAuthTokenDTO>")
            return Response.text(xml, 200, "application/xml")
        return Response.json({"access_token": token, "token_type": "Bearer", "expires_in": lifetime})

    def _guard(self, call: Call) -> Response | None:
        req = call.req
        for h in REQUIRED_HEADERS:
            if not req.header(h):
                return self._missing(h)
        if not self.token_valid(req.header("wm_sec.access_token")):
            return self._unauthorized()
        op = call.operations[-1]
        if op in self.buckets and not self.buckets[op].take():
            return self._too_many(op)
        return None

    def _bad_param(self, field: str, message: str) -> Response:
        return Response.json({"errors": [_gateway_error("INVALID_REQUEST_PARAM", field, message, message, "REQUEST")]}, 400)

    def _not_found(self, message: str, code: str = "CONTENT_NOT_FOUND.GMP_INVENTORY_API") -> Response:
        return Response.json({"errors": [_gateway_error(code, "sku", message, "Requested content could not be found.",
                                                        "APPLICATION", "WARN")]}, 404)

    # -- inventory ------------------------------------------------------------------------------------------
    def _node(self, row: dict) -> dict:
        reserved = int(row.get("x_reserved", 0))
        return {"shipNode": row["ship_node"], "inputQty": _qty(row["quantity"]),
                "availToSellQty": _qty(max(0, int(row["quantity"]) - reserved)), "reservedQty": _qty(reserved)}

    def get_inventory(self, call: Call) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        sku, node = call.req.arg("sku"), call.req.arg("shipNode")
        if not sku:
            return self._bad_param("sku", "sku is required")
        rows = [r for r in self._rows(sku) if node is None or r["ship_node"] == node]
        if not rows:
            return self._not_found(f"Inventory not found for sku {sku}")
        return self._inventory_answer(call.req, sku, rows[0]["quantity"])

    @staticmethod
    def _inventory_answer(req: Request, sku: str, amount: int) -> Response:
        if _wants_xml(req):
            return Response.text(_inventory_xml(sku, amount), 200, "application/xml")
        return Response.json({"sku": sku, "quantity": _qty(amount)})

    def put_inventory(self, call: Call) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        sku, node = call.req.arg("sku"), call.req.arg("shipNode")
        try:
            xml_body = "xml" in (call.req.header("content-type") or "")
            body = _inventory_from_xml(call.req.body) if xml_body else call.req.json()
            amount = body["quantity"]["amount"]
            unit = body["quantity"].get("unit", "EACH")
        except (ValueError, TypeError, KeyError, ET.ParseError):
            return Response.json({"errors": [_gateway_error("MALFORMED_REQUEST_CONTENT", "quantity",
                                                            "Malformed request content",
                                                            "Body must be {sku, quantity: {unit, amount}}", "REQUEST")]}, 400)
        if not sku:
            return self._bad_param("sku", "sku is required")
        if body.get("sku") not in (None, sku):
            return self._bad_param("sku", "sku in the body does not match the sku parameter")
        if not isinstance(amount, int) or amount < 0 or unit not in ("EACH",):
            return self._bad_param("quantity.amount", "quantity.amount must be an integer >= 0 and unit EACH")
        rows = [r for r in self._rows(sku) if node is None or r["ship_node"] == node]
        if not rows:
            return self._not_found(f"Inventory not found for sku {sku}")
        if call.apply:
            self.set_quantity(rows[0], amount)
        self.sb.record_write(self.name, "updateInventoryForAnItem", f"{sku}@{rows[0]['ship_node']}", body, call.apply,
                             query=call.req.raw_query)
        return self._inventory_answer(call.req, sku, amount)

    def _grouped(self) -> list[tuple[str, list[dict]]]:
        """(sku, rows) in first-seen order; rows are never added at runtime, so this is built once."""
        if self._groups is None:
            groups: dict[str, list[dict]] = {}
            for r in self.items:
                groups.setdefault(r["sku"], []).append(r)
            self._groups = list(groups.items())
            self._by_sku = groups
        return self._groups

    def _rows(self, sku: str) -> list[dict]:
        self._grouped()
        return self._by_sku.get(sku, [])

    def _cursor(self, offset: int) -> str:
        return base64.b64encode(f"{uuid.uuid4()} {offset}".encode()).decode()

    def _offset(self, cursor: str | None) -> int | None:
        if not cursor or cursor == "*":
            return 0
        try:
            return int(base64.b64decode(cursor.encode(), validate=True).decode().rsplit(" ", 1)[1])
        except Exception:
            return None

    def get_inventories(self, call: Call) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        limit = call.req.arg("limit", "10")
        if not str(limit).isdigit() or not 1 <= int(limit) <= INVENTORIES_MAX:
            return self._bad_param("limit", f"limit must be between 1 and {INVENTORIES_MAX}")
        offset = self._offset(call.req.arg("nextCursor"))
        if offset is None:
            return self._bad_param("nextCursor", "Invalid nextCursor")
        groups = self._grouped()
        page = groups[offset: offset + int(limit)]
        meta = {"totalCount": len(groups)}
        if offset + int(limit) < len(groups):
            meta["nextCursor"] = self._cursor(offset + int(limit))
        return Response.json({"meta": meta, "elements": {"inventories": [
            {"sku": sku, "nodes": [self._node(r) for r in rows]} for sku, rows in page]}})

    def get_sku_inventories(self, call: Call, sku: str) -> Response:
        from urllib.parse import unquote
        denied = self._guard(call)
        if denied:
            return denied
        sku, node = unquote(sku), call.req.arg("shipNode")
        rows = [r for r in self._rows(sku) if node is None or r["ship_node"] == node]
        if not rows:
            return self._not_found(f"Inventory not found for sku {sku}")
        return Response.json({"sku": sku, "nodes": [self._node(r) for r in rows]})

    # -- items ------------------------------------------------------------------------------------------------
    def get_items(self, call: Call) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        limit = call.req.arg("limit", "20")
        if not str(limit).isdigit() or not 1 <= int(limit) <= ITEMS_MAX:
            return self._bad_param("limit", f"limit must be between 1 and {ITEMS_MAX}")
        offset = self._offset(call.req.arg("nextCursor"))
        if offset is None:
            return self._bad_param("nextCursor", "Invalid nextCursor")
        sku_filter = call.req.arg("sku")
        groups = [g for g in self._grouped() if not sku_filter or g[0] == sku_filter]
        page = groups[offset: offset + int(limit)]
        out = []
        for i, (sku, rows) in enumerate(page):
            first = rows[0]
            out.append({"mart": "WALMART_US", "sku": sku, "wpid": f"0{abs(hash(sku)) % 10**11:011d}"[:12],
                        "upc": "", "gtin": f"{(offset + i + 1):014d}", "productName": sku, "shelf": "[\"Home\"]",
                        "productType": "Sandbox Product", "price": {"currency": "USD", "amount": UNIT_PRICE},
                        "publishedStatus": first.get("published_status", "PUBLISHED"),
                        "lifecycleStatus": first.get("lifecycle_status", "ACTIVE")})
        body = {"ItemResponse": out, "totalItems": len(groups)}
        if offset + int(limit) < len(groups):
            body["nextCursor"] = self._cursor(offset + int(limit))
        return Response.json(body)

    # -- bulk inventory feed (MP_INVENTORY 1.5, inventory 1.4) ---------------------------------------------------
    @staticmethod
    def _feed_payload(req: Request) -> bytes:
        ctype = req.header("content-type") or ""
        if ctype.startswith("multipart/"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + req.body)
            for part in msg.iter_parts():
                return part.get_payload(decode=True) or b""
            return b""
        return req.body

    def post_feed(self, call: Call) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        feed_type = call.req.arg("feedType")
        if feed_type not in ("MP_INVENTORY", "inventory"):
            return self._bad_param("feedType", "feedType must be MP_INVENTORY or inventory")
        try:
            doc = json.loads(self._feed_payload(call.req).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return Response.json({"errors": [_gateway_error("MALFORMED_REQUEST_CONTENT", "file", "Malformed feed file",
                                                            "The feed file is not valid JSON.", "REQUEST")]}, 400)
        updates = self._feed_updates(doc, feed_type, call.req.arg("shipNode"))
        if updates is None:
            return Response.json({"errors": [_gateway_error("INVALID_REQUEST_CONTENT", "file", "Invalid feed content",
                                                            "Expected inventoryHeader 1.5 + inventory[] (MP_INVENTORY) or InventoryHeader 1.4 + Inventory[]",
                                                            "REQUEST")]}, 400)
        feed_id = f"{uuid.uuid4().hex.upper()}@AQMBAQA"
        self.feeds[feed_id] = {"feedId": feed_id, "feedType": feed_type, "created": self.sb.clock.monotonic(),
                               "submitted": epoch_ms(self.sb.clock.now()), "updates": updates, "apply": call.apply,
                               "results": None, "doc": doc}
        return Response.json({"feedId": feed_id})

    @staticmethod
    def _feed_updates(doc, feed_type: str, ship_node: str | None) -> list[tuple] | None:
        """-> [(sku, shipNode|None, amount)] or None when the document is not an inventory feed."""
        out = []
        if not isinstance(doc, dict):
            return None
        if feed_type == "MP_INVENTORY":
            if (doc.get("inventoryHeader") or {}).get("version") != "1.5" or not isinstance(doc.get("inventory"), list):
                return None
            for entry in doc["inventory"]:
                for node in (entry or {}).get("shipNodes") or []:
                    out.append((entry.get("sku"), node.get("shipNode"), (node.get("quantity") or {}).get("amount")))
        else:
            if not isinstance(doc.get("Inventory"), list):
                return None
            for entry in doc["Inventory"]:
                out.append((entry.get("sku"), ship_node, ((entry or {}).get("quantity") or {}).get("amount")))
        return out

    def _settle(self, feed: dict) -> None:
        if feed["results"] is not None:
            return
        results = []
        for index, (sku, node, amount) in enumerate(feed["updates"]):
            rows = [r for r in self._rows(sku or "") if node is None or r["ship_node"] == node]
            if not rows:
                results.append((index, sku, "DATA_ERROR", "ERR_EXT_DATA_0101", f"SKU {sku} not found at ship node {node}"))
            elif not isinstance(amount, int) or amount < 0:
                results.append((index, sku, "DATA_ERROR", "ERR_EXT_DATA_0102", "quantity.amount must be an integer >= 0"))
            else:
                if feed["apply"]:
                    self.set_quantity(rows[0], amount)
                results.append((index, sku, "SUCCESS", None, None))
        feed["results"] = results
        self.sb.record_write(self.name, "updateBulkInventory", feed["feedId"], feed["doc"],
                             feed["apply"] and any(r[2] == "SUCCESS" for r in results))

    def _feed_status(self, feed: dict) -> str:
        elapsed = self.sb.clock.monotonic() - feed["created"]
        total = self.sb.clock.scaled(self.sb.options.walmart_processing_seconds)
        if elapsed >= total:
            self._settle(feed)
            return "PROCESSED"
        return "RECEIVED" if elapsed < total * 0.25 else "INPROGRESS"

    def dump(self) -> dict:
        for feed in self.feeds.values():
            self._feed_status(feed)
        return self.data

    def get_feed(self, call: Call, feedId: str) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        feed = self.feeds.get(feedId)
        if feed is None:
            return self._not_found(f"Feed {feedId} not found", "CONTENT_NOT_FOUND.GMP_FEED_API")
        status = self._feed_status(feed)
        total = len(feed["updates"])
        results = feed["results"] or []
        ok = sum(1 for r in results if r[2] == "SUCCESS")
        body = {"feedId": feedId, "feedStatus": status, "feedSubmissionDate": feed["submitted"],
                "itemsReceived": total, "itemsSucceeded": ok, "itemsFailed": len(results) - ok,
                "itemsProcessing": total - len(results), "offset": 0, "limit": 50}
        if (call.req.arg("includeDetails") or "").lower() == "true":
            offset = int(call.req.arg("offset", "0") or 0)
            limit = min(int(call.req.arg("limit", "50") or 50), 1000)
            body["offset"], body["limit"] = offset, limit
            statuses = []
            rows = results if results else [(i, u[0], "INPROGRESS", None, None) for i, u in enumerate(feed["updates"])]
            for index, sku, status_, code, message in rows[offset: offset + limit]:
                entry = {"martId": 0, "sku": sku, "wpid": "", "index": index, "ingestionStatus": status_,
                         "ingestionErrors": {"ingestionError": [] if code is None else [
                             {"type": "DATA_ERROR", "code": code, "field": "sku", "description": message}]}}
                statuses.append(entry)
            body["itemDetails"] = {"itemIngestionStatus": statuses}
        return Response.json(body)

    # -- orders ---------------------------------------------------------------------------------------------------
    def _order(self, o: dict) -> dict:
        placed = parse_ts(o.get("order_date")) or self.sb.clock.now()
        status_ms = epoch_ms(parse_ts(o.get("last_modified")) or placed)
        lines = []
        for i, line in enumerate(o.get("lines", [])):
            qty = str(int(line.get("quantity", 0)))
            lines.append({
                "lineNumber": line.get("line_number") or str(i + 1),
                "item": {"productName": line["sku"], "sku": line["sku"]},
                "charges": {"charge": [{"chargeType": "PRODUCT", "chargeName": "ItemPrice",
                                        "chargeAmount": {"currency": "USD", "amount": UNIT_PRICE * int(qty)},
                                        "tax": {"taxName": "Tax1", "taxAmount": {"currency": "USD", "amount": 0.0}}}]},
                "orderLineQuantity": {"unitOfMeasurement": "EACH", "amount": qty},
                "statusDate": status_ms,
                "orderLineStatuses": {"orderLineStatus": [{"status": line.get("status", "Created"),
                                                           "statusQuantity": {"unitOfMeasurement": "EACH", "amount": qty}}]},
                "fulfillment": {"fulfillmentOption": "S2H", "shipMethod": "STANDARD"}})
        return {"purchaseOrderId": o["purchase_order_id"], "customerOrderId": o.get("customer_order_id") or o["purchase_order_id"],
                "customerEmailId": f"{o['purchase_order_id']}@relay.walmart.com", "orderType": "REGULAR",
                "orderDate": epoch_ms(placed),
                "shippingInfo": {"phone": "2025550100", "estimatedDeliveryDate": epoch_ms(placed + timedelta(days=5)),
                                 "estimatedShipDate": epoch_ms(placed + timedelta(days=2)), "methodCode": "Standard",
                                 "postalAddress": {"name": "Sandbox Buyer", "address1": "1 Main St", "city": "Bentonville",
                                                   "state": "AR", "postalCode": "72712", "country": "USA",
                                                   "addressType": "RESIDENTIAL"}},
                "orderLines": {"orderLine": lines},
                "shipNode": {"type": "SellerFulfilled", "name": "Sandbox Node", "id": "10001"}}

    def _date_param(self, req: Request, name: str):
        value = req.arg(name)
        if value is None:
            return None
        return parse_ts(value)

    def get_orders(self, call: Call, released: bool = False) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        req = call.req
        limit = req.arg("limit", "100")
        if not str(limit).isdigit() or not 1 <= int(limit) <= ORDERS_MAX:
            return self._bad_param("limit", f"limit must be between 1 and {ORDERS_MAX}")
        limit = int(limit)
        try:
            created_start = self._date_param(req, "createdStartDate")
            created_end = self._date_param(req, "createdEndDate")
            modified_start = self._date_param(req, "lastModifiedStartDate")
            modified_end = self._date_param(req, "lastModifiedEndDate")
        except ValueError as e:
            return self._bad_param("date", f"Invalid date: {e}")
        if created_start is None and modified_start is None:
            created_start = self.sb.clock.now() - timedelta(days=7)
        status, sku = req.arg("status"), req.arg("sku")
        po, co = req.arg("purchaseOrderId"), req.arg("customerOrderId")
        rows = []
        for o in self.orders:
            created = parse_ts(o.get("order_date"))
            modified = parse_ts(o.get("last_modified")) or created
            if created_start and (created is None or created < created_start):
                continue
            if created_end and created and created > created_end:
                continue
            if modified_start and (modified is None or modified < modified_start):
                continue
            if modified_end and modified and modified > modified_end:
                continue
            statuses = {l.get("status", "Created") for l in o.get("lines", [])}
            if released and statuses != {"Created"}:
                continue
            if status and status not in statuses:
                continue
            if sku and sku not in {l["sku"] for l in o.get("lines", [])}:
                continue
            if (po and o["purchase_order_id"] != po) or (co and o.get("customer_order_id") != co):
                continue
            rows.append(o)
        rows.sort(key=lambda o: (o.get("order_date") or "", o["purchase_order_id"]))
        if len(rows) > 20000:
            return self._bad_param("createdStartDate", "The query matches more than 20000 orders; narrow the date range.")
        offset = int(req.arg("soIndex", "0") or 0) if req.arg("hasMoreElements") == "true" else 0
        page = rows[offset: offset + limit]
        if not page:
            return Response.json({"errors": [_gateway_error("CONTENT_NOT_FOUND.GMP_ORDER_API", "data",
                                                            "No Orders found for the given query parameters",
                                                            "Requested content could not be found.", "APPLICATION",
                                                            "WARN")]}, 404)
        meta = {"totalCount": len(rows), "limit": limit}
        if offset + limit < len(rows):
            carry = {k: v[0] for k, v in req.query.items()
                     if k not in ("limit", "hasMoreElements", "soIndex", "poIndex", "partnerId", "sellerId")}
            if "createdStartDate" not in carry and created_start is not None:
                carry["createdStartDate"] = iso(created_start)
            params = {"limit": str(limit), "hasMoreElements": "true", "soIndex": str(offset + limit),
                      "poIndex": str(offset + limit), "partnerId": "100009", "sellerId": "8", **carry}
            meta["nextCursor"] = "?" + urlencode(params)
        return Response.json({"list": {"meta": meta, "elements": {"order": [self._order(o) for o in page]}}})

    def get_released_orders(self, call: Call) -> Response:
        return self.get_orders(call, released=True)

    def get_order(self, call: Call, purchaseOrderId: str) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        o = self.orders_by_id.get(purchaseOrderId)
        if o is None:
            return self._not_found(f"Order {purchaseOrderId} not found", "CONTENT_NOT_FOUND.GMP_ORDER_API")
        return Response.json({"order": self._order(o)})

    def acknowledge(self, call: Call, purchaseOrderId: str) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        o = self.orders_by_id.get(purchaseOrderId)
        if o is None:
            return self._not_found(f"Order {purchaseOrderId} not found", "CONTENT_NOT_FOUND.GMP_ORDER_API")
        with self.sb.lock:
            if call.apply:
                for line in o.get("lines", []):
                    if line.get("status", "Created") == "Created":
                        line["status"] = "Acknowledged"
                o["last_modified"] = iso(self.sb.clock.now())
        self.sb.record_write(self.name, "acknowledgeOrders", purchaseOrderId, None, call.apply)
        return Response.json({"order": self._order(o)})
