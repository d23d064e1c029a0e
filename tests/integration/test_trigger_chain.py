"""The trigger chain learned from a living world on the manual sandbox clock: the platforms' real notifications
reach a real omnirecon Receiver (Shopify webhooks, the NetSuite user-event script) and the SQS consumer (Amazon),
Walmart (no notification above zero) is read through its hook, and ChainMonitor maps every hop, infers its
mechanism and detects the suspended one within the SLA."""
from __future__ import annotations

import csv
import json
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from omnirecon.config import settings_from_dict
from omnirecon.hooks import hook_from_fields
from omnirecon.ledger import models as m
from omnirecon.ledger import queries
from omnirecon.adapters import get_adapter
from omnirecon.live.chain import ChainMonitor
from omnirecon.live.inbox import Inbox
from omnirecon.live.receiver import Receiver
from omnirecon.adapters.erp.notifications import NetSuiteSource
from omnirecon.adapters.shopify.notifications import ShopifySource
from omnirecon.live.sqs import SqsConsumer, sqs_client
from omnirecon.adapters.erp.notifications import NetSuiteDeployment
from omnirecon.adapters.shopify.notifications import ShopifySubscriptions
from omnirecon.report import exports
from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox.clock import ManualClock
from omnirecon_sandbox.core import Sandbox
from tests.support.polling import wait_for
from tests.support.sandbox_http import lwa_token, sp
from tests.support.world import world_doc

SLA = 30
NS_SECRET = "chain-test-secret-0123"
EVENT_LATENCY, POLL_EVERY, SUSPENDED_FROM, HORIZON = 3.0, 20.0, 150.0, 240.0
HOPS = [{"id": "erp-shopify", "from": "erp", "to": "shopify", "kind": "inventory", "mechanism": "event",
         "latency": f"{EVENT_LATENCY:g}s"},
        {"id": "erp-amazon", "from": "erp", "to": "amazon", "kind": "inventory", "mechanism": "poll",
         "every": f"{POLL_EVERY:g}s", "phase": "5s"},
        {"id": "erp-walmart", "from": "erp", "to": "walmart", "kind": "inventory", "mechanism": "event",
         "latency": "2s"}]


