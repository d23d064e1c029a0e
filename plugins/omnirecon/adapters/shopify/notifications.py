"""Shopify's change notifications: webhook subscriptions (GraphQL Admin API), the delivery's signature, and what a
delivery says changed."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from omnirecon.model.change import Change
from omnirecon.model.notification import (Incoming, Rejected, as_int, b64_hmac, header, json_object,
                                          signature_matches, ts)
from omnirecon.timeutil import utcnow

ROTATION_GRACE = timedelta(hours=1)      # a rotated Shopify secret is still accepted this long
TOPICS = ("INVENTORY_LEVELS_UPDATE", "ORDERS_CREATE", "ORDERS_UPDATED", "ORDERS_CANCELLED", "ORDERS_FULFILLED")

_LIST = """query($topics: [WebhookSubscriptionTopic!], $uri: String, $after: String) {
  webhookSubscriptions(first: 50, topics: $topics, uri: $uri, after: $after) {
    nodes { id topic uri } pageInfo { hasNextPage endCursor } } }"""
_CREATE = """mutation($topic: WebhookSubscriptionTopic!, $sub: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $sub) {
    webhookSubscription { id topic uri } userErrors { field message } } }"""


@dataclass
class ShopifySource:
    """X-Shopify-Hmac-Sha256 = base64(HMAC-SHA256(client secret, raw body)); de-duplicated on X-Shopify-Webhook-Id."""
    secret: str
    previous_secret: str | None = None
    rotated_at: datetime | None = None      # when `secret` replaced `previous_secret`
    name: str = "shopify"

    def secrets(self, now: datetime) -> list[str]:
        out = [self.secret]
        if self.previous_secret and self.rotated_at and now - self.rotated_at <= ROTATION_GRACE:
            out.append(self.previous_secret)
        return out

    def verify(self, raw: bytes, headers, now: datetime | None = None) -> Incoming:
        given = header(headers, "X-Shopify-Hmac-Sha256")
        if not given:
            raise Rejected(401, "missing X-Shopify-Hmac-Sha256")
        if not signature_matches(given, *(b64_hmac(s, raw) for s in self.secrets(now or utcnow()))):
            raise Rejected(401, "X-Shopify-Hmac-Sha256 does not match the body")
        topic, webhook_id = header(headers, "X-Shopify-Topic"), header(headers, "X-Shopify-Webhook-Id")
        if not topic or not webhook_id:
            raise Rejected(400, "missing X-Shopify-Topic or X-Shopify-Webhook-Id")
        json_object(raw)
        keep = {k: header(headers, k) for k in ("X-Shopify-Topic", "X-Shopify-Shop-Domain", "X-Shopify-API-Version",
                                                "X-Shopify-Webhook-Id", "X-Shopify-Event-Id", "X-Shopify-Triggered-At")}
        return Incoming(self.name, webhook_id, topic, raw, ts(header(headers, "X-Shopify-Triggered-At")),
                        {k: v for k, v in keep.items() if v})


class ShopifySubscriptions:
    """Shopify webhook subscriptions (GraphQL Admin API) on a ShopifyHook."""

    def __init__(self, hook):
        self.hook = hook
        self.known: dict[str, str] = {}          # topic -> id this object created or found before

    def existing(self, uri: str, topics) -> dict[str, str]:
        found, after = {}, None
        while True:
            data = self.hook.graphql(_LIST, {"topics": list(topics), "uri": uri, "after": after},
                                     operation="webhookSubscriptions", shape=("webhookSubscriptions",))
            page = data["webhookSubscriptions"]
            found.update({n["topic"]: n["id"] for n in page["nodes"] if n["uri"] == uri})
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    def ensure(self, callback_url: str, topics=TOPICS) -> list[tuple[str, str, str]]:
        have = self.existing(callback_url, topics)
        out = []
        for topic in topics:
            if topic in have:
                self.known[topic] = have[topic]
                out.append((topic, have[topic], "kept"))
                continue
            data = self.hook.graphql(_CREATE, {"topic": topic, "sub": {"uri": callback_url, "format": "JSON"}},
                                     operation="webhookSubscriptionCreate", shape=("webhookSubscriptionCreate",))
            res = data["webhookSubscriptionCreate"]
            if res["userErrors"] or not res["webhookSubscription"]:
                raise RuntimeError(f"Shopify refused the {topic} subscription: "
                                   + "; ".join(e["message"] for e in res["userErrors"]))
            sub_id = res["webhookSubscription"]["id"]
            out.append((topic, sub_id, "recreated" if topic in self.known else "created"))
            self.known[topic] = sub_id
        return out


def changes(system: str, topic: str, doc: dict, when: Callable, erp_sku: Callable[[str, str], str],
            item_skus: dict | None) -> list[Change]:
    """inventory_levels/update (by inventory item id: `item_skus` maps it to the SKU), orders/create, orders/fulfilled."""
    out: list[Change] = []
    if topic == "inventory_levels/update":
        sku = (item_skus or {}).get(str(doc.get("inventory_item_id")))
        if sku is not None and doc.get("available") is not None:
            out.append(Change(system, "inventory", erp_sku(sku, system), when(doc.get("updated_at")),
                              as_int(doc["available"]), f"gid://shopify/Location/{doc.get('location_id')}"))
    elif topic in ("orders/create", "orders/fulfilled"):
        key = doc.get("admin_graphql_api_id") or str(doc.get("id"))
        lines = [l for l in doc.get("line_items") or [] if l.get("sku")]
        skus = tuple(erp_sku(l["sku"], system) for l in lines)
        if topic == "orders/create":
            out.append(Change(system, "order", key, when(doc.get("created_at")), "placed", skus=skus,
                              units=tuple(as_int(l.get("quantity")) or 0 for l in lines)))
        else:
            out.append(Change(system, "status", key, when(doc.get("updated_at")), "shipped", skus=skus))
    return out
