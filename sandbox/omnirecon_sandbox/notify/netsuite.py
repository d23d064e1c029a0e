"""NetSuite has no outbound webhook: retailers deploy a SuiteScript 2.1 user-event script. The sandbox behaves
as if include/netsuite/ were deployed once `PUT /_sandbox/netsuite/script-deployments/omnirecon` has set the
user-event deployment's parameters (url, secret): afterSubmit on items, inventory adjustments, transfers, item
receipts, sales orders and fulfilments POSTs one JSON message per record (with an eventId made once), signed:

    X-Omnirecon-Timestamp: <unix seconds>
    X-Omnirecon-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>

A post that gets no 2xx goes to the outbox custom record and the retry Map/Reduce (omnirecon_retry_mr.js) posts it
again, re-signed, as the scripts do: a run requested at once (it starts TASK_DELAY_S later; a request while one is
queued or running is refused, as NetSuite refuses it), a run that takes every queued message when a later post
gets through (the receiver is back), and the scheduled deployment every 15 minutes; between attempts the backoff
of omnirecon_outbox.js (none, then 1, 2, 4 ... minutes up to an hour), and after 72 h a message is marked failed.
The deliveries are the hub's (`Notifications.retry`), on the sandbox clock. `GET .../omnirecon` shows the queued
and failed counts, `GET .../omnirecon/outbox` the records."""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from omnirecon_sandbox.changes import INVENTORY, ORDER_CANCELLED, ORDER_CREATED, ORDER_FULFILLED
from omnirecon_sandbox.http import Response

log = logging.getLogger(__name__)

PATH = "/_sandbox/netsuite/script-deployments/omnirecon"
SIGNATURE_HEADER = "X-Omnirecon-Signature"
TIMESTAMP_HEADER = "X-Omnirecon-Timestamp"
RETRY_SCRIPT, RETRY_DEPLOYMENT = "customscript_omnirecon_retry_mr", "customdeploy_omnirecon_retry_mr"
TASK_DELAY_S = 5.0                   # an on-demand Map/Reduce starts after the processors' short delay (documented s)
SCHEDULE_S = 900                     # customdeploy_omnirecon_retry_sched: every 15 minutes
BACKOFF_BASE_S, BACKOFF_CAP_S, MAX_AGE_S = 60, 3600, 72 * 3600      # omnirecon_outbox.js


