"""Benchmark: reconcile N SKUs across the ERP and three channels (~4N inventory rows) from a SQLite ledger.

    .venv/bin/python bench/bench_reconcile.py              # 250,000 SKUs (~1M rows)
    .venv/bin/python bench/bench_reconcile.py --skus 20000 # quick check

The ledger is generated in a child process (so its memory does not count), then this process reconciles it
to persisted findings with GX (Data Docs included) and prints wall time and peak RSS. The comparison stage is
also timed beside datacompy's PandasCompare on the same expected/observed rows.
Targets at 250k SKUs: <= 15 s, <= 2 GB peak RSS, >= 3x faster than datacompy.
"""
from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from omnirecon.timeutil import utcnow

SETTINGS = {
    "tolerance_units": 0,
    "locations": [{"erp": "WH-EAST", "shopify": "gid://shopify/Location/1001", "walmart_ship_node": "10001", "amazon": "MFN"}],
    "channels": {"shopify": {"safety_stock": 0}, "amazon": {"safety_stock": 2}, "walmart": {"safety_stock": 1}},
}
SAFETY = {"shopify": 0, "amazon": 2, "walmart": 1}
LOCATION = {"shopify": "gid://shopify/Location/1001", "amazon": "MFN", "walmart": "10001"}
ORDERS_PER_CHANNEL = 2000