def _adjusts() -> list[dict]:
    """An ERP adjustment every 6.3 s over three SKUs, each down by 1 to 3 (quantities stay well above 0)."""
    out, t, n = [], 2.3, 0
    while t < HORIZON - 40:
        out.append({"at": f"+{t:.1f}s", "system": "erp", "kind": "adjust", "sku": f"SKU-{n % 3:03d}",
                    "location": "WH-EAST", "delta": -(1 + n % 3)})
        t, n = t + 6.3, n + 1
    return out


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
    sp(sb, "POST", "/notifications/v1/subscriptions/LISTINGS_ITEM_MFN_QUANTITY_CHANGE", lwa_token(sb),
       json={"payloadVersion": "1.0", "destinationId": dest}).raise_for_status()
    return client, url


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The world for HORIZON clock seconds, the monitor ticking every 5 s; -> (monitor, ledger, detections)."""
    from omnirecon.ledger.db import Ledger
    ledger = Ledger(f"sqlite:///{tmp_path_factory.mktemp('chain') / 'ledger.db'}")
    ledger.migrate()
    doc = world_doc(on_hand=200, dropship=25, integration={"hops": HOPS, "defects": [
        {"hop": "erp-walmart", "kind": "suspended", "from": f"+{SUSPENDED_FROM:g}s"}]},
        events=_adjusts(), notifications={"shopify": {}, "amazon": {}, "walmart": {}, "erp": {}})
    scenario = from_dict(doc)
    clock = ManualClock(scenario.as_of)
    settings = settings_from_dict(dict(doc["settings"], propagation_sla_seconds=SLA))
    with Sandbox(scenario, clock=clock, options={"notify_timeout": 2.0}) as sb:
        conns = sb.connections()
        shop = conns["omnirecon_shopify"]
        sources = {"shopify": ShopifySource(shop["extra"]["client_secret"]),
                   "erp": NetSuiteSource(NS_SECRET, max_skew=timedelta(hours=1))}   # clock runs ahead of real time
        with Receiver(Inbox(ledger), sources) as rx:
            shopify = hook_from_fields("shopify", shop)
            ShopifySubscriptions(shopify).ensure(rx.url + "/notifications/shopify", topics=("INVENTORY_LEVELS_UPDATE",))
            NetSuiteDeployment(hook_from_fields("erp", conns["omnirecon_netsuite"]), NS_SECRET).ensure(
                rx.url + "/notifications/erp")
            client, queue = _amazon_queue(sb)
            consumer = SqsConsumer(client, queue, Inbox(ledger), wait_s=0)
            items = {v["inventoryItem"]["id"].rsplit("/", 1)[-1]: v["sku"]
                     for v in shopify.fetch_variants(use_bulk=False)["variants"]}
            walmart = hook_from_fields("walmart", conns["omnirecon_walmart"])
            monitor = ChainMonitor(settings, ledger=ledger, reader=get_adapter("walmart").quantity_reader(walmart, settings),
                                   readable={"walmart"}, item_skus=items, resolution_s=5.0)
            found = []
            for second in range(1, int(HORIZON) + 1):
                sb.world.advance(1.0)
                wait_for(lambda: sb.notifications.outbox.pending() == 0, 20, "the deliveries of this second")
                while consumer.poll_once():
                    pass
                if second % 5 == 0:
                    found += [(d, clock.now()) for d in monitor.tick(clock.now())]
            ledger.begin_run("live/1", "live")
            monitor.save(run_id="live/1")
            state = sb.state()
            consumer.inbox.stop()
    return monitor, ledger, found, state


def _hop(monitor, dst):
    return next(h for h in monitor.chain()["hops"] if h["from"] == "erp" and h["to"] == dst and h["kind"] == "inventory")


def test_event_hop_is_inferred_as_an_event_with_its_latency(run):
    monitor, *_ = run
    hop = _hop(monitor, "shopify")
    assert hop["mechanism"] == "event" and hop["poll_interval_s"] is None
    assert abs(hop["latency_s"]["p50"] - EVENT_LATENCY) <= 1.0 and hop["latency_s"]["max"] <= EVENT_LATENCY + 1.0
    assert hop["state"] == "ok" and hop["missed"] == 0 and hop["followed"] >= 20


def test_poll_hop_period_is_inferred_within_20_percent(run):
    monitor, *_ = run
    hop = _hop(monitor, "amazon")
    assert hop["mechanism"] == "poll"
    assert abs(hop["poll_interval_s"] - POLL_EVERY) <= 0.2 * POLL_EVERY, hop
    assert hop["state"] == "ok" and hop["missed"] == 0                 # a 20 s poll is within the 30 s SLA


def test_suspended_hop_is_broken_since_its_suspension_with_trigger_gaps(run):
    monitor, ledger, found, _ = run
    hop = _hop(monitor, "walmart")
    assert hop["state"] == "broken" and hop["missed"] > 0 and hop["resolution_s"] == 5.0
    assert hop["diagnosis"] == "L3_connector"                           # the other channels followed the ERP
    since = (monitor.now - timedelta(seconds=HORIZON - SUSPENDED_FROM))
    assert abs((json_ts(hop["since"]) - since).total_seconds()) <= 7
    gaps = monitor.findings("live/1")
    assert gaps and {g["channel"] for g in gaps} == {"walmart"}
    assert all(g["detail"].startswith("erp->walmart") and g["action"] == "push" and g["check"] == "trigger_gap"
               for g in gaps)
    with ledger.session() as s:
        rows = list(s.scalars(select(m.Finding).where(m.Finding.run_id == "live/1")))
    assert {r.check for r in rows} == {"trigger_gap"} and len(rows) == len(gaps)


def test_no_trigger_gap_on_a_healthy_hop(run):
    monitor, _, found, _ = run
    assert {d.hop for d, _ in found} == {"erp->walmart"}
    assert all(d.changed_at >= monitor.now - timedelta(seconds=HORIZON - SUSPENDED_FROM + 1) for d, _ in found)


def test_every_gap_is_detected_within_the_sla_plus_15_seconds_on_the_clock(run):
    _, _, found, _ = run
    assert found
    for d, at in found:
        assert d.detected_at == at
        assert SLA < (d.detected_at - d.changed_at).total_seconds() <= SLA + 15


def test_exports_detections_csv_trigger_chain_json_and_summary(run, tmp_path):
    monitor, ledger, found, _ = run
    n = exports.write_detections_csv(ledger, tmp_path / "detections.csv")
    rows = list(csv.DictReader(open(tmp_path / "detections.csv", newline="")))
    assert n == len(found) == len(rows)
    assert list(rows[0]) == ["hop", "sku", "order_id", "changed_at", "detected_at", "detection_s", "action",
                             "corrected_at", "correction_s"]
    assert {r["hop"] for r in rows} == {"erp->walmart"} and {r["action"] for r in rows} == {"push"}
    assert all(SLA < float(r["detection_s"]) <= SLA + 15 for r in rows)
    doc = exports.write_trigger_chain_json(monitor.chain(), tmp_path / "trigger_chain.json")
    assert json.loads((tmp_path / "trigger_chain.json").read_text()) == doc
    assert set(doc) == {"generated_at", "window", "hops"} and len(doc["hops"]) == 3
    assert set(doc["hops"][0]) == {"from", "to", "kind", "mechanism", "poll_interval_s", "latency_s", "resolution_s",
                                   "changes_seen", "followed", "missed", "state", "since", "diagnosis", "exposure"}
    summary = exports.build_summary(ledger, run_id="live/1", trigger_chain=doc, detections=n)
    assert summary["trigger_chain"] == {"hops": 3, "broken": 1, "slow": 0} and summary["detections"] == n
    assert "trigger_chain" not in exports.build_summary(ledger, run_id="live/1")
    with ledger.session() as s:
        history = queries.hop_history(s, "erp", "walmart", "inventory")
    assert [w.state for w in history] == ["broken"]


def json_ts(value):
    from omnirecon.timeutil import parse_ts
    return parse_ts(value)
