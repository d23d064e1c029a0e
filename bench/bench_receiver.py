"""Receiver throughput: signed Shopify deliveries over loopback from a second process, each verified and committed
to the ledger inbox before its 200. Reports notifications/s and answer latency p50/p99 per run, then the median and
spread over runs, on SQLite (synchronous=FULL) and PostgreSQL.

    python bench/bench_receiver.py [--n 3000] [--clients 32] [--runs 5] [--pg URL]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SECRET = "bench-secret"

CLIENT = r'''
import base64, hashlib, hmac, json, sys, time, threading, requests
url, n, clients, secret, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
lat, codes, lock = [], {}, threading.Lock()
def work(k):
    s = requests.Session()
    for i in range(k, n, clients):
        body = json.dumps({"inventory_item_id": i, "location_id": 1, "available": i % 9}).encode()
        sig = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        h = {"X-Shopify-Hmac-Sha256": sig, "X-Shopify-Topic": "inventory_levels/update",
             "X-Shopify-Webhook-Id": f"{tag}-{i}", "Content-Type": "application/json"}
        t = time.perf_counter()
        try:
            code = s.post(url, data=body, headers=h, timeout=30).status_code
        except requests.RequestException as e:
            code = type(e).__name__
        d = time.perf_counter() - t
        with lock:
            lat.append(d); codes[code] = codes.get(code, 0) + 1
t0 = time.perf_counter()
ts = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
[t.start() for t in ts]; [t.join() for t in ts]
wall = time.perf_counter() - t0
lat.sort()
print(json.dumps({"wall": wall, "codes": codes, "p50": lat[len(lat)//2], "p99": lat[int(len(lat)*0.99)]}))
'''


def one_run(ledger_url: str, n: int, clients: int) -> dict:
    from omnirecon.ledger import Ledger
    from omnirecon.live.inbox import Inbox
    from omnirecon.live.receiver import Receiver
    from omnirecon.adapters.shopify.notifications import ShopifySource
    ledger = Ledger(ledger_url)
    ledger.migrate()
    with Receiver(Inbox(ledger), {"shopify": ShopifySource(SECRET)}) as rec:
        out = subprocess.run([sys.executable, "-c", CLIENT, rec.url + "/notifications/shopify", str(n), str(clients),
                              SECRET, uuid.uuid4().hex[:8]], capture_output=True, text=True, check=True)
        res = json.loads(out.stdout)
        stored = rec.counts["stored"]
    ledger.engine.dispose()
    res["rate"] = n / res["wall"]
    assert res["codes"] == {"200": n} and stored == n, (res, stored)
    return res


def summarise(name: str, runs: list[dict]) -> None:
    rates = [r["rate"] for r in runs]
    p50 = [r["p50"] * 1000 for r in runs]
    p99 = [r["p99"] * 1000 for r in runs]
    print(f"{name}: {statistics.median(rates):.0f} notifications/s (min {min(rates):.0f}, max {max(rates):.0f}); "
          f"p50 {statistics.median(p50):.1f} ms, p99 {statistics.median(p99):.1f} ms "
          f"(p99 min {min(p99):.1f}, max {max(p99):.1f}) over {len(runs)} runs", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pg", default=None, help="also on this PostgreSQL server (a fresh database per run)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        summarise("SQLite", [one_run(f"sqlite:///{Path(tmp) / f'l{i}.db'}", a.n, a.clients) for i in range(a.runs)])
    if a.pg:
        import sqlalchemy as sa
        admin = sa.create_engine(a.pg, isolation_level="AUTOCOMMIT")
        runs = []
        for _ in range(a.runs):
            name = f"bench_receiver_{uuid.uuid4().hex[:8]}"
            with admin.connect() as c:
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
            try:
                runs.append(one_run(a.pg.rsplit("/", 1)[0] + f"/{name}", a.n, a.clients))
            finally:
                with admin.connect() as c:
                    c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        summarise("PostgreSQL", runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
