"""Shopify Admin GraphQL hook (reference/channel-apis.md §1).

Pacing follows the calculated-cost bucket: every response's `extensions.cost.throttleStatus` tells how
many points are left; before a call that would not fit we wait (requested - available) / restoreRate,
and a THROTTLED answer (HTTP 200 with errors[].extensions.code) is retried after the same wait.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from typing import Any, Iterator

import requests

from omnirecon.hooks.base import ApiError, MalformedResponse, Retry, require
from omnirecon.hooks.connector import ConnectorHook
from omnirecon.timeutil import iso

VARIANT_FIELDS = "id sku inventoryPolicy inventoryItem { id tracked %s }"
LEVEL_FIELDS = 'location { id } quantities(names: ["available", "on_hand", "committed"]) { name quantity updatedAt }'

BULK_INVENTORY_QUERY = (
    "{ productVariants { edges { node { " + VARIANT_FIELDS % (
        "inventoryLevels { edges { node { " + LEVEL_FIELDS + " } } }") + " } } } }"
)

VARIANTS_PAGE_QUERY = """
query Variants($first: Int!, $after: String, $levels: Int!) {
  productVariants(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { %s }
  }
}""" % (VARIANT_FIELDS % ("inventoryLevels(first: $levels) { nodes { " + LEVEL_FIELDS + " } }"))

ORDERS_QUERY = """
query Orders($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id name createdAt updatedAt cancelledAt displayFulfillmentStatus displayFinancialStatus
      lineItems(first: 50) { pageInfo { hasNextPage endCursor } nodes { sku quantity } }
    }
  }
}"""

ORDER_LINES_QUERY = """
query OrderLines($id: ID!, $after: String) {
  order(id: $id) { lineItems(first: 50, after: $after) { pageInfo { hasNextPage endCursor } nodes { sku quantity } } }
}"""

BULK_RUN_MUTATION = """
mutation RunBulk($query: String!) {
  bulkOperationRunQuery(query: $query) { bulkOperation { id status } userErrors { field message code } }
}"""

BULK_POLL_QUERY = """
query PollBulk($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount url partialDataUrl }
}"""

SET_QUANTITIES_MUTATION = """
mutation SetAvailable($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { createdAt reason referenceDocumentUri changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}"""

BULK_DONE_BAD = ("FAILED", "CANCELED", "CANCELING", "EXPIRED")


class ShopifyHook(ConnectorHook):
    non_idempotent_operations = frozenset({"bulkOperationRunQuery"})
    conn_name_attr = "shopify_conn_id"
    default_conn_name = "omnirecon_shopify"
    conn_type = "omnirecon_shopify"
    hook_name = "Shopify Admin GraphQL (omnirecon)"
    system = "shopify"

    page_size = 25            # nodes per page (cost grows with page size x levels; halved on MAX_COST_EXCEEDED)
    levels_per_variant = 10
    orders_page_size = 10
    bulk_poll_seconds = 2.0   # the longest wait between bulkOperation polls (poll_wait)
    bulk_timeout_seconds = 3600.0

    def __init__(self, shopify_conn_id: str | None = None, **kwargs):
        super().__init__(shopify_conn_id, **kwargs)
        self._bucket_lock = threading.Lock()
        self._available: float | None = None
        self._maximum: float | None = None
        self._restore: float | None = None
        self._stamp = 0.0
        self._last_cost: dict[str, float] = {}

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/admin/api/{self.extra('api_version', '2026-01')}/graphql.json"

    # -- transport --------------------------------------------------------------------
    def _prepare(self, call: dict, cid: str) -> None:
        call["headers"].update({"X-Shopify-Access-Token": self.fields["password"] or "",
                                "Content-Type": "application/json", "Accept": "application/json",
                                "X-Request-Id": cid})

    def _note_cost(self, body: Any) -> dict | None:
        cost = (body.get("extensions") or {}).get("cost") if isinstance(body, dict) else None
        status = (cost or {}).get("throttleStatus")
        if not status:
            return None
        with self._bucket_lock:
            try:
                self._available = float(status["currentlyAvailable"])
                self._maximum = float(status.get("maximumAvailable") or 0) or None
                self._restore = float(status["restoreRate"])
                self._stamp = time.monotonic()
            except (KeyError, TypeError, ValueError):
                return None
        return cost

    def _wait_for(self, requested: float) -> float:
        """Documented seconds to wait before `requested` points fit in the bucket."""
        with self._bucket_lock:
            if self._available is None or not self._restore:
                return 0.0
            elapsed = (time.monotonic() - self._stamp) / max(self.time_scale, 1e-9)
            available = self._available + elapsed * self._restore
            if self._maximum:
                available = min(available, self._maximum)
            return max(0.0, (requested - available) / self._restore)

    def _inspect(self, operation: str):
        def inspect(resp: requests.Response) -> None:
            if resp.status_code == 401:
                return
            try:
                body = resp.json()
            except ValueError:
                return
            cost = self._note_cost(body)
            errors = body.get("errors") if isinstance(body, dict) else None
            if isinstance(errors, list) and any((e.get("extensions") or {}).get("code") == "THROTTLED"
                                                for e in errors if isinstance(e, dict)):
                requested = float((cost or {}).get("requestedQueryCost") or self._last_cost.get(operation, 50))
                delay = self._wait_for(requested) if cost else None
                raise Retry("THROTTLED (query cost bucket empty)", delay if delay else None,
                            resp.status_code, outcome="throttled")
        return inspect

    def graphql(self, query: str, variables: dict | None = None, *, operation: str,
                shape: tuple = ()) -> dict:
        """POST one GraphQL document; returns `data`. Top-level errors raise ApiError.

        `shape`: paths that must exist under `data`; an answer without them is malformed (and retried).
        """
        expected = self._last_cost.get(operation)
        if expected:
            wait = self._wait_for(min(expected, self._maximum or expected))
            if wait > 0:
                self.core.event(operation, "throttled", None, f"pacing {wait:.2f}s for {expected:.0f} points")
                self.wait(wait)

        def parse(resp: requests.Response) -> dict:
            body = self.core.json(resp, operation)
            if not isinstance(body, dict) or ("data" not in body and "errors" not in body):
                raise MalformedResponse(self.system, operation, "answer has neither data nor errors",
                                        resp.status_code)
            if not body.get("errors"):
                if not isinstance(body.get("data"), dict):
                    raise MalformedResponse(self.system, operation, "answer misses `data`", resp.status_code)
                for path in shape:
                    require(body["data"], path, self.system, operation)
            return body

        body = self.core.request("POST", self.endpoint, operation=operation, prepare=self._prepare,
                                 inspect=self._inspect(operation), parse=parse,
                                 data=json.dumps({"query": query, "variables": variables or {}}))
        cost = (body.get("extensions") or {}).get("cost") or {}
        if cost.get("requestedQueryCost") is not None and not body.get("errors"):
            self._last_cost[operation] = float(cost["requestedQueryCost"])
        if body.get("errors"):
            first = body["errors"][0] if isinstance(body["errors"], list) and body["errors"] else {}
            code = (first.get("extensions") or {}).get("code") if isinstance(first, dict) else None
            msg = first.get("message", str(body["errors"])) if isinstance(first, dict) else str(body["errors"])
            self.core.event(operation, "error", None, f"{code or ''} {msg}")
            raise ApiError(self.system, operation, self.core.redact(msg), code=code)
        return body["data"]

    def paginate(self, query: str, root: str, variables: dict, *, first: int) -> Iterator[dict]:
        after = None
        while True:
            try:
                data = self.graphql(query, dict(variables, first=first, after=after), operation=root,
                                    shape=(f"{root}.nodes", f"{root}.pageInfo"))
            except ApiError as e:
                if e.code != "MAX_COST_EXCEEDED" or first <= 1:
                    raise
                first = max(1, first // 2)   # the page is too expensive: ask for fewer nodes
                continue
            conn = data[root]
            if not isinstance(conn.get("nodes"), list):
                raise MalformedResponse(self.system, root, f"{root}.nodes is not a list")
            yield from conn["nodes"]
            if not conn["pageInfo"].get("hasNextPage"):
                return
            after = conn["pageInfo"].get("endCursor")
            if not after:
                raise MalformedResponse(self.system, root, "hasNextPage without endCursor")

    def ping(self) -> None:
        self.graphql("{ shop { name } }", operation="shop")

    # -- inventory --------------------------------------------------------------------
    def fetch_variants(self, use_bulk: bool = True) -> dict:
        """Every variant with its inventory item and levels: {"variants": [...], "method": "bulk"|"paged"}."""
        if use_bulk:
            try:
                return {"variants": self.bulk_variants(), "method": "bulk"}
            except ApiError as e:
                self.core.event("bulkOperationRunQuery", "error", e.status_code,
                                f"bulk export unavailable, falling back to paged productVariants: {e}")
        variants = list(self.paginate(VARIANTS_PAGE_QUERY, "productVariants",
                                      {"levels": self.levels_per_variant}, first=self.page_size))
        return {"variants": variants, "method": "paged"}

    def bulk_variants(self) -> list[dict]:
        data = self.graphql(BULK_RUN_MUTATION, {"query": BULK_INVENTORY_QUERY}, operation="bulkOperationRunQuery")
        payload = data.get("bulkOperationRunQuery") or {}
        if payload.get("userErrors"):
            err = payload["userErrors"][0]
            raise ApiError(self.system, "bulkOperationRunQuery", err.get("message", ""), code=err.get("code"))
        op_id = (payload.get("bulkOperation") or {}).get("id")
        if not op_id:
            raise MalformedResponse(self.system, "bulkOperationRunQuery", "no bulkOperation.id in the answer")
        started = time.monotonic()
        deadline = started + self.bulk_timeout_seconds * self.time_scale
        while True:
            op = self.graphql(BULK_POLL_QUERY, {"id": op_id}, operation="bulkOperation").get("bulkOperation") or {}
            status = op.get("status")
            if status == "COMPLETED":
                break
            if status in BULK_DONE_BAD:
                raise ApiError(self.system, "bulkOperation", f"bulk operation {status.lower()} "
                               f"({op.get('errorCode') or 'no error code'})", code=op.get("errorCode"))
            if status not in ("CREATED", "RUNNING"):
                raise MalformedResponse(self.system, "bulkOperation", f"unknown bulk status {status!r}")
            if time.monotonic() > deadline:
                raise ApiError(self.system, "bulkOperation", "bulk operation did not finish in time")
            self.poll_wait(started, self.bulk_poll_seconds)
        if not op.get("url"):
            return []   # a completed export with no objects has no file
        return reassemble_bulk(self.download(op["url"], "bulkOperationResult"))

    def download(self, url: str, operation: str) -> bytes:
        """A result file: presigned URL, no credentials sent."""
        resp = self.core.request("GET", url, operation=operation)
        return resp.content

    # -- orders -----------------------------------------------------------------------
    def fetch_orders(self, start: datetime, end: datetime) -> list[dict]:
        query = f"updated_at:>='{iso(start)}' AND updated_at:<'{iso(end)}'"
        orders = list(self.paginate(ORDERS_QUERY, "orders", {"query": query}, first=self.orders_page_size))
        for order in orders:
            lines = order.get("lineItems") if isinstance(order, dict) else None
            page = (lines or {}).get("pageInfo") or {}
            while page.get("hasNextPage"):   # more than one page of line items: fetch the rest
                data = self.graphql(ORDER_LINES_QUERY, {"id": order["id"], "after": page.get("endCursor")},
                                    operation="order", shape=("order.lineItems.nodes",))
                more = data["order"]["lineItems"]
                lines["nodes"].extend(more["nodes"])
                page = more.get("pageInfo") or {}
        return orders

    # -- writes and read-back ---------------------------------------------------------
    def set_available(self, changes: list[dict], idempotency_key: str, reason: str = "correction",
                      reference_document_uri: str | None = None) -> dict:
        """inventorySetQuantities(name "available") with compare-and-swap and an idempotency key."""
        quantities = [{"inventoryItemId": c["inventory_item_id"], "locationId": c["location_id"],
                       "quantity": int(c["quantity"]), "changeFromQuantity": c.get("change_from")}
                      for c in changes]
        payload = {"name": "available", "reason": reason, "quantities": quantities}
        if reference_document_uri:
            payload["referenceDocumentUri"] = reference_document_uri
        request_summary = {"idempotency_key": idempotency_key, "input": payload}
        target = ",".join(f"{c['inventory_item_id']}@{c['location_id']}" for c in changes)
        try:
            data = self.graphql(SET_QUANTITIES_MUTATION, {"input": payload, "key": idempotency_key},
                                operation="inventorySetQuantities")
        except ApiError as e:
            self.record_write("inventorySetQuantities", target, request_summary, e.status_code, "error", str(e))
            raise
        result = data.get("inventorySetQuantities") or {}
        user_errors = [{"code": u.get("code"), "field": u.get("field"), "message": u.get("message")}
                       for u in result.get("userErrors") or []]
        ok = not user_errors and result.get("inventoryAdjustmentGroup") is not None
        if not user_errors and result.get("inventoryAdjustmentGroup") is None:
            ok = True   # nothing changed (already at the target); Shopify returns no group
        self.record_write("inventorySetQuantities", target, request_summary, 200, "ok" if ok else "rejected",
                          "; ".join(f"{u['code']}: {u['message']}" for u in user_errors) or None)
        return {"ok": ok, "user_errors": user_errors, "raw": result}

    def read_available(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Current `available` per (inventory item, location); pairs not stocked are absent."""
        out: dict[tuple[str, str], int] = {}
        for i in range(0, len(pairs), 25):
            chunk = pairs[i:i + 25]
            decl = ", ".join(f"$i{n}: ID!, $l{n}: ID!" for n in range(len(chunk)))
            body = " ".join(
                f'q{n}: inventoryItem(id: $i{n}) {{ id inventoryLevel(locationId: $l{n}) {{ '
                f'quantities(names: ["available"]) {{ name quantity }} }} }}' for n in range(len(chunk)))
            variables = {}
            for n, (item, loc) in enumerate(chunk):
                variables[f"i{n}"], variables[f"l{n}"] = item, loc
            data = self.graphql(f"query ReadAvailable({decl}) {{ {body} }}", variables, operation="inventoryItem")
            for n, pair in enumerate(chunk):
                level = (data.get(f"q{n}") or {}).get("inventoryLevel")
                if not level:
                    continue
                for q in level.get("quantities") or []:
                    if q.get("name") == "available" and q.get("quantity") is not None:
                        out[tuple(pair)] = int(q["quantity"])
        return out


def reassemble_bulk(content: bytes) -> list[dict]:
    """JSONL bulk result -> variant nodes shaped like the paged query (levels under inventoryItem)."""
    variants: dict[str, dict] = {}
    order: list[str] = []
    orphans: list[dict] = []
    for n, line in enumerate(content.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise MalformedResponse("shopify", "bulkOperationResult", f"line {n} is not JSON") from None
        parent = obj.pop("__parentId", None)
        if parent is None:
            obj.setdefault("inventoryItem", {})
            if isinstance(obj["inventoryItem"], dict):
                obj["inventoryItem"].setdefault("inventoryLevels", {"nodes": []})
            variants[obj.get("id")] = obj
            order.append(obj.get("id"))
        else:
            (orphans if parent not in variants else
             variants[parent]["inventoryItem"]["inventoryLevels"]["nodes"]).append(dict(obj, __parentId=parent))
    for obj in orphans:   # children listed before their parent (groupObjects off + reordering)
        parent = obj.pop("__parentId")
        if parent not in variants:
            raise MalformedResponse("shopify", "bulkOperationResult", f"child of unknown parent {parent}")
        variants[parent]["inventoryItem"]["inventoryLevels"]["nodes"].append(obj)
    for v in variants.values():
        for level in v["inventoryItem"]["inventoryLevels"]["nodes"]:
            level.pop("__parentId", None)
    return [variants[k] for k in order]
