"""Benchmark: a 1,000,000-SKU catalog reconciled by the real omnirecon_reconcile DAG on the production topology
(Airflow metadata + ledger on PostgreSQL, CeleryExecutor on Redis, api-server, scheduler, dag-processor and
Celery workers as processes), with one and with two workers; and unsharded for contrast.

    .venv/bin/python bench/bench_shards.py                       # 1M SKUs: unsharded, 1 worker, 2 workers
    .venv/bin/python bench/bench_shards.py --skus 50000 --shard-skus 10000 --configs 1:auto 2:auto   # quick
    .venv/bin/python bench/bench_shards.py --configs 1:1 1:auto --preload off on --rounds 3 --curve   # preload

The ledger (ERP inventory + items, three channels' inventory, 2,000 orders per channel; 1% drift) is written
with COPY into a fresh PostgreSQL database (not timed). Each configuration is a fresh Airflow topology running
one reconcile in dry-run (corrections are planned and recorded, nothing is pushed). Every shard task records
its own peak RSS (`ru_maxrss` of the task process), CPU seconds and wall time in the run's ledger stats; the DAG run's wall
time comes from Airflow's REST API. Needs PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379.
"""
from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # the tests package (its topology harness)

from omnirecon.timeutil import utcnow  # noqa: E402

SETTINGS = {
    "tolerance_units": 0,
    "locations": [{"erp": "WH-EAST", "shopify": "gid://shopify/Location/1001", "walmart_ship_node": "10001", "amazon": "MFN"}],
    "channels": {"shopify": {"safety_stock": 0}, "amazon": {"safety_stock": 2}, "walmart": {"safety_stock": 1}},
    "max_correction_fraction": 0.5,
}
SAFETY = {"shopify": 0, "amazon": 2, "walmart": 1}
LOCATION = {"shopify": "gid://shopify/Location/1001", "amazon": "MFN", "walmart": "10001"}
ORDERS_PER_CHANNEL = 2000


def _copy(conn, table: str, columns: list[str], rows) -> int:
    """COPY rows (tuples of already formatted text fields) in chunks of 200k."""
    cur = conn.connection.driver_connection.cursor()
    n, buf = 0, io.StringIO()

    def flush():
        buf.seek(0)
        cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buf)
        buf.seek(0)
        buf.truncate()
    for row in rows:
        buf.write("\t".join(row))
        buf.write("\n")
        n += 1
        if n % 200_000 == 0:
            flush()
    flush()
    cur.close()
    return n


