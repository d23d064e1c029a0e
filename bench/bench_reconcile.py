"""Benchmark: reconcile N SKUs across the ERP and three channels (~4N inventory rows) from a SQLite ledger.

    .venv/bin/python bench/bench_reconcile.py              # 250,000 SKUs (~1M rows)
    .venv/bin/python bench/bench_reconcile.py --skus 20000 # quick check
    .venv/bin/python bench/bench_reconcile.py --runs 5     # five runs on fresh copies of one ledger

The ledger is generated in a child process (so its memory does not count), then this process reconciles it
to persisted findings with GX (Data Docs included) and prints wall time and peak RSS. The comparison stage is
also timed beside datacompy's PandasCompare on the same expected/observed rows.
Targets at 250k SKUs (issue 16): <= 8 s, <= 1.5 GB peak RSS, >= 4x faster than datacompy.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
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


def measure(db: Path, work: Path, gx_project: Path | None = None) -> dict:
    """One reconcile of the ledger in `db` in this process (a fresh one): the figures of one run."""
    import pandas  # noqa: F401  (imported by any task process anyway: not counted as GX import)
    import sqlalchemy  # noqa: F401
    t = time.perf_counter()
    from omnirecon.checks.gx_import import import_gx
    import_gx()   # as a task imports it (import cost reported separately)
    gx_import = time.perf_counter() - t

    from omnirecon.checks import compare, reconcile
    from omnirecon.checks.load import load_view
    from omnirecon.config import settings_from_dict
    from omnirecon.ledger.db import Ledger

    settings = settings_from_dict(SETTINGS)
    ledger = Ledger(f"sqlite:///{db}")
    ledger.begin_run("bench/reconcile", "reconcile")
    t, cpu = time.perf_counter(), time.process_time()
    result = reconcile(ledger, settings, run_id="bench/reconcile", gx_dir=str(gx_project or work / "gx"))
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    channels = settings.channels
    view = load_view(ledger, utcnow(), systems=["erp"] + channels)
    t = time.perf_counter()
    compare.build(view, settings, channels)
    full_compare = time.perf_counter() - t
    ours, theirs, ours_diff, theirs_diff = core_comparison_seconds(view, settings, channels)
    rows = sum(len(view.frame(s, "inventory")) for s in ["erp"] + channels)
    return {"rows": rows, "findings": len(result.findings), "counts": {k: v for k, v in result.counts.items() if v},
            "wall_s": wall, "cpu_s": cpu, "stages": result.timings, "gx_import_s": gx_import, "peak_rss_mb": peak_mb,
            "ours_s": ours, "datacompy_s": theirs, "ours_diff": ours_diff, "datacompy_diff": theirs_diff,
            "speedup": theirs / ours, "compare_build_s": full_compare, "data_docs": result.data_docs,
            "load": os.getloadavg()[0]}


def _spread(values) -> str:
    values = sorted(values)
    return f"{statistics.median(values):.2f} ({values[0]:.2f}-{values[-1]:.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skus", type=int, default=250_000)
    ap.add_argument("--drift", type=float, default=0.01, help="fraction of SKU-channel pairs that disagree")
    ap.add_argument("--ledger", metavar="DB", help="reuse a ledger generated earlier (same --skus) instead of generating")
    ap.add_argument("--runs", type=int, default=1, help="reconcile a fresh copy of the ledger this many times, "
                    "each in a fresh process; figures as median (min-max)")
    ap.add_argument("--gx-project", metavar="DIR", help="one GX project for every run, kept between runs (a "
                    "deployment's steady state: set up by an untimed first reconcile) instead of a new one per run")
    ap.add_argument("--generate-only", metavar="DB", help=argparse.SUPPRESS)
    ap.add_argument("--measure-only", metavar="DB", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate_only:
        generate(args.generate_only, args.skus, args.drift)
        return 0
    if args.measure_only:
        gx = Path(args.gx_project) if args.gx_project else None
        print(json.dumps(measure(Path(args.measure_only), Path(args.measure_only).parent, gx)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="omnirecon-bench-"))
    db = Path(args.ledger) if args.ledger else work / "ledger.db"
    if not args.ledger:
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--skus", str(args.skus), "--drift", str(args.drift),
                        "--generate-only", str(db)], check=True)
        print(f"generated {args.skus:,} SKUs x (ERP + 3 channels) in {time.perf_counter() - t:.1f}s -> {db}")
    gx_args = ["--gx-project", args.gx_project] if args.gx_project else []
    if args.gx_project and not Path(args.gx_project).exists():   # set the project up once, untimed
        shutil.copyfile(db, work / "setup.db")
        subprocess.run([sys.executable, __file__, "--measure-only", str(work / "setup.db")] + gx_args, check=True,
                       capture_output=True)
    runs = []
    for i in range(args.runs):
        run_dir = work / f"run{i}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir()
        shutil.copyfile(db, run_dir / "ledger.db")   # every run starts from the same ledger (no findings yet)
        out = subprocess.run([sys.executable, __file__, "--measure-only", str(run_dir / "ledger.db")] + gx_args,
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        runs.append(r)
        print(f"run {i + 1}: reconcile {r['wall_s']:.2f}s (CPU {r['cpu_s']:.2f}s) {r['stages']}; GX import {r['gx_import_s']:.2f}s; "
              f"peak RSS {r['peak_rss_mb']:,.0f} MB; core comparison {r['ours_s']:.2f}s vs datacompy "
              f"{r['datacompy_s']:.2f}s ({r['speedup']:.1f}x); load {r['load']:.2f}", flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    r = runs[-1]
    print(f"inventory rows: {r['rows']:,}; findings: {r['findings']:,} {r['counts']}; "
          f"differing rows: ours {r['ours_diff']:,}, datacompy {r['datacompy_diff']:,}")
    print(f"{len(runs)} run(s), median (min-max):")
    print(f"  reconcile wall time: {_spread([x['wall_s'] for x in runs])} s, CPU {_spread([x['cpu_s'] for x in runs])} s")
    for stage in r["stages"]:
        print(f"    {stage}: {_spread([x['stages'][stage] for x in runs])} s")
    print(f"  GX import (as a task imports it): {_spread([x['gx_import_s'] for x in runs])} s")
    print(f"  peak RSS: {_spread([x['peak_rss_mb'] for x in runs])} MB")
    print(f"  core comparison: omnirecon {_spread([x['ours_s'] for x in runs])} s, datacompy PandasCompare "
          f"{_spread([x['datacompy_s'] for x in runs])} s, ratio {_spread([x['speedup'] for x in runs])}x")
    print(f"  all comparison frames (compare.build): {_spread([x['compare_build_s'] for x in runs])} s")
    print(f"  load average (1 min) at the end of each run: {_spread([x['load'] for x in runs])}")
    wall = statistics.median(x["wall_s"] for x in runs)
    peak = max(x["peak_rss_mb"] for x in runs)
    speedup = statistics.median(x["speedup"] for x in runs)
    ok = wall <= 8 and peak <= 1536 and speedup >= 4
    print("targets (<=8s, <=1.5GB, >=4x datacompy):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
