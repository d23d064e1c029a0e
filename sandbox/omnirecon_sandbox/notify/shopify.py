"""Shopify webhooks: webhookSubscriptionCreate / webhookSubscriptions / webhookSubscriptionDelete, and HTTP
delivery of the REST-shaped body with the X-Shopify-* headers and the base64 HMAC-SHA256 of the raw body keyed
with the app's client secret. 1 s to connect, 5 s in all, only a 2xx counts; 8 retries over about 4 hours
(scaled by the sandbox time scale); after 8 consecutive failed attempts the subscription is deleted."""
from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import threading
import uuid
from urllib.parse import urlsplit

from omnirecon_sandbox.changes import INVENTORY, ORDER_CANCELLED, ORDER_CREATED, ORDER_FULFILLED

TOPICS = {"INVENTORY_LEVELS_UPDATE": "inventory_levels/update", "ORDERS_CREATE": "orders/create",
          "ORDERS_UPDATED": "orders/updated", "ORDERS_CANCELLED": "orders/cancelled",
          "ORDERS_FULFILLED": "orders/fulfilled"}
BY_CHANGE = {INVENTORY: ("INVENTORY_LEVELS_UPDATE",), ORDER_CREATED: ("ORDERS_CREATE",),
             ORDER_CANCELLED: ("ORDERS_CANCELLED", "ORDERS_UPDATED"),
             ORDER_FULFILLED: ("ORDERS_FULFILLED", "ORDERS_UPDATED")}
RETRY_BACKOFF_S = (10, 30, 60, 300, 900, 1800, 3600, 7200)    # 8 retries, ~4 h in all (documented seconds)
FAILURES_TO_DELETE = 8
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _num(gid: str) -> int:
    tail = str(gid).rsplit("/", 1)[-1].split("?", 1)[0]
    return int(tail) if tail.isdigit() else 0


class ShopifyWebhooks:
    def __init__(self, hub, system):
        self.hub, self.system = hub, system
        self.subs: dict[str, dict] = {}
        self.lock = threading.Lock()
        self._ids = itertools.count(1_400_000_001)

    # -- control plane (GraphQL resolvers call these) -----------------------------------------------------------
    def create(self, topic: str, spec: dict, version: str, now: str) -> dict:
        uri = spec.get("uri") or spec.get("callbackUrl")
        field = ["webhookSubscription", "uri" if spec.get("uri") else "callbackUrl"]
        problem = _check_uri(uri)
        if problem:
            return {"webhookSubscription": None, "userErrors": [{"field": field, "message": problem}]}
        if spec.get("format", "JSON") != "JSON":
            return {"webhookSubscription": None, "userErrors": [{"field": ["webhookSubscription", "format"],
                                                                 "message": "The sandbox delivers JSON only"}]}
        if topic not in TOPICS:
            return {"webhookSubscription": None, "userErrors": [{"field": ["topic"],
                                                                 "message": f"The sandbox does not deliver {topic}"}]}
        with self.lock:
            if any(s["topic"] == topic and s["uri"] == uri for s in self.subs.values()):
                return {"webhookSubscription": None,
                        "userErrors": [{"field": field, "message": "Address for this topic has already been taken"}]}
            num = next(self._ids)
            sub = {"id": f"gid://shopify/WebhookSubscription/{num}", "num": num, "topic": topic, "uri": uri,
                   "format": "JSON", "includeFields": list(spec.get("includeFields") or []),
                   "metafieldNamespaces": list(spec.get("metafieldNamespaces") or []),
                   "filter": spec.get("filter"), "apiVersion": version, "createdAt": now, "updatedAt": now,
                   "failures": 0}
            self.subs[sub["id"]] = sub
        return {"webhookSubscription": self.view(sub), "userErrors": []}

    def delete(self, sub_id: str) -> dict:
        with self.lock:
            sub = self.subs.pop(sub_id, None)
        if sub is None:
            return {"deletedWebhookSubscriptionId": None,
                    "userErrors": [{"field": ["id"], "message": "Webhook subscription does not exist"}]}
        return {"deletedWebhookSubscriptionId": sub_id, "userErrors": []}

    def find(self, topics=None, uri=None, fmt=None) -> list[dict]:
        with self.lock:
            rows = sorted(self.subs.values(), key=lambda s: s["num"])
        return [s for s in rows if (not topics or s["topic"] in topics) and (uri is None or s["uri"] == uri)
                and (fmt is None or s["format"] == fmt)]

    @staticmethod
    def view(sub: dict) -> dict:
        return {"id": sub["id"], "legacyResourceId": str(sub["num"]), "topic": sub["topic"], "uri": sub["uri"],
                "callbackUrl": sub["uri"], "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": sub["uri"]},
                "format": sub["format"], "includeFields": sub["includeFields"],
                "metafieldNamespaces": sub["metafieldNamespaces"], "filter": sub["filter"],
                "apiVersion": {"handle": sub["apiVersion"], "displayName": sub["apiVersion"], "supported": True},
                "createdAt": sub["createdAt"], "updatedAt": sub["updatedAt"]}

    # -- data plane ---------------------------------------------------------------------------------------------
    def on_change(self, change, published: float) -> None:
        topics = BY_CHANGE.get(change.kind, ())
        subs = [s for s in self.find(topics)]
        if not subs:
            return
        bodies = {}
        event_ids = {t: str(uuid.uuid4()) for t in topics}
        for sub in subs:
            topic = sub["topic"]
            if topic not in bodies:
                bodies[topic] = self.body(topic, change)
            if bodies[topic] is None:
                continue
            webhook_id = str(uuid.uuid4())
            headers = {"Content-Type": "application/json", "User-Agent": "Shopify-Captain-Hook",
                       "X-Shopify-Topic": TOPICS[topic], "X-Shopify-Shop-Domain": self.shop_domain(),
                       "X-Shopify-API-Version": sub["apiVersion"], "X-Shopify-Webhook-Id": webhook_id,
                       "X-Shopify-Event-Id": event_ids[topic], "X-Shopify-Triggered-At": change.at_iso}
            self.hub.emit("shopify", TOPICS[topic], sub["id"],
                          lambda delay, dup, pub, sub=sub, topic=topic, headers=headers: self.hub.post(
                              self, sub["id"], TOPICS[topic], sub["uri"], bodies[topic], headers, self.sign,
                              delay, dup, pub), published)

    def shop_domain(self) -> str:
        return self.system.data.get("shop") or "sandbox-store.myshopify.com"

    def sign(self, d) -> dict:
        secret = self.hub.sb.credentials.shopify_client_secret.encode()
        return {"X-Shopify-Hmac-Sha256": base64.b64encode(hmac.new(secret, d.body, hashlib.sha256).digest()).decode()}

    def body(self, topic: str, change) -> dict | None:
        shop = self.system
        with self.hub.sb.lock:
            if topic == "INVENTORY_LEVELS_UPDATE":
                variant = shop.by_sku.get(change.sku)
                lvl = next((l for l in (variant or {}).get("levels", []) if l["location_id"] == change.location), None)
                if lvl is None:
                    return None
                return {"inventory_item_id": _num(variant["inventory_item_id"]), "location_id": _num(lvl["location_id"]),
                        "available": int(lvl.get("available", 0)), "updated_at": lvl.get("updated_at") or change.at_iso,
                        "admin_graphql_api_id": shop.level_id(variant, lvl)}
            order = shop.orders_by_id.get(change.order)
            return rest_order(shop, order) if order else None

    def delivered(self, d) -> None:
        with self.lock:
            sub = self.subs.get(d.subscription)
            if sub:
                sub["failures"] = 0

    def failed(self, d, status, error) -> float | None:
        """-> documented seconds until the next attempt, or None (given up, or the subscription was deleted)."""
        with self.lock:
            sub = self.subs.get(d.subscription)
            if sub is None:
                return None
            sub["failures"] += 1
            if sub["failures"] >= FAILURES_TO_DELETE:
                del self.subs[d.subscription]            # Shopify removes an API-created subscription
                return None
        return RETRY_BACKOFF_S[d.attempt - 1] if d.attempt <= len(RETRY_BACKOFF_S) else None