def generate(url: str, skus: int, drift: float, seed: int = 7) -> dict:
    """ERP + 3 channel snapshots straight into a PostgreSQL ledger with COPY. Returns row counts."""
    from sqlalchemy import insert

    from omnirecon.ledger import models as m
    from omnirecon.ledger.db import Ledger
    from omnirecon.model.sharding import sku_bucket

    rnd = random.Random(seed)
    ledger = Ledger(url)
    ledger.migrate()
    now = utcnow()
    ts = (now - timedelta(hours=2)).isoformat()
    ledger.begin_run("bench/snapshot", "snapshot")
    names = [f"SKU-{i:07d}" for i in range(skus)]
    buckets = [str(sku_bucket(n)) for n in names]
    on_hand = [rnd.randint(0, 200) for _ in range(skus)]
    committed = [min(h, rnd.randint(0, 5)) for h in on_hand]
    counts = {}
    with ledger.engine.begin() as conn:
        def snapshot(system, kind, n):
            return conn.execute(insert(m.Snapshot).values(
                run_id="bench/snapshot", system=system, kind=kind, status="complete", started_at=now, fetched_at=now,
                finished_at=now, rows_in=n, rows_valid=n)).inserted_primary_key[0]
        sid = str(snapshot("erp", "inventory", skus))
        counts["erp inventory"] = _copy(conn, "inventory_rows", ["snapshot_id", "system", "sku", "sku_bucket", "location",
                                                                  "available", "on_hand", "committed", "updated_at", "ref"],
                                        ((sid, "erp", names[i], buckets[i], "WH-EAST", str(on_hand[i] - committed[i]),
                                          str(on_hand[i]), str(committed[i]), ts, "{}") for i in range(skus)))
        sid = str(snapshot("erp", "listings", skus))
        counts["erp items"] = _copy(conn, "listing_rows", ["snapshot_id", "system", "sku", "sku_bucket", "state",
                                                           "item_type", "is_inactive"],
                                    ((sid, "erp", names[i], buckets[i], "active", "InvtPart", "f") for i in range(skus)))
        for ch in ("shopify", "amazon", "walmart"):
            sid = str(snapshot(ch, "inventory", skus))

            def rows(ch=ch, sid=sid):
                for i in range(skus):
                    qty = max(0, on_hand[i] - committed[i] - SAFETY[ch])
                    if rnd.random() < drift:
                        qty = max(0, qty + rnd.choice([-1, 1]) * rnd.randint(1, 60))
                    yield (sid, ch, names[i], buckets[i], LOCATION[ch], str(qty), ts, '{"item": "%d"}' % i)
            counts[f"{ch} inventory"] = _copy(conn, "inventory_rows", ["snapshot_id", "system", "sku", "sku_bucket",
                                                                       "location", "available", "updated_at", "ref"], rows())
        erp_orders = []
        for ch in ("shopify", "amazon", "walmart"):
            sid = str(snapshot(ch, "orders", ORDERS_PER_CHANNEL))
            rows = []
            for k in range(ORDERS_PER_CHANNEL):
                oid, sku = f"{ch}-{k}", names[rnd.randrange(skus)]
                rows.append((sid, ch, oid, ch, "acknowledged", ts, ts, json.dumps([{"sku": sku, "quantity": 1, "shipped": 0}])))
                erp_orders.append((oid, ch, sku))
            counts[f"{ch} orders"] = _copy(conn, "order_rows", ["snapshot_id", "system", "order_id", "channel", "status",
                                                                "created_at", "updated_at", "lines"], rows)
        sid = str(snapshot("erp", "orders", len(erp_orders)))
        counts["erp orders"] = _copy(conn, "order_rows", ["snapshot_id", "system", "order_id", "channel", "status",
                                                          "created_at", "updated_at", "lines"],
                                     ((sid, "erp", o, ch, "acknowledged", ts, ts,
                                       json.dumps([{"sku": sku, "quantity": 1, "shipped": 0}])) for o, ch, sku in erp_orders))
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    ledger.engine.dispose()
    return counts


