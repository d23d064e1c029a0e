"""World benchmark: seeded demand of N orders/s over a generated catalogue, every hop and defect of
include/scenarios/world.yaml running, in real time, on a started sandbox (all four HTTP services up).

Sustaining the load means the scheduler loop keeps up: every due action (arrival, hop attempt, poll wake)
runs within a few milliseconds of its due time for the whole run, rather than falling further behind.

Run: .venv/bin/python bench/bench_world.py [--skus 10000] [--orders-per-second 50] [--seconds 60] [--runs 3]
     [--notifications]   # + every platform's notifications subscribed (real APIs) to a local receiver and an
                         #   SQS consumer (boto3): delivery latency p50/p95 per platform
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from omnirecon_contract.scenario import from_dict, read_file
from omnirecon_contract.timeutil import parse_duration
from omnirecon_sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # the tests package (its receiver and platform clients), for --notifications


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def scenario(skus: int, per_second: float, seed: int, poll_every: str | None) -> dict:
    doc = read_file(ROOT / "include/scenarios/world.yaml")
    if poll_every:   # world.yaml polls every 90 s - 3 min: a short run would see few wakes
        for hop in doc["integration"]["hops"]:
            if hop["mechanism"] == "poll":
                hop["every"], hop["phase"] = poll_every, "0s"
    doc["name"] = "bench-world"
    doc["generate"] = {"skus": skus, "locations": 2, "seed": 7}
    doc["demand"] = {"orders_per_minute": per_second * 60, "channels": {"shopify": 0.5, "amazon": 0.3, "walmart": 0.2},
                     "skus": "GEN-*", "max_quantity": 2, "seed": seed}
    return doc


def notification_latency(sb) -> dict:
    """Delivery latency of the platforms' notifications at this load: change -> 2xx answer (Amazon: queued)."""
    return sb.notifications.latency()


def subscribe_all(sb, url: str):
    """Subscribe every platform through its own API: Shopify and Walmart webhooks and the NetSuite deployment post
    to `url`; Amazon's notifications go to an SQS queue that a boto3 consumer drains. -> stop() for the consumer."""
    import threading

    import boto3
    import requests

    from tests.support.sandbox_http import gql, lwa_token, sp, walmart_token, wm
    for topic in ("INVENTORY_LEVELS_UPDATE", "ORDERS_CREATE"):
        r = gql(sb, "mutation($t: WebhookSubscriptionTopic!, $s: WebhookSubscriptionInput!) { webhookSubscriptionCreate("
                    "topic: $t, webhookSubscription: $s) { userErrors { message } } }", {"t": topic, "s": {"uri": url}})
        assert not r.json()["data"]["webhookSubscriptionCreate"]["userErrors"], r.text
    events = [{"eventType": t, "eventVersion": "V1", "resourceName": res, "eventUrl": url, "status": "ACTIVE",
               "authDetails": {"authMethod": "HMAC", "clientSecret": "bench-secret"}}
              for t, res in (("INVENTORY_OOS", "INVENTORY"), ("PO_CREATED", "ORDER"))]
    wm(sb, "POST", "/v3/webhooks/subscriptions", walmart_token(sb), json={"events": events}).raise_for_status()
    requests.put(sb.urls["erp"] + "/_sandbox/netsuite/script-deployments/omnirecon",
                 json={"url": url, "secret": "bench-secret-0123456789"}, timeout=10).raise_for_status()
    c, x = sb.credentials, sb.connections()["omnirecon_amazon"]["extra"]
    sqs = boto3.client("sqs", endpoint_url=x["sqs_endpoint"], region_name=x["aws_region"],
                       aws_access_key_id=x["aws_access_key_id"], aws_secret_access_key=x["aws_secret_access_key"])
    queue = sqs.create_queue(QueueName="bench")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    grantless = requests.post(sb.urls["amazon"] + "/auth/o2/token", timeout=10, data={
        "grant_type": "client_credentials", "scope": "sellingpartnerapi::notifications",
        "client_id": c.amazon_client_id, "client_secret": c.amazon_client_secret}).json()["access_token"]
    dest = sp(sb, "POST", "/notifications/v1/destinations", grantless,
              json={"name": "bench", "resourceSpecification": {"sqs": {"arn": arn}}}).json()["payload"]["destinationId"]
    seller = lwa_token(sb)
    for t in ("LISTINGS_ITEM_MFN_QUANTITY_CHANGE", "ORDER_CHANGE"):
        sp(sb, "POST", f"/notifications/v1/subscriptions/{t}", seller,
           json={"payloadVersion": "1.0", "destinationId": dest}).raise_for_status()
    stop = threading.Event()

    def drain():
        while not stop.is_set():
            for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    consumer = threading.Thread(target=drain, daemon=True)
    consumer.start()
    return lambda: (stop.set(), consumer.join(timeout=5))