def generate(db: str, skus: int, drift: float, seed: int = 7) -> None:
    """Write ERP + 3 channel snapshots straight into the ledger (bulk SQL; generation is not timed)."""
    from sqlalchemy import insert

    from omnirecon.ledger import models as m
    from omnirecon.ledger.db import Ledger
    from omnirecon.model.sharding import sku_bucket

    rnd = random.Random(seed)
    ledger = Ledger(f"sqlite:///{db}")
    ledger.migrate()
    now = utcnow()
    ts = (now - timedelta(hours=2)).isoformat(sep=" ")
    ledger.begin_run("bench/snapshot", "snapshot")

    def snapshot(system, kind, n):
        res = conn.execute(insert(m.Snapshot).values(run_id="bench/snapshot", system=system, kind=kind, status="complete",
                                                     started_at=now, fetched_at=now, finished_at=now, rows_in=n, rows_valid=n))
        return res.inserted_primary_key[0]

    on_hand = [rnd.randint(0, 200) for _ in range(skus)]
    committed = [min(h, rnd.randint(0, 5)) for h in on_hand]
    names = [f"SKU-{i:07d}" for i in range(skus)]
    buckets = [sku_bucket(n) for n in names]
    with ledger.engine.begin() as conn:
        sid = snapshot("erp", "inventory", skus)
        conn.exec_driver_sql(
            "INSERT INTO inventory_rows (snapshot_id, system, sku, sku_bucket, location, available, on_hand, committed, "
            "updated_at, ref) VALUES (?, 'erp', ?, ?, 'WH-EAST', ?, ?, ?, ?, '{}')",
            [(sid, names[i], buckets[i], on_hand[i] - committed[i], on_hand[i], committed[i], ts) for i in range(skus)])
        sid = snapshot("erp", "listings", skus)
        conn.exec_driver_sql("INSERT INTO listing_rows (snapshot_id, system, sku, sku_bucket, state, item_type, is_inactive) "
                             "VALUES (?, 'erp', ?, ?, 'active', 'InvtPart', 0)", list(zip([sid] * skus, names, buckets)))
        for ch in ("shopify", "amazon", "walmart"):
            sid = snapshot(ch, "inventory", skus)
            rows = []
            for i in range(skus):
                qty = max(0, on_hand[i] - committed[i] - SAFETY[ch])
                if rnd.random() < drift:
                    qty = max(0, qty + rnd.choice([-1, 1]) * rnd.randint(1, 60))
                rows.append((sid, ch, names[i], buckets[i], LOCATION[ch], qty, ts, '{"item": "%d"}' % i))
            conn.exec_driver_sql("INSERT INTO inventory_rows (snapshot_id, system, sku, sku_bucket, location, available, "
                                 "updated_at, ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        erp_orders = []
        for ch in ("shopify", "amazon", "walmart"):
            sid = snapshot(ch, "orders", ORDERS_PER_CHANNEL)
            rows = []
            for k in range(ORDERS_PER_CHANNEL):
                oid, sku = f"{ch}-{k}", names[rnd.randrange(skus)]
                rows.append((sid, ch, oid, ch, "acknowledged", ts, ts, f'[{{"sku": "{sku}", "quantity": 1, "shipped": 0}}]'))
                erp_orders.append((oid, ch, sku))
            conn.exec_driver_sql("INSERT INTO order_rows (snapshot_id, system, order_id, channel, status, created_at, "
                                 "updated_at, lines) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        sid = snapshot("erp", "orders", len(erp_orders))
        conn.exec_driver_sql("INSERT INTO order_rows (snapshot_id, system, order_id, channel, status, created_at, updated_at, "
                             "lines) VALUES (?, 'erp', ?, ?, 'acknowledged', ?, ?, ?)",
                             [(sid, o, ch, ts, ts, f'[{{"sku": "{sku}", "quantity": 1, "shipped": 0}}]') for o, ch, sku in erp_orders])


def core_comparison_seconds(view, settings, channels) -> tuple[float, float, int, int]:
    """The core comparison (ERP-implied vs channel quantity joined on channel, SKU, location; rows that differ),
    ours (the int64-key join the drift frame uses) and datacompy's PandasCompare, on the same rows."""
    import datacompy
    import pandas as pd

    from omnirecon.checks import expected as ex
    from omnirecon.checks.compare import join_on_keys
    base = ex.expected_base(view.frame("erp", "inventory"), settings, channels)
    exp = base[["channel", "sku", "channel_location", "base"]].rename(columns={"channel_location": "location", "base": "qty"})
    obs = pd.concat([view.frame(c, "inventory")[["sku", "location", "available"]].assign(channel=c) for c in channels],
                    ignore_index=True).rename(columns={"available": "qty"})
    keys = ["channel", "sku", "location"]
    t = time.perf_counter()
    joined = join_on_keys(obs, exp.rename(columns={"qty": "expected"}), keys)
    ours_diff = int(((joined["qty"] - joined["expected"].fillna(0)).abs() > 0).sum())
    ours = time.perf_counter() - t
    t = time.perf_counter()
    cmp = datacompy.PandasCompare(exp, obs, join_columns=keys)
    theirs_diff = len(cmp.all_mismatch())
    theirs = time.perf_counter() - t
    return ours, theirs, ours_diff, theirs_diff


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skus", type=int, default=250_000)
    ap.add_argument("--drift", type=float, default=0.01, help="fraction of SKU-channel pairs that disagree")
    ap.add_argument("--ledger", metavar="DB", help="reuse a ledger generated earlier (same --skus) instead of generating")
    ap.add_argument("--generate-only", metavar="DB", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate_only:
        generate(args.generate_only, args.skus, args.drift)
        return 0

    work = Path(tempfile.mkdtemp(prefix="omnirecon-bench-"))
    db = Path(args.ledger) if args.ledger else work / "ledger.db"
    if not args.ledger:
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--skus", str(args.skus), "--drift", str(args.drift),
                        "--generate-only", str(db)], check=True)
        print(f"generated {args.skus:,} SKUs x (ERP + 3 channels) in {time.perf_counter() - t:.1f}s -> {db}")

    import pandas  # noqa: F401  (imported by any task process anyway: not counted as GX import)
    import sqlalchemy  # noqa: F401
    t = time.perf_counter()
    import great_expectations  # noqa: F401  (import cost reported separately)
    gx_import = time.perf_counter() - t

    from omnirecon.checks import compare, reconcile
    from omnirecon.checks.load import load_view
    from omnirecon.config import settings_from_dict
    from omnirecon.ledger.db import Ledger

    settings = settings_from_dict(SETTINGS)
    ledger = Ledger(f"sqlite:///{db}")
    ledger.begin_run("bench/reconcile", "reconcile")
    t = time.perf_counter()
    result = reconcile(ledger, settings, run_id="bench/reconcile", gx_dir=str(work / "gx"))
    wall = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    channels = settings.channels
    view = load_view(ledger, utcnow(), systems=["erp"] + channels)
    t = time.perf_counter()
    compare.build(view, settings, channels)
    full_compare = time.perf_counter() - t
    ours, theirs, ours_diff, theirs_diff = core_comparison_seconds(view, settings, channels)

    rows = sum(len(view.frame(s, "inventory")) for s in ["erp"] + channels)
    print(f"inventory rows: {rows:,}; findings: {len(result.findings):,} {dict((k, v) for k, v in result.counts.items() if v)}")
    print(f"reconcile wall time: {wall:.2f}s (stages {result.timings}); GX import beforehand {gx_import:.2f}s")
    # a reconcile task is a fresh process: it pays the GX import too (pandas/SQLAlchemy are imported anyway)
    print(f"reconcile task including the GX import: {wall + gx_import:.2f}s")
    print(f"peak RSS: {peak_mb:,.0f} MB")
    print(f"core comparison (join + differing rows): omnirecon {ours:.2f}s ({ours_diff:,} differ) vs datacompy "
          f"PandasCompare {theirs:.2f}s ({theirs_diff:,} differ) -> {theirs / ours:.1f}x")
    print(f"all comparison frames (every check, compare.build): {full_compare:.2f}s")
    print(f"data docs: {result.data_docs}")
    ok = wall <= 15 and peak_mb <= 2048 and theirs / ours >= 3
    print("targets (<=15s, <=2GB, >=3x datacompy):", "met" if ok else "NOT met",
          f"(with the GX import: {'within' if wall + gx_import <= 15 else 'over'} 15s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
