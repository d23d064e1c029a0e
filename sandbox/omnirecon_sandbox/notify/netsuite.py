"""NetSuite has no outbound webhook: retailers deploy a SuiteScript 2.1 user-event script. The sandbox behaves
as if include/netsuite/omnirecon_ue.js were deployed once `PUT /_sandbox/netsuite/script-deployments/omnirecon`
has set its parameters (url, secret): afterSubmit on items, inventory adjustments, transfers, item receipts,
sales orders and fulfilments POSTs one JSON message per record, signed:

    X-Omnirecon-Timestamp: <unix seconds>
    X-Omnirecon-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

A user-event script posts once (N/https in afterSubmit has no retry): a failed post is logged, not retried."""
from __future__ import annotations

import hashlib
import hmac
import threading
from urllib.parse import urlsplit

from omnirecon_sandbox.changes import INVENTORY, ORDER_CANCELLED, ORDER_CREATED, ORDER_FULFILLED
from omnirecon_sandbox.http import Response

PATH = "/_sandbox/netsuite/script-deployments/omnirecon"
SIGNATURE_HEADER = "X-Omnirecon-Signature"
TIMESTAMP_HEADER = "X-Omnirecon-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class NetSuiteDeployment:
    def __init__(self, hub, system):
        self.hub, self.system = hub, system
        self.deployment: dict | None = None
        self.lock = threading.Lock()
        self.errors: list[dict] = []              # the script's execution log (failed posts)

    # -- the deployment (the equivalent of editing it in NetSuite) ------------------------------------------------
    def internal(self, req) -> Response | None:
        if req.path != PATH:
            return None
        if req.method == "PUT":
            try:
                body = req.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return Response.json({"error": "body must be a JSON object {url, secret}"}, 400)
            url, secret = body.get("url"), body.get("secret")
            parts = urlsplit(str(url or ""))
            if parts.scheme not in ("http", "https") or not parts.hostname:
                return Response.json({"error": "url must be an http(s) URL", "field": "url"}, 400)
            if not isinstance(secret, str) or len(secret) < 16:
                return Response.json({"error": "secret must be a string of at least 16 characters",
                                      "field": "secret"}, 400)
            status = body.get("status", "RELEASED")
            if status not in ("RELEASED", "TESTING", "NOTSCHEDULED"):
                return Response.json({"error": "status must be RELEASED, TESTING or NOTSCHEDULED", "field": "status"}, 400)
            with self.lock:
                self.deployment = {"scriptId": "customscript_omnirecon_ue", "deploymentId": "customdeploy_omnirecon_ue",
                                   "url": url, "secret": secret, "status": status}
            return Response.json(self.view())
        if req.method == "GET":
            return Response.json(self.view()) if self.deployment else Response.json({"error": "not deployed"}, 404)
        if req.method == "DELETE":
            with self.lock:
                self.deployment = None
            return Response(204, b"")
        return Response.json({"error": f"{req.method} is not allowed on {req.path}"}, 405)

    def view(self) -> dict:
        d = self.deployment or {}
        return {k: v for k, v in d.items() if k != "secret"} | {"errors": len(self.errors)}

    # -- afterSubmit --------------------------------------------------------------------------------------------
    def on_change(self, change, published: float) -> None:
        with self.lock:
            dep = dict(self.deployment) if self.deployment and self.deployment["status"] == "RELEASED" else None
        if dep is None:
            return
        message = self.message(change)
        if message is None:
            return
        topic = message["recordType"]
        self.hub.emit("erp", topic, dep["deploymentId"],
                      lambda delay, dup, pub: self.hub.post(self, dep["deploymentId"], topic, dep["url"], message,
                                                            {"Content-Type": "application/json",
                                                             "User-Agent": "NetSuite/SuiteScript-2.1"},
                                                            lambda d: self._sign(dep["secret"], d), delay, dup, pub),
                      published)

    def _sign(self, secret: str, d) -> dict:
        ts = str(int(self.hub.sb.clock.now().timestamp()))
        return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(secret, ts, d.body)}

    def _items(self, skus_locations) -> list[dict]:
        ns, out = self.system, []
        for sku, location in skus_locations:
            item = ns.by_sku.get(sku)
            if item is None:
                continue
            loc = next((l for l in item.get("locations", []) if l["location"] == location), None) or {}
            on_hand, committed = int(loc.get("on_hand", 0)), int(loc.get("committed", 0))
            out.append({"item": sku, "itemId": item["id"], "location": location,
                        "locationId": ns.loc_ids.get(location), "quantityOnHand": on_hand,
                        "quantityCommitted": committed, "quantityAvailable": on_hand - committed})
        return out

    def message(self, change) -> dict | None:
        ns = self.system
        base = {"timestamp": change.at_iso}
        with self.hub.sb.lock:
            if change.kind == INVENTORY:
                if change.detail.get("committed"):
                    return None                  # a commitment: the sales order's or fulfilment's own message
                item = ns.by_sku.get(change.sku) or {}
                record = change.detail.get("record", "inventoryadjustment")
                return dict(base, recordType=record, id=change.detail.get("id", item.get("id")),
                            type=change.detail.get("type", "create"), items=self._items([(change.sku, change.location)]))
            so = ns.so_by_channel_order.get(change.order)
            if so is None:
                return None
            location = ns._so_location(so)
            lines = [{"item": l["sku"], "quantity": int(l["quantity"]),
                      "quantityFulfilled": int(l.get("quantity_fulfilled", 0)), "location": location}
                     for l in so["lines"]]
            items = self._items([(l["sku"], location) for l in so["lines"]])
            sales_order = {"id": so["id"], "tranId": so.get("tranid"), "status": so["status"],
                           "otherRefNum": so["channel_order_id"], "channel": so.get("channel"), "lines": lines}
            if change.kind == ORDER_FULFILLED:
                fulfilment = (so.get("fulfillments") or [{}])[-1]
                return dict(base, recordType="itemfulfillment", id=fulfilment.get("id"), type="create",
                            createdFrom=so["id"], salesOrder=sales_order, items=items)
            if change.kind in (ORDER_CREATED, ORDER_CANCELLED):
                return dict(base, recordType="salesorder", id=so["id"],
                            type="create" if change.kind == ORDER_CREATED else "edit", salesOrder=sales_order,
                            items=items)
        return None

    def delivered(self, d) -> None:
        pass

    def failed(self, d, status, error) -> None:
        with self.lock:
            self.errors.append({"recordType": d.topic, "status": status, "error": error})
        return None