def rest_order(shop, order: dict) -> dict:
    """The REST Admin order shape (the subset of fields the sandbox's orders carry)."""
    status = order.get("display_fulfillment_status", "UNFULFILLED")
    num = _num(order["id"])
    cancelled = bool(order.get("cancelled_at"))
    lines = []
    for i, line in enumerate(order.get("line_items", [])):
        variant = shop.by_sku.get(line.get("sku")) or {}
        qty = int(line.get("quantity", 0))
        lines.append({"id": num * 1000 + i + 1, "admin_graphql_api_id": f"gid://shopify/LineItem/{num * 1000 + i + 1}",
                      "sku": line.get("sku"), "quantity": qty, "variant_id": _num(variant.get("id", "")) or None,
                      "fulfillable_quantity": 0 if cancelled or status == "FULFILLED" else qty,
                      "fulfillment_status": "fulfilled" if status == "FULFILLED" else None,
                      "name": line.get("sku"), "title": line.get("sku")})
    name = order.get("name") or f"#{num}"
    return {"id": num, "admin_graphql_api_id": order["id"], "name": name,
            "order_number": int(name.lstrip("#")) if name.lstrip("#").isdigit() else num,
            "created_at": order.get("created_at"), "updated_at": order.get("updated_at") or order.get("created_at"),
            "processed_at": order.get("created_at"), "cancelled_at": order.get("cancelled_at"),
            "cancel_reason": "other" if cancelled else None,
            "financial_status": (order.get("display_financial_status") or "PAID").lower(),
            "fulfillment_status": {"FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial"}.get(status),
            "line_items": lines}


def _check_uri(uri) -> str | None:
    if not uri:
        return "Address can't be blank"
    parts = urlsplit(str(uri))
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return None        # the sandbox's receivers are local; Shopify itself requires HTTPS
    return "Address protocol http:// is not supported" if parts.scheme == "http" else "Address is invalid"