def backoff_s(attempts: int) -> float:
    """Documented seconds to wait after the n-th failed attempt (omnirecon_outbox.js backoffSeconds)."""
    return 0.0 if attempts <= 1 else float(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempts - 2)))


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class NetSuiteDeployment:
    def __init__(self, hub, system):
        self.hub, self.system = hub, system
        self.deployment: dict | None = None
        self.lock = threading.Lock()
        self.errors: list[dict] = []              # the script's execution log (failed posts)
        self.outbox: dict[str, dict] = {}         # eventId -> the outbox custom record (and its Delivery)
        self.queued_hint = False                  # N/cache "queued": the next good post asks for a flush run
        self.on_demand: str | None = None         # the on-demand retry deployment: None, "queued", "running"
        self.on_demand_flush = False
        self.in_flight = 0                        # posts of the running on-demand run not answered yet
        self.scheduled_at: float | None = None    # clock time of the next scheduled run that has work
        self.runs = 0

    # -- the deployment (the equivalent of editing it in NetSuite) ------------------------------------------------
    def internal(self, req) -> Response | None:
        if req.path == PATH + "/outbox" and req.method == "GET":
            return Response.json(self.outbox_view())
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
        with self.lock:
            states = [r["status"] for r in self.outbox.values()]
            retry = {"scriptId": RETRY_SCRIPT, "deploymentId": RETRY_DEPLOYMENT, "runs": self.runs,
                     "onDemand": self.on_demand}
        return {k: v for k, v in d.items() if k != "secret"} | {
            "errors": len(self.errors), "retry": retry,
            "outbox": {"queued": sum(1 for s in states if s != "failed"), "failed": states.count("failed")}}

    def outbox_view(self) -> dict:
        at = lambda t: (self.hub.sb.clock.started_at + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")
        with self.lock:
            rows = [{"eventId": eid, "recordType": r["delivery"].topic, "attempts": r["attempts"],
                     "firstAttemptAt": at(r["first_at"]), "nextAttemptAt": at(r["next_at"]),
                     "lastError": r["last_error"], "failed": r["status"] == "failed"}
                    for eid, r in self.outbox.items()]
        return {"queued": [r for r in rows if not r["failed"]], "failed": [r for r in rows if r["failed"]]}

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
                                                            lambda d: self._sign(dep["secret"], d), delay, dup, pub,
                                                            meta={"event_id": message["eventId"]}),
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
        base = {"eventId": str(uuid.uuid4()), "timestamp": change.at_iso}
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

    # -- the outbox and the retry script -------------------------------------------------------------------------
    def delivered(self, d) -> None:
        with self.lock:
            if d.meta.get("retry"):
                self.outbox.pop(d.meta["event_id"], None)
                self._run_done(d)
                return
            flush = self.queued_hint
        if flush:
            self._request_run(flush=True)       # afterSubmit's post got through: the receiver is back

    def failed(self, d, status, error) -> None:
        """-> None: the hub does not retry; the outbox and the retry runs do."""
        clock, err = self.hub.sb.clock, f"HTTP {status}" if status else str(error)
        now, first = clock.monotonic(), not d.meta.get("retry")
        with self.lock:
            self.errors.append({"recordType": d.topic, "eventId": d.meta["event_id"], "status": status, "error": error})
            if first:
                if d.meta["event_id"] in self.outbox:
                    return None                 # a duplicate copy (a defect): the message is queued already
                self.outbox[d.meta["event_id"]] = {"delivery": d, "attempts": 1, "first_at": now, "last_error": err,
                                                   "next_at": now + clock.scaled(backoff_s(1)), "status": "queued"}
                self.queued_hint = True
            else:
                self._run_done(d)
                rec = self.outbox.get(d.meta["event_id"])
                if rec is None:
                    return None
                rec["attempts"] += 1
                rec["last_error"] = err
                if now - rec["first_at"] >= clock.scaled(MAX_AGE_S):
                    rec["status"] = "failed"
                    log.error("omnirecon notification given up: %s after %d attempts: %s", d.meta["event_id"],
                              rec["attempts"], err)
                else:
                    rec["status"] = "queued"
                    rec["next_at"] = now + clock.scaled(backoff_s(rec["attempts"]))
            self._schedule()
        if first:
            self._request_run(flush=False)
        return None

    def _request_run(self, flush: bool) -> bool:
        """task.submit of the on-demand deployment; refused while a run is queued or running."""
        with self.lock:
            if self.on_demand is not None:
                return False
            self.on_demand, self.on_demand_flush = "queued", flush
            if flush:
                self.queued_hint = False
        self.hub.later(TASK_DELAY_S, lambda: self._run("on_demand"))
        return True

    def _schedule(self) -> None:
        """The scheduled deployment runs every SCHEDULE_S; only a run with a queued message to take is enqueued."""
        if self.scheduled_at is not None or not any(r["status"] == "queued" for r in self.outbox.values()):
            return
        clock = self.hub.sb.clock
        now_doc = clock.monotonic() / clock.time_scale
        delay = (math.floor(now_doc / SCHEDULE_S) + 1) * SCHEDULE_S - now_doc
        self.scheduled_at = clock.monotonic() + clock.scaled(delay)
        self.hub.later(delay, lambda: self._run("scheduled"))

    def _run(self, kind: str) -> None:
        """One retry run: every queued message that is due (all of them on a flush run), posted again."""
        with self.lock:
            now = self.hub.sb.clock.monotonic()
            flush = kind == "on_demand" and self.on_demand_flush
            if kind == "scheduled":
                self.scheduled_at = None
            self.runs += 1
            due = [r for r in self.outbox.values() if r["status"] == "queued" and (flush or r["next_at"] <= now)]
            for r in due:
                r["status"] = "sending"
                r["delivery"].meta.update(retry=True, run=kind)
            if kind == "on_demand":
                self.in_flight = len(due)
                self.on_demand = "running" if due else None
            self._schedule()
        for r in due:
            self.hub.retry(r["delivery"], 0.0)

    def _run_done(self, d) -> None:
        if d.meta.get("run") == "on_demand" and self.on_demand == "running":
            self.in_flight -= 1
            if self.in_flight <= 0:
                self.on_demand = None
