"""Shopify Admin GraphQL imitation: a real GraphQL engine (graphql-core) over an SDL subset of the Admin API,
calculated query cost with a leaky bucket per plan, inventorySetQuantities with @idempotent, bulk operations."""
from __future__ import annotations

import base64
import bisect
import hashlib
import json
import logging
import re
import threading
import uuid
from importlib import resources

from graphql import GraphQLError, build_schema, execute, get_named_type, get_operation_ast, is_object_type, parse, validate
from graphql.language import (FieldNode, FragmentDefinitionNode, FragmentSpreadNode, InlineFragmentNode,
                              OperationDefinitionNode)
from graphql.utilities import value_from_ast_untyped

from omnirecon_sandbox import shopify_search
from omnirecon_sandbox.http import Request, Response
from omnirecon_sandbox.ratelimit import TokenBucket
from omnirecon_sandbox.changes import INVENTORY, ORDER_CANCELLED, ORDER_CREATED, ORDER_FULFILLED
from omnirecon_sandbox.system import Call, System
from omnirecon_contract.timeutil import iso

PLANS = {"standard": (1000.0, 100.0), "advanced": (1000.0, 200.0), "plus": (10000.0, 1000.0)}
MAX_QUERY_COST = 1000
log = logging.getLogger(__name__)
MAX_PAGE = 250
MUTATION_COST = 10
REASONS = ("correction", "cycle_count_available", "damaged", "other", "promotion", "received", "restock", "shrinkage")
QUANTITY_NAMES = ("available", "on_hand", "committed", "reserved", "incoming", "damaged", "safety_stock",
                  "quality_control")
BULK_CONCURRENT = 5
DOCS = "https://shopify.dev/api/usage/rate-limits"
PLAN_NAMES = {"standard": "Basic", "advanced": "Advanced", "plus": "Plus"}   # ShopPlan.publicDisplayName
DEFAULT_PRICE = "19.99"   # the scenario format has no prices; a variant's `price` overrides it
_VERSION = re.compile(r"^(\d{4})-(01|04|07|10)$|^unstable$")

SCHEMA = build_schema(resources.files("omnirecon_sandbox").joinpath("shopify_schema.graphql").read_text())
SCHEMA.get_type("Node").resolve_type = lambda obj, info, abstract: gid_kind(obj["id"])


def gid(kind: str, num) -> str:
    return f"gid://shopify/{kind}/{num}"


def gid_kind(value: str) -> str:
    return value.split("/")[3]


def gid_num(value: str) -> int:
    tail = str(value).rsplit("/", 1)[-1].split("?", 1)[0]
    return int(tail) if tail.isdigit() else abs(hash(tail)) % 10**12


def encode_cursor(key) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str):
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
        return tuple(key) if isinstance(key, list) else key
    except Exception:
        raise GraphQLError(f"Invalid cursor for current pagination sort.", extensions={"code": "BAD_REQUEST"}) from None


def _version_tuple(version: str) -> tuple:
    return (9999, 99) if version == "unstable" else tuple(int(p) for p in version.split("-"))


