"""Amazon SP-API Notifications API v1 (sp-api-models/notifications/notifications.json) delivering to the
sandbox's SQS-compatible queue. Destinations and deleteSubscriptionById / getSubscriptionById take a grantless
LWA token (grant_type=client_credentials, scope sellingpartnerapi::notifications); createSubscription and
getSubscription take the seller's token. Each message body is the notification envelope
{NotificationVersion, NotificationType, PayloadVersion, EventTime, Payload, NotificationMetadata}."""
from __future__ import annotations

import json
import secrets
import threading
import uuid

from omnirecon_sandbox.changes import INVENTORY, ORDER_CANCELLED, ORDER_CREATED, ORDER_FULFILLED
from omnirecon_sandbox.http import Response
from omnirecon_sandbox.ratelimit import TokenBucket
from omnirecon_sandbox.notify.sqs import SqsService

TYPES = ("LISTINGS_ITEM_MFN_QUANTITY_CHANGE", "LISTINGS_ITEM_STATUS_CHANGE", "ORDER_CHANGE",
         "FBA_INVENTORY_AVAILABILITY_CHANGES")
SCOPE = "sellingpartnerapi::notifications"
APPLICATION_ID = "amzn1.sellerapps.app.sandbox-omnirecon"
SUPPLY_SOURCE_ID = "d7679e14-031b-4ab3-a81b-ec4fc7a460b3"
NOTIFICATIONS_RATE = (1, 5)            # requests per second, burst (the Notifications API's usage plan)
ORDER_STATUS = {ORDER_CREATED: "Unshipped", ORDER_CANCELLED: "Canceled", ORDER_FULFILLED: "Shipped"}


def _err(status: int, code: str, message: str, details: str = "") -> Response:
    return Response.json({"errors": [{"code": code, "message": message, "details": details}]}, status)