def run_config(workers: int, shards: int, url_ledger: str, pg_metadata_url: str, broker: str, work: Path,
               preload: bool = True) -> dict:
    """One fresh topology with `workers` Celery workers (one task slot each); one reconcile run in dry-run.
    preload=False: the workers import nothing of omnirecon before forking (Celery `imports` emptied)."""
    import pytest

    import tests.support.celery_topology as cs
    from omnirecon_contract import scenario
    from omnirecon.ledger.db import Ledger

    worker = ["celery", "worker", "--concurrency", "1", "--skip-serve-logs"]
    cs.PROCESSES = {**{k: v for k, v in cs.PROCESSES.items() if not k.startswith("worker")},
                    **{f"worker{'' if i == 0 else i + 1}": worker + ["--celery-hostname", f"bench{i + 1}@%h"]
                       for i in range(workers)}}
    sc = scenario.from_dict({"version": 1, "name": "bench", "as_of": utcnow().isoformat(),
                             "settings": SETTINGS, "erp": {"items": []}})
    with pytest.MonkeyPatch.context() as mp, cs.CeleryTopology(
            work, mp, metadata_url=pg_metadata_url, broker_url=broker, ledger_url=url_ledger, scenario_obj=sc,
            env={"OMNIRECON_MODE": "dry-run", "AIRFLOW__CORE__PARALLELISM": "8",
                 "OMNIRECON_RUNTIME": str(work / "runtime.yaml"),
                 **({} if preload else {"AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": "{}"})}) as topo:
        topo.api.wait(lambda: all(cs.tail(topo.logs[w], 10**7).count(cs.WORKER_READY) for w in topo.logs
                                  if w.startswith("worker")), 180, "every worker ready")
        import psutil
        pool = [c for w in topo.procs if w.startswith("worker") for c in psutil.Process(topo.procs[w].pid).children()
                if "ForkPoolWorker" in " ".join(c.cmdline())]
        preloaded = [any("/pandas/_libs/" in m.path for m in c.memory_maps()) for c in pool]
        print(f"preload={'on' if preload else 'off'}: pandas mapped in the pool processes before any task: {preloaded}",
              flush=True)
        topo.api.deadline = time.monotonic() + 3 * 3600
        t0 = time.monotonic()
        run_id = topo.api.run_dag("omnirecon_reconcile", {"mode": "dry-run", "shards": shards})
        wall = time.monotonic() - t0
        tis = topo.api.task_instances("omnirecon_reconcile", run_id)
        dr = topo.api.get(f"/api/v2/dags/omnirecon_reconcile/dagRuns/{run_id}")
        per_worker = {w: sum(1 for line in cs.tail(log, 10**8).splitlines() if "Executing workload in Celery" in line
                             and "task_id='reconcile_skus'" in line) for w, log in topo.logs.items() if w.startswith("worker")}
    led = Ledger(url_ledger)
    with led.session() as s:
        from omnirecon.ledger import models as m
        stats = s.get(m.Run, f"omnirecon_reconcile/{run_id}").stats
    led.engine.dispose()
    durations = {}
    for ti in tis:
        durations.setdefault(ti["task_id"], []).append(ti["duration"] or 0)
    # the reconcile phase: from plan_shards' start to the end of `reconcile` (findings of every shard persisted)
    when = {(ti["task_id"], ti["map_index"]): ti for ti in tis}
    phase = (datetime.fromisoformat(when[("reconcile", -1)]["end_date"])
             - datetime.fromisoformat(when[("plan_shards", -1)]["start_date"])).total_seconds()
    return {"workers": workers, "shards": shards, "preload": preload, "run_wall_s": round(wall, 1), "reconcile_phase_s": round(phase, 1),
            "dag_run": dr, "stats": stats,
            "task_seconds": {k: round(sum(v), 1) for k, v in durations.items()}, "shards_per_worker": per_worker}


