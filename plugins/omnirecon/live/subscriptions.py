"""Subscriptions to the platforms' own change notifications, created and kept alive through each platform's API
on the existing hooks: `ensure` is idempotent (a second call creates nothing) and re-creates what the platform
deleted. Returns (topic, id, action) with action created | kept | recreated. Secrets are never logged."""
from __future__ import annotations

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


def ensure_all(receiver_base_url: str, sqs_queue_arn: str | None = None, get_connection=None) -> list[tuple]:
    """Ensure every connected platform's subscriptions, from the Airflow connections' secrets.
    Returns (system, topic, id, action) rows; a system without its connection or secret is skipped."""
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
