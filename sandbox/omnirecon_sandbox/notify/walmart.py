"""Walmart Marketplace webhooks (us-mp-notifications.json): /v3/webhooks/subscriptions create / list / update /
delete, /v3/webhooks/eventTypes, /v3/webhooks/test, and delivery of {"source": {eventType, eventTime, eventId},
"payload": {...}} with the subscription's auth method (BASIC_AUTH, HMAC, OAUTH) and custom headers.
Walmart sends nothing for a quantity change above zero: INVENTORY_OOS fires when a ship node reaches 0."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.request
import uuid

from omnirecon_sandbox.changes import INVENTORY, ORDER_CREATED, STATUS
from omnirecon_sandbox.http import Response

EVENT_TYPES = {"INVENTORY_OOS": "INVENTORY", "OFFER_UNPUBLISHED": "ITEM", "OFFER_PUBLISHED": "ITEM",
               "PO_CREATED": "ORDER"}
AUTH_METHODS = ("BASIC_AUTH", "HMAC", "OAUTH")
RETRY_BACKOFF_S = (30, 120, 600)          # a small number of retries (documented seconds, scaled)


def _err(code: str, field: str, description: str, status: int = 400) -> Response:
    return Response.json({"errors": [{"code": code, "field": field, "description": description, "info": description,
                                      "severity": "ERROR", "category": "DATA", "causes": [],
                                      "errorIdentifiers": {}}]}, status)


class WalmartWebhooks:
    def __init__(self, hub, system):
        self.hub, self.system = hub, system
        self.subs: dict[str, dict] = {}
        self.lock = threading.Lock()
        self._oauth: dict[str, tuple[str, float]] = {}
        r = system.router
        r.add("GET", "/v3/webhooks/eventTypes", "getEventTypes", self.event_types)
        r.add("GET", "/v3/webhooks/subscriptions", "getAllSubscriptions", self.list)
        r.add("POST", "/v3/webhooks/subscriptions", "createSubscription", self.create)
        r.add("PATCH", "/v3/webhooks/subscriptions/{subscriptionId}", "updateSubscription", self.update)
        r.add("DELETE", "/v3/webhooks/subscriptions/{subscriptionId}", "deleteSubscription", self.delete)
        r.add("POST", "/v3/webhooks/test", "testNotification", self.test)

    @property
    def partner_id(self) -> str:
        return str(self.system.data.get("partner_id") or "10000000359")

    # -- control plane --------------------------------------------------------------------------------------------
    def event_types(self, call) -> Response:
        denied = self.system._guard(call)
        return denied or Response.json({"events": [{"eventType": t, "eventVersion": "V1", "resourceName": r,
                                                    "description": t.replace("_", " ").title()}
                                                   for t, r in EVENT_TYPES.items()]})

    def _check(self, rec: dict, partial: bool = False) -> Response | None:
        required = () if partial else ("eventType", "eventVersion", "resourceName", "eventUrl", "status")
        for f in required:
            if not rec.get(f):
                return _err("INVALID_REQUEST_CONTENT", f, f"{f} is required")
        if "eventType" in rec and rec["eventType"] not in EVENT_TYPES:
            return _err("INVALID_REQUEST_CONTENT", "eventType", f"Unsupported eventType {rec['eventType']}")
        if "eventType" in rec and "resourceName" in rec and EVENT_TYPES[rec["eventType"]] != rec["resourceName"]:
            return _err("INVALID_REQUEST_CONTENT", "resourceName",
                        f"resourceName for {rec['eventType']} is {EVENT_TYPES[rec['eventType']]}")
        if "eventVersion" in rec and rec["eventVersion"] != "V1":
            return _err("INVALID_REQUEST_CONTENT", "eventVersion", "eventVersion must be V1")
        if "status" in rec and rec["status"] not in ("ACTIVE", "INACTIVE"):
            return _err("INVALID_REQUEST_CONTENT", "status", "status must be ACTIVE or INACTIVE")
        auth = rec.get("authDetails")
        if auth is not None:
            if not isinstance(auth, dict) or auth.get("authMethod") not in AUTH_METHODS:
                return _err("INVALID_REQUEST_CONTENT", "authDetails.authMethod",
                            "authMethod must be one of BASIC_AUTH, OAUTH, HMAC")
            need = {"BASIC_AUTH": ("userName", "password"), "HMAC": ("clientSecret",),
                    "OAUTH": ("authUrl", "clientId", "clientSecret")}[auth["authMethod"]]
            for f in need:
                if not auth.get(f):
                    return _err("INVALID_REQUEST_CONTENT", f"authDetails.{f}", f"{f} is required for {auth['authMethod']}")
        return None

    def _body(self, call):
        try:
            return call.req.json()
        except ValueError:
            return None

    def create(self, call) -> Response:
        denied = self.system._guard(call)
        if denied:
            return denied
        body = self._body(call)
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            return _err("INVALID_REQUEST_CONTENT", "events", "events must be a non-empty list")
        for rec in events:
            problem = self._check(rec if isinstance(rec, dict) else {})
            if problem:
                return problem
        out = []
        with self.lock:
            for rec in events:
                sub = {k: rec[k] for k in ("eventType", "eventVersion", "resourceName", "eventUrl", "status",
                                          "authDetails", "headers") if k in rec}
                sub.update(subscriptionId=str(uuid.uuid1()), partnerId=self.partner_id)
                self.subs[sub["subscriptionId"]] = sub
                out.append({k: sub[k] for k in ("eventType", "subscriptionId", "partnerId", "eventVersion",
                                               "resourceName", "status")})
        return Response.json({"events": out})

    def list(self, call) -> Response:
        denied = self.system._guard(call)
        if denied:
            return denied
        q = {k: call.req.arg(k) for k in ("subscriptionId", "eventType", "resourceName", "status")}
        with self.lock:
            rows = [dict(s) for s in self.subs.values() if all(v is None or s.get(k) == v for k, v in q.items())]
        return Response.json({"events": rows})

    def update(self, call, subscriptionId: str) -> Response:
        denied = self.system._guard(call)
        if denied:
            return denied
        body = self._body(call)
        if not isinstance(body, dict):
            return _err("INVALID_REQUEST_CONTENT", "body", "body must be a JSON object")
        with self.lock:
            sub = self.subs.get(subscriptionId)
            if sub is None:
                return _err("CONTENT_NOT_FOUND", "subscriptionId", f"Subscription {subscriptionId} not found", 404)
            merged = dict(sub, **{k: body[k] for k in ("eventType", "eventVersion", "resourceName", "eventUrl",
                                                       "status", "authDetails", "headers") if k in body})
            problem = self._check(merged)
            if problem:
                return problem
            sub.update(merged)
            view = {k: sub[k] for k in ("eventType", "subscriptionId", "partnerId", "eventVersion", "resourceName",
                                        "status") if k in sub}
        return Response.json(view)

    def delete(self, call, subscriptionId: str) -> Response:
        denied = self.system._guard(call)
        if denied:
            return denied
        with self.lock:
            sub = self.subs.pop(subscriptionId, None)
        if sub is None:
            return _err("CONTENT_NOT_FOUND", "subscriptionId", f"Subscription {subscriptionId} not found", 404)
        return Response.json({"subscriptionId": subscriptionId, "message": "Successfully deleted subscription"})

    def test(self, call) -> Response:
        """Posts a sample event to eventUrl with the given auth, synchronously; 200 only if it answered 2xx."""
        denied = self.system._guard(call)
        if denied:
            return denied
        rec = self._body(call)
        rec = rec if isinstance(rec, dict) else {}
        problem = self._check(dict(rec, status="ACTIVE"))
        if problem:
            return problem
        envelope = self.envelope(rec["eventType"], self.system.stamp(), self.sample(rec["eventType"]))
        from omnirecon_sandbox.notify.delivery import Delivery
        d = Delivery("walmart", rec["eventType"], "test", rec["eventUrl"],
                     json.dumps(envelope, separators=(",", ":")).encode(), self.headers(rec), self.signer(rec))
        ok, status, error = self.hub.outbox.post(d)
        if not ok:
            return _err("INVALID_REQUEST_CONTENT", "eventUrl",
                        f"Eventurl validation failed ({status or error})")
        return Response.json({"message": "Eventurl successfully validated"})

    # -- data plane ------------------------------------------------------------------------------------------------
    def on_change(self, change, published: float) -> None:
        if change.kind == INVENTORY and change.value == 0:
            event = "INVENTORY_OOS"
        elif change.kind == ORDER_CREATED:
            event = "PO_CREATED"
        elif change.kind == STATUS:
            event = "OFFER_PUBLISHED" if change.detail.get("published") else "OFFER_UNPUBLISHED"
        else:
            return                       # no notification for a quantity change above zero
        with self.lock:
            subs = [dict(s) for s in self.subs.values() if s["eventType"] == event and s["status"] == "ACTIVE"]
        if not subs:
            return
        payload = self.payload(event, change)
        if payload is None:
            return
        envelope = self.envelope(event, change.at_iso, payload)
        for sub in subs:
            self.hub.emit("walmart", event, sub["subscriptionId"],
                          lambda delay, dup, pub, sub=sub: self.hub.post(
                              self, sub["subscriptionId"], event, sub["eventUrl"], envelope, self.headers(sub),
                              self.signer(sub), delay, dup, pub), published)

    @staticmethod
    def envelope(event: str, at: str, payload: dict) -> dict:
        return {"source": {"eventType": event, "eventTime": at, "eventId": str(uuid.uuid4())}, "payload": payload}

    def payload(self, event: str, change) -> dict | None:
        w = self.system
        with self.hub.sb.lock:
            if event == "PO_CREATED":
                order = w.orders_by_id.get(change.order)
                if order is None:
                    return None
                return {"purchaseOrderId": order["purchase_order_id"],
                        "customerOrderId": order.get("customer_order_id"), "orderDate": order.get("order_date"),
                        "orderLines": [{"lineNumber": l.get("line_number", str(i + 1)), "sku": l["sku"],
                                        "orderLineQuantity": {"unitOfMeasurement": "EACH",
                                                              "amount": str(l.get("quantity", 1))},
                                        "status": l.get("status", "Created"), "shipNode": l.get("x_ship_node")}
                                       for i, l in enumerate(order.get("lines", []))]}
            rows = w._rows(change.sku)
            if event == "INVENTORY_OOS":
                return {"partnerId": self.partner_id, "itemId": str((rows[0] if rows else {}).get("item_id", "")),
                        "sku": change.sku, "productName": (rows[0] if rows else {}).get("product_name", change.sku),
                        "category": (rows[0] if rows else {}).get("category", ""),
                        "shipNodes": [{"shipNode": r["ship_node"], "shipNodeName": r.get("ship_node_name", r["ship_node"]),
                                       "availToSellQty": int(r.get("quantity", 0))} for r in rows]}
            published = event == "OFFER_PUBLISHED"
            return {"partnerId": self.partner_id, "sku": change.sku,
                    "publishStatus": "PUBLISHED" if published else "UNPUBLISHED", "lifecycleStatus": "ACTIVE",
                    "statusChangeReasons": list(change.detail.get("reasons") or [])}

    def sample(self, event: str) -> dict:
        return {"partnerId": self.partner_id, "sku": "SAMPLE-SKU", "publishStatus": "UNPUBLISHED",
                "lifecycleStatus": "ACTIVE", "statusChangeReasons": ["Test notification"]} if EVENT_TYPES[event] == "ITEM" \
            else {"partnerId": self.partner_id, "sku": "SAMPLE-SKU", "itemId": "0", "productName": "Sample",
                  "category": "", "shipNodes": []}

    @staticmethod
    def headers(sub: dict) -> dict:
        out = {"Content-Type": "application/json", "User-Agent": "Walmart-Marketplace-Notifications"}
        for k, v in (sub.get("headers") or {}).items():
            out[k] = str(v)
        return out

    def signer(self, sub: dict):
        auth = sub.get("authDetails")
        if not auth:
            return None
        name = auth.get("authHeaderName") or "Authorization"
        method = auth["authMethod"]
        if method == "BASIC_AUTH":
            value = "Basic " + base64.b64encode(f"{auth['userName']}:{auth['password']}".encode()).decode()
            return lambda d: {name: value}
        if method == "HMAC":
            key = auth["clientSecret"].encode()
            return lambda d: {name: base64.b64encode(hmac.new(key, d.body, hashlib.sha256).digest()).decode()}
        return lambda d: {name: "Bearer " + self._oauth_token(auth)}

    def _oauth_token(self, auth: dict) -> str:
        """POST grant_type=client_credentials to authUrl (Basic clientId:clientSecret); cached until expires_in."""
        key = f"{auth['authUrl']}|{auth['clientId']}"
        cached = self._oauth.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        name = auth.get("authHeaderName") or "Authorization"
        basic = base64.b64encode(f"{auth['clientId']}:{auth['clientSecret']}".encode()).decode()
        req = urllib.request.Request(auth["authUrl"], data=b"grant_type=client_credentials", method="POST", headers={
            name: f"Basic {basic}", "Accept": "application/json; charset=UTF-8",
            "Content-type": "application/x-www-form-urlencoded; charset=ISO-8859-1"})
        try:
            with urllib.request.urlopen(req, timeout=self.hub.outbox.total_timeout) as resp:
                doc = json.loads(resp.read().decode())
            token = doc["access_token"]
            self._oauth[key] = (token, time.monotonic() + float(doc.get("expires_in", 0)) * 0.9)
            return token
        except Exception:
            return ""          # the endpoint will refuse the delivery; it is retried like any failure

    def delivered(self, d) -> None:
        pass

    def failed(self, d, status, error) -> float | None:
        with self.lock:
            if d.subscription not in self.subs:
                return None
        return RETRY_BACKOFF_S[d.attempt - 1] if d.attempt <= len(RETRY_BACKOFF_S) else None