def run_once(args, seed: int) -> dict:
    doc = scenario(args.skus, args.orders_per_second, seed, args.poll_every)
    if args.notifications:   # the clean delivery path: no stop_after / reorder / duplicate defects
        doc["notifications"]["defects"] = []
    t = time.perf_counter()
    sb = Sandbox(from_dict(doc))
    build_s = time.perf_counter() - t
    world = sb.world
    world.lateness = collections.deque(maxlen=5_000_000)
    sb.start()
    receiver = stop_consumer = None
    if args.notifications:
        from tests.support.receiver import Receiver
        receiver = Receiver().__enter__()
        stop_consumer = subscribe_all(sb, receiver.url)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        time.sleep(args.seconds)
        with world.lock:
            backlog = sum(1 for due, *_ in world._queue if due <= world.now())
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            late = list(world.lateness)
            stats, actions, log = dict(world.demand_stats), world.actions, list(world.hop_log)
            notify = notification_latency(sb) if args.notifications else None
    finally:
        if stop_consumer:
            stop_consumer()
        sb.stop()
        if receiver:
            receiver.__exit__(None, None, None)
    latency = {h["id"]: parse_duration(h.get("latency", 0)) for h in doc["integration"]["hops"]
               if h["mechanism"] == "event"}
    carried = collections.defaultdict(list)
    for e in log:
        if e["outcome"] == "carried" and e["delay_s"] is not None:
            carried[e["hop"]].append(e["delay_s"])
    return {
        "seed": seed, "build_s": round(build_s, 2), "wall_s": round(wall, 1),
        # demand's own rate: arrivals over the world time they span (the wall-clock rate below counts the
        # arrivals still queued behind a late action at the end as missing)
        "orders_per_s": round(stats["arrivals"] / stats["last_arrival_s"], 1),
        "orders_per_wall_s": round(stats["arrivals"] / wall, 1), "accepted_per_s": round(stats["accepted"] / wall, 1),
        "actions_per_s": round(actions / wall, 1), "hop_log_entries": len(log),
        "late_ms": {"p50": round(_pct(late, 0.5) * 1e3, 2), "p95": round(_pct(late, 0.95) * 1e3, 2),
                    "p99": round(_pct(late, 0.99) * 1e3, 2), "max": round(max(late) * 1e3, 1)},
        "backlog_at_end": backlog, "cpu_per_wall": round(cpu / wall, 2),
        "event_hops_delay_s": {h: {"configured": latency[h], "p50": _pct(d, 0.5), "p95": _pct(d, 0.95), "n": len(d)}
                               for h, d in sorted(carried.items()) if h in latency},
        "outcomes": dict(sorted(collections.Counter(f"{e['hop']}:{e['outcome']}" for e in log).items())),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        **({"notifications": notify} if notify is not None else {}),
    }


def capacity(args, seed: int, world_seconds: float = 120.0) -> dict:
    """The same world under a ManualClock, as fast as it goes: world seconds per CPU second (headroom)."""
    from omnirecon_sandbox.clock import ManualClock
    s = from_dict(scenario(args.skus, args.orders_per_second, seed, args.poll_every))
    sb = Sandbox(s, clock=ManualClock(s.as_of))
    cpu = time.process_time()
    sb.world.advance(world_seconds)
    cpu = time.process_time() - cpu
    return {"world_s": world_seconds, "cpu_s": round(cpu, 2), "speedup": round(world_seconds / cpu, 1),
            "orders": sb.world.demand_stats["arrivals"], "actions": sb.world.actions,
            "orders_per_cpu_s": round(sb.world.demand_stats["arrivals"] / cpu)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skus", type=int, default=10_000)
    ap.add_argument("--orders-per-second", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--poll-every", default="10s", help="period of every poll hop (world.yaml's own: '')")
    ap.add_argument("--notifications", action="store_true", help="also measure notification delivery latency")
    args = ap.parse_args()
    results = []
    for i in range(args.runs):
        r = run_once(args, seed=11 + i)
        r["capacity"] = capacity(args, seed=11 + i)
        r["load_avg_1m"] = round(os.getloadavg()[0], 1)
        results.append(r)
        print(json.dumps(r), flush=True)
    summary = {}
    for key, get in {"orders_per_s": lambda r: r["orders_per_s"], "actions_per_s": lambda r: r["actions_per_s"],
                     "late_p95_ms": lambda r: r["late_ms"]["p95"], "late_max_ms": lambda r: r["late_ms"]["max"],
                     "cpu_per_wall": lambda r: r["cpu_per_wall"],
                     "capacity_speedup": lambda r: r["capacity"]["speedup"]}.items():
        values = [get(r) for r in results]
        summary[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    print(json.dumps({"summary": summary, "runs": len(results), "skus": args.skus,
                      "orders_per_second": args.orders_per_second, "seconds": args.seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
