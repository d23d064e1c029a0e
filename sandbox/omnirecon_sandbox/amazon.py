"""Amazon SP-API imitation (+ Login with Amazon): Orders v0, FBA Inventory v1, Listings Items 2021-08-01,
Reports 2021-06-30, Feeds 2021-06-30, with per-operation token buckets from the models."""
from __future__ import annotations

import base64
import gzip
import json
import secrets
import uuid
from datetime import timedelta
from pathlib import Path

import jsonschema

from omnirecon_sandbox.http import Request, Response
from omnirecon_sandbox.ratelimit import TokenBucket
from omnirecon_sandbox.changes import INVENTORY, ORDER_CANCELLED, ORDER_CREATED, ORDER_FULFILLED
from omnirecon_sandbox.system import BearerTokens, Call, System
from omnirecon_contract.timeutil import iso, parse_ts

# operationId -> (rate per second, burst), as the usage-plan tables in the models' operation descriptions say.
RATE_LIMITS = {
    "getOrders": (0.0167, 20), "getOrder": (0.5, 30), "getOrderItems": (0.5, 30),
    "getInventorySummaries": (2, 2),
    "getListingsItem": (5, 10), "patchListingsItem": (5, 5),
    "createReport": (0.0167, 15), "getReport": (2, 15), "getReportDocument": (0.0167, 15),
    "createFeedDocument": (0.5, 15), "createFeed": (0.0083, 15), "getFeed": (2, 15), "getFeedDocument": (0.0222, 10),
}
ORDER_PAGE_MAX = 100
FBA_PAGE = 50
FBA_TOKEN_SECONDS = 30
DOCUMENT_URL_SECONDS = 300
MERCHANT_LISTINGS_COLUMNS = [
    "item-name", "item-description", "listing-id", "seller-sku", "price", "quantity", "open-date", "image-url",
    "item-is-marketplace", "product-id-type", "zshop-shipping-fee", "item-note", "item-condition", "zshop-category1",
    "zshop-browse-path", "zshop-storefront-feature", "asin1", "asin2", "asin3", "will-ship-internationally",
    "expedited-shipping", "zshop-boldface", "product-id", "bid-for-featured-placement", "add-delete",
    "pending-quantity", "fulfillment-channel", "merchant-shipping-group", "status"]
REPORT_TYPES = ("GET_MERCHANT_LISTINGS_ALL_DATA", "GET_MERCHANT_LISTINGS_DATA", "GET_FLAT_FILE_OPEN_LISTINGS_DATA")
UNIT_PRICE = "19.99"
INVALID_INPUT = "The input you have submitted is not valid. Please check your input and try again."

# Used only when ../shared/reference is absent: the listings feed rules the sandbox relies on.
_FALLBACK_FEED_SCHEMA = {
    "type": "object", "required": ["header", "messages"],
    "properties": {
        "header": {"type": "object", "required": ["sellerId", "version"],
                   "properties": {"sellerId": {"type": "string"}, "version": {"const": "2.0"}}},
        "messages": {"type": "array", "minItems": 1, "maxItems": 25000, "items": {
            "type": "object", "required": ["messageId", "sku", "operationType"],
            "properties": {"messageId": {"type": "integer", "minimum": 1}, "sku": {"type": "string", "minLength": 1},
                           "operationType": {"enum": ["UPDATE", "PARTIAL_UPDATE", "PATCH", "DELETE"]},
                           "productType": {"type": "string"},
                           "patches": {"type": "array", "minItems": 1, "items": {
                               "type": "object", "required": ["op", "path"],
                               "properties": {"op": {"enum": ["add", "replace", "merge", "delete"]},
                                              "path": {"type": "string"}}}}}}}}}


def reference_dir() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "reference"


def _feed_schema() -> dict:
    path = reference_dir() / "sp-api-models" / "listings-feed-schema-v2.json"
    return json.loads(path.read_text()) if path.exists() else _FALLBACK_FEED_SCHEMA


def _error(code: str, message: str, details: str = "") -> dict:
    return {"errors": [{"code": code, "message": message, "details": details}]}


def _money(units: int) -> dict:
    return {"CurrencyCode": "USD", "Amount": f"{float(UNIT_PRICE) * units:.2f}"}


def _listify(req: Request, name: str) -> list[str]:
    out = []
    for v in req.query.get(name, []):
        out.extend(p for p in v.split(",") if p)
    return out


