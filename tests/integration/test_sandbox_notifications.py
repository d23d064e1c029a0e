"""The platforms' own change notifications (world.md "notifications") on their real wire formats, delivered to a
real HTTP receiver or consumed from the SQS-compatible queue with a real AWS SDK (botocore)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import boto3
import botocore.exceptions
import jsonschema
import pytest
import requests
from botocore.config import Config

from omnirecon.adapters.shopify.notifications import ShopifySource
from omnirecon.adapters.walmart.notifications import WalmartSource
from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox import Sandbox
from omnirecon_sandbox.amazon import reference_dir
from omnirecon_sandbox.changes import ORDER_CREATED
from tests.support.polling import wait_for
from tests.support.receiver import Receiver
from tests.support.sandbox_http import gql, lwa_token, scenario_doc, sp, walmart_token, wm

REF = reference_dir()
ALL = {"shopify": {}, "amazon": {}, "walmart": {}, "erp": {}}


def sandbox(notifications=ALL, time_scale=0.0005, **options):
    doc = scenario_doc(notifications=notifications)
    return Sandbox(from_dict(doc), time_scale=time_scale, options=dict({"notify_timeout": 1.0}, **options))


# -- Shopify -------------------------------------------------------------------------------------------------------
CREATE = """mutation($topic: WebhookSubscriptionTopic!, $sub: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $sub) {
    webhookSubscription { id topic uri format apiVersion { handle } createdAt }
    userErrors { field message } } }"""
LIST = """query($topics: [WebhookSubscriptionTopic!]) { webhookSubscriptions(first: 10, topics: $topics) {
  nodes { id topic uri } pageInfo { hasNextPage } } }"""
SET = """mutation($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) @idempotent(key: "%s") {
  userErrors { code message } } }"""


def shopify_subscribe(sb, topic, uri):
    r = gql(sb, CREATE, {"topic": topic, "sub": {"uri": uri, "format": "JSON"}}).json()
    assert r["data"]["webhookSubscriptionCreate"]["userErrors"] == [], r
    return r["data"]["webhookSubscriptionCreate"]["webhookSubscription"]


def shopify_set(sb, quantity, key):
    variables = {"input": {"name": "available", "reason": "correction", "ignoreCompareQuantity": True, "quantities": [
        {"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": "gid://shopify/Location/1001",
         "quantity": quantity}]}}
    r = gql(sb, SET % key, variables).json()
    assert r["data"]["inventorySetQuantities"]["userErrors"] == [], r


def shopify_verify(raw: bytes, header: str, secret: str) -> bool:
    """shopify.dev/docs/apps/build/webhooks/verify-deliveries: base64 HMAC-SHA256 of the raw body, constant time."""
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest), header.encode())


def test_shopify_subscription_api_create_list_filter_delete():
    with sandbox() as sb, Receiver() as rx:
        a = shopify_subscribe(sb, "INVENTORY_LEVELS_UPDATE", rx.url)
        shopify_subscribe(sb, "ORDERS_CREATE", rx.url)
        assert a["format"] == "JSON" and a["apiVersion"]["handle"] == "2026-01" and a["uri"] == rx.url
        dup = gql(sb, CREATE, {"topic": "INVENTORY_LEVELS_UPDATE", "sub": {"uri": rx.url}}).json()
        assert dup["data"]["webhookSubscriptionCreate"]["userErrors"][0]["message"].startswith("Address for this topic")
        plain = gql(sb, CREATE, {"topic": "ORDERS_UPDATED", "sub": {"uri": "http://example.com/hook"}}).json()
        assert plain["data"]["webhookSubscriptionCreate"]["webhookSubscription"] is None
        bad_topic = gql(sb, CREATE, {"topic": "ORDERS_EXPLODED", "sub": {"uri": rx.url}}).json()
        assert "errors" in bad_topic                                     # not in the enum: a GraphQL error
        nodes = gql(sb, LIST, {"topics": ["INVENTORY_LEVELS_UPDATE"]}).json()["data"]["webhookSubscriptions"]["nodes"]
        assert [n["id"] for n in nodes] == [a["id"]]
        deleted = gql(sb, "mutation($id: ID!) { webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId "
                          "userErrors { message } } }", {"id": a["id"]}).json()
        assert deleted["data"]["webhookSubscriptionDelete"]["deletedWebhookSubscriptionId"] == a["id"]
        assert gql(sb, LIST, {"topics": None}).json()["data"]["webhookSubscriptions"]["nodes"][0]["topic"] == "ORDERS_CREATE"


def test_shopify_inventory_webhook_body_headers_and_hmac():
    with sandbox() as sb, Receiver() as rx:
        secret = sb.connections()["omnirecon_shopify"]["extra"]["client_secret"]
        shopify_subscribe(sb, "INVENTORY_LEVELS_UPDATE", rx.url)
        shopify_set(sb, 3, "k1")
        got = rx.wait_for(1)[0]
        h, body = got["headers"], json.loads(got["body"])
        assert shopify_verify(got["body"], h["x-shopify-hmac-sha256"], secret)
        assert not shopify_verify(got["body"], h["x-shopify-hmac-sha256"], "wrong-secret")
        incoming = ShopifySource(secret).verify(got["body"], h)          # omnirecon's receiver accepts it
        assert incoming.topic == "inventory_levels/update" and incoming.event_id == h["x-shopify-webhook-id"]
        assert h["x-shopify-topic"] == "inventory_levels/update" and h["x-shopify-api-version"] == "2026-01"
        assert h["x-shopify-shop-domain"] == "demo-store.myshopify.com"
        assert h["x-shopify-webhook-id"] and h["x-shopify-event-id"] and h["x-shopify-triggered-at"]
        assert body == {"inventory_item_id": 1, "location_id": 1001, "available": 3,
                        "updated_at": body["updated_at"],
                        "admin_graphql_api_id": "gid://shopify/InventoryLevel/1001?inventory_item_id=1"}
        time.sleep(0.3)
        assert len(rx.requests) == 1                                     # one change, one delivery
        [row] = sb.notifications.counters()
        assert row == {"system": "shopify", "topic": "inventory_levels/update", "subscription": row["subscription"],
                       "delivered": 1, "failed": 0, "duplicates": 0}


def test_shopify_order_webhooks_rest_shape():
    with sandbox() as sb, Receiver() as rx:
        for topic in ("ORDERS_CREATE", "ORDERS_CANCELLED", "ORDERS_UPDATED"):
            shopify_subscribe(sb, topic, rx.url)
        order_id = sb.systems["shopify"].create_order("TEE-BLK-M", 1)
        assert sb.systems["shopify"].cancel_order(order_id)
        got = rx.wait_for(3)
        topics = sorted(r["headers"]["x-shopify-topic"] for r in got)
        assert topics == ["orders/cancelled", "orders/create", "orders/updated"]
        cancelled = next(json.loads(r["body"]) for r in got if r["headers"]["x-shopify-topic"] == "orders/cancelled")
        assert cancelled["admin_graphql_api_id"] == order_id and cancelled["cancelled_at"]
        assert cancelled["line_items"][0]["sku"] == "TEE-BLK-M" and cancelled["line_items"][0]["quantity"] == 1
        for key in ("id", "name", "order_number", "created_at", "updated_at", "financial_status", "fulfillment_status"):
            assert key in cancelled


def test_shopify_redelivers_after_failure_and_slow_answer_with_same_webhook_id():
    answers = {1: (500, 0.0), 2: (200, 1.5)}           # a 500, then an answer slower than the 1 s budget
    with sandbox() as sb, Receiver(lambda n: answers.get(n, (200, 0.0))) as rx:
        shopify_subscribe(sb, "INVENTORY_LEVELS_UPDATE", rx.url)
        shopify_set(sb, 4, "k2")
        got = rx.wait_for(3, timeout=15)
        assert len({r["headers"]["x-shopify-webhook-id"] for r in got}) == 1
        assert len({r["body"] for r in got}) == 1
        wait_for(lambda: sb.notifications.counters()[0]["delivered"] == 1, 10, "the counters")
        row = sb.notifications.counters()[0]
        assert row["failed"] == 2 and row["duplicates"] == 1         # the slow one may have been processed


def test_shopify_deletes_subscription_after_repeated_failures():
    with sandbox() as sb, Receiver(lambda n: (503, 0.0)) as rx:
        sub = shopify_subscribe(sb, "INVENTORY_LEVELS_UPDATE", rx.url)
        shopify_set(sb, 2, "k3")
        rx.wait_for(8, timeout=20)
        wait_for(lambda: gql(sb, LIST, {"topics": None}).json()["data"]["webhookSubscriptions"]["nodes"] == [],
                 10, "the subscription's deletion")
        shopify_set(sb, 1, "k4")
        time.sleep(0.5)
        assert len(rx.requests) == 8                                   # deleted: nothing more is sent
        assert sb.notifications.counters()[0]["failed"] == 8 and sub["id"] == sb.notifications.counters()[0]["subscription"]


def test_only_listed_platforms_notify_and_defects_apply():
    cfg = {"shopify": {}, "defects": [{"system": "shopify", "kind": "stop_after", "deliveries": 2},
                                       {"system": "shopify", "kind": "duplicate", "fraction": 1.0, "seed": 1}]}
    with sandbox(notifications=cfg) as sb, Receiver() as rx:
        shopify_subscribe(sb, "INVENTORY_LEVELS_UPDATE", rx.url)
        for n, q in enumerate((7, 6, 5, 4)):
            shopify_set(sb, q, f"d{n}")
        got = rx.wait_for(4)
        time.sleep(0.5)
        assert len(rx.requests) == 4                                   # 2 deliveries, each duplicated, then silence
        assert [json.loads(r["body"])["available"] for r in got] == [7, 7, 6, 6] or \
            sorted(json.loads(r["body"])["available"] for r in got) == [6, 6, 7, 7]
        assert sb.notifications.counters()[0]["duplicates"] == 2
        # walmart is not listed: a subscription there receives nothing
        token = walmart_token(sb)
        r = wm(sb, "POST", "/v3/webhooks/subscriptions", token, json={"events": [{
            "eventType": "INVENTORY_OOS", "eventVersion": "V1", "resourceName": "INVENTORY", "eventUrl": rx.url,
            "status": "ACTIVE"}]})
        assert r.status_code == 200
        sb.systems["walmart"].set_sku_quantity("TEE-BLK-M", None, 0)
        time.sleep(0.3)
        assert len(rx.requests) == 4


def test_reorder_window_shuffles_deliveries():
    cfg = {"shopify": {}, "defects": [{"system": "shopify", "kind": "reorder", "window": "2000s", "seed": 3}]}
    with sandbox(notifications=cfg) as sb, Receiver() as rx:
        shopify_subscribe(sb, "INVENTORY_LEVELS_UPDATE", rx.url)
        sent = [9, 8, 7, 6, 5, 4]
        for n, q in enumerate(sent):
            shopify_set(sb, q, f"r{n}")
        got = [json.loads(r["body"])["available"] for r in rx.wait_for(len(sent))]
        assert sorted(got) == sorted(sent) and got != sent


# -- Walmart -------------------------------------------------------------------------------------------------------
def _walmart_model():
    spec = json.loads((REF / "walmart-models" / "us-mp-notifications.json").read_text())
    return spec, spec["components"]["schemas"]


def _validate_oas(spec, name, doc):
    schema = dict(spec["components"]["schemas"][name], components=spec["components"])
    jsonschema.validate(doc, json.loads(json.dumps(schema).replace("#/components/", "#/components/")))


def test_walmart_subscriptions_and_hmac_and_basic_deliveries():
    spec, _ = _walmart_model()
    with sandbox() as sb, Receiver() as rx:
        token = walmart_token(sb)
        create = {"events": [
            {"eventType": "INVENTORY_OOS", "eventVersion": "V1", "resourceName": "INVENTORY", "eventUrl": rx.url,
             "status": "ACTIVE", "headers": {"content-type": "application/json"},
             "authDetails": {"authMethod": "HMAC", "clientSecret": "wm-hook-secret", "authHeaderName": "X-Signature"}},
            {"eventType": "PO_CREATED", "eventVersion": "V1", "resourceName": "ORDER", "eventUrl": rx.url,
             "status": "ACTIVE",
             "authDetails": {"authMethod": "BASIC_AUTH", "userName": "abc", "password": "test",
                             "authHeaderName": "Authorization"}},
            {"eventType": "OFFER_UNPUBLISHED", "eventVersion": "V1", "resourceName": "ITEM", "eventUrl": rx.url,
             "status": "ACTIVE"}]}
        _validate_oas(spec, "CreateSubscriptionRequest", create)
        r = wm(sb, "POST", "/v3/webhooks/subscriptions", token, json=create)
        assert r.status_code == 200, r.text
        _validate_oas(spec, "SubscriptionResponseDTO", r.json())
        ids = {e["eventType"]: e["subscriptionId"] for e in r.json()["events"]}
        listed = wm(sb, "GET", "/v3/webhooks/subscriptions?eventType=PO_CREATED", token).json()
        assert [e["subscriptionId"] for e in listed["events"]] == [ids["PO_CREATED"]]
        bad = wm(sb, "POST", "/v3/webhooks/subscriptions", token, json={"events": [dict(create["events"][0],
                                                                                       resourceName="ITEM")]})
        assert bad.status_code == 400
        w = sb.systems["walmart"]
        w.set_sku_quantity("TEE-BLK-M", "10001", 4)                    # above zero: Walmart sends nothing
        time.sleep(0.3)
        assert rx.requests == []
        w.set_sku_quantity("TEE-BLK-M", "10001", 0)
        po = w.create_order("TEE-BLK-M", 1)                            # from ship node 10002 (3 -> 2: no OOS)
        assert po
        got = rx.wait_for(2)
        oos = next(r for r in got if json.loads(r["body"])["source"]["eventType"] == "INVENTORY_OOS")
        expected = base64.b64encode(hmac.new(b"wm-hook-secret", oos["body"], hashlib.sha256).digest()).decode()
        assert oos["headers"]["x-signature"] == expected
        WalmartSource("wm-hook-secret", "HMAC", "X-Signature").verify(oos["body"], oos["headers"])
        env = json.loads(oos["body"])
        assert set(env) == {"source", "payload"} and set(env["source"]) == {"eventType", "eventTime", "eventId"}
        assert env["payload"]["sku"] == "TEE-BLK-M" and {"shipNode": "10001", "shipNodeName": "10001",
                                                         "availToSellQty": 0} in env["payload"]["shipNodes"]
        created = next(r for r in got if json.loads(r["body"])["source"]["eventType"] == "PO_CREATED")
        assert created["headers"]["authorization"] == "Basic " + base64.b64encode(b"abc:test").decode()
        assert json.loads(created["body"])["payload"]["purchaseOrderId"] == po
        n = len(rx.requests)
        assert w.set_published("TEE-BLK-M", False, ["Reasonable Price Not Satisfied"])
        unpublished = json.loads(rx.wait_for(n + 1)[n]["body"])
        assert unpublished["source"]["eventType"] == "OFFER_UNPUBLISHED"
        assert unpublished["payload"] == {"partnerId": "10000000359", "sku": "TEE-BLK-M", "publishStatus": "UNPUBLISHED",
                                          "lifecycleStatus": "ACTIVE",
                                          "statusChangeReasons": ["Reasonable Price Not Satisfied"]}
        # update (PATCH) to INACTIVE: no more deliveries; delete
        up = wm(sb, "PATCH", f"/v3/webhooks/subscriptions/{ids['INVENTORY_OOS']}", token, json={"status": "INACTIVE"})
        assert up.status_code == 200 and up.json()["status"] == "INACTIVE"
        before = len(rx.requests)
        w.set_sku_quantity("TEE-BLK-M", "10001", 2)
        w.set_sku_quantity("TEE-BLK-M", "10001", 0)
        time.sleep(0.3)
        assert len(rx.requests) == before
        gone = wm(sb, "DELETE", f"/v3/webhooks/subscriptions/{ids['INVENTORY_OOS']}", token)
        _validate_oas(spec, "SubscriptionDeleteResponseDTO", gone.json())
        assert wm(sb, "DELETE", f"/v3/webhooks/subscriptions/{ids['INVENTORY_OOS']}", token).status_code == 404


def test_walmart_test_endpoint_and_retries_with_duplicates_deduped_on_event_id():
    cfg = {"walmart": {}, "defects": [{"system": "walmart", "kind": "duplicate", "fraction": 1.0, "seed": 2}]}
    with sandbox(notifications=cfg) as sb, Receiver(lambda n: (500, 0.0) if n == 2 else (200, 0.0)) as rx:
        token = walmart_token(sb)
        rec = {"eventType": "INVENTORY_OOS", "eventVersion": "V1", "resourceName": "INVENTORY", "eventUrl": rx.url}
        t = wm(sb, "POST", "/v3/webhooks/test", token, json=rec)
        assert t.status_code == 200 and t.json() == {"message": "Eventurl successfully validated"}
        assert wm(sb, "POST", "/v3/webhooks/subscriptions", token, json={"events": [dict(rec, status="ACTIVE")]}).ok
        sb.systems["walmart"].set_sku_quantity("TEE-BLK-M", "10001", 0)
        got = rx.wait_for(4, timeout=15)[1:]       # the test call, then 2 copies and a retry of the one that got 500
        event_ids = [json.loads(r["body"])["source"]["eventId"] for r in got]
        assert len(set(event_ids)) == 1                              # dedupe key: eventId
        wait_for(lambda: sb.notifications.counters()[0]["delivered"] == 2, 10, "the retry's answer")
        row = sb.notifications.counters()[0]
        assert row["delivered"] == 2 and row["failed"] == 1 and row["duplicates"] == 1


# -- NetSuite ------------------------------------------------------------------------------------------------------
def test_netsuite_deployment_posts_signed_changes():
    with sandbox() as sb, Receiver() as rx:
        url = sb.urls["erp"] + "/_sandbox/netsuite/script-deployments/omnirecon"
        assert requests.put(url, json={"url": rx.url, "secret": "short"}, timeout=5).status_code == 400
        secret = "ns-shared-secret-0123456789"
        r = requests.put(url, json={"url": rx.url, "secret": secret}, timeout=5)
        assert r.status_code == 200 and "secret" not in r.json()
        ns = sb.systems["erp"]
        assert ns.adjust("MUG-WHT", "WH-EAST", on_hand=-2)
        assert ns.add_sales_order("shopify", "gid://shopify/Order/77", [{"sku": "TEE-BLK-M", "quantity": 1}], "WH-EAST")
        got = rx.wait_for(2)
        for req in got:
            ts = req["headers"]["x-omnirecon-timestamp"]
            mac = hmac.new(secret.encode(), ts.encode() + b"." + req["body"], hashlib.sha256).hexdigest()
            assert req["headers"]["x-omnirecon-signature"] == f"sha256={mac}"
            assert abs(int(ts) - time.time()) < 300
        so, adj = sorted((json.loads(r["body"]) for r in got), key=lambda m: m["recordType"], reverse=True)
        assert adj["recordType"] == "inventoryadjustment" and adj["type"] == "create"
        assert adj["eventId"] != so["eventId"] and len(adj["eventId"]) == 36
        assert adj["items"] == [{"item": "MUG-WHT", "itemId": 502, "location": "WH-EAST", "locationId": 1,
                                 "quantityOnHand": 3, "quantityCommitted": 0, "quantityAvailable": 3}]
        assert so["recordType"] == "salesorder" and so["salesOrder"]["status"] == "B"
        assert so["salesOrder"]["otherRefNum"] == "gid://shopify/Order/77"
        assert so["salesOrder"]["lines"] == [{"item": "TEE-BLK-M", "quantity": 1, "quantityFulfilled": 0,
                                              "location": "WH-EAST"}]


def test_netsuite_failed_post_waits_in_the_outbox_and_is_retried_until_the_receiver_takes_it():
    answers = {1: 503, 2: 500}                       # the post, the first retry; then 200
    with sandbox(time_scale=0.01) as sb, Receiver(lambda n: (answers.get(n, 200), 0.0)) as rx:
        url = sb.urls["erp"] + "/_sandbox/netsuite/script-deployments/omnirecon"
        secret = "ns-shared-secret-0123456789"
        requests.put(url, json={"url": rx.url, "secret": secret}, timeout=5).raise_for_status()
        ns = sb.systems["erp"]
        assert ns.adjust("MUG-WHT", "WH-EAST", on_hand=-2)

        def queued() -> list[dict]:
            return requests.get(url + "/outbox", timeout=5).json()["queued"]
        # the retry run afterSubmit asked for (5 s later) fails too: the message backs off (1 min), still queued
        (rec,) = wait_for(lambda: [r for r in queued() if r["attempts"] == 2], 10, "the first retry")
        assert rec["lastError"] == "HTTP 500" and rec["recordType"] == "inventoryadjustment"
        view = requests.get(url, timeout=5).json()
        assert view["outbox"] == {"queued": 1, "failed": 0} and view["errors"] == 2 and view["retry"]["runs"] >= 1
        # a later change gets through: the receiver is back, so a run takes the outbox at once, due or not
        assert ns.add_sales_order("shopify", "gid://shopify/Order/78", [{"sku": "TEE-BLK-M", "quantity": 1}], "WH-EAST")
        got = rx.wait_for(4)
        wait_for(lambda: requests.get(url, timeout=5).json()["outbox"] == {"queued": 0, "failed": 0}, 10,
                 "the outbox emptied")
        first, retried, resent = got[0], got[1], got[3]
        assert first["body"] == retried["body"] == resent["body"]             # the same message, the same eventId
        assert json.loads(got[2]["body"])["recordType"] == "salesorder"
        for req in got:
            ts = req["headers"]["x-omnirecon-timestamp"]
            mac = hmac.new(secret.encode(), ts.encode() + b"." + req["body"], hashlib.sha256).hexdigest()
            assert req["headers"]["x-omnirecon-signature"] == f"sha256={mac}"
        row = next(r for r in sb.notifications.counters() if r["topic"] == "inventoryadjustment")
        assert (row["delivered"], row["failed"]) == (1, 2)


# -- Amazon --------------------------------------------------------------------------------------------------------
def grantless(sb) -> str:
    c = sb.credentials
    r = requests.post(sb.urls["amazon"] + "/auth/o2/token", timeout=5, data={
        "grant_type": "client_credentials", "scope": "sellingpartnerapi::notifications",
        "client_id": c.amazon_client_id, "client_secret": c.amazon_client_secret})
    assert r.status_code == 200 and r.json()["scope"] == "sellingpartnerapi::notifications", r.text
    return r.json()["access_token"]


def sqs_client(sb, secret=None, key=None):
    c = sb.connections()["omnirecon_amazon"]["extra"]
    return boto3.session.Session().client(
        "sqs", endpoint_url=c["sqs_endpoint"], region_name=c["aws_region"],
        aws_access_key_id=key or c["aws_access_key_id"], aws_secret_access_key=secret or c["aws_secret_access_key"],
        config=Config(retries={"max_attempts": 1}, read_timeout=30))


def notification_schema(name: str) -> dict:
    schema = json.loads((REF / "sp-api-models" / "notifications" / name).read_text())
    if name.startswith("ListingsItemStatus"):   # the model's enum says ..._CHANGED, its example ..._CHANGE
        schema["properties"]["NotificationType"]["enum"].append("LISTINGS_ITEM_STATUS_CHANGE")
    return schema


def amazon_subscribe(sb, queue_arn, types):
    model = json.loads((REF / "sp-api-models" / "notifications" / "notifications.json").read_text())
    defs = model["definitions"]

    def check(defn, doc):
        jsonschema.validate(doc, dict(defs[defn], definitions=defs))

    gl = grantless(sb)
    body = {"name": "omnirecon", "resourceSpecification": {"sqs": {"arn": queue_arn}}}
    check("CreateDestinationRequest", body)
    dest = sp(sb, "POST", "/notifications/v1/destinations", gl, json=body)
    assert dest.status_code == 200, dest.text
    check("CreateDestinationResponse", dest.json())
    seller = lwa_token(sb)
    assert sp(sb, "POST", "/notifications/v1/destinations", seller, json=body).status_code == 403   # not grantless
    check("GetDestinationsResponse", sp(sb, "GET", "/notifications/v1/destinations", gl).json())
    subs = {}
    for t in types:
        req = {"payloadVersion": "1.0", "destinationId": dest.json()["payload"]["destinationId"]}
        check("CreateSubscriptionRequest", req)
        r = sp(sb, "POST", f"/notifications/v1/subscriptions/{t}", seller, json=req)
        assert r.status_code == 200, r.text
        check("CreateSubscriptionResponse", r.json())
        got = sp(sb, "GET", f"/notifications/v1/subscriptions/{t}", seller)
        check("GetSubscriptionResponse", got.json())
        subs[t] = r.json()["payload"]["subscriptionId"]
    return gl, subs


def test_amazon_notifications_via_sqs_with_botocore():
    with sandbox(time_scale=1.0) as sb:
        sqs = sqs_client(sb)
        url = sqs.create_queue(QueueName="sp-notifications")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        gl, subs = amazon_subscribe(sb, arn, ["LISTINGS_ITEM_MFN_QUANTITY_CHANGE", "LISTINGS_ITEM_STATUS_CHANGE",
                                              "ORDER_CHANGE"])
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None
        amazon = sb.systems["amazon"]
        start = time.monotonic()
        assert amazon.set_listing_quantity("TEE-BLK-M", 0)             # 6 -> 0: quantity and status change
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=5,
                                  MessageSystemAttributeNames=["All"])["Messages"]
        assert time.monotonic() - start < 4.5
        bodies = {json.loads(m["Body"])["NotificationType"]: json.loads(m["Body"]) for m in got}
        assert set(bodies) == {"LISTINGS_ITEM_MFN_QUANTITY_CHANGE", "LISTINGS_ITEM_STATUS_CHANGE"}
        jsonschema.validate(bodies["LISTINGS_ITEM_MFN_QUANTITY_CHANGE"], notification_schema("ListingsItemMfnQuantityChange.json"))
        jsonschema.validate(bodies["LISTINGS_ITEM_STATUS_CHANGE"], notification_schema("ListingsItemStatusChangeNotification.json"))
        qty = bodies["LISTINGS_ITEM_MFN_QUANTITY_CHANGE"]
        assert qty["Payload"] == {"SellerId": "A1SELLERDEMO", "FulfillmentChannelCode": "DEFAULT", "Sku": "TEE-BLK-M",
                                  "Quantity": 0}
        assert qty["NotificationMetadata"]["SubscriptionId"] == subs["LISTINGS_ITEM_MFN_QUANTITY_CHANGE"]
        assert bodies["LISTINGS_ITEM_STATUS_CHANGE"]["Payload"]["Status"] == ["DISCOVERABLE"]
        assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in got)
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        # an order: ORDER_CHANGE validates against the model
        amazon.set_listing_quantity("TEE-BLK-M", 5)
        order = amazon.create_order("TEE-BLK-M", 1)
        deadline, orders = time.monotonic() + 5, []
        while not orders and time.monotonic() < deadline:
            for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                body = json.loads(m["Body"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                if body["NotificationType"] == "ORDER_CHANGE":
                    orders.append(body)
        [change] = orders
        jsonschema.validate(change, notification_schema("OrderChangeNotification.json"))
        assert change["Payload"]["OrderChangeNotification"]["AmazonOrderId"] == order
        # deleteSubscriptionById is grantless
        t = "ORDER_CHANGE"
        assert sp(sb, "DELETE", f"/notifications/v1/subscriptions/{t}/{subs[t]}", lwa_token(sb)).status_code == 403
        assert sp(sb, "DELETE", f"/notifications/v1/subscriptions/{t}/{subs[t]}", gl).status_code == 200
        assert sp(sb, "GET", f"/notifications/v1/subscriptions/{t}", lwa_token(sb)).status_code == 404


def test_sqs_visibility_timeout_redelivery_and_change_visibility():
    with sandbox(time_scale=1.0) as sb:
        sqs = sqs_client(sb)
        url = sqs.create_queue(QueueName="q1")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]["QueueArn"]
        amazon_subscribe(sb, arn, ["LISTINGS_ITEM_MFN_QUANTITY_CHANGE"])
        sb.systems["amazon"].set_listing_quantity("TEE-BLK-M", 4)
        [m1] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5, VisibilityTimeout=1,
                                   AttributeNames=["ApproximateReceiveCount"])["Messages"]
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None   # invisible
        [m2] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=3, VisibilityTimeout=30,
                                   AttributeNames=["ApproximateReceiveCount"])["Messages"]
        assert m2["MessageId"] == m1["MessageId"] and m2["Attributes"]["ApproximateReceiveCount"] == "2"
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m2["ReceiptHandle"], VisibilityTimeout=0)
        [m3] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2, AttributeNames=["All"])["Messages"]
        assert m3["Attributes"]["ApproximateReceiveCount"] == "3" and m3["Body"] == m1["Body"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m3["ReceiptHandle"])
        sqs.change_message_visibility  # noqa: B018
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
        with pytest.raises(botocore.exceptions.ClientError) as e:
            sqs.get_queue_url(QueueName="nope")
        assert e.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"


@pytest.mark.parametrize("wrong, code", [("secret", "SignatureDoesNotMatch"), ("key", "InvalidClientTokenId")])
def test_sqs_rejects_wrong_credentials_like_sqs(wrong, code):
    with sandbox(time_scale=1.0) as sb:
        good = sqs_client(sb)
        good.create_queue(QueueName="q2")
        bad = sqs_client(sb, secret="not-the-secret") if wrong == "secret" else sqs_client(sb, key="AKIAWRONGKEY0000000")
        with pytest.raises(botocore.exceptions.ClientError) as e:
            bad.get_queue_url(QueueName="q2")
        assert e.value.response["Error"]["Code"] == code
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        raw = requests.post(sb.urls["amazon"] + "/", data="{}", timeout=5, headers={
            "X-Amz-Target": "AmazonSQS.GetQueueUrl", "Content-Type": "application/x-amz-json-1.0"})
        assert raw.status_code in (400, 403) and raw.json()["__type"].startswith("com.amazon.coral.service#")


def test_world_dump_carries_notification_counters():
    with sandbox() as sb, Receiver() as rx:
        shopify_subscribe(sb, "ORDERS_CREATE", rx.url)
        sb.systems["shopify"].create_order("TEE-BLK-M", 1)
        rx.wait_for(1)
        wait_for(lambda: sb.notifications.counters() and sb.notifications.counters()[0]["delivered"] == 1, 10, "delivery")
        world = sb.state()["world"]
        assert world["notifications"][0]["topic"] == "orders/create" and world["notifications"][0]["delivered"] == 1
        assert ORDER_CREATED == "order_created"


# -- time on the sandbox clock (ManualClock: nothing waits for real time) ---------------------------------------------
def manual_sandbox():
    from omnirecon_sandbox.clock import ManualClock
    s = from_dict(scenario_doc(notifications=ALL))
    clock = ManualClock(s.as_of)
    return Sandbox(s, clock=clock, options={"notify_timeout": 1.0}), clock


def test_shopify_retry_waits_its_backoff_on_the_sandbox_clock():
    sb, clock = manual_sandbox()
    with sb, Receiver(lambda n: (500, 0.0) if n == 1 else (200, 0.0)) as rx:
        shopify_subscribe(sb, "INVENTORY_LEVELS_UPDATE", rx.url)
        shopify_set(sb, 3, "m1")
        rx.wait_for(1)
        time.sleep(0.3)
        assert len(rx.requests) == 1              # real time passes, the clock does not: no retry yet
        clock.advance(9.9)
        time.sleep(0.3)
        assert len(rx.requests) == 1              # the first retry is due 10 s after the failure
        clock.advance(0.2)
        second = rx.wait_for(2)[1]
        assert second["headers"]["x-shopify-webhook-id"] == rx.requests[0]["headers"]["x-shopify-webhook-id"]


def test_sqs_visibility_timeout_on_the_sandbox_clock():
    sb, clock = manual_sandbox()
    with sb:
        sqs = sqs_client(sb)
        url = sqs.create_queue(QueueName="manual")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        amazon_subscribe(sb, arn, ["LISTINGS_ITEM_MFN_QUANTITY_CHANGE"])
        sb.systems["amazon"].set_listing_quantity("TEE-BLK-M", 5)
        [m1] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=30)["Messages"]
        clock.advance(29.5)
        assert "Messages" not in sqs.receive_message(QueueUrl=url)
        clock.advance(0.6)
        [m2] = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])["Messages"]
        assert m2["MessageId"] == m1["MessageId"] and m2["Attributes"]["ApproximateReceiveCount"] == "2"


def test_an_api_write_notifies_like_any_other_when_amazon_applies_it():
    """patchListingsItem is queued (ACCEPTED) and applied later; its notification comes when it is applied,
    without anyone reading the listing in between."""
    sb, clock = manual_sandbox()
    with sb:
        sqs = sqs_client(sb)
        url = sqs.create_queue(QueueName="writes")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        amazon_subscribe(sb, arn, ["LISTINGS_ITEM_MFN_QUANTITY_CHANGE"])
        patch = {"productType": "SHIRT", "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                                                      "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 4}]}]}
        r = sp(sb, "PATCH", "/listings/2021-08-01/items/A1SELLERDEMO/TEE-BLK-M", lwa_token(sb),
               params={"marketplaceIds": "ATVPDKIKX0DER"}, json=patch)
        assert r.json()["status"] == "ACCEPTED"
        time.sleep(0.3)
        assert "Messages" not in sqs.receive_message(QueueUrl=url)     # not applied yet: nothing changed
        clock.advance(sb.options.amazon_listing_seconds + 0.1)
        deadline = time.monotonic() + 5
        got = None
        while got is None and time.monotonic() < deadline:
            got = sqs.receive_message(QueueUrl=url).get("Messages")
            time.sleep(0.05)
        assert got and json.loads(got[0]["Body"])["Payload"]["Quantity"] == 4


def test_a_defect_applies_only_inside_its_from_until_window():
    cfg = {"shopify": {}, "defects": [{"system": "shopify", "kind": "stop_after", "deliveries": 0, "from": "+1h"},
                                       {"system": "shopify", "kind": "duplicate", "fraction": 1.0, "until": "-1m"}]}
    with sandbox(notifications=cfg) as sb, Receiver() as rx:
        shopify_subscribe(sb, "INVENTORY_LEVELS_UPDATE", rx.url)
        shopify_set(sb, 2, "w1")
        rx.wait_for(1)
        time.sleep(0.3)
        assert len(rx.requests) == 1          # not silenced (starts in an hour), not duplicated (ended a minute ago)
