"""A living world on the manual sandbox clock, heard the way production hears it: the platforms' real notifications
reach a real omnirecon Receiver (Shopify and Walmart webhooks, the NetSuite user-event script) and the SQS consumer
(Amazon), Walmart quantities above zero are read through its hook, and a ChainMonitor ticks every few seconds."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import requests

from omnirecon.adapters import get_adapter
from omnirecon.adapters.erp.notifications import NetSuiteDeployment, NetSuiteSource
from omnirecon.adapters.shopify.notifications import ShopifySource, ShopifySubscriptions
from omnirecon.adapters.walmart.notifications import WalmartSource, WalmartSubscriptions
from omnirecon.config import settings_from_dict
from omnirecon.hooks import hook_from_fields
from omnirecon.live.chain import ChainMonitor
from omnirecon.live.inbox import Inbox
from omnirecon.live.receiver import Receiver
from omnirecon.live.sqs import SqsConsumer, sqs_client
from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox.clock import ManualClock
from omnirecon_sandbox.core import Sandbox
from tests.support.polling import wait_for
from tests.support.sandbox_http import lwa_token, sp

NS_SECRET = "chain-test-secret-0123"
SHOPIFY_TOPICS = ("INVENTORY_LEVELS_UPDATE", "ORDERS_CREATE", "ORDERS_FULFILLED")
AMAZON_TOPICS = ("LISTINGS_ITEM_MFN_QUANTITY_CHANGE", "ORDER_CHANGE")


@contextmanager
def listening(ledger, shopify_secret: str, hooks: dict, erp_secret: str,
              shopify_topics=("INVENTORY_LEVELS_UPDATE",)):
    """A real Receiver on the ledger's inbox with Shopify's webhook subscriptions and the NetSuite deployment
    pointed at it (the ERP's secret skew-free: the manual clock runs ahead of real time) -> the receiver."""
    sources = {"shopify": ShopifySource(shopify_secret), "erp": NetSuiteSource(erp_secret, max_skew=timedelta(hours=1))}
    with Receiver(Inbox(ledger), sources) as rx:
        ShopifySubscriptions(hooks["shopify"]).ensure(rx.url + "/notifications/shopify", topics=shopify_topics)
        NetSuiteDeployment(hooks["erp"], erp_secret).ensure(rx.url + "/notifications/erp")
        yield rx


@dataclass
class ChainRun:
    monitor: ChainMonitor
    ledger: object
    found: list            # (Detection, clock time of the tick that detected it)
    state: dict            # the sandbox's final state (world.hop_log, oversells, ...)
    started: object        # the world clock's start (the scenario's as_of)
    extra: object = None   # what `at_end` returned

    def hop(self, src: str, dst: str, kind: str) -> dict:
        return next(h for h in self.monitor.chain()["hops"] if (h["from"], h["to"], h["kind"]) == (src, dst, kind))

    def log(self, hop_id: str) -> list[dict]:
        return [e for e in self.state["world"]["hop_log"] if e["hop"] == hop_id]


def _amazon_queue(sb) -> tuple[object, str]:
    x = sb.connections()["omnirecon_amazon"]["extra"]
    client = sqs_client(x["sqs_endpoint"], x["aws_region"], x["aws_access_key_id"], x["aws_secret_access_key"])
    url = client.create_queue(QueueName="chain")["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    c = sb.credentials
    grantless = requests.post(sb.urls["amazon"] + "/auth/o2/token", timeout=10, data={
        "grant_type": "client_credentials", "scope": "sellingpartnerapi::notifications",
        "client_id": c.amazon_client_id, "client_secret": c.amazon_client_secret}).json()["access_token"]
    dest = sp(sb, "POST", "/notifications/v1/destinations", grantless,
              json={"name": "chain", "resourceSpecification": {"sqs": {"arn": arn}}}).json()["payload"]["destinationId"]
    for topic in AMAZON_TOPICS:
        sp(sb, "POST", f"/notifications/v1/subscriptions/{topic}", lwa_token(sb),
           json={"payloadVersion": "1.0", "destinationId": dest}).raise_for_status()
    return client, url


def erp_levels(doc: dict) -> dict:
    """{(SKU, ERP location): available} as the scheduled ERP snapshot before the world starts would land it."""
    return {(it["itemid"], loc["location"]): int(loc.get("on_hand", 0)) - int(loc.get("committed", 0))
            for it in doc["erp"]["items"] for loc in it.get("locations") or ()}


def channel_levels(doc: dict, settings) -> dict:
    """{(channel, ERP SKU, channel location): quantity} as the scheduled channel snapshots before the world starts
    would land them (Amazon: the MFN listing; aliases resolved to the ERP SKU)."""
    sku = settings.erp_sku_for
    out = {("shopify", sku(v["sku"], "shopify"), lvl["location_id"]): int(lvl.get("available", 0))
           for v in doc.get("shopify", {}).get("variants", []) for lvl in v.get("levels") or ()}
    out.update({("amazon", sku(l["sku"], "amazon"), "MFN"): int(l.get("quantity", 0))
                for l in doc.get("amazon", {}).get("listings", [])})
    out.update({("walmart", sku(i["sku"], "walmart"), str(i["ship_node"])): int(i.get("quantity", 0))
                for i in doc.get("walmart", {}).get("items", [])})
    return out


def run_chain_world(ledger, doc: dict, *, sla: float, horizon_s: int, tick_s: int = 5,
                    resolution_s: float = 5.0, at_end=None) -> ChainRun:
    """Run the world `doc` for horizon_s clock seconds, one second at a time, every delivery due made before the next
    second; the monitor ticks every tick_s seconds and finally saves its hops (run `live/1`); then
    `at_end(sandbox, settings)`, while the world and the receiver are still up."""
    scenario = from_dict(doc)
    clock = ManualClock(scenario.as_of)
    settings = settings_from_dict(dict(doc["settings"], propagation_sla_seconds=sla))
    with Sandbox(scenario, clock=clock, options={"notify_timeout": 2.0}) as sb:
        conns = sb.connections()
        shop, wm = conns["omnirecon_shopify"], conns["omnirecon_walmart"]
        sources = {"shopify": ShopifySource(shop["extra"]["client_secret"]), "walmart": WalmartSource(wm["password"]),
                   "erp": NetSuiteSource(NS_SECRET, max_skew=timedelta(hours=1))}   # clock runs ahead of real time
        with Receiver(Inbox(ledger), sources) as rx:
            shopify = hook_from_fields("shopify", shop)
            walmart = hook_from_fields("walmart", wm)
            ShopifySubscriptions(shopify).ensure(rx.url + "/notifications/shopify", topics=SHOPIFY_TOPICS)
            WalmartSubscriptions(walmart, wm["password"]).ensure(rx.url + "/notifications/walmart")
            NetSuiteDeployment(hook_from_fields("erp", conns["omnirecon_netsuite"]), NS_SECRET).ensure(
                rx.url + "/notifications/erp")
            client, queue = _amazon_queue(sb)
            consumer = SqsConsumer(client, queue, Inbox(ledger), wait_s=0)
            # inventory item id -> SKU, as omnirecon's Shopify snapshot gives it (read from the sandbox's state:
            # paging the catalog would empty the query-cost bucket of a clock that does not move yet)
            items = {v["inventory_item_id"].rsplit("/", 1)[-1]: v["sku"] for v in sb.state()["shopify"]["variants"]}
            monitor = ChainMonitor(settings, ledger=ledger,
                                   reader=get_adapter("walmart").quantity_reader(walmart, settings),
                                   readable={"walmart"}, item_skus=items, resolution_s=resolution_s,
                                   erp_levels=erp_levels(doc), channel_levels=channel_levels(doc, settings))
            found = []
            try:
                for second in range(1, int(horizon_s) + 1):
                    sb.world.advance(1.0)
                    wait_for(lambda: sb.notifications.outbox.due() == 0, 20, "the deliveries due this second")
                    while consumer.poll_once():
                        pass
                    if second % tick_s == 0:
                        found += [(d, clock.now()) for d in monitor.tick(clock.now())]
                ledger.begin_run("live/1", "live")
                monitor.save(run_id="live/1")
                extra = at_end(sb, settings) if at_end else None
                state = sb.state()
            finally:
                consumer.inbox.stop()
    return ChainRun(monitor, ledger, found, state, scenario.as_of, extra)