class AmazonSystem(BearerTokens, System):
    token_header = "x-amz-access-token"
    name = "amazon"

    def __init__(self, sandbox, data: dict):
        super().__init__(sandbox, data)
        self.seller_id = data.get("seller_id") or "A1SELLERSANDBOX"
        self.marketplace_id = data.get("marketplace_id") or "ATVPDKIKX0DER"
        data.setdefault("seller_id", self.seller_id)
        data.setdefault("marketplace_id", self.marketplace_id)
        self.listings = {l["sku"]: l for l in data.setdefault("listings", [])}
        self.fba = data.setdefault("fba_inventory", [])
        self.orders = data.setdefault("orders", [])
        self.orders_by_id = {o["amazon_order_id"]: o for o in self.orders}
        self._order_seq = len(self.orders)
        self.queued_patches: list[tuple[float, str, int]] = []   # (due, sku, quantity): ACCEPTED, not yet applied
        self._init_tokens()
        limits = dict(RATE_LIMITS, **sandbox.options.amazon_rate_limits)
        self.buckets = {op: TokenBucket(rate, burst, sandbox.clock) for op, (rate, burst) in limits.items()}
        self.limits = limits
        self.reports: dict[str, dict] = {}
        self.feeds: dict[str, dict] = {}
        self.feed_documents: dict[str, str] = {}      # feedDocumentId -> served file id
        self.fba_tokens: dict[str, tuple] = {}
        r = self.router
        r.add("POST", "/auth/o2/token", "token", self.token)
        r.add("GET", "/orders/v0/orders", "getOrders", self.get_orders)
        r.add("GET", "/orders/v0/orders/{orderId}", "getOrder", self.get_order)
        r.add("GET", "/orders/v0/orders/{orderId}/orderItems", "getOrderItems", self.get_order_items)
        r.add("GET", "/fba/inventory/v1/summaries", "getInventorySummaries", self.get_inventory_summaries)
        r.add("GET", "/listings/2021-08-01/items/{sellerId}/{sku}", "getListingsItem", self.get_listing)
        r.add("PATCH", "/listings/2021-08-01/items/{sellerId}/{sku}", "patchListingsItem", self.patch_listing)
        r.add("POST", "/reports/2021-06-30/reports", "createReport", self.create_report)
        r.add("GET", "/reports/2021-06-30/reports/{reportId}", "getReport", self.get_report)
        r.add("GET", "/reports/2021-06-30/documents/{reportDocumentId}", "getReportDocument", self.get_report_document)
        r.add("POST", "/feeds/2021-06-30/documents", "createFeedDocument", self.create_feed_document)
        r.add("POST", "/feeds/2021-06-30/feeds", "createFeed", self.create_feed)
        r.add("GET", "/feeds/2021-06-30/feeds/{feedId}", "getFeed", self.get_feed)
        r.add("GET", "/feeds/2021-06-30/documents/{feedDocumentId}", "getFeedDocument", self.get_feed_document)

    # -- state changes (API writes, the retailer's integration, the world's sales) ------------------------------
    def set_listing_quantity(self, sku: str, quantity: int) -> bool:
        """The MFN fulfillment_availability quantity, as patchListingsItem / a listings feed sets it."""
        listing = self.listings.get(sku)
        if listing is None:
            return False
        with self.sb.lock:
            delta = int(quantity) - int(listing.get("quantity", 0))
            listing["quantity"] = int(quantity)
            listing["last_updated"] = self.stamp()
        if delta:
            self.world_changed(INVENTORY, sku=sku, location="MFN", value=int(quantity), detail={"delta": delta})
        return True

    def accepts(self, sku: str, quantity: int) -> bool:
        listing = self.listings.get(sku)
        return listing is not None and "BUYABLE" in (listing.get("status") or ["BUYABLE"]) \
            and int(listing.get("quantity", 0)) >= quantity

    def create_order(self, sku: str, quantity: int) -> str | None:
        """An MFN sale: the listing quantity drops at once, the order is Unshipped."""
        if not self.accepts(sku, quantity):
            return None
        now = self.stamp()
        with self.sb.lock:
            self._order_seq += 1
            n = self._order_seq
            order_id = f"11{n % 10}-{n:07d}-{(n * 7919) % 10**7:07d}"
            order = {"amazon_order_id": order_id, "purchase_date": now, "last_update_date": now,
                     "order_status": "Unshipped", "fulfillment_channel": "MFN",
                     "items": [{"sku": sku, "quantity_ordered": int(quantity), "quantity_shipped": 0}]}
            self.orders.append(order)
            self.orders_by_id[order_id] = order
            listing = self.listings[sku]
            listing["quantity"] = int(listing.get("quantity", 0)) - quantity
            listing["last_updated"] = now
        self.world_changed(INVENTORY, sku=sku, location="MFN", value=int(listing["quantity"]), detail={"delta": -quantity})
        self.world_changed(ORDER_CREATED, sku=sku, order=order_id, value=int(quantity))
        return order_id

    def cancel_order(self, order_id: str) -> bool:
        order = self._find_order(order_id)
        if order is None or order.get("order_status") in ("Canceled", "Shipped"):
            return False
        now = self.stamp()
        with self.sb.lock:
            order["order_status"], order["last_update_date"] = "Canceled", now
        for item in order.get("items", []):
            listing = self.listings.get(item["sku"])
            if listing is not None:
                self.set_listing_quantity(item["sku"], int(listing.get("quantity", 0)) + int(item["quantity_ordered"]))
        self.world_changed(ORDER_CANCELLED, order=order_id)
        return True

    def ship_order(self, order_id: str) -> bool:
        order = self._find_order(order_id)
        if order is None or order.get("order_status") in ("Canceled", "Shipped"):
            return False
        with self.sb.lock:
            order["order_status"], order["last_update_date"] = "Shipped", self.stamp()
            for item in order.get("items", []):
                item["quantity_shipped"] = item.get("quantity_ordered", 0)
        self.world_changed(ORDER_FULFILLED, order=order_id)
        return True

    # -- System hooks ---------------------------------------------------------------------------------------
    def error(self, status: int, code: str, message: str) -> Response:
        if status == 404 and code == "NOT_FOUND":
            code = "NotFound"
        return Response.json(_error(code, message), status)

    def throttled(self, operations: list[str]) -> Response:
        self.drain_buckets(operations)
        return Response.json(_error("QuotaExceeded", "You exceeded your quota for the requested resource."), 429)

    def decorate(self, resp: Response, operations: list[str]) -> Response:
        resp.headers.setdefault("x-amzn-RequestId", str(uuid.uuid4()))
        op = operations[0] if operations else ""
        if op in self.limits and resp.status != 429:
            resp.headers.setdefault("x-amzn-RateLimit-Limit", f"{self.limits[op][0]}")
        return resp

    def dump(self) -> dict:
        self._settle_feeds()
        self._settle_patches()
        return self.data

    # -- auth -----------------------------------------------------------------------------------------------
    @staticmethod
    def _unauthorized() -> Response:
        return Response.json({"errors": [{"message": "Access to requested resource is denied.", "code": "Unauthorized",
                                          "details": "The access token you provided is revoked, malformed or invalid."}]}, 403)

    def token(self, call: Call) -> Response:
        # LWA takes the grant as a form or, as some official SDKs send it, as a JSON object
        json_body = "json" in (call.req.header("content-type") or "")
        try:
            form = (call.req.json() if json_body else call.req.form()) or {}
        except ValueError:
            form = None
        if not isinstance(form, dict):
            return Response.json({"error": "invalid_request", "error_description": "Malformed request body"}, 400)
        creds = self.sb.credentials
        if form.get("grant_type") == "client_credentials":     # grantless (Notifications API)
            return self.sb.notifications.platforms["amazon"].grantless_token(form)
        if form.get("grant_type") != "refresh_token":
            return Response.json({"error": "unsupported_grant_type",
                                  "error_description": "The authorization grant type is not supported by the authorization server"}, 400)
        if form.get("client_id") != creds.amazon_client_id or form.get("client_secret") != creds.amazon_client_secret:
            return Response.json({"error": "invalid_client", "error_description": "Client authentication failed"}, 401)
        if form.get("refresh_token") != creds.amazon_refresh_token:
            return Response.json({"error": "invalid_grant",
                                  "error_description": "The request has an invalid grant parameter : refresh_token"}, 400)
        token = "Atza|" + secrets.token_urlsafe(32)
        lifetime = self.sb.options.lwa_token_seconds
        self.issue_token(token, lifetime)
        return Response.json({"access_token": token, "token_type": "bearer", "expires_in": lifetime})

    def _guard(self, call: Call) -> Response | None:
        """Auth, then the operation's token bucket. None: go ahead."""
        self._settle_patches()
        token = call.req.header("x-amz-access-token")
        if not token:
            return Response.json(_error("MissingAuthenticationToken", "Missing Authentication Token"), 403)
        if not self.token_valid(token):
            return self._unauthorized()
        op = call.operations[0]
        if op in self.buckets and not self.buckets[op].take():
            return Response.json(_error("QuotaExceeded", "You exceeded your quota for the requested resource."), 429)
        return None

    # -- Orders v0 -------------------------------------------------------------------------------------------
    def _order(self, o: dict) -> dict:
        items = o.get("items", [])
        shipped = sum(int(i.get("quantity_shipped", 0)) for i in items)
        ordered = sum(int(i.get("quantity_ordered", 0)) for i in items)
        status = o.get("order_status", "Unshipped")
        purchase = parse_ts(o.get("purchase_date"))
        out = {"AmazonOrderId": o["amazon_order_id"], "PurchaseDate": o.get("purchase_date"),
               "LastUpdateDate": o.get("last_update_date") or o.get("purchase_date"), "OrderStatus": status,
               "FulfillmentChannel": o.get("fulfillment_channel", "MFN"), "SalesChannel": "Amazon.com",
               "ShipServiceLevel": "Std US D2D Dom", "NumberOfItemsShipped": shipped,
               "NumberOfItemsUnshipped": 0 if status == "Canceled" else max(0, ordered - shipped),
               "PaymentMethod": "Other", "PaymentMethodDetails": ["Standard"], "MarketplaceId": self.marketplace_id,
               "ShipmentServiceLevelCategory": "Standard", "OrderType": "StandardOrder",
               "EarliestShipDate": iso(purchase + timedelta(days=1)) if purchase else None,
               "LatestShipDate": iso(purchase + timedelta(days=2)) if purchase else None,
               "IsBusinessOrder": False, "IsPrime": False, "IsPremiumOrder": False, "IsGlobalExpressEnabled": False,
               "IsReplacementOrder": False, "IsSoldByAB": False, "IsISPU": False, "IsAccessPointOrder": False,
               "HasRegulatedItems": False}
        if status not in ("Pending", "PendingAvailability", "Canceled"):
            out["OrderTotal"] = _money(ordered)
        return {k: v for k, v in out.items() if v is not None}

    def _encode(self, doc: dict) -> str:
        return base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()

    def _decode(self, token: str) -> dict | None:
        try:
            doc = json.loads(base64.b64decode(token.encode(), validate=True))
            return doc if isinstance(doc, dict) else None
        except Exception:
            return None

    def get_orders(self, call: Call) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        req = call.req
        markets = _listify(req, "MarketplaceIds")
        if not markets:
            return Response.json(_error("InvalidInput", "Missing required parameter 'MarketplaceIds'."), 400)
        if len(markets) > 50:
            return Response.json(_error("InvalidInput", "MarketplaceIds cannot contain more than 50 values."), 400)
        token = req.arg("NextToken")
        if token:
            state = self._decode(token)
            if state is None or "offset" not in state:
                return Response.json(_error("InvalidInput", "We could not decode your NextToken. Please check your request and try again."), 400)
        else:
            state, problem = self._order_filters(req)
            if problem:
                return Response.json(_error("InvalidInput", problem), 400)
        rows = self._filter_orders(state, markets)
        size = state["size"]
        page = rows[state["offset"]: state["offset"] + size]
        payload = {"Orders": [self._order(o) for o in page]}
        if state["offset"] + size < len(rows):
            payload["NextToken"] = self._encode(dict(state, offset=state["offset"] + size))
        payload["LastUpdatedBefore" if state["field"] == "last_update_date" else "CreatedBefore"] = state["before"]
        return Response.json({"payload": payload})

    def _order_filters(self, req: Request) -> tuple[dict, str | None]:
        created_after, updated_after = req.arg("CreatedAfter"), req.arg("LastUpdatedAfter")
        created_before, updated_before = req.arg("CreatedBefore"), req.arg("LastUpdatedBefore")
        amazon_ids = _listify(req, "AmazonOrderIds")
        if not amazon_ids:
            if bool(created_after) == bool(updated_after):
                return {}, ("Exactly one of CreatedAfter and LastUpdatedAfter must be given." if not created_after
                            else "CreatedAfter and LastUpdatedAfter cannot both be given.")
            if created_after and (updated_before):
                return {}, "LastUpdatedBefore cannot be combined with CreatedAfter."
            if updated_after and created_before:
                return {}, "CreatedBefore cannot be combined with LastUpdatedAfter."
        now = self.sb.clock.now()
        latest = now - timedelta(minutes=2)
        try:
            after = parse_ts(created_after or updated_after) if (created_after or updated_after) else None
            before = parse_ts(created_before or updated_before) if (created_before or updated_before) else None
        except ValueError:
            return {}, INVALID_INPUT
        if after and after > now:
            return {}, INVALID_INPUT
        if before is not None:
            if before > latest:
                return {}, INVALID_INPUT
            if after and before < after:
                return {}, INVALID_INPUT
        size = req.arg("MaxResultsPerPage", "100")
        if not str(size).isdigit() or not 1 <= int(size) <= ORDER_PAGE_MAX:
            return {}, "MaxResultsPerPage must be between 1 and 100."
        field = "purchase_date" if created_after else "last_update_date"
        return {"field": field, "after": iso(after) if after else None, "before": iso(before or latest),
                "statuses": _listify(req, "OrderStatuses"), "channels": _listify(req, "FulfillmentChannels"),
                "ids": amazon_ids, "size": int(size), "offset": 0}, None

    def _filter_orders(self, state: dict, markets: list[str]) -> list[dict]:
        if self.marketplace_id not in markets:
            return []
        after = parse_ts(state["after"]) if state.get("after") else None
        before = parse_ts(state["before"])
        rows = []
        for o in self.orders:
            if state["ids"] and o["amazon_order_id"] not in state["ids"]:
                continue
            stamp = parse_ts(o.get(state["field"]) or o.get("purchase_date"))
            if stamp is None or (after and stamp < after) or stamp > before:
                continue
            if state["statuses"] and o.get("order_status", "Unshipped") not in state["statuses"]:
                continue
            if state["channels"] and o.get("fulfillment_channel", "MFN") not in state["channels"]:
                continue
            rows.append(o)
        rows.sort(key=lambda o: (o.get(state["field"]) or "", o["amazon_order_id"]))
        return rows

    def _find_order(self, order_id: str) -> dict | None:
        return self.orders_by_id.get(order_id)

    def get_order(self, call: Call, orderId: str) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        o = self._find_order(orderId)
        if o is None:
            return Response.json(_error("NotFound", f"Order {orderId} not found."), 404)
        return Response.json({"payload": self._order(o)})

    def get_order_items(self, call: Call, orderId: str) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        o = self._find_order(orderId)
        if o is None:
            return Response.json(_error("NotFound", f"Order {orderId} not found."), 404)
        priced = o.get("order_status") not in ("Pending", "PendingAvailability")
        items = []
        for i, it in enumerate(o.get("items", [])):
            listing = self.listings.get(it["sku"]) or next((f for f in self.fba if f["sku"] == it["sku"]), {})
            row = {"ASIN": listing.get("asin", "B000000000"), "SellerSKU": it["sku"],
                   "OrderItemId": f"{abs(hash(o['amazon_order_id'])) % 10**10:010d}{i + 1:04d}",
                   "Title": it["sku"], "QuantityOrdered": int(it.get("quantity_ordered", 0)),
                   "QuantityShipped": int(it.get("quantity_shipped", 0)), "IsGift": "false",
                   "ConditionId": "New", "ConditionSubtypeId": "New", "IsTransparency": False,
                   "SerialNumberRequired": False,
                   "BuyerRequestedCancel": {"IsBuyerRequestedCancel": "false", "BuyerCancelReason": ""}}
            if priced:
                row["ItemPrice"] = _money(row["QuantityOrdered"])
                row["ItemTax"] = _money(0)
            items.append(row)
        return Response.json({"payload": {"AmazonOrderId": orderId, "OrderItems": items}})

    # -- FBA inventory ----------------------------------------------------------------------------------------
    def get_inventory_summaries(self, call: Call) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        req = call.req
        if req.arg("granularityType") != "Marketplace" or not req.arg("granularityId"):
            return Response.json(_error("InvalidInput", "granularityType must be 'Marketplace' and granularityId is required."), 400)
        markets = _listify(req, "marketplaceIds")
        if len(markets) != 1:
            return Response.json(_error("InvalidInput", "marketplaceIds is required and takes exactly one value."), 400)
        token = req.arg("nextToken")
        if token:
            issued = self.fba_tokens.get(token)
            if issued is None or self.sb.clock.monotonic() - issued[0] > self.sb.clock.scaled(FBA_TOKEN_SECONDS):
                return Response.json(_error("InvalidInput", "The nextToken is invalid or expired."), 400)
            offset = issued[1]
        else:
            offset = 0
        skus = _listify(req, "sellerSkus")
        if len(skus) > 50:
            return Response.json(_error("InvalidInput", "sellerSkus cannot contain more than 50 values."), 400)
        if not skus and req.arg("sellerSku"):
            skus = [req.arg("sellerSku")]
        start = req.arg("startDateTime")
        rows = self.fba if markets[0] == self.marketplace_id else []
        if start:
            try:
                since = parse_ts(start)
            except ValueError:
                return Response.json(_error("InvalidInput", INVALID_INPUT), 400)
            rows = [r for r in rows if r.get("last_updated") and parse_ts(r["last_updated"]) >= since]
        elif skus:
            rows = [r for r in rows if r["sku"] in skus]
        page = rows[offset: offset + FBA_PAGE]
        details = (req.arg("details", "false") or "").lower() == "true"
        body = {"payload": {"granularity": {"granularityType": "Marketplace", "granularityId": req.arg("granularityId")},
                            "inventorySummaries": [self._summary(r, details) for r in page]}}
        if offset + FBA_PAGE < len(rows):
            nxt = secrets.token_urlsafe(24)
            self.fba_tokens[nxt] = (self.sb.clock.monotonic(), offset + FBA_PAGE)
            body["pagination"] = {"nextToken": nxt}
        return Response.json(body)

    def _summary(self, r: dict, details: bool) -> dict:
        fulfillable, reserved = int(r.get("fulfillable_quantity", 0)), int(r.get("reserved_quantity", 0))
        inbound = int(r.get("inbound_quantity", 0))
        out = {"asin": r.get("asin", ""), "fnSku": "X00" + (r.get("asin", "") or r["sku"])[-7:].upper(),
               "sellerSku": r["sku"], "condition": "NewItem", "lastUpdatedTime": r.get("last_updated"),
               "productName": r["sku"], "totalQuantity": fulfillable + reserved + inbound}
        if details:
            out["inventoryDetails"] = {
                "fulfillableQuantity": fulfillable, "inboundWorkingQuantity": 0,
                "inboundShippedQuantity": inbound, "inboundReceivingQuantity": 0,
                "reservedQuantity": {"totalReservedQuantity": reserved, "pendingCustomerOrderQuantity": reserved,
                                     "pendingTransshipmentQuantity": 0, "fcProcessingQuantity": 0},
                "researchingQuantity": {"totalResearchingQuantity": 0, "researchingQuantityBreakdown": []},
                "unfulfillableQuantity": {"totalUnfulfillableQuantity": 0, "customerDamagedQuantity": 0,
                                          "warehouseDamagedQuantity": 0, "distributorDamagedQuantity": 0,
                                          "carrierDamagedQuantity": 0, "defectiveQuantity": 0, "expiredQuantity": 0}}
        return {k: v for k, v in out.items() if v is not None}

    # -- Listings Items -----------------------------------------------------------------------------------------
    def _listing_item(self, listing: dict, included: list[str]) -> dict:
        qty = int(listing.get("quantity", 0))
        out = {"sku": listing["sku"]}
        if "summaries" in included:
            summary = {"marketplaceId": self.marketplace_id, "asin": listing.get("asin"),
                       "productType": listing.get("product_type", "PRODUCT"), "conditionType": "new_new",
                       "status": listing.get("status", ["BUYABLE", "DISCOVERABLE"]), "itemName": listing["sku"],
                       "createdDate": listing.get("last_updated"), "lastUpdatedDate": listing.get("last_updated")}
            out["summaries"] = [{k: v for k, v in summary.items() if v is not None}]
        if "attributes" in included:
            out["attributes"] = {"fulfillment_availability": [{"fulfillment_channel_code": "DEFAULT", "quantity": qty}],
                                 "item_name": [{"value": listing["sku"], "marketplace_id": self.marketplace_id}]}
        if "issues" in included:
            out["issues"] = [self._issue(i) for i in listing.get("issues", [])]
        if "offers" in included:
            out["offers"] = [{"marketplaceId": self.marketplace_id, "offerType": "B2C",
                              "price": {"currencyCode": "USD", "amount": UNIT_PRICE}}]
        if "fulfillmentAvailability" in included:
            out["fulfillmentAvailability"] = [{"fulfillmentChannelCode": "DEFAULT", "quantity": qty}]
        return out

    def _issue(self, issue: dict) -> dict:
        return {"code": issue["code"], "message": issue.get("message", ""), "severity": issue.get("severity", "ERROR"),
                "attributeNames": [], "categories": []}

    def _listing_checks(self, call: Call, sellerId: str) -> Response | None:
        markets = _listify(call.req, "marketplaceIds")
        if not markets:
            return Response.json(_error("InvalidInput", "Missing required parameter 'marketplaceIds'."), 400)
        if sellerId != self.seller_id:
            return Response.json(_error("Unauthorized", "Access to requested resource is denied.",
                                        "The seller ID does not match the authorized selling partner."), 403)
        foreign = [mk for mk in markets if mk != self.marketplace_id]
        if foreign:   # the seller is not registered to sell there
            return Response.json(_error("InvalidInput", f"Invalid marketplaceIds: seller {sellerId} does not sell "
                                                        f"in {', '.join(foreign)}."), 400)
        return None

    def get_listing(self, call: Call, sellerId: str, sku: str) -> Response:
        from urllib.parse import unquote
        denied = self._guard(call) or self._listing_checks(call, sellerId)
        if denied:
            return denied
        sku = unquote(sku)
        listing = self.listings.get(sku)
        if listing is None:
            return Response.json(_error("NOT_FOUND", f"SKU '{sku}' not found in marketplace {self.marketplace_id}"), 404)
        included = _listify(call.req, "includedData") or ["summaries"]
        return Response.json(self._listing_item(listing, included))

    def patch_listing(self, call: Call, sellerId: str, sku: str) -> Response:
        from urllib.parse import unquote
        denied = self._guard(call) or self._listing_checks(call, sellerId)
        if denied:
            return denied
        sku = unquote(sku)
        try:
            body = call.req.json()
        except ValueError:
            return Response.json(_error("InvalidInput", "Request body is not valid JSON."), 400)
        if not isinstance(body, dict) or not body.get("productType") or not isinstance(body.get("patches"), list) or not body["patches"]:
            return Response.json(_error("InvalidInput", "Request body must contain productType and patches."), 400)
        submission = uuid.uuid4().hex
        listing = self.listings.get(sku)
        issues, quantity = [], None
        for p in body["patches"]:
            if not isinstance(p, dict) or p.get("op") not in ("add", "replace", "merge", "delete") or not p.get("path"):
                return Response.json(_error("InvalidInput", "Each patch needs op (add|replace|merge|delete) and path."), 400)
            if p["path"] == "/attributes/fulfillment_availability" and p["op"] != "delete":
                value = (p.get("value") or [{}])[0]
                q = value.get("quantity")
                if not isinstance(q, int) or q < 0:
                    issues.append({"code": "99022", "message": "'quantity' must be a non-negative integer.",
                                   "severity": "ERROR", "attributeNames": ["fulfillment_availability"],
                                   "categories": ["INVALID_ATTRIBUTE"]})
                else:
                    quantity = q
        if listing is None:
            issues.append({"code": "4000001", "message": f"The SKU '{sku}' does not exist for this seller.",
                           "severity": "ERROR", "attributeNames": [], "categories": ["MISSING_ATTRIBUTE"]})
        preview = call.req.arg("mode") == "VALIDATION_PREVIEW"
        status = "INVALID" if issues else ("VALID" if preview else "ACCEPTED")
        apply = status == "ACCEPTED" and call.apply
        if apply and quantity is not None:   # queued: applied after amazon_listing_seconds, as Amazon processes it
            due = self.sb.clock.monotonic() + self.sb.clock.scaled(self.sb.options.amazon_listing_seconds)
            with self.sb.lock:
                self.queued_patches.append((due, sku, quantity))
            self.sb.notifications.later(self.sb.options.amazon_listing_seconds, self._settle_patches)
        if not preview:
            self.sb.record_write(self.name, "patchListingsItem", sku, body, applied=apply, query=call.req.raw_query)
        return Response.json({"sku": sku, "status": status, "submissionId": submission, "issues": issues})

    def _settle_patches(self) -> None:
        now = self.sb.clock.monotonic()
        with self.sb.lock:
            due = [p for p in self.queued_patches if p[0] <= now]
            self.queued_patches = [p for p in self.queued_patches if p[0] > now]
        for _, sku, quantity in due:
            self.set_listing_quantity(sku, quantity)

    # -- Reports ----------------------------------------------------------------------------------------------------
    def _phase(self, created: float) -> str:
        elapsed = self.sb.clock.monotonic() - created
        total = self.sb.clock.scaled(self.sb.options.amazon_processing_seconds)
        return "IN_QUEUE" if elapsed < total * 0.25 else ("IN_PROGRESS" if elapsed < total else "DONE")

    def create_report(self, call: Call) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        try:
            body = call.req.json() or {}
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("reportType") or not body.get("marketplaceIds"):
            return Response.json(_error("InvalidInput", "reportType and marketplaceIds are required."), 400)
        report_id = str(50_000 + len(self.reports) + 1)
        content = self._listings_report() if body["reportType"] in REPORT_TYPES else None
        self.reports[report_id] = {"reportId": report_id, "reportType": body["reportType"],
                                   "marketplaceIds": body["marketplaceIds"][:1], "createdTime": iso(self.sb.clock.now()),
                                   "created": self.sb.clock.monotonic(), "content": content,
                                   "documentId": f"amzn1.spdoc.1.4.na.{uuid.uuid4()}"}
        return Response.json({"reportId": report_id}, 202)

    def _listings_report(self) -> bytes:
        lines = ["\t".join(MERCHANT_LISTINGS_COLUMNS)]
        for i, l in enumerate(self.data.get("listings", [])):
            row = dict.fromkeys(MERCHANT_LISTINGS_COLUMNS, "")
            opened = parse_ts(l.get("last_updated")) or self.sb.clock.now()
            row.update({"item-name": l["sku"], "listing-id": f"{(i + 1):010d}SBX", "seller-sku": l["sku"],
                        "price": UNIT_PRICE, "quantity": str(int(l.get("quantity", 0))),
                        "open-date": opened.strftime("%Y-%m-%d %H:%M:%S UTC"), "item-is-marketplace": "y",
                        "product-id-type": "1", "item-condition": "11", "asin1": l.get("asin", ""),
                        "will-ship-internationally": "1", "product-id": l.get("asin", ""), "pending-quantity": "0",
                        "fulfillment-channel": "DEFAULT", "merchant-shipping-group": "Migrated Template",
                        "status": "Active" if "BUYABLE" in l.get("status", ["BUYABLE"]) else "Inactive"})
            lines.append("\t".join(row[c] for c in MERCHANT_LISTINGS_COLUMNS))
        return ("\n".join(lines) + "\n").encode("cp1252", errors="replace")

    def _report_view(self, rep: dict) -> dict:
        phase = self._phase(rep["created"])
        if phase == "DONE" and rep["content"] is None:
            phase = "CANCELLED"
        out = {"reportId": rep["reportId"], "reportType": rep["reportType"], "marketplaceIds": rep["marketplaceIds"],
               "processingStatus": phase, "createdTime": rep["createdTime"]}
        if phase != "IN_QUEUE":
            out["processingStartTime"] = rep["createdTime"]
        if phase in ("DONE", "CANCELLED"):
            out["processingEndTime"] = iso(self.sb.clock.now())
        if phase == "DONE":
            out["reportDocumentId"] = rep["documentId"]
        return out

    def get_report(self, call: Call, reportId: str) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        rep = self.reports.get(reportId)
        if rep is None:
            return Response.json(_error("NotFound", f"Report {reportId} not found."), 404)
        return Response.json(self._report_view(rep))

    def get_report_document(self, call: Call, reportDocumentId: str) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        rep = next((r for r in self.reports.values() if r["documentId"] == reportDocumentId
                    and self._report_view(r)["processingStatus"] == "DONE"), None)
        if rep is None:
            return Response.json(_error("NotFound", f"Report document {reportDocumentId} not found."), 404)
        url = self.publish_file(gzip.compress(rep["content"]), "text/plain", DOCUMENT_URL_SECONDS)
        return Response.json({"reportDocumentId": reportDocumentId, "url": url, "compressionAlgorithm": "GZIP"})

    # -- Feeds ---------------------------------------------------------------------------------------------------------
    def create_feed_document(self, call: Call) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        try:
            body = call.req.json() or {}
        except ValueError:
            body = {}
        if not body.get("contentType"):
            return Response.json(_error("InvalidInput", "contentType is required."), 400)
        doc_id = f"amzn1.tortuga.4.na.{uuid.uuid4()}"
        file_id = uuid.uuid4().hex
        url = self.publish_file(None, body["contentType"], DOCUMENT_URL_SECONDS, writable=True, file_id=file_id)
        self.feed_documents[doc_id] = file_id
        return Response.json({"feedDocumentId": doc_id, "url": url}, 201)

    def create_feed(self, call: Call) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        try:
            body = call.req.json() or {}
        except ValueError:
            body = {}
        if not body.get("feedType") or not body.get("marketplaceIds") or not body.get("inputFeedDocumentId"):
            return Response.json(_error("InvalidInput", "feedType, marketplaceIds and inputFeedDocumentId are required."), 400)
        file_id = self.feed_documents.get(body["inputFeedDocumentId"])
        content = self.file_content(file_id) if file_id else None
        if content is None:
            return Response.json(_error("InvalidInput", "The input feed document was not found or holds no content."), 400)
        feed_id = str(60_000 + len(self.feeds) + 1)
        self.feeds[feed_id] = {"feedId": feed_id, "feedType": body["feedType"], "marketplaceIds": body["marketplaceIds"],
                               "createdTime": iso(self.sb.clock.now()), "created": self.sb.clock.monotonic(), "content": content,
                               "apply": call.apply, "status": None, "resultId": None}
        return Response.json({"feedId": feed_id}, 202)

    def _settle_feeds(self) -> None:
        for feed in self.feeds.values():
            if feed["status"] is None and self._phase(feed["created"]) == "DONE":
                self._process_feed(feed)

    def _process_feed(self, feed: dict) -> None:
        issues, accepted, invalid, processed, fatal = [], 0, 0, 0, False
        try:
            doc = json.loads(feed["content"].decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            doc, fatal = None, True
        schema = _feed_schema()
        if doc is not None and feed["feedType"] == "JSON_LISTINGS_FEED":
            header_errors = [e for e in jsonschema.Draft7Validator(schema).iter_errors(doc)
                             if not list(e.absolute_path)[:1] == ["messages"] or len(e.absolute_path) < 2]
            if header_errors:
                fatal = True
                issues.append({"code": "100001", "severity": "ERROR", "message": header_errors[0].message[:500]})
            else:
                msg_schema = dict(schema["properties"]["messages"]["items"])
                if "definitions" in schema:
                    msg_schema["definitions"] = schema["definitions"]
                if "$defs" in schema:
                    msg_schema["$defs"] = schema["$defs"]
                validator = jsonschema.Draft7Validator(msg_schema)
                for msg in doc["messages"]:
                    processed += 1
                    errs = list(validator.iter_errors(msg))
                    problem = errs[0].message[:500] if errs else self._apply_message(msg, feed["apply"])
                    if problem:
                        invalid += 1
                        issue = {"code": "90220" if errs else "4000001", "severity": "ERROR", "message": problem}
                        if isinstance(msg.get("messageId"), int) and msg["messageId"] >= 1:
                            issue["messageId"] = msg["messageId"]
                        if isinstance(msg.get("sku"), str) and msg["sku"]:
                            issue["sku"] = msg["sku"]
                        issues.append(issue)
                    else:
                        accepted += 1
        elif doc is not None:
            fatal = True
            issues.append({"code": "100002", "severity": "ERROR", "message": f"Unsupported feedType {feed['feedType']}"})
        report = {"header": {"sellerId": self.seller_id, "version": "2.0", "feedId": feed["feedId"]}, "issues": issues,
                  "summary": {"errors": len(issues), "warnings": 0, "messagesProcessed": processed,
                              "messagesAccepted": accepted, "messagesInvalid": invalid}}
        result_id = f"amzn1.tortuga.4.na.{uuid.uuid4()}"
        self.feed_documents[result_id] = "result:" + feed["feedId"]
        feed["report"] = json.dumps(report).encode()
        feed["resultId"] = result_id
        feed["status"] = "FATAL" if fatal else "DONE"
        feed["endTime"] = iso(self.sb.clock.now())
        self.sb.record_write(self.name, "createFeed", feed["feedId"], doc if doc is not None else None,
                             applied=feed["apply"] and accepted > 0)

    def _apply_message(self, msg: dict, apply: bool) -> str | None:
        """Apply one listings feed message to the state. -> problem text, None when accepted."""
        sku, op = msg["sku"], msg["operationType"]
        listing = self.listings.get(sku)
        quantity = None
        if op == "PATCH":
            for p in msg.get("patches") or []:
                if p.get("path") == "/attributes/fulfillment_availability" and p.get("op") != "delete":
                    quantity = ((p.get("value") or [{}])[0]).get("quantity")
        elif op in ("PARTIAL_UPDATE", "UPDATE"):
            fa = (msg.get("attributes") or {}).get("fulfillment_availability")
            if fa:
                quantity = fa[0].get("quantity")
        if op == "DELETE":
            if listing is None:
                return f"The SKU '{sku}' does not exist for this seller."
            if apply:
                with self.sb.lock:
                    self.data["listings"].remove(listing)
                    del self.listings[sku]
            return None
        if listing is None and op != "UPDATE":
            return f"The SKU '{sku}' does not exist for this seller."
        if quantity is not None and (not isinstance(quantity, int) or quantity < 0):
            return "'quantity' must be a non-negative integer."
        if apply:
            with self.sb.lock:
                if listing is None:
                    listing = {"sku": sku, "product_type": msg.get("productType", "PRODUCT"), "quantity": 0,
                               "status": ["DISCOVERABLE"], "issues": []}
                    self.data["listings"].append(listing)
                    self.listings[sku] = listing
                listing["last_updated"] = self.stamp()
            if quantity is not None:
                self.set_listing_quantity(sku, quantity)
        return None

    def _feed_view(self, feed: dict) -> dict:
        phase = self._phase(feed["created"])
        if phase == "DONE" and feed["status"] is None:
            self._process_feed(feed)
        status = feed["status"] or phase
        out = {"feedId": feed["feedId"], "feedType": feed["feedType"], "marketplaceIds": feed["marketplaceIds"],
               "createdTime": feed["createdTime"], "processingStatus": status}
        if status != "IN_QUEUE":
            out["processingStartTime"] = feed["createdTime"]
        if feed["status"]:
            out["processingEndTime"] = feed["endTime"]
            out["resultFeedDocumentId"] = feed["resultId"]
        return out

    def get_feed(self, call: Call, feedId: str) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        feed = self.feeds.get(feedId)
        if feed is None:
            return Response.json(_error("NotFound", f"Feed {feedId} not found."), 404)
        return Response.json(self._feed_view(feed))

    def get_feed_document(self, call: Call, feedDocumentId: str) -> Response:
        denied = self._guard(call)
        if denied:
            return denied
        ref = self.feed_documents.get(feedDocumentId)
        if ref is None:
            return Response.json(_error("NotFound", f"Feed document {feedDocumentId} not found."), 404)
        if ref.startswith("result:"):
            content = self.feeds[ref.split(":", 1)[1]]["report"]
        else:
            content = self.file_content(ref) or b""
        url = self.publish_file(content, "application/json", DOCUMENT_URL_SECONDS)
        return Response.json({"feedDocumentId": feedDocumentId, "url": url})