class ShopifySystem(System):
    name = "shopify"

    def __init__(self, sandbox, data: dict):
        super().__init__(sandbox, data)
        opts = sandbox.options
        size, rate = PLANS[data.get("plan", "standard")]
        self.bucket = TokenBucket(opts.shopify_restore_rate or rate, opts.shopify_bucket_size or size, sandbox.clock)
        self.idempotency: dict[str, tuple[str, dict]] = {}
        self.idem_lock = threading.Lock()
        self.bulk_ops: dict[str, dict] = {}
        self._index()
        self.router.add("POST", "/admin/api/{version}/graphql.json", "graphql", self.graphql)

    # -- state and indexes ---------------------------------------------------------------------------------
    def _index(self) -> None:
        self.locations = {l["id"]: l for l in self.data.setdefault("locations", [])}
        variants = self.data.setdefault("variants", [])
        for v in variants:
            v.setdefault("inventory_item_id", gid("InventoryItem", gid_num(v["id"])))
            for lvl in v.setdefault("levels", []):
                committed = lvl.setdefault("committed", 0)
                if "on_hand" not in lvl:
                    lvl["on_hand"] = lvl.get("available", 0) + committed
                lvl.setdefault("available", lvl["on_hand"] - committed)
                lvl.setdefault("updated_at", self.sb.data.get("as_of"))
                if lvl["location_id"] not in self.locations:
                    loc = {"id": lvl["location_id"], "name": f"Location {gid_num(lvl['location_id'])}", "active": True}
                    self.data["locations"].append(loc)
                    self.locations[loc["id"]] = loc
        self.variants = sorted(variants, key=lambda v: gid_num(v["id"]))
        self.variant_keys = [(gid_num(v["id"]),) for v in self.variants]
        self.by_variant = {v["id"]: v for v in self.variants}
        self.by_item = {v["inventory_item_id"]: v for v in self.variants}
        self.by_sku = {}
        for v in self.variants:
            self.by_sku.setdefault(v.get("sku"), v)
        self.orders = self.data.setdefault("orders", [])
        self.orders_by_id = {o["id"]: o for o in self.orders}
        self._next_order = max([gid_num(o["id"]) for o in self.orders] + [1000])

    # -- state changes the world makes (a sale, a cancellation, a fulfilment, a write by an app) ------------
    def set_available(self, sku: str, location_id: str, quantity: int) -> bool:
        """Write `available` the way any app's inventorySetQuantities does. -> False: not stocked there."""
        variant = self.by_sku.get(sku)
        if variant is None or not any(l["location_id"] == location_id for l in variant["levels"]):
            return False
        self._apply_set({"name": "available", "reason": "correction", "quantities": [
            {"inventoryItemId": variant["inventory_item_id"], "locationId": location_id, "quantity": int(quantity)}]},
            True)
        return True

    def accepts(self, sku: str, quantity: int) -> bool:
        variant = self.by_sku.get(sku)
        if variant is None or not variant["levels"]:
            return False
        if variant.get("inventory_policy") == "CONTINUE" or not variant.get("tracked", True):
            return True
        return any(int(l.get("available", 0)) >= quantity for l in variant["levels"])

    def create_order(self, sku: str, quantity: int) -> str | None:
        """A checkout: available drops and committed rises at the first location that can fill it."""
        if not self.accepts(sku, quantity):
            return None
        variant, now = self.by_sku[sku], self.stamp()
        lvl = next((l for l in variant["levels"] if int(l.get("available", 0)) >= quantity), variant["levels"][0])
        with self.sb.lock:
            self._next_order += 1
            num = self._next_order
            order = {"id": gid("Order", num), "name": f"#{num + 1000}", "created_at": now, "updated_at": now,
                     "cancelled_at": None, "display_fulfillment_status": "UNFULFILLED",
                     "display_financial_status": "PAID",
                     "line_items": [{"sku": sku, "quantity": int(quantity), "x_location_id": lvl["location_id"]}]}
            self.orders.append(order)
            self.orders_by_id[order["id"]] = order
            lvl["available"] = int(lvl.get("available", 0)) - quantity
            lvl["committed"] = int(lvl.get("committed", 0)) + quantity
            lvl["updated_at"] = now
        self.world_changed(INVENTORY, sku=sku, location=lvl["location_id"], value=int(lvl["available"]),
                           detail={"delta": -quantity})
        self.world_changed(ORDER_CREATED, sku=sku, order=order["id"], value=int(quantity))
        return order["id"]

    def cancel_order(self, order_id: str) -> bool:
        """Cancel with restock: committed units return to available."""
        order = self.orders_by_id.get(order_id)
        if order is None or order.get("cancelled_at") or order.get("display_fulfillment_status") == "FULFILLED":
            return False
        now = self.stamp()
        with self.sb.lock:
            order["cancelled_at"] = order["updated_at"] = now
            touched = self._release(order, restock=True, now=now)
        for sku, loc, value, qty in touched:
            self.world_changed(INVENTORY, sku=sku, location=loc, value=value, detail={"delta": qty})
        self.world_changed(ORDER_CANCELLED, order=order_id)
        return True

    def fulfil_order(self, order_id: str) -> bool:
        """Shipped: committed units leave on_hand; the order shows FULFILLED."""
        order = self.orders_by_id.get(order_id)
        if order is None or order.get("cancelled_at") or order.get("display_fulfillment_status") == "FULFILLED":
            return False
        now = self.stamp()
        with self.sb.lock:
            order["display_fulfillment_status"] = "FULFILLED"
            order["updated_at"] = now
            self._release(order, restock=False, now=now)
        self.world_changed(ORDER_FULFILLED, order=order_id)
        return True

    def _release(self, order: dict, restock: bool, now: str) -> list:
        touched = []
        for line in order.get("line_items", []):
            variant = self.by_sku.get(line.get("sku"))
            loc = line.get("x_location_id")
            lvl = next((l for l in (variant or {}).get("levels", []) if l["location_id"] == loc), None)
            if lvl is None:
                continue
            qty = int(line.get("quantity", 0))
            lvl["committed"] = max(0, int(lvl.get("committed", 0)) - qty)
            if restock:
                lvl["available"] = int(lvl.get("available", 0)) + qty
                touched.append((line["sku"], loc, int(lvl["available"]), qty))
            else:
                lvl["on_hand"] = int(lvl.get("on_hand", 0)) - qty
            lvl["updated_at"] = now
        return touched

    def dump(self) -> dict:
        return self.data

    # -- System hooks ---------------------------------------------------------------------------------------
    def operations(self, req: Request, operation: str, params: dict) -> list[str]:
        try:
            payload = req.json() or {}
            doc = parse(payload.get("query") or "")
            op = get_operation_ast(doc, payload.get("operationName"))
            req.graphql = (payload, doc)
            if op is not None:
                return [s.name.value for s in op.selection_set.selections if isinstance(s, FieldNode)] or [operation]
        except Exception:
            req.graphql = None
        return [operation]

    def error(self, status: int, code: str, message: str) -> Response:
        if status == 401:
            return Response.json({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}, 401)
        return Response.json({"errors": [{"message": message, "extensions": {"code": code}}]}, status)

    def throttled(self, operations: list[str]) -> Response:
        self.bucket.drain()
        return self._throttled_response(MUTATION_COST)

    def expire_token(self, req: Request) -> Response:
        return self.error(401, "UNAUTHORIZED", "")

    # -- GraphQL endpoint ------------------------------------------------------------------------------------
    def _throttle_status(self) -> dict:
        return {"maximumAvailable": self.bucket.burst, "currentlyAvailable": round(self.bucket.available(), 1),
                "restoreRate": self.bucket.rate}

    def _throttled_response(self, requested: int) -> Response:
        body = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": DOCS}}],
                "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                        "throttleStatus": self._throttle_status()}}}
        status = self.sb.options.shopify_throttle_status
        headers = {"Retry-After": f"{self.bucket.seconds_until(requested):.1f}"} if status == 429 else {}
        return Response.json(body, status, headers)

    def graphql(self, call: Call, version: str) -> Response:
        req = call.req
        if not _VERSION.match(version):
            return Response.json({"errors": "Not Found"}, 404)
        if req.header("x-shopify-access-token") != self.sb.credentials.shopify_access_token:
            return self.error(401, "UNAUTHORIZED", "")
        parsed = getattr(req, "graphql", None)
        if parsed is None:
            try:
                payload = req.json() or {}
                doc = parse(payload.get("query") or "")
            except Exception as e:
                return Response.json({"errors": [{"message": f"Parse error: {e}"[:500],
                                                  "extensions": {"code": "BAD_REQUEST"}}]})
        else:
            payload, doc = parsed
        errors = validate(SCHEMA, doc)
        if errors:
            return Response.json({"errors": shopify_errors(doc, errors)})
        variables = payload.get("variables") or {}
        op = get_operation_ast(doc, payload.get("operationName"))
        if op is None:
            return Response.json({"errors": [{"message": "No operation named in the document",
                                              "extensions": {"code": "BAD_REQUEST"}}]})
        try:
            requested = query_cost(doc, op, variables)
        except GraphQLError as e:
            return Response.json({"errors": [e.formatted]})
        if requested > MAX_QUERY_COST:
            return Response.json({"errors": [{
                "message": f"Query cost is {requested}, which exceeds the single query max cost limit ({MAX_QUERY_COST}).",
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST,
                               "documentation": DOCS}}],
                "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                        "throttleStatus": self._throttle_status()}}})
        if not self.bucket.take(requested):
            return self._throttled_response(requested)
        ctx = {"version": _version_tuple(version), "version_handle": version, "call": call, "variables": variables,
               "bulk": False, "doc": doc}
        with self.sb.lock:
            result = execute(SCHEMA, doc, root_value=_Root(self), context_value=ctx, variable_values=variables,
                             operation_name=payload.get("operationName"))
        body = {}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
        body["data"] = result.data
        actual = min(requested, MUTATION_COST * len(op.selection_set.selections) if op.operation.value == "mutation"
                     else actual_cost(result.data))
        refund = requested - actual
        if refund > 0:
            with self.bucket.lock:
                self.bucket.tokens = min(self.bucket.burst, self.bucket.tokens + refund)
        body["extensions"] = {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                                       "throttleStatus": self._throttle_status()}}
        return Response.json(body)

    # -- views: scenario dicts -> GraphQL objects ----------------------------------------------------------------
    def location_view(self, loc: dict) -> dict:
        active, addr = loc.get("active", True), dict(loc.get("address") or {})
        addr.setdefault("formatted", [v for v in (addr.get("address1"), addr.get("city"), addr.get("country")) if v])
        stocked = any(l["location_id"] == loc["id"] for v in self.variants for l in v.get("levels", []))
        return {"id": loc["id"], "legacyResourceId": str(gid_num(loc["id"])), "name": loc.get("name") or loc["id"],
                "isActive": active, "address": addr,
                "fulfillsOnlineOrders": loc.get("fulfills_online_orders", active), "shipsInventory": active,
                "hasActiveInventory": stocked, "isFulfillmentService": False, "activatable": not active,
                "deactivatable": active, "deletable": not active and not stocked,
                "createdAt": self.sb.data.get("as_of"), "updatedAt": self.sb.data.get("as_of")}

    def shop_view(self) -> dict:
        domain = self.data.get("shop") or "sandbox-store.myshopify.com"
        plan = self.data.get("plan", "standard")
        return {"id": gid("Shop", 1), "name": domain.split(".")[0], "email": f"owner@{domain}",
                "contactEmail": f"owner@{domain}", "myshopifyDomain": domain, "url": f"https://{domain}",
                "primaryDomain": {"id": gid("Domain", 1), "host": domain, "url": f"https://{domain}", "sslEnabled": True},
                "currencyCode": "USD", "ianaTimezone": "Etc/UTC", "timezoneAbbreviation": "UTC",
                "timezoneOffset": "+0000", "timezoneOffsetMinutes": 0,
                "plan": {"displayName": PLAN_NAMES.get(plan, "Basic"), "publicDisplayName": PLAN_NAMES.get(plan, "Basic"),
                         "partnerDevelopment": False,
                         "shopifyPlus": plan == "plus"},
                "createdAt": self.sb.data.get("as_of"), "updatedAt": self.sb.data.get("as_of")}

    def node_view(self, id: str):
        """Any object by its global id (QueryRoot.node / nodes)."""
        m = re.match(r"^gid://shopify/(\w+)/(\d+)", id or "")
        if not m:
            return None
        kind, root = m.group(1), _Root(self)
        if kind == "LineItem":
            order = self.orders_by_id.get(gid("Order", int(m.group(2)) // 1000))
            idx = int(m.group(2)) % 1000 - 1
            lines = order.get("line_items", []) if order else []
            return self.line_view(order, idx, lines[idx]) if 0 <= idx < len(lines) else None
        if kind == "Fulfillment":
            order = self.orders_by_id.get(gid("Order", int(m.group(2))))
            done = order and order.get("display_fulfillment_status") in ("FULFILLED", "PARTIALLY_FULFILLED")
            return self.fulfillment_view(order) if done else None
        if kind == "Shop":
            return self.shop_view() if id == gid("Shop", 1) else None
        finder = {"ProductVariant": root.productVariant, "Product": root.product, "InventoryItem": root.inventoryItem,
                  "InventoryLevel": root.inventoryLevel, "Location": root.location, "Order": root.order,
                  "BulkOperation": root.bulkOperation, "WebhookSubscription": root.webhookSubscription}.get(kind)
        return finder(None, id) if finder else None

    def level_view(self, variant: dict, lvl: dict) -> dict:
        item_id = variant["inventory_item_id"]

        def quantities(info, names):
            out = []
            for name in names:
                if name not in QUANTITY_NAMES:
                    raise GraphQLError(f"Invalid quantity name: {name}", extensions={"code": "BAD_REQUEST"})
                out.append({"id": f"{self.level_id(variant, lvl)}&name={name}", "name": name,
                            "quantity": int(lvl.get(name, 0)), "updatedAt": lvl.get("updated_at")})
            return out

        return {"id": self.level_id(variant, lvl), "location": self.location_view(self.locations[lvl["location_id"]]),
                "item": lambda info: self.item_view(self.by_item[item_id]), "quantities": quantities,
                "canDeactivate": not any(int(lvl.get(n, 0)) for n in ("available", "committed", "incoming")),
                "createdAt": lvl.get("updated_at"), "updatedAt": lvl.get("updated_at")}

    @staticmethod
    def level_id(variant: dict, lvl: dict) -> str:
        return f"gid://shopify/InventoryLevel/{gid_num(lvl['location_id'])}?inventory_item_id={gid_num(variant['inventory_item_id'])}"

    def _updated(self, variant: dict) -> str:
        return max((l.get("updated_at") or "" for l in variant.get("levels", [])), default=self.sb.data.get("as_of"))

    def item_view(self, variant: dict) -> dict:
        levels = variant.get("levels", [])

        def inventory_levels(info, first=None, after=None, last=None, before=None, query=None, reverse=False):
            rows = sorted(levels, key=lambda l: gid_num(l["location_id"]))
            return self.connection(info, rows, lambda l: (gid_num(l["location_id"]),),
                                   lambda l: self.level_view(variant, l), first, after, last, before, reverse)

        def inventory_level(info, locationId):
            lvl = next((l for l in levels if l["location_id"] == locationId), None)
            return self.level_view(variant, lvl) if lvl else None

        return {"id": variant["inventory_item_id"], "legacyResourceId": str(gid_num(variant["inventory_item_id"])),
                "sku": variant.get("sku"), "tracked": variant.get("tracked", True), "requiresShipping": True,
                "duplicateSkuCount": sum(1 for v in self.variants if v is not variant and v.get("sku") == variant.get("sku")),
                "harmonizedSystemCode": None, "unitCost": None,
                "variant": lambda info: self.variant_view(variant), "inventoryLevel": inventory_level,
                "inventoryLevels": inventory_levels, "createdAt": self._updated(variant),
                "updatedAt": self._updated(variant)}

    def variant_view(self, variant: dict) -> dict:
        return {"id": variant["id"], "legacyResourceId": str(gid_num(variant["id"])), "sku": variant.get("sku"),
                "title": variant.get("sku") or "Default Title", "displayName": variant.get("sku") or variant["id"],
                "price": _price(variant), "compareAtPrice": None, "barcode": variant.get("barcode"), "position": 1,
                "availableForSale": variant.get("inventory_policy") == "CONTINUE" or not variant.get("tracked", True)
                or any(int(l.get("available", 0)) > 0 for l in variant.get("levels", [])),
                "taxable": True, "selectedOptions": [{"name": "Title", "value": "Default Title"}],
                "createdAt": self._updated(variant),
                "inventoryPolicy": variant.get("inventory_policy", "DENY"),
                "inventoryQuantity": sum(int(l.get("available", 0)) for l in variant.get("levels", [])),
                "inventoryItem": lambda info: self.item_view(variant), "product": lambda info: self.product_view(variant),
                "updatedAt": self._updated(variant)}

    def product_view(self, variant: dict) -> dict:
        """A variant's product (one variant per product: the scenario format has no products)."""
        num = gid_num(variant["id"])

        def variants(info, first=None, after=None, last=None, before=None, reverse=False):
            return self.connection(info, [variant], lambda v: (gid_num(v["id"]),), self.variant_view,
                                   first, after, last, before, reverse)

        sku = variant.get("sku") or f"variant-{num}"
        return {"id": gid("Product", num), "legacyResourceId": str(num), "title": sku, "handle": sku.lower(),
                "description": "", "descriptionHtml": "", "vendor": self.data.get("shop", "sandbox").split(".")[0],
                "productType": "", "tags": [], "hasOnlyDefaultVariant": True,
                "variantsCount": {"count": 1, "precision": "EXACT"}, "createdAt": self._updated(variant),
                "publishedAt": self._updated(variant), "status": "ACTIVE", "tracksInventory": bool(variant.get("tracked", True)),
                "totalInventory": sum(int(l.get("available", 0)) for l in variant.get("levels", [])),
                "variants": variants, "updatedAt": self._updated(variant)}

    def order_view(self, order: dict) -> dict:
        lines = order.get("line_items", [])
        status = order.get("display_fulfillment_status", "UNFULFILLED")
        done = status in ("FULFILLED", "PARTIALLY_FULFILLED")

        def line_items(info, first=None, after=None, last=None, before=None, reverse=False):
            rows = list(enumerate(lines))
            return self.connection(info, rows, lambda r: (r[0],), lambda r: self.line_view(order, r[0], r[1]),
                                   first, after, last, before, reverse)

        def fulfillments(info, first=None, query=None):
            return [self.fulfillment_view(order)][: first or None] if done else []

        total = sum(int(l.get("quantity", 0)) * float(self._line_price(l)) for l in lines)

        return {"id": order["id"], "legacyResourceId": str(gid_num(order["id"])),
                "name": order.get("name") or f"#{gid_num(order['id'])}", "email": order.get("email"), "note": None,
                "tags": [], "test": False, "confirmed": True,
                "fullyPaid": order.get("display_financial_status") == "PAID", "currencyCode": "USD",
                "totalPriceSet": _money_bag(total), "subtotalPriceSet": _money_bag(total),
                "cancelReason": ("OTHER" if order.get("cancelled_at") else None), "createdAt": order.get("created_at"),
                "updatedAt": order.get("updated_at") or order.get("created_at"),
                "processedAt": order.get("created_at"), "cancelledAt": order.get("cancelled_at"),
                "closed": status == "FULFILLED" and order.get("display_financial_status") == "PAID",
                "displayFulfillmentStatus": status, "displayFinancialStatus": order.get("display_financial_status"),
                "lineItems": line_items, "fulfillments": fulfillments}

    def fulfillment_view(self, order: dict) -> dict:
        return {"id": gid("Fulfillment", gid_num(order["id"])), "legacyResourceId": str(gid_num(order["id"])),
                "name": f"{order.get('name') or '#' + str(gid_num(order['id']))}-F1", "status": "SUCCESS",
                "order": lambda info: self.order_view(order), "location": None, "deliveredAt": None,
                "totalQuantity": sum(int(l.get("quantity", 0)) for l in order.get("line_items", [])),
                "trackingInfo": lambda info, first=None: [],
                "createdAt": order.get("updated_at"), "updatedAt": order.get("updated_at")}

    def _line_price(self, line: dict) -> str:
        variant = self.by_sku.get(line.get("sku"))
        return str(line.get("price") or (_price(variant) if variant else DEFAULT_PRICE))

    def line_view(self, order: dict, idx: int, line: dict) -> dict:
        status = order.get("display_fulfillment_status", "UNFULFILLED")
        cancelled = bool(order.get("cancelled_at"))
        qty = int(line.get("quantity", 0))
        variant = self.by_variant.get(line.get("variant_id")) or self.by_sku.get(line.get("sku"))
        return {"id": gid("LineItem", gid_num(order["id"]) * 1000 + idx + 1), "sku": line.get("sku"),
                "name": line.get("sku") or "item", "title": line.get("sku") or "item", "variantTitle": None,
                "variant": (lambda info: self.variant_view(variant)) if variant else None,
                "product": (lambda info: self.product_view(variant)) if variant else None, "requiresShipping": True,
                "originalUnitPriceSet": _money_bag(self._line_price(line)), "quantity": qty, "currentQuantity": 0 if cancelled else qty,
                "unfulfilledQuantity": 0 if cancelled or status == "FULFILLED" else qty}

    # -- connections ------------------------------------------------------------------------------------------
    def connection(self, info, rows, key_fn, view_fn, first, after, last, before, reverse, keys=None):
        ctx = info.context
        if not ctx["bulk"]:
            if first is None and last is None:
                raise GraphQLError("you must provide one of first or last", extensions={"code": "BAD_REQUEST"})
            for name, value in (("first", first), ("last", last)):
                if value is not None and (value < 0 or value > MAX_PAGE):
                    raise GraphQLError(f"The {name} argument must be between 0 and {MAX_PAGE} (got {value}).",
                                       extensions={"code": "BAD_REQUEST", "argumentName": name})
        if keys is None:
            keys = [key_fn(r) for r in rows]
        if reverse:
            rows, keys = rows[::-1], keys[::-1]
        lo, hi = 0, len(rows)
        if after:
            c = decode_cursor(after)
            lo = (next((i for i, k in enumerate(keys) if k < c), len(rows)) if reverse
                  else bisect.bisect_right(keys, c))
        if before:
            c = decode_cursor(before)
            hi = (next((i for i, k in enumerate(keys) if k <= c), len(rows)) if reverse
                  else bisect.bisect_left(keys, c))
            hi = max(hi, lo)
        if ctx["bulk"]:
            start, end = lo, hi
        elif first is not None:
            start, end = lo, min(hi, lo + first)
        else:
            start, end = max(lo, hi - last), hi
        page = rows[start:end]
        edges = [{"cursor": encode_cursor(list(keys[start + i])), "node": view_fn(r)} for i, r in enumerate(page)]
        return {"edges": edges, "nodes": [e["node"] for e in edges],
                "pageInfo": {"hasNextPage": end < hi, "hasPreviousPage": start > lo or bool(after),
                             "startCursor": edges[0]["cursor"] if edges else None,
                             "endCursor": edges[-1]["cursor"] if edges else None}}

    # -- inventorySetQuantities --------------------------------------------------------------------------------
    def set_quantities(self, info, input: dict) -> dict:
        ctx = info.context
        key = idempotency_key(info)
        if ctx["version"] >= (2026, 4) and key is None:
            raise GraphQLError("The @idempotent directive is required for this mutation.",
                               extensions={"code": "BAD_REQUEST"})
        fingerprint = hashlib.sha256(json.dumps(input, sort_keys=True).encode()).hexdigest()
        call: Call = ctx["call"]
        if key is not None:
            with self.idem_lock:
                stored = self.idempotency.get(key)
            if stored:
                if stored[0] != fingerprint:
                    return {"inventoryAdjustmentGroup": None, "userErrors": [{
                        "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH", "field": ["idempotent", "key"],
                        "message": "The same idempotency key was used with different parameters."}]}
                self.sb.record_write(self.name, "inventorySetQuantities", key, input, applied=False)
                return stored[1]
        errors = self._check_set(input)
        if errors:
            result = {"inventoryAdjustmentGroup": None, "userErrors": errors}
            self.sb.record_write(self.name, "inventorySetQuantities", key, input, applied=False)
        else:
            result = self._apply_set(input, call.apply)
            self.sb.record_write(self.name, "inventorySetQuantities", key, input, applied=call.apply)
        if key is not None:
            with self.idem_lock:
                self.idempotency[key] = (fingerprint, result)
        return result

    def _check_set(self, input: dict) -> list[dict]:
        errors = []
        if input["name"] not in ("available", "on_hand"):
            errors.append(_user_error("INVALID_NAME", ["input", "name"],
                                      "The quantity name must be either 'available' or 'on_hand'."))
        if input["reason"] not in REASONS:
            errors.append(_user_error("INVALID_REASON", ["input", "reason"], "The specified reason is invalid."))
        uri = input.get("referenceDocumentUri")
        if uri is not None and not re.match(r"^[a-z][a-z0-9+.-]*://\S+$", uri):
            errors.append(_user_error("INVALID_REFERENCE_DOCUMENT", ["input", "referenceDocumentUri"],
                                      "The reference document URI isn't a valid URI."))
        seen = set()
        ignore = input.get("ignoreCompareQuantity") or False
        for i, row in enumerate(input["quantities"]):
            path = ["input", "quantities", str(i)]
            pair = (row["inventoryItemId"], row["locationId"])
            if pair in seen:
                errors.append(_user_error("NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR", path,
                                          "The combination of inventoryItemId and locationId must be unique."))
            seen.add(pair)
            if row["quantity"] < 0 and input["name"] in ("available", "on_hand"):
                errors.append(_user_error("INVALID_QUANTITY_NEGATIVE", path + ["quantity"],
                                          "The quantity can't be negative."))
            elif row["quantity"] > 1_000_000_000:
                errors.append(_user_error("INVALID_QUANTITY_TOO_HIGH", path + ["quantity"],
                                          "The quantity can't be higher than 1,000,000,000."))
            variant = self.by_item.get(row["inventoryItemId"])
            if variant is None:
                errors.append(_user_error("INVALID_INVENTORY_ITEM", path + ["inventoryItemId"],
                                          "The specified inventory item could not be found."))
                continue
            if row["locationId"] not in self.locations:
                errors.append(_user_error("INVALID_LOCATION", path + ["locationId"],
                                          "The specified location could not be found."))
                continue
            lvl = next((l for l in variant["levels"] if l["location_id"] == row["locationId"]), None)
            if lvl is None:
                errors.append(_user_error("ITEM_NOT_STOCKED_AT_LOCATION", path + ["locationId"],
                                          "The specified inventory item is not stocked at the location."))
                continue
            current = int(lvl.get(input["name"], 0))
            if "changeFromQuantity" in row:
                if row["changeFromQuantity"] is not None and row["changeFromQuantity"] != current:
                    errors.append(_user_error("CHANGE_FROM_QUANTITY_STALE", path + ["changeFromQuantity"],
                                              "The specified changeFromQuantity does not match the current quantity."))
            elif not ignore:
                if row.get("compareQuantity") is None:
                    errors.append(_user_error("COMPARE_QUANTITY_REQUIRED", path + ["compareQuantity"],
                                              "The compareQuantity argument must be given to each quantity or ignored using ignoreCompareQuantity."))
                elif row["compareQuantity"] != current:
                    errors.append(_user_error("COMPARE_QUANTITY_STALE", path + ["compareQuantity"],
                                              "The compareQuantity value does not match the current quantity."))
        return errors

    def _apply_set(self, input: dict, apply: bool) -> dict:
        name, now, changes = input["name"], self.stamp(), []
        for row in input["quantities"]:
            variant = self.by_item[row["inventoryItemId"]]
            lvl = next(l for l in variant["levels"] if l["location_id"] == row["locationId"])
            delta = row["quantity"] - int(lvl.get(name, 0))
            other = "on_hand" if name == "available" else "available"
            if apply and delta:
                lvl[name] = row["quantity"]
                lvl[other] = int(lvl.get(other, 0)) + delta
                lvl["updated_at"] = now
                self.world_changed(INVENTORY, sku=variant.get("sku"), location=row["locationId"],
                                   value=int(lvl["available"]), detail={"delta": delta})
            item_id, loc_id = variant["inventory_item_id"], row["locationId"]
            for qname, qdelta in ((name, delta), (other, delta)):
                changes.append({"name": qname, "delta": qdelta,
                                "quantityAfterChange": int(lvl.get(qname, 0)) if apply else int(lvl.get(qname, 0)) + qdelta,
                                "item": {"id": item_id}, "location": {"id": loc_id}, "ledgerDocumentUri": None})
        group = {"id": gid("InventoryAdjustmentGroup", uuid.uuid4().int % 10**12), "createdAt": now,
                 "reason": input["reason"], "referenceDocumentUri": input.get("referenceDocumentUri"),
                 "changes": lambda info, **kw: changes}
        return {"inventoryAdjustmentGroup": group, "userErrors": []}

    # -- bulk operations ---------------------------------------------------------------------------------------
    def bulk_run(self, info, query: str, groupObjects: bool = False) -> dict:
        ctx = info.context
        try:
            doc = parse(query)
        except GraphQLError as e:
            return {"bulkOperation": None, "userErrors": [_user_error("INVALID", ["query"], f"Invalid bulk query: {e.message}")]}
        errors = validate(SCHEMA, doc)
        op = get_operation_ast(doc)
        if errors or op is None or op.operation.value != "query":
            msg = shopify_errors(doc, errors)[0]["message"] if errors else "Bulk queries must be a single query operation."
            return {"bulkOperation": None, "userErrors": [_user_error("INVALID", ["query"], f"Invalid bulk query: {msg}")]}
        roots = [s for s in op.selection_set.selections if isinstance(s, FieldNode)]
        if not any(str(get_named_type(SCHEMA.query_type.fields[s.name.value].type)).endswith("Connection") for s in roots):
            return {"bulkOperation": None, "userErrors": [_user_error(
                "INVALID", ["query"], "Bulk queries must contain at least one connection.")]}
        limit = BULK_CONCURRENT if ctx["version"] >= (2026, 1) else 1
        running = [op for op in self.bulk_ops.values() if self.bulk_status(op) in ("CREATED", "RUNNING")]
        if len(running) >= limit:
            code = "LIMIT_REACHED" if limit > 1 else "OPERATION_IN_PROGRESS"
            msg = (f"A maximum of {limit} bulk operations can run at the same time." if limit > 1
                   else f"A bulk query operation for this app and shop is already in progress: {running[0]['id']}.")
            return {"bulkOperation": None, "userErrors": [_user_error(code, ["query"], msg)]}
        op_id = gid("BulkOperation", 5_000_000 + len(self.bulk_ops) + 1)
        record = {"id": op_id, "query": query, "createdAt": iso(self.sb.clock.now()), "started": self.sb.clock.monotonic(),
                  "content": None, "objectCount": 0, "rootObjectCount": 0, "url": None, "cancelled": False,
                  "error": None}
        self.bulk_ops[op_id] = record
        # Like Shopify, answer at once and build the file while the job runs.
        threading.Thread(target=self._build_bulk, args=(record, doc, dict(ctx, bulk=True)), daemon=True).start()
        self.sb.record_write(self.name, "bulkOperationRunQuery", op_id, {"query": query}, applied=True)
        return {"bulkOperation": self.bulk_view(record), "userErrors": []}

    def _build_bulk(self, record: dict, doc, context: dict) -> None:
        result = execute(SCHEMA, doc, root_value=_Root(self), context_value=context)
        if result.errors:
            record["error"] = "INTERNAL_SERVER_ERROR"
            log.warning("bulk operation %s failed: %s", record["id"], result.errors[0].message)
            return
        lines, roots_count = flatten_bulk(result.data)
        record["objectCount"], record["rootObjectCount"] = len(lines), roots_count
        record["content"] = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()

    def bulk_status(self, record: dict) -> str:
        if record["cancelled"]:
            return "CANCELED"
        if record["error"]:
            return "FAILED"
        elapsed = self.sb.clock.monotonic() - record["started"]
        duration = self.sb.clock.scaled(self.sb.options.shopify_bulk_seconds)
        if elapsed < duration * 0.25:
            return "CREATED"
        return "RUNNING" if elapsed < duration or record["content"] is None else "COMPLETED"

    def bulk_view(self, record: dict) -> dict:
        status = self.bulk_status(record)
        done = status == "COMPLETED"
        if done and record["url"] is None:
            record["completedAt"] = iso(self.sb.clock.now())
            record["url"] = self.publish_file(record["content"], "application/jsonl", 7 * 24 * 3600) if record["content"] else None
        return {"id": record["id"], "status": status, "errorCode": record["error"], "type": "QUERY", "query": record["query"],
                "createdAt": record["createdAt"], "completedAt": record.get("completedAt") if done else None,
                "objectCount": str(record["objectCount"] if done else record["objectCount"] // 2),
                "rootObjectCount": str(record["rootObjectCount"] if done else 0),
                "fileSize": str(len(record["content"])) if done else None,
                "url": record["url"] if done else None, "partialDataUrl": None}


def _price(variant: dict) -> str:
    return f"{float(variant.get('price', DEFAULT_PRICE)):.2f}"


def _money_bag(amount) -> dict:
    money = {"amount": f"{float(amount):.2f}", "currencyCode": "USD"}
    return {"shopMoney": money, "presentmentMoney": dict(money)}


def _user_error(code: str, field: list, message: str) -> dict:
    return {"code": code, "field": field, "message": message}


def idempotency_key(info):
    for directive in info.field_nodes[0].directives or ():
        if directive.name.value == "idempotent":
            for arg in directive.arguments or ():
                if arg.name.value == "key":
                    return value_from_ast_untyped(arg.value, info.context["variables"])
    return None


class _Root:
    """Root resolvers: graphql-core's default resolver calls these with (info, **args)."""

    def __init__(self, shop: ShopifySystem):
        self.system = shop

    # queries
    def shop(self, info):
        return self.system.shop_view()

    def node(self, info, id):
        return self.system.node_view(id)

    def nodes(self, info, ids):
        if len(ids) > MAX_PAGE:
            raise GraphQLError(f"The ids argument accepts at most {MAX_PAGE} ids.", extensions={"code": "BAD_REQUEST"})
        return [self.system.node_view(i) for i in ids]

    def productVariants(self, info, first=None, after=None, last=None, before=None, query=None, reverse=False, sortKey="ID"):
        s = self.system
        match = shopify_search.matcher(query, {"sku": lambda v: v.get("sku"), "id": lambda v: gid_num(v["id"]),
                                               "updated_at": s._updated,
                                               "inventory_quantity": lambda v: sum(l.get("available", 0) for l in v["levels"])})
        if sortKey == "SKU":
            rows = sorted(s.variants, key=lambda v: (v.get("sku") or "", gid_num(v["id"])))
            key_fn, keys = (lambda v: (v.get("sku") or "", gid_num(v["id"]))), None
        else:
            rows, key_fn, keys = s.variants, (lambda v: (gid_num(v["id"]),)), s.variant_keys
        if match:
            rows, keys = [v for v in rows if match(v)], None
        return s.connection(info, rows, key_fn, s.variant_view, first, after, last, before, reverse, keys)

    def products(self, info, first=None, after=None, last=None, before=None, query=None, reverse=False, sortKey="ID"):
        s = self.system
        match = shopify_search.matcher(query, {"sku": lambda v: v.get("sku"), "title": lambda v: v.get("sku"),
                                               "id": lambda v: gid_num(v["id"]), "updated_at": s._updated})
        rows, keys = s.variants, s.variant_keys
        if match:
            rows, keys = [v for v in rows if match(v)], None
        return s.connection(info, rows, lambda v: (gid_num(v["id"]),), s.product_view, first, after, last, before,
                            reverse, keys)

    def product(self, info, id):
        v = self.system.by_variant.get(gid("ProductVariant", gid_num(id)))
        return self.system.product_view(v) if v else None

    def productVariant(self, info, id):
        v = self.system.by_variant.get(id)
        return self.system.variant_view(v) if v else None

    def inventoryItems(self, info, first=None, after=None, last=None, before=None, query=None, reverse=False):
        s = self.system
        match = shopify_search.matcher(query, {"sku": lambda v: v.get("sku"), "id": lambda v: gid_num(v["inventory_item_id"]),
                                               "updated_at": s._updated})
        rows = sorted(s.variants, key=lambda v: gid_num(v["inventory_item_id"]))
        if match:
            rows = [v for v in rows if match(v)]
        return s.connection(info, rows, lambda v: (gid_num(v["inventory_item_id"]),), s.item_view,
                            first, after, last, before, reverse)

    def inventoryItem(self, info, id):
        v = self.system.by_item.get(id)
        return self.system.item_view(v) if v else None

    def inventoryLevel(self, info, id):
        m = re.match(r"^gid://shopify/InventoryLevel/(\d+)\?inventory_item_id=(\d+)$", id)
        if not m:
            return None
        variant = self.system.by_item.get(gid("InventoryItem", m.group(2)))
        if not variant:
            return None
        lvl = next((l for l in variant["levels"] if gid_num(l["location_id"]) == int(m.group(1))), None)
        return self.system.level_view(variant, lvl) if lvl else None

    def locations(self, info, first=None, after=None, last=None, before=None, query=None, reverse=False,
                  sortKey="NAME", includeInactive=False):
        s = self.system
        rows = [l for l in s.locations.values() if includeInactive or l.get("active", True)]
        match = shopify_search.matcher(query, {"name": lambda l: l.get("name"), "id": lambda l: gid_num(l["id"])})
        if match:
            rows = [l for l in rows if match(l)]
        key_fn = (lambda l: (l.get("name") or "", gid_num(l["id"]))) if sortKey == "NAME" else (lambda l: (gid_num(l["id"]),))
        rows.sort(key=key_fn)
        return s.connection(info, rows, key_fn, s.location_view, first, after, last, before, reverse)

    def location(self, info, id=None):
        loc = self.system.locations.get(id) if id else next(iter(self.system.locations.values()), None)
        return self.system.location_view(loc) if loc else None

    def orders(self, info, first=None, after=None, last=None, before=None, query=None, reverse=False,
               sortKey="PROCESSED_AT"):
        s = self.system
        match = shopify_search.matcher(query, {
            "updated_at": lambda o: o.get("updated_at") or o.get("created_at"),
            "created_at": lambda o: o.get("created_at"), "processed_at": lambda o: o.get("created_at"),
            "name": lambda o: o.get("name"), "id": lambda o: gid_num(o["id"]),
            "status": lambda o: "cancelled" if o.get("cancelled_at") else "open",
            "fulfillment_status": lambda o: (o.get("display_fulfillment_status") or "").lower(),
            "financial_status": lambda o: (o.get("display_financial_status") or "").lower(),
            "sku": lambda o: next((l.get("sku") for l in o.get("line_items", [])), None)})
        rows = [o for o in s.orders if match(o)] if match else list(s.orders)
        field = {"UPDATED_AT": "updated_at", "CREATED_AT": "created_at", "PROCESSED_AT": "created_at"}.get(sortKey)
        key_fn = (lambda o: ((o.get(field) or o.get("created_at") or ""), gid_num(o["id"]))) if field else (lambda o: ("", gid_num(o["id"])))
        rows.sort(key=key_fn)
        return s.connection(info, rows, key_fn, s.order_view, first, after, last, before, reverse)

    def order(self, info, id):
        o = next((o for o in self.system.orders if o["id"] == id), None)
        return self.system.order_view(o) if o else None

    def bulkOperation(self, info, id):
        rec = self.system.bulk_ops.get(id)
        return self.system.bulk_view(rec) if rec else None

    def currentBulkOperation(self, info, type="QUERY"):
        if type != "QUERY" or not self.system.bulk_ops:
            return None
        return self.system.bulk_view(list(self.system.bulk_ops.values())[-1])

    # mutations
    def inventorySetQuantities(self, info, input):
        return self.system.set_quantities(info, input)

    def bulkOperationRunQuery(self, info, query, groupObjects=False):
        return self.system.bulk_run(info, query, groupObjects)

    def bulkOperationCancel(self, info, id):
        rec = self.system.bulk_ops.get(id)
        if rec is None:
            return {"bulkOperation": None, "userErrors": [_user_error("INVALID", ["id"], "Bulk operation does not exist")]}
        if self.system.bulk_status(rec) in ("CREATED", "RUNNING"):
            rec["cancelled"] = True
        return {"bulkOperation": self.system.bulk_view(rec), "userErrors": []}

    # webhook subscriptions (notify/shopify.py)
    def _webhooks(self):
        return self.system.sb.notifications.platforms["shopify"]

    def webhookSubscriptionCreate(self, info, topic, webhookSubscription):
        return self._webhooks().create(topic, webhookSubscription, info.context["version_handle"], self.system.stamp())

    def webhookSubscriptionDelete(self, info, id):
        return self._webhooks().delete(id)

    def webhookSubscription(self, info, id):
        sub = self._webhooks().subs.get(id)
        return self._webhooks().view(sub) if sub else None

    def webhookSubscriptions(self, info, first=None, after=None, last=None, before=None, reverse=False,
                             sortKey="CREATED_AT", query=None, topics=None, format=None, uri=None, callbackUrl=None):
        hooks = self._webhooks()
        rows = hooks.find(topics, uri or callbackUrl, format)
        return self.system.connection(info, rows, lambda s: (s["num"],), hooks.view, first, after, last, before, reverse)


# -- cost ---------------------------------------------------------------------------------------------------
# graphql-core's validation messages -> graphql-ruby's, as Shopify answers them (message, path, extensions)
_RULES = [
    (re.compile(r"^Cannot query field '(\w+)' on type '(\w+)'"),
     lambda m: (f"Field '{m[1]}' doesn't exist on type '{m[2]}'",
                {"code": "undefinedField", "typeName": m[2], "fieldName": m[1]})),
    (re.compile(r"^Unknown argument '(\w+)' on field '\w+\.(\w+)'"),
     lambda m: (f"Field '{m[2]}' doesn't accept argument '{m[1]}'",
                {"code": "argumentNotAccepted", "name": m[2], "typeName": "Field", "argumentName": m[1]})),
    (re.compile(r"^Argument '\w+\.(\w+)\((\w+):\)' of type '[^']+' is required"),
     lambda m: (f"Field '{m[1]}' is missing required arguments: {m[2]}",
                {"code": "missingRequiredArguments", "className": "Field", "name": m[1], "arguments": m[2]})),
    (re.compile(r"^Field '(\w+)' of type '([^']+)' must have a selection of subfields"),
     lambda m: (f"Field must have selections (field '{m[1]}' returns {m[2]} but has no selections. "
                f"Did you mean '{m[1]} {{ ... }}'?)",
                {"code": "selectionMismatch", "nodeName": f"field '{m[1]}'", "typeName": m[2]})),
    (re.compile(r"^Field '(\w+)' must not have a selection since type '([^']+)' has no subfields"),
     lambda m: (f"Selections can't be made on scalars (field '{m[1]}' returns {m[2]} but has selections "
                f"[...])", {"code": "selectionMismatch", "nodeName": f"field '{m[1]}'", "typeName": m[2]})),
]


def _ast_paths(doc) -> dict:
    """id(AST node) -> graphql-ruby's path: ["query Name" | "query" | "fragment F", field, ..., argument]."""
    paths: dict = {}

    def walk(node, path):
        for arg in getattr(node, "arguments", None) or ():
            paths[id(arg)] = path + [arg.name.value]
        for sel in (node.selection_set.selections if getattr(node, "selection_set", None) else ()):
            if isinstance(sel, FieldNode):
                here = path + [sel.name.value]
            elif isinstance(sel, InlineFragmentNode):
                here = path + [f"... on {sel.type_condition.name.value}" if sel.type_condition else "..."]
            else:
                here = path + [f"... {sel.name.value}"]
            paths[id(sel)] = here
            walk(sel, here)

    for d in doc.definitions:
        if isinstance(d, OperationDefinitionNode):
            head = d.operation.value + (f" {d.name.value}" if d.name else "")
        elif isinstance(d, FragmentDefinitionNode):
            head = f"fragment {d.name.value}"
        else:
            continue
        paths[id(d)] = [head]
        walk(d, [head])
    return paths


def shopify_errors(doc, errors) -> list[dict]:
    paths, out = _ast_paths(doc), []
    for e in errors:
        message, extensions = e.message, {"code": "validationError"}
        for pattern, render in _RULES:
            m = pattern.match(e.message)
            if m:
                message, extensions = render(m)
                break
        entry = {"message": message, "locations": [{"line": l.line, "column": l.column} for l in e.locations or []]}
        node_path = next((paths[id(n)] for n in e.nodes or () if id(n) in paths), None)
        if node_path:
            entry["path"] = node_path
        entry["extensions"] = extensions
        out.append(entry)
    return out


def _selections(selection_set, fragments):
    for sel in selection_set.selections if selection_set else []:
        if isinstance(sel, FieldNode):
            yield sel
        elif isinstance(sel, InlineFragmentNode):
            yield from _selections(sel.selection_set, fragments)
        elif isinstance(sel, FragmentSpreadNode) and sel.name.value in fragments:
            yield from _selections(fragments[sel.name.value].selection_set, fragments)


def _arg(field: FieldNode, name: str, variables: dict):
    for a in field.arguments or ():
        if a.name.value == name:
            return value_from_ast_untyped(a.value, variables)
    return None


def _cost(parent, selection_set, fragments, variables) -> int:
    total = 0
    for field in _selections(selection_set, fragments):
        fdef = parent.fields.get(field.name.value) if hasattr(parent, "fields") else None
        if fdef is None:
            continue
        named = get_named_type(fdef.type)
        if not is_object_type(named) and not hasattr(named, "fields"):
            continue
        if named.name.endswith("Connection"):
            size = _arg(field, "first", variables) or _arg(field, "last", variables) or 0
            node_type = named.fields["nodes"].type
            node_named = get_named_type(node_type)
            per_node = 0
            for sub in _selections(field.selection_set, fragments):
                if sub.name.value == "nodes":
                    per_node = max(per_node, 1 + _cost(node_named, sub.selection_set, fragments, variables))
                elif sub.name.value == "edges":
                    for e in _selections(sub.selection_set, fragments):
                        if e.name.value == "node":
                            per_node = max(per_node, 1 + _cost(node_named, e.selection_set, fragments, variables))
            total += 2 + int(size) * per_node
        elif named.name == "PageInfo":
            continue
        else:
            total += 1 + _cost(named, field.selection_set, fragments, variables)
    return total


def query_cost(doc, op, variables: dict) -> int:
    fragments = {d.name.value: d for d in doc.definitions if d.kind == "fragment_definition"}
    if op.operation.value == "mutation":
        return MUTATION_COST * sum(1 for _ in _selections(op.selection_set, fragments))
    return max(1, _cost(SCHEMA.query_type, op.selection_set, fragments, variables or {}))


def actual_cost(data) -> int:
    """Cost of what was returned: objects count 1, connections 2 plus their nodes."""
    def walk(value) -> int:
        if isinstance(value, dict):
            if "edges" in value or "nodes" in value:
                nodes = value.get("nodes")
                if nodes is None:
                    nodes = [e.get("node") for e in value.get("edges") or [] if isinstance(e, dict)]
                return 2 + sum(1 + walk(n) for n in nodes if n is not None)
            return sum(walk(v) + (1 if isinstance(v, dict) and k != "pageInfo" and "edges" not in v and "nodes" not in v else 0)
                       for k, v in value.items())
        if isinstance(value, list):
            return sum(walk(v) for v in value)
        return 0
    return max(1, walk(data or {}))


# -- bulk results ------------------------------------------------------------------------------------------
def _is_connection(value) -> bool:
    return isinstance(value, dict) and ("edges" in value or "nodes" in value)


def _nodes(conn: dict) -> list:
    if conn.get("nodes") is not None:
        return conn["nodes"]
    return [e["node"] for e in conn.get("edges") or [] if e.get("node") is not None]


def flatten_bulk(data: dict) -> tuple[list, int]:
    """JSONL lines: each connection node on its own line, nested connection children with `__parentId`."""
    lines, roots = [], 0

    def strip(obj: dict, pending: list) -> dict:
        out = {}
        for k, v in obj.items():
            if _is_connection(v):
                pending.append(v)
            elif isinstance(v, dict):
                out[k] = strip(v, pending)
            elif isinstance(v, list):
                out[k] = [strip(x, pending) if isinstance(x, dict) else x for x in v]
            else:
                out[k] = v
        return out

    def emit(node: dict, parent_id) -> None:
        pending: list = []
        record = strip(node, pending)
        if parent_id is not None:
            record["__parentId"] = parent_id
        lines.append(record)
        for conn in pending:
            for child in _nodes(conn):
                emit(child, node.get("id"))

    for value in (data or {}).values():
        if _is_connection(value):
            for node in _nodes(value):
                roots += 1
                emit(node, None)
    return lines, roots