class AmazonNotifications:
    def __init__(self, hub, system):
        self.hub, self.system = hub, system
        self.sqs = SqsService(hub.sb)
        self.grantless: set[str] = set()
        self.destinations: dict[str, dict] = {}
        self.subs: dict[str, dict] = {}            # notificationType -> subscription
        self.lock = threading.Lock()
        self._quantities = {sku: int(l.get("quantity", 0)) for sku, l in system.listings.items()}
        for op in ("createDestination", "getDestinations", "getDestination", "deleteDestination", "createSubscription",
                   "getSubscription", "getSubscriptionById", "deleteSubscriptionById"):
            rate, burst = hub.sb.options.amazon_rate_limits.get(op, NOTIFICATIONS_RATE)
            system.buckets[op] = TokenBucket(rate, burst, hub.sb.clock)
            system.limits[op] = (rate, burst)
        r = system.router
        base = "/notifications/v1"
        r.add("POST", "/", "sqs", lambda call: self.sqs.handle(call.req))
        r.add("POST", f"{base}/destinations", "createDestination", self.create_destination)
        r.add("GET", f"{base}/destinations", "getDestinations", self.get_destinations)
        r.add("GET", f"{base}/destinations/{{destinationId}}", "getDestination", self.get_destination)
        r.add("DELETE", f"{base}/destinations/{{destinationId}}", "deleteDestination", self.delete_destination)
        r.add("POST", f"{base}/subscriptions/{{notificationType}}", "createSubscription", self.create_subscription)
        r.add("GET", f"{base}/subscriptions/{{notificationType}}", "getSubscription", self.get_subscription)
        r.add("GET", f"{base}/subscriptions/{{notificationType}}/{{subscriptionId}}", "getSubscriptionById",
              self.get_subscription_by_id)
        r.add("DELETE", f"{base}/subscriptions/{{notificationType}}/{{subscriptionId}}", "deleteSubscriptionById",
              self.delete_subscription)

    # -- LWA grantless token (AmazonSystem.token hands client_credentials here) -------------------------------------
    def grantless_token(self, form: dict) -> Response:
        creds = self.hub.sb.credentials
        if form.get("client_id") != creds.amazon_client_id or form.get("client_secret") != creds.amazon_client_secret:
            return Response.json({"error": "invalid_client", "error_description": "Client authentication failed"}, 401)
        if form.get("scope") not in (SCOPE, "sellingpartnerapi::migration"):
            return Response.json({"error": "invalid_scope",
                                  "error_description": "The request has an invalid parameter : scope"}, 400)
        token = "Atc|" + secrets.token_urlsafe(32)
        lifetime = self.hub.sb.options.lwa_token_seconds
        self.system.issue_token(token, lifetime)
        with self.lock:
            self.grantless.add(token)
        return Response.json({"access_token": token, "scope": form["scope"], "token_type": "bearer",
                              "expires_in": lifetime})

    def _guard(self, call, grantless: bool) -> Response | None:
        denied = self.system._guard(call)
        if denied:
            return denied
        with self.lock:
            is_grantless = call.req.header("x-amz-access-token") in self.grantless
        if is_grantless != grantless:
            return self.system._unauthorized()
        return None

    @staticmethod
    def _json(call):
        try:
            body = call.req.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    # -- destinations ------------------------------------------------------------------------------------------
    def create_destination(self, call) -> Response:
        denied = self._guard(call, grantless=True)
        if denied:
            return denied
        body = self._json(call)
        spec = (body or {}).get("resourceSpecification") or {}
        if not body or not body.get("name") or not isinstance(spec, dict):
            return _err(400, "InvalidInput", "name and resourceSpecification are required")
        arn = (spec.get("sqs") or {}).get("arn") if isinstance(spec.get("sqs"), dict) else None
        if spec.get("eventBridge"):
            return _err(400, "InvalidInput", "The sandbox delivers to SQS only")
        if not arn or not str(arn).startswith("arn:aws:sqs:") or len(str(arn).split(":")) != 6:
            return _err(400, "InvalidInput", "resourceSpecification.sqs.arn must be an SQS queue ARN")
        with self.lock:
            if any(d["resource"]["sqs"]["arn"] == arn for d in self.destinations.values()):
                return _err(409, "Conflict", "A destination with this resource already exists")
            dest = {"name": body["name"][:256], "destinationId": str(uuid.uuid4()), "resource": {"sqs": {"arn": arn}}}
            self.destinations[dest["destinationId"]] = dest
        self.sqs.ensure(arn.rsplit(":", 1)[-1])      # Amazon does not check the queue's policy; neither do we
        return Response.json({"payload": dest})

    def get_destinations(self, call) -> Response:
        denied = self._guard(call, grantless=True)
        if denied:
            return denied
        with self.lock:
            return Response.json({"payload": list(self.destinations.values())})

    def get_destination(self, call, destinationId: str) -> Response:
        denied = self._guard(call, grantless=True)
        if denied:
            return denied
        dest = self.destinations.get(destinationId)
        return Response.json({"payload": dest}) if dest else _err(404, "NotFound", "The destination was not found")

    def delete_destination(self, call, destinationId: str) -> Response:
        denied = self._guard(call, grantless=True)
        if denied:
            return denied
        with self.lock:
            if any(s["destinationId"] == destinationId for s in self.subs.values()):
                return _err(409, "Conflict", "The destination has subscriptions; delete them first")
            if self.destinations.pop(destinationId, None) is None:
                return _err(404, "NotFound", "The destination was not found")
        return Response.json({})

    # -- subscriptions ------------------------------------------------------------------------------------------
    def _type(self, notificationType: str) -> Response | None:
        if notificationType not in TYPES:
            return _err(400, "InvalidInput", f"{notificationType} is not a supported notification type")
        return None

    def create_subscription(self, call, notificationType: str) -> Response:
        denied = self._guard(call, grantless=False) or self._type(notificationType)
        if denied:
            return denied
        body = self._json(call)
        if not body or not body.get("payloadVersion") or not body.get("destinationId"):
            return _err(400, "InvalidInput", "payloadVersion and destinationId are required")
        if body["payloadVersion"] != "1.0":
            return _err(400, "InvalidInput", f"payloadVersion {body['payloadVersion']} is not supported")
        with self.lock:
            if body["destinationId"] not in self.destinations:
                return _err(400, "InvalidInput", "The destination was not found")
            if notificationType in self.subs:
                return _err(409, "Conflict", "A subscription for this notification type already exists")
            sub = {"subscriptionId": str(uuid.uuid4()), "payloadVersion": "1.0",
                   "destinationId": body["destinationId"]}
            if isinstance(body.get("processingDirective"), dict):
                sub["processingDirective"] = body["processingDirective"]
            self.subs[notificationType] = sub
        return Response.json({"payload": sub})

    def get_subscription(self, call, notificationType: str) -> Response:
        denied = self._guard(call, grantless=False) or self._type(notificationType)
        if denied:
            return denied
        sub = self.subs.get(notificationType)
        return Response.json({"payload": sub}) if sub else _err(404, "NotFound", "The subscription was not found")

    def get_subscription_by_id(self, call, notificationType: str, subscriptionId: str) -> Response:
        denied = self._guard(call, grantless=True) or self._type(notificationType)
        if denied:
            return denied
        sub = self.subs.get(notificationType)
        if not sub or sub["subscriptionId"] != subscriptionId:
            return _err(404, "NotFound", "The subscription was not found")
        return Response.json({"payload": sub})

    def delete_subscription(self, call, notificationType: str, subscriptionId: str) -> Response:
        denied = self._guard(call, grantless=True) or self._type(notificationType)
        if denied:
            return denied
        with self.lock:
            sub = self.subs.get(notificationType)
            if not sub or sub["subscriptionId"] != subscriptionId:
                return _err(404, "NotFound", "The subscription was not found")
            del self.subs[notificationType]
        return Response.json({})

    # -- data plane ------------------------------------------------------------------------------------------
    def on_change(self, change, published: float) -> None:
        notes = []
        if change.kind == INVENTORY and change.location == "MFN":
            before = self._quantities.get(change.sku)
            self._quantities[change.sku] = int(change.value or 0)
            notes.append(("LISTINGS_ITEM_MFN_QUANTITY_CHANGE", {
                "SellerId": self.system.seller_id, "FulfillmentChannelCode": "DEFAULT", "Sku": change.sku,
                "Quantity": int(change.value or 0)}))
            if before is not None and (before > 0) != (int(change.value or 0) > 0):
                notes.append(("LISTINGS_ITEM_STATUS_CHANGE", self._status(change)))
        elif change.kind == INVENTORY:
            notes.append(("FBA_INVENTORY_AVAILABILITY_CHANGES", self._fba(change)))
        elif change.kind in ORDER_STATUS:
            payload = self._order(change)
            if payload:
                notes.append(("ORDER_CHANGE", payload))
        for ntype, payload in notes:
            with self.lock:
                sub = dict(self.subs[ntype]) if ntype in self.subs else None
                dest = self.destinations.get(sub["destinationId"]) if sub else None
            if sub is None or dest is None:
                continue
            queue = dest["resource"]["sqs"]["arn"].rsplit(":", 1)[-1]
            envelope = {"NotificationVersion": "1.0", "NotificationType": ntype, "PayloadVersion": "1.0",
                        "EventTime": change.at_iso, "Payload": payload,
                        "NotificationMetadata": {"ApplicationId": APPLICATION_ID,
                                                 "SubscriptionId": sub["subscriptionId"],
                                                 "PublishTime": self.system.stamp(),
                                                 "NotificationId": str(uuid.uuid4())}}
            text = json.dumps(envelope, separators=(",", ":"))
            self.hub.emit("amazon", ntype, sub["subscriptionId"],
                          lambda delay, dup, pub, queue=queue, text=text, sub=sub, ntype=ntype:
                          self._enqueue(queue, text, sub["subscriptionId"], ntype, delay, pub), published)

    def _enqueue(self, queue: str, text: str, sub_id: str, ntype: str, delay: float, published: float) -> None:
        if delay > 0:
            self.hub.outbox.submit(lambda: self._enqueue(queue, text, sub_id, ntype, 0, published), delay)
            return
        self.sqs.send(queue, text)
        self.hub.count("amazon", ntype, sub_id, delivered=1)
        self.hub.record_latency("amazon", self.hub.sb.clock.monotonic() - published)

    def _status(self, change) -> dict:
        listing = self.system.listings.get(change.sku) or {}
        status = ["BUYABLE", "DISCOVERABLE"] if int(change.value or 0) > 0 else ["DISCOVERABLE"]
        return {"SellerId": self.system.seller_id, "MarketplaceId": self.system.marketplace_id,
                "Asin": listing.get("asin", ""), "Sku": change.sku, "CreatedDate": change.at_iso, "Status": status}

    def _fba(self, change) -> dict:
        row = next((r for r in self.system.fba if r.get("sku") == change.sku), {})
        fulfillable = int(change.value if change.value is not None else row.get("fulfillable_quantity", 0))
        reserved = int(row.get("reserved_quantity", 0))
        asin = row.get("asin", "")
        return {"SellerId": self.system.seller_id, "FNSKU": "X00" + (asin or change.sku)[-7:].upper(), "ASIN": asin,
                "SKU": change.sku, "FulfillmentInventoryByMarketplace": [{
                    "MarketplaceId": self.system.marketplace_id, "ItemName": change.sku, "FulfillmentInventory": {
                        "InboundQuantityBreakdown": {"Working": 0, "Shipped": int(row.get("inbound_quantity", 0)),
                                                     "Receiving": 0},
                        "Fulfillable": fulfillable, "Unfulfillable": 0, "Researching": 0,
                        "ReservedQuantityBreakdown": {"WarehouseProcessing": 0, "WarehouseTransfer": 0,
                                                      "PendingCustomerOrder": reserved},
                        "FutureSupplyBuyable": 0, "PendingCustomerOrderInTransit": 0}}]}

    def _order(self, change) -> dict | None:
        with self.hub.sb.lock:
            order = self.system._find_order(change.order)
            if order is None:
                return None
            items = order.get("items", [])
            shipped = sum(int(i.get("quantity_shipped", 0)) for i in items)
            total = sum(int(i.get("quantity_ordered", 0)) for i in items)
            summary = {"MarketplaceId": self.system.marketplace_id, "OrderStatus": ORDER_STATUS[change.kind],
                       "PurchaseDate": order.get("purchase_date"), "DestinationPostalCode": None,
                       "FulfillmentType": "AFN" if order.get("fulfillment_channel") == "AFN" else "MFN",
                       "OrderType": "StandardOrder", "NumberOfItemsShipped": shipped,
                       "NumberOfItemsUnshipped": max(0, total - shipped),
                       "OrderItems": [{"OrderItemId": f"{change.order}-{n + 1}", "SellerSKU": i["sku"],
                                       "SupplySourceId": SUPPLY_SOURCE_ID, "Quantity": int(i.get("quantity_ordered", 0)),
                                       "QuantityShipped": int(i.get("quantity_shipped", 0))}
                                      for n, i in enumerate(items)]}
        reason = {ORDER_CREATED: "Order created", ORDER_CANCELLED: "Order canceled", ORDER_FULFILLED: "Order shipped"}
        return {"OrderChangeNotification": {
            "NotificationLevel": "OrderLevel", "SellerId": self.system.seller_id, "AmazonOrderId": change.order,
            "OrderChangeType": "OrderStatusChange",
            "OrderChangeTrigger": {"TimeOfOrderChange": change.at_iso, "ChangeReason": reason[change.kind]},
            "Summary": summary}}
