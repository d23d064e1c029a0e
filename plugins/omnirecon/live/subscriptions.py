"""Subscriptions to the platforms' own change notifications, created and kept alive through each platform's API
on the existing hooks: `ensure` is idempotent (a second call creates nothing) and re-creates what the platform
deleted. Returns (topic, id, action) with action created | kept | recreated. Secrets are never logged."""
from __future__ import annotations

import json

SHOPIFY_TOPICS = ("INVENTORY_LEVELS_UPDATE", "ORDERS_CREATE", "ORDERS_UPDATED", "ORDERS_CANCELLED", "ORDERS_FULFILLED")

_LIST = """query($topics: [WebhookSubscriptionTopic!], $uri: String, $after: String) {
  webhookSubscriptions(first: 50, topics: $topics, uri: $uri, after: $after) {
    nodes { id topic uri } pageInfo { hasNextPage endCursor } } }"""
_CREATE = """mutation($topic: WebhookSubscriptionTopic!, $sub: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $sub) {
    webhookSubscription { id topic uri } userErrors { field message } } }"""


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

    def ensure(self, callback_url: str, topics=SHOPIFY_TOPICS) -> list[tuple[str, str, str]]:
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


WALMART_TOPICS = ("INVENTORY_OOS", "OFFER_UNPUBLISHED", "OFFER_PUBLISHED", "PO_CREATED")
WALMART_RESOURCE = {"INVENTORY_OOS": "INVENTORY", "OFFER_UNPUBLISHED": "ITEM", "OFFER_PUBLISHED": "ITEM",
                    "PO_CREATED": "ORDER"}


class WalmartSubscriptions:
    """Walmart webhook subscriptions (/v3/webhooks/subscriptions) on a WalmartHook, signed with HMAC."""

    def __init__(self, hook, client_secret: str, auth_header: str = "Authorization"):
        self.hook, self.secret, self.auth_header = hook, client_secret, auth_header
        self.known: dict[str, str] = {}

    def existing(self, url: str) -> dict[str, str]:
        rows = self.hook.call("GET", "/v3/webhooks/subscriptions", "getAllSubscriptions").json().get("events") or []
        return {r["eventType"]: r["subscriptionId"] for r in rows
                if r.get("eventUrl") == url and r.get("status", "ACTIVE") == "ACTIVE"}

    def ensure(self, callback_url: str, topics=WALMART_TOPICS) -> list[tuple[str, str, str]]:
        have = self.existing(callback_url)
        out = [(t, have[t], "kept") for t in topics if t in have]
        missing = [t for t in topics if t not in have]
        if missing:
            body = {"events": [{"eventType": t, "eventVersion": "V1", "resourceName": WALMART_RESOURCE[t],
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


NETSUITE_DEPLOYMENT = "/_sandbox/netsuite/script-deployments/omnirecon"


class NetSuiteDeployment:
    """The SuiteScript user-event deployment (include/netsuite/) posting to the receiver with the connection's
    `webhook_secret`. The secret is never read back, so a deployment at the right url is kept as is."""

    def __init__(self, hook, secret: str, path: str = NETSUITE_DEPLOYMENT):
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


AMAZON_TOPICS = ("LISTINGS_ITEM_MFN_QUANTITY_CHANGE", "LISTINGS_ITEM_STATUS_CHANGE", "ORDER_CHANGE",
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

    def ensure(self, queue_arn: str, topics=AMAZON_TOPICS) -> list[tuple[str, str, str]]:
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


def ensure_all(receiver_base_url: str, sqs_queue_arn: str | None = None, get_connection=None) -> list[tuple]:
    """Ensure every connected platform's subscriptions, from the Airflow connections' secrets; Amazon's only with
    the SQS queue's ARN. Returns (system, topic, id, action) rows; a system without its connection or secret is
    skipped."""
    from omnirecon.hooks import CONN_IDS, get_hook
    if get_connection is None:
        from airflow.sdk import BaseHook
        get_connection = BaseHook.get_connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    def conn(system):
        try:
            return get_connection(CONN_IDS[system])
        except AirflowNotFoundException:
            return None

    base = receiver_base_url.rstrip("/")
    out = []
    c = conn("shopify")
    if c is not None:
        out += [("shopify", *r) for r in ShopifySubscriptions(get_hook("shopify")).ensure(base + "/notifications/shopify")]
    if sqs_queue_arn and conn("amazon") is not None:
        out += [("amazon", *r) for r in AmazonSubscriptions(get_hook("amazon")).ensure(sqs_queue_arn)]
    c = conn("walmart")
    if c is not None and c.password:
        header = (c.extra_dejson or {}).get("webhook_auth_header", "Authorization")
        subs = WalmartSubscriptions(get_hook("walmart"), c.password, header)
        out += [("walmart", *r) for r in subs.ensure(base + "/notifications/walmart")]
    c = conn("erp")
    if c is not None and (c.extra_dejson or {}).get("webhook_secret"):
        dep = NetSuiteDeployment(get_hook("erp"), c.extra_dejson["webhook_secret"])
        out += [("erp", *r) for r in dep.ensure(base + "/notifications/erp")]
    return out
