"""Subscriptions through the platforms' own APIs on the real hooks against a real Sandbox over HTTP: a second
ensure creates nothing, a subscription deleted on the platform is re-created, and after ensure a change in the
sandbox arrives at a real omnirecon Receiver and lands in its inbox."""
from sqlalchemy import select

from omnirecon.hooks import hook_from_fields
from omnirecon.ledger import models as m
from omnirecon.live.inbox import Inbox
from omnirecon.live.receiver import Receiver
from omnirecon.adapters.erp.notifications import NetSuiteDeployment
from omnirecon.adapters.shopify.notifications import TOPICS as SHOPIFY_TOPICS
from omnirecon.adapters.shopify.notifications import ShopifySource, ShopifySubscriptions
from omnirecon.adapters.walmart.notifications import TOPICS as WALMART_TOPICS
from omnirecon.adapters.walmart.notifications import WalmartSource, WalmartSubscriptions
from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox import Sandbox
from tests.support.polling import wait_for
from tests.support.sandbox_http import gql, scenario_doc, walmart_token, wm

WM_SECRET = "wm-hook-secret"


def sandbox():
    return Sandbox(from_dict(scenario_doc(notifications={"shopify": {}, "walmart": {}})), time_scale=0.0005,
                   options={"notify_timeout": 2.0})


def inbox_rows(ledger, source):
    with ledger.session() as s:
        return [(n.topic, n.body) for n in s.scalars(select(m.Notification).where(m.Notification.source == source))]


def test_shopify_ensure_is_idempotent_recreates_a_deleted_one_and_delivers(sqlite_ledger):
    with sandbox() as sb:
        fields = sb.connections()["omnirecon_shopify"]
        secret = fields["extra"]["client_secret"]
        with Receiver(Inbox(sqlite_ledger), {"shopify": ShopifySource(secret)}) as rec:
            subs = ShopifySubscriptions(hook_from_fields("shopify", fields))
            url = rec.url + "/notifications/shopify"
            first = subs.ensure(url)
            assert [(t, a) for t, _, a in first] == [(t, "created") for t in SHOPIFY_TOPICS]
            second = subs.ensure(url)
            assert [(t, i, a) for t, i, a in second] == [(t, i, "kept") for t, i, _ in first]
            gone = dict((t, i) for t, i, _ in first)["INVENTORY_LEVELS_UPDATE"]
            r = gql(sb, "mutation($id: ID!) { webhookSubscriptionDelete(id: $id) { deletedWebhookSubscriptionId } }",
                    {"id": gone}).json()
            assert r["data"]["webhookSubscriptionDelete"]["deletedWebhookSubscriptionId"] == gone
            third = {t: (i, a) for t, i, a in subs.ensure(url)}
            assert third["INVENTORY_LEVELS_UPDATE"][1] == "recreated" and third["INVENTORY_LEVELS_UPDATE"][0] != gone
            assert all(a == "kept" for t, (_, a) in third.items() if t != "INVENTORY_LEVELS_UPDATE")
            listed = gql(sb, "{ webhookSubscriptions(first: 50) { nodes { topic } } }").json()
            assert sorted(n["topic"] for n in listed["data"]["webhookSubscriptions"]["nodes"]) == sorted(SHOPIFY_TOPICS)
            gql(sb, """mutation($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input)
                  @idempotent(key: "h8-1") { userErrors { message } } }""", {"input": {
                    "name": "available", "reason": "correction", "ignoreCompareQuantity": True, "quantities": [
                        {"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": "gid://shopify/Location/1001",
                         "quantity": 3}]}})
            wait_for(lambda: any(t == "inventory_levels/update" for t, _ in inbox_rows(sqlite_ledger, "shopify")),
                     timeout=20, what="the inventory webhook in the receiver's inbox")


def test_walmart_ensure_is_idempotent_recreates_a_deleted_one_and_delivers_hmac(sqlite_ledger):
    with sandbox() as sb:
        fields = sb.connections()["omnirecon_walmart"]
        with Receiver(Inbox(sqlite_ledger), {"walmart": WalmartSource(WM_SECRET, "HMAC", "Authorization")}) as rec:
            subs = WalmartSubscriptions(hook_from_fields("walmart", fields), WM_SECRET)
            url = rec.url + "/notifications/walmart"
            first = subs.ensure(url)
            assert sorted((t, a) for t, _, a in first) == sorted((t, "created") for t in WALMART_TOPICS)
            assert sorted(subs.ensure(url)) == sorted((t, i, "kept") for t, i, _ in first)
            gone = dict((t, i) for t, i, _ in first)["INVENTORY_OOS"]
            assert wm(sb, "DELETE", f"/v3/webhooks/subscriptions/{gone}", walmart_token(sb)).ok
            third = {t: (i, a) for t, i, a in subs.ensure(url)}
            assert third["INVENTORY_OOS"][1] == "recreated" and third["INVENTORY_OOS"][0] != gone
            assert sorted(a for _, a in third.values()) == ["kept", "kept", "kept", "recreated"]
            sb.systems["walmart"].set_sku_quantity("TEE-BLK-M", None, 0)
            wait_for(lambda: any("INVENTORY_OOS" in b for _, b in inbox_rows(sqlite_ledger, "walmart")), timeout=20,
                     what="the INVENTORY_OOS webhook in the receiver's inbox")


