"""Walmart's change notifications: webhook subscriptions (/v3/webhooks/subscriptions), the delivery's authDetails,
what a delivery says changed, and the reads that stand in for the quantity changes Walmart does not notify."""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from omnirecon.model.change import Change
from omnirecon.model.notification import Incoming, Rejected, as_int, header, json_object, signature_matches, ts

TOPICS = ("INVENTORY_OOS", "OFFER_UNPUBLISHED", "OFFER_PUBLISHED", "PO_CREATED")
RESOURCE = {"INVENTORY_OOS": "INVENTORY", "OFFER_UNPUBLISHED": "ITEM", "OFFER_PUBLISHED": "ITEM",
            "PO_CREATED": "ORDER"}


@dataclass
class WalmartSource:
    """The subscription's authDetails on every delivery: HMAC (HMAC-SHA256 of the body keyed with the client
    secret, base64 or hex) or BASIC_AUTH (base64 of user:password), in `auth_header`; de-duplicated on
    source.eventId of the envelope {"source": {eventType, eventTime, eventId}, "payload": {...}}."""
    client_secret: str
    auth_method: str = "HMAC"               # HMAC | BASIC_AUTH
    auth_header: str = "Authorization"
    user: str | None = None
    password: str | None = None
    name: str = "walmart"

    def _authorised(self, raw: bytes, given: str) -> bool:
        if self.auth_method == "BASIC_AUTH":
            if not self.user or self.password is None:
                return False
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return signature_matches(given, token, f"Basic {token}")
        digest = hmac.new(self.client_secret.encode(), raw, hashlib.sha256).digest()
        return signature_matches(given, base64.b64encode(digest).decode(), digest.hex())

    def verify(self, raw: bytes, headers, now: datetime | None = None) -> Incoming:
        given = header(headers, self.auth_header)
        if not given:
            raise Rejected(401, f"missing {self.auth_header}")
        if not self._authorised(raw, given):
            raise Rejected(401, f"{self.auth_header} does not authenticate the body ({self.auth_method})")
        doc = json_object(raw)
        src = doc.get("source")
        if not isinstance(src, dict) or not src.get("eventId") or not src.get("eventType"):
            raise Rejected(400, "envelope without source.eventId / source.eventType")
        return Incoming(self.name, str(src["eventId"]), str(src["eventType"]), raw, ts(src.get("eventTime")),
                        {"eventType": src["eventType"], "eventId": str(src["eventId"])})


class WalmartSubscriptions:
    """Walmart webhook subscriptions (/v3/webhooks/subscriptions) on a WalmartHook, signed with HMAC."""

    def __init__(self, hook, client_secret: str, auth_header: str = "Authorization"):
        self.hook, self.secret, self.auth_header = hook, client_secret, auth_header
        self.known: dict[str, str] = {}

    def existing(self, url: str) -> dict[str, str]:
        rows = self.hook.call("GET", "/v3/webhooks/subscriptions", "getAllSubscriptions").json().get("events") or []
        return {r["eventType"]: r["subscriptionId"] for r in rows
                if r.get("eventUrl") == url and r.get("status", "ACTIVE") == "ACTIVE"}

    def ensure(self, callback_url: str, topics=TOPICS) -> list[tuple[str, str, str]]:
        have = self.existing(callback_url)
        out = [(t, have[t], "kept") for t in topics if t in have]
        missing = [t for t in topics if t not in have]
        if missing:
            body = {"events": [{"eventType": t, "eventVersion": "V1", "resourceName": RESOURCE[t],
                                "eventUrl": callback_url, "status": "ACTIVE",
                                "headers": {"content-type": "application/json"},
                                "authDetails": {"authMethod": "HMAC", "clientSecret": self.secret,
                                                "authHeaderName": self.auth_header}} for t in missing]}
            made = self.hook.call("POST", "/v3/webhooks/subscriptions", "createSubscription", body=body).json()
            for e in made.get("events") or []:
                t = e["eventType"]
                out.append((t, e["subscriptionId"], "recreated" if t in self.known else "created"))
        for t, sub_id, _ in out:
            self.known[t] = sub_id
        return out


def changes(system: str, topic: str, doc: dict, when: Callable, erp_sku: Callable[[str, str], str],
            item_skus: dict | None = None) -> list[Change]:
    """INVENTORY_OOS (per ship node) and PO_CREATED, from the {"source", "payload"} envelope."""
    src, payload = doc.get("source") or {}, doc.get("payload") or {}
    at = when(src.get("eventTime"))
    out: list[Change] = []
    if topic == "INVENTORY_OOS" and payload.get("sku"):
        for node in payload.get("shipNodes") or [{}]:
            out.append(Change(system, "inventory", erp_sku(payload["sku"], system), at,
                              as_int(node.get("availToSellQty", 0)), node.get("shipNode")))
    elif topic == "PO_CREATED" and payload.get("purchaseOrderId"):
        lines = [l for l in payload.get("orderLines") or [] if l.get("sku")]
        skus = tuple(erp_sku(l["sku"], system) for l in lines)
        out.append(Change(system, "order", str(payload["purchaseOrderId"]), at, "placed", skus=skus,
                          units=tuple(as_int((l.get("orderLineQuantity") or {}).get("amount")) or 0 for l in lines)))
    return out


def quantity_reader(system: str, hook, ship_nodes: list[str], channel_sku: Callable[[str], str]):
    """read(system, ERP SKUs) -> {SKU: quantity summed over the mapped ship nodes} through getInventory: the reads
    that follow a quantity change Walmart sends no notification for (it notifies only at zero)."""
    def read(_system: str, keys: list[str]) -> dict:
        out = {}
        for key in keys:
            values = [hook.read_inventory(channel_sku(key), node) for node in ship_nodes]
            if any(v is not None for v in values):
                out[key] = sum(v or 0 for v in values)
        return out
    return read
