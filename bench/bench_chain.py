"""Trigger-chain benchmark: the cost of one ChainMonitor.tick() (re-learning every hop and detecting gaps) and of
chain() over N ERP changes per system, in-process (no HTTP): each ERP change of one of 2,000 SKUs is followed by
Shopify 3 s later (event) and by Amazon on a 40 s grid (poll), and 1 % of the Amazon follows are missing (gaps).

Run: .venv/bin/python bench/bench_chain.py [--changes 2000 10000 50000] [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from omnirecon.config import settings_from_dict  # noqa: E402
from omnirecon.live.chain import ChainMonitor  # noqa: E402
from omnirecon.model.change import Change  # noqa: E402

SETTINGS = settings_from_dict({"locations": [{"erp": "WH", "shopify": "L1", "amazon": "MFN"}],
                               "channels": {"shopify": {}, "amazon": {"safety_stock": 2}},
                               "propagation_sla_seconds": 60})
T0 = datetime(2026, 12, 3, tzinfo=timezone.utc)


def monitor(n: int, seed: int = 1) -> tuple[ChainMonitor, datetime]:
    rng, mon, level = random.Random(seed), ChainMonitor(SETTINGS), {}
    for i in range(n):
        t = T0 + timedelta(seconds=i * 0.5)
        sku = f"S{rng.randrange(2000)}"
        level[sku] = level.get(sku, 10_000) - 1
        mon.observe(Change("erp", "inventory", sku, t, level[sku], "WH"))
        mon.observe(Change("shopify", "inventory", sku, t + timedelta(seconds=3), level[sku], "L1"))
        if rng.random() > 0.01:
            wake = T0 + timedelta(seconds=(int(i * 0.5 // 40) + 1) * 40)
            mon.observe(Change("amazon", "inventory", sku, wake, level[sku] - 2, "MFN"))
    return mon, T0 + timedelta(seconds=n * 0.5 + 120)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, nargs="+", default=[2000, 10000, 50000])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for n in args.changes:
        mon, now = monitor(n)
        ticks, chains = [], []
        for _ in range(args.runs):
            a = time.perf_counter()
            mon.tick(now)
            ticks.append(time.perf_counter() - a)
            a = time.perf_counter()
            doc = mon.chain()
            chains.append(time.perf_counter() - a)
        spread = lambda xs: [round(min(xs), 3), round(max(xs), 3)]
        print(json.dumps({"changes_per_system": n, "runs": args.runs,
                          "tick_s": {"median": round(statistics.median(ticks), 3), "min_max": spread(ticks)},
                          "chain_s": {"median": round(statistics.median(chains), 3), "min_max": spread(chains)},
                          "hops": [(h["to"], h["mechanism"], h["poll_interval_s"], h["state"]) for h in doc["hops"]],
                          "detections": len(mon.detections)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