def test_netsuite_deployment_is_kept_then_redeployed_after_an_undeploy():
    with Sandbox(from_dict(scenario_doc(notifications={"erp": {}}))) as sb:
        hook = hook_from_fields("erp", sb.connections()["omnirecon_netsuite"])
        dep = NetSuiteDeployment(hook, "a-secret-of-sixteen+")
        url = "http://127.0.0.1:9/notifications/erp"
        assert [a for _, _, a in dep.ensure(url)] == ["created"]
        assert [a for _, _, a in dep.ensure(url)] == ["kept"]
        shown = hook.call("GET", "/_sandbox/netsuite/script-deployments/omnirecon", "get").json()
        assert shown["url"] == url and "secret" not in shown
        assert hook.call("DELETE", "/_sandbox/netsuite/script-deployments/omnirecon", "undeploy").status_code == 204
        assert [a for _, _, a in dep.ensure(url)] == ["recreated"]


def test_ensure_all_reads_the_connections_and_a_second_run_creates_nothing(monkeypatch, capsys):
    import json

    from omnirecon.cli import main
    with sandbox() as sb:
        conns = sb.connections()
        conns["omnirecon_netsuite"]["extra"] = dict(conns["omnirecon_netsuite"].get("extra") or {},
                                                    webhook_secret="netsuite-secret-0123")
        for cid in ("omnirecon_shopify", "omnirecon_walmart", "omnirecon_netsuite"):
            monkeypatch.setenv(f"AIRFLOW_CONN_{cid.upper()}", json.dumps(conns[cid]))
        monkeypatch.delenv("AIRFLOW_CONN_OMNIRECON_AMAZON", raising=False)
        assert main(["subscribe", "--receiver-url", "http://127.0.0.1:9"]) == 0
        first = capsys.readouterr().out
        assert first.count("created") == len(SHOPIFY_TOPICS) + len(WALMART_TOPICS) + 1
        assert main(["subscribe", "--receiver-url", "http://127.0.0.1:9"]) == 0
        second = capsys.readouterr().out
        assert "created" not in second and second.count("kept") == len(SHOPIFY_TOPICS) + len(WALMART_TOPICS) + 1
        assert "netsuite-secret-0123" not in first + second and conns["omnirecon_walmart"]["password"] not in first


def test_amazon_ensure_makes_one_destination_on_the_queue_is_idempotent_and_delivers_to_sqs(sqlite_ledger):
    from omnirecon.live.sqs import SqsConsumer, sqs_client
    from omnirecon.adapters.amazon.notifications import TOPICS as AMAZON_TOPICS
    from omnirecon.adapters.amazon.notifications import AmazonSubscriptions
    with Sandbox(from_dict(scenario_doc(notifications={"amazon": {}})), time_scale=0.0005) as sb:
        fields = sb.connections()["omnirecon_amazon"]
        x = fields["extra"]
        client = sqs_client(x["sqs_endpoint"], x["aws_region"], x["aws_access_key_id"], x["aws_secret_access_key"])
        url = client.create_queue(QueueName="omnirecon-notifications")["QueueUrl"]
        arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        subs = AmazonSubscriptions(hook_from_fields("amazon", fields))
        first = subs.ensure(arn)
        assert [(t, a) for t, _, a in first] == [("destination", "created")] + [(t, "created") for t in AMAZON_TOPICS]
        second = subs.ensure(arn)
        assert [(t, i, a) for t, i, a in second] == [(t, i, "kept") for t, i, _ in first]
        sku = next(iter(sb.systems["amazon"].listings))
        assert sb.systems["amazon"].set_listing_quantity(sku, 3)
        inbox = Inbox(sqlite_ledger).start()
        try:
            consumer = SqsConsumer(client, url, inbox, wait_s=1)
            wait_for(lambda: consumer.poll_once() >= 0 and any(
                t == "LISTINGS_ITEM_MFN_QUANTITY_CHANGE" for t, _ in inbox_rows(sqlite_ledger, "amazon")),
                timeout=20, what="the MFN quantity notification in the inbox through SQS")
        finally:
            inbox.stop()
