"""Amazon's change notifications: SP-API Notifications (a destination on the SQS queue, one subscription per
notification type) and what a notification says changed. Deliveries come from SQS, not to the receiver."""
from __future__ import annotations

import json
from typing import Callable

from omnirecon.model.change import Change
from omnirecon.model.notification import as_int

TOPICS = ("LISTINGS_ITEM_MFN_QUANTITY_CHANGE", "LISTINGS_ITEM_STATUS_CHANGE", "ORDER_CHANGE",
          "FBA_INVENTORY_AVAILABILITY_CHANGES")
SP_NOTIFICATIONS = "/notifications/v1"
GRANTLESS_SCOPE = "sellingpartnerapi::notifications"


class AmazonSubscriptions:
    """SP-API Notifications on an AmazonSPAPIHook: one destination on the SQS queue (grantless LWA token), then a
    subscription per notification type to it (the seller's token). A subscription pointing at another destination
    is moved to this one."""

    def __init__(self, hook):
        self.hook = hook
        self.known: dict[str, str] = {}
        self._token: str | None = None

    def _grantless_token(self) -> str:
        if self._token is None:
            h = self.hook
            form = {"grant_type": "client_credentials", "scope": GRANTLESS_SCOPE,
                    "client_id": h.fields["login"] or "", "client_secret": h.fields["password"] or ""}
            resp = h.core.request("POST", h.extra("lwa_endpoint", "https://api.amazon.com/auth/o2/token"),
                                  operation="token", data=form,
                                  headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"})
            token = (h.core.json(resp, "token") or {}).get("access_token")
            if not token:
                raise RuntimeError("Amazon LWA gave no grantless token for the Notifications API")
            self._token = token
        return self._token

    def _grantless(self, method: str, path: str, operation: str, body: dict | None = None, ok_statuses=()):
        token, h = self._grantless_token(), self.hook

        def prepare(call, cid):
            call["headers"].update({"x-amz-access-token": token, "Accept": "application/json",
                                    "x-amzn-client-request-id": cid})
        kwargs: dict = {}
        if body is not None:
            kwargs = {"data": json.dumps(body), "headers": {"Content-Type": "application/json"}}
        return h.core.request(method, h.base_url + path, operation=operation, prepare=prepare,
                              pace=h.bucket(operation).acquire,
                              ok=lambda r: r.status_code < 400 or r.status_code in ok_statuses, **kwargs)

    def destination(self, queue_arn: str, name: str = "omnirecon") -> tuple[str, str]:
        """(destination id, kept | created) of the destination on queue_arn."""
        rows = self._grantless("GET", f"{SP_NOTIFICATIONS}/destinations", "getDestinations").json().get("payload") or []
        for d in rows:
            if ((d.get("resource") or {}).get("sqs") or {}).get("arn") == queue_arn:
                return d["destinationId"], "kept"
        made = self._grantless("POST", f"{SP_NOTIFICATIONS}/destinations", "createDestination",
                               {"name": name, "resourceSpecification": {"sqs": {"arn": queue_arn}}}).json()
        return made["payload"]["destinationId"], "created"

    def ensure(self, queue_arn: str, topics=TOPICS) -> list[tuple[str, str, str]]:
        dest, dest_action = self.destination(queue_arn)
        out = [("destination", dest, dest_action)]
        for topic in topics:
            path = f"{SP_NOTIFICATIONS}/subscriptions/{topic}"
            r = self.hook.call("GET", path, "getSubscription", ok_statuses=(404,))
            current = (r.json().get("payload") or None) if r.status_code == 200 else None
            if current and current.get("destinationId") == dest:
                self.known[topic] = current["subscriptionId"]
                out.append((topic, current["subscriptionId"], "kept"))
                continue
            if current:   # one subscription per type: move it to this destination
                self._grantless("DELETE", f"{path}/{current['subscriptionId']}", "deleteSubscriptionById")
            made = self.hook.call("POST", path, "createSubscription",
                                  body={"payloadVersion": "1.0", "destinationId": dest}).json()["payload"]
            out.append((topic, made["subscriptionId"], "recreated" if topic in self.known or current else "created"))
            self.known[topic] = made["subscriptionId"]
        return out


def changes(system: str, topic: str, doc: dict, when: Callable, erp_sku: Callable[[str, str], str],
            item_skus: dict | None = None) -> list[Change]:
    """LISTINGS_ITEM_MFN_QUANTITY_CHANGE and ORDER_CHANGE (order created / shipped)."""
    payload = doc.get("Payload") or {}
    out: list[Change] = []
    if topic == "LISTINGS_ITEM_MFN_QUANTITY_CHANGE" and payload.get("Sku"):
        out.append(Change(system, "inventory", erp_sku(payload["Sku"], system), when(doc.get("EventTime")),
                          as_int(payload.get("Quantity")), "MFN"))
    elif topic == "ORDER_CHANGE":
        note = payload.get("OrderChangeNotification") or {}
        reason = (note.get("OrderChangeTrigger") or {}).get("ChangeReason", "")
        at = when((note.get("OrderChangeTrigger") or {}).get("TimeOfOrderChange"), doc.get("EventTime"))
        lines = [i for i in (note.get("Summary") or {}).get("OrderItems") or [] if i.get("SellerSKU")]
        skus = tuple(erp_sku(i["SellerSKU"], system) for i in lines)
        if note.get("AmazonOrderId") and reason == "Order created":
            out.append(Change(system, "order", note["AmazonOrderId"], at, "placed", skus=skus,
                              units=tuple(as_int(i.get("Quantity")) or 0 for i in lines)))
        elif note.get("AmazonOrderId") and reason == "Order shipped":
            out.append(Change(system, "status", note["AmazonOrderId"], at, "shipped", skus=skus))
    return out