def one_shard(url: str, shards: int) -> dict:
    """In a fresh process: import what a task imports, then reconcile shard 1 of `shards`; its peak RSS."""
    import subprocess
    code = (f"import json, resource, sys, time; sys.path.insert(0, {str(ROOT / 'bench')!r}); import bench_shards as b\n"
            "import great_expectations, airflow.sdk  # noqa\n"
            "from omnirecon.checks.run import reconcile; from omnirecon.config import settings_from_dict\n"
            "from omnirecon.ledger.db import Ledger; from omnirecon.model.sharding import Shard\n"
            f"led = Ledger({url!r}); led.begin_run('bench/one-shard', 'reconcile')\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; t = time.monotonic()\n"
            f"r = reconcile(led, settings_from_dict(b.SETTINGS), run_id='bench/one-shard', shard=Shard(0, {shards}), "
            "part='skus', data_docs=False)\n"
            "print(json.dumps({'skus': r.skus_checked, 'seconds': round(time.monotonic() - t, 1), 'imports_mb': round(base),"
            " 'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def open_findings(url: str, shards: int) -> dict:
    """In a fresh process: one reconcile of the whole catalog in `shards` shards + global, its findings marked
    alerted (steady operation: the timed configurations then find the catalog's findings already open and
    alerted, as every run after the first does)."""
    import subprocess
    code = (f"import json, sys, time; sys.path.insert(0, {str(ROOT / 'bench')!r}); import bench_shards as b\n"
            "from omnirecon.checks.run import reconcile_in_shards; from omnirecon.config import settings_from_dict\n"
            "from omnirecon.ledger.db import Ledger\n"
            f"led = Ledger({url!r}); led.begin_run('bench/open-findings', 'reconcile'); t = time.monotonic()\n"
            f"r = reconcile_in_shards(led, settings_from_dict(b.SETTINGS), run_id='bench/open-findings', shards={shards})\n"
            # their alerts went out, as in steady operation (else the first run's alert task sends ~30,000: minutes)
            "from sqlalchemy import text; from omnirecon.timeutil import utcnow\n"
            "with led.engine.begin() as c: c.execute(text(\"UPDATE finding_states SET alerts_sent = 1, last_alert_at = :t "
            "WHERE status = 'open'\"), {'t': utcnow()})\n"
            "print(json.dumps({'findings': len(r.findings), 'seconds': round(time.monotonic() - t, 1)}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"opening the findings failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skus", type=int, default=1_000_000)
    ap.add_argument("--drift", type=float, default=0.01)
    ap.add_argument("--shard-skus", type=int, default=100_000, help="runtime.reconcile_shard_skus")
    ap.add_argument("--configs", nargs="*", default=["1:1", "1:auto", "2:auto"],
                    help="WORKERS:SHARDS pairs (SHARDS auto = one per --shard-skus SKUs)")
    ap.add_argument("--preload", nargs="*", default=["on"], choices=["on", "off"],
                    help="run each configuration with the workers' preload on and/or off (in turn)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat every configuration (in turn) this many times")
    ap.add_argument("--curve", nargs="*", type=int, default=[1, 4, 10, 20],
                    help="also reconcile one shard of each of these splits in a fresh process (peak RSS vs shard size)")
    ap.add_argument("--open-findings", action="store_true",
                    help="before the timed configurations, open the catalog's findings with one untimed reconcile "
                         "(so the first configuration, like every later one, runs on a ledger in steady operation)")
    args = ap.parse_args()
    import tempfile

    from tests.support.celery_topology import redis_broker
    from tests.support.services import temp_pg_database
    from omnirecon.model.sharding import shard_count

    auto = shard_count(args.skus, args.shard_skus, 64)
    results = []
    with temp_pg_database("omnirecon_bench_ledger") as ledger_url, redis_broker("redis://127.0.0.1:6379/0") as broker:
        t = time.perf_counter()
        counts = generate(ledger_url, args.skus, args.drift)
        print(f"generated {sum(counts.values()):,} rows ({args.skus:,} SKUs) in {time.perf_counter() - t:.1f}s: {counts}",
              flush=True)
        for n in args.curve:
            r = one_shard(ledger_url, n)
            print(f"one shard of {n}: {r['skus']:,} SKUs in {r['seconds']}s, peak RSS {r['peak_rss_mb']:,} MB "
                  f"(after imports {r['imports_mb']:,} MB)", flush=True)
        if args.open_findings:
            r = open_findings(ledger_url, auto)
            print(f"opened {r['findings']:,} findings in {r['seconds']}s (untimed)", flush=True)
        runs = [(config, p == "on") for _ in range(args.rounds) for p in args.preload for config in args.configs]
        for config, preload in runs:
            workers, shards = config.split(":")
            shards = auto if shards == "auto" else int(shards)
            work = Path(tempfile.mkdtemp(prefix="omnirecon-bench-shards-"))
            (work / "runtime.yaml").write_text(f"reconcile_shard_skus: {args.shard_skus}\n")
            with temp_pg_database("omnirecon_bench_airflow") as metadata_url:
                r = run_config(int(workers), shards, ledger_url, metadata_url, broker, work, preload)
            shutil.rmtree(work, ignore_errors=True)
            results.append(r)
            st = r["stats"]
            peaks = [p["peak_rss_mb"] for p in st["shards"]]
            cpu = sum(p.get("cpu_s", 0) for p in st["shards"])
            print(f"workers={r['workers']} shards={r['shards']} preload={'on' if preload else 'off'}: "
                  f"shard task processes' CPU {cpu:.1f}s summed; reconcile phase {r['reconcile_phase_s']}s, "
                  f"DAG run {r['run_wall_s']}s; global reconcile task peak RSS {st.get('peak_rss_mb')} MB; "
                  f"(reconcile_skus tasks {r['task_seconds'].get('reconcile_skus')}s summed); "
                  f"peak RSS per shard task max {max(peaks):,.0f} MB (min {min(peaks):,.0f}); "
                  f"SKUs {st['skus_checked']:,}; findings {sum(st['findings'].values()):,}; "
                  f"tasks {r['task_seconds']}; shards per worker {r['shards_per_worker']}", flush=True)
    print(json.dumps([{k: v for k, v in r.items() if k != "dag_run"} for r in results], indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
