"""NetSuite's change notifications: omnirecon's SuiteScript 2.1 user-event deployment (include/netsuite/), its
signature, and what a delivery says changed (item quantities, sales orders recorded, fulfilments)."""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from omnirecon.model.change import Change
from omnirecon.model.notification import Incoming, Rejected, as_int, header, json_object, signature_matches, ts
from omnirecon.timeutil import utcnow

MAX_SKEW = timedelta(minutes=5)         # a SuiteScript delivery older than this is a replay
DEPLOYMENT = "/_sandbox/netsuite/script-deployments/omnirecon"


@dataclass
class NetSuiteSource:
    """omnirecon's SuiteScript (include/netsuite/): X-Omnirecon-Timestamp (unix seconds, or ISO-8601) and
    X-Omnirecon-Signature = "sha256=" + hex HMAC-SHA256(deployment secret, timestamp + "." + raw body). The
    timestamp is the attempt's: the script's retries (omnirecon_retry_mr.js) sign the unchanged body again. The event
    is the body's `eventId` (made once per message, the same on every retry), else, for an older script's message,
    recordType:id:type:timestamp plus a digest of the body (a message posted again is the same bytes)."""
    secret: str
    max_skew: timedelta = field(default=MAX_SKEW)
    name: str = "erp"

    def verify(self, raw: bytes, headers, now: datetime | None = None) -> Incoming:
        stamp, given = header(headers, "X-Omnirecon-Timestamp"), header(headers, "X-Omnirecon-Signature")
        if not stamp or not given:
            raise Rejected(401, "missing X-Omnirecon-Timestamp or X-Omnirecon-Signature")
        want = "sha256=" + hmac.new(self.secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        if not signature_matches(given, want):
            raise Rejected(401, "X-Omnirecon-Signature does not match the body")
        at = ts(int(stamp) * 1000) if stamp.strip().isascii() and stamp.strip().isdigit() else ts(stamp)
        if at is None or abs((now or utcnow()) - at) > self.max_skew:
            raise Rejected(401, "X-Omnirecon-Timestamp outside the allowed window (a replay?)")
        doc = json_object(raw)
        if not doc.get("recordType"):
            raise Rejected(400, "body without recordType")
        event_id = doc.get("eventId") or (f"{doc['recordType']}:{doc.get('id')}:{doc.get('type', 'edit')}:"
                                          f"{doc.get('timestamp')}:{hashlib.sha256(raw).hexdigest()[:16]}")
        return Incoming(self.name, str(event_id), f"{doc['recordType']}/{doc.get('type', 'edit')}", raw,
                        ts(doc.get("timestamp")) or at, {"recordType": doc["recordType"]})


class NetSuiteDeployment:
    """The SuiteScript user-event deployment (include/netsuite/) posting to the receiver with the connection's
    `webhook_secret`. The secret is never read back, so a deployment at the right url is kept as is."""

    def __init__(self, hook, secret: str, path: str = DEPLOYMENT):
        self.hook, self.secret, self.path = hook, secret, path
        self.seen = False

    def ensure(self, url: str, topics=("deployment",)) -> list[tuple[str, str, str]]:
        r = self.hook.call("GET", self.path, "getScriptDeployment", ok_statuses=(404,))
        current = r.json() if r.status_code == 200 else None
        if current and current.get("url") == url and current.get("status", "RELEASED") == "RELEASED":
            self.seen = True
            return [("deployment", current.get("deploymentId", "omnirecon"), "kept")]
        made = self.hook.call("PUT", self.path, "putScriptDeployment",
                              json_body={"url": url, "secret": self.secret, "status": "RELEASED"}).json()
        action = "recreated" if self.seen or current else "created"
        self.seen = True
        return [("deployment", made.get("deploymentId", "omnirecon"), action)]


def changes(system: str, topic: str, doc: dict, when: Callable, erp_sku: Callable[[str, str], str] | None = None,
            item_skus: dict | None = None) -> list[Change]:
    """Item quantities per location, a sales order created (recorded) and an item fulfilment (shipped)."""
    at = when(doc.get("timestamp"))
    record = doc.get("recordType")
    out: list[Change] = []
    for item in doc.get("items") or []:
        if item.get("item") and item.get("quantityAvailable") is not None:
            out.append(Change(system, "inventory", item["item"], at, as_int(item["quantityAvailable"]),
                              item.get("location")))
    so = doc.get("salesOrder") or {}
    if so.get("otherRefNum"):
        skus = tuple(l["item"] for l in so.get("lines") or [] if l.get("item"))
        if record == "salesorder" and doc.get("type") == "create":
            out.append(Change(system, "order", str(so["otherRefNum"]), at, "recorded", channel=so.get("channel"),
                              skus=skus))
        elif record == "itemfulfillment":
            out.append(Change(system, "status", str(so["otherRefNum"]), at, "shipped", channel=so.get("channel"),
                              skus=skus))
    return out
