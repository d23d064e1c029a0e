"""Benchmark: how reconcile wall time and peak memory grow with the catalog, unsharded and sharded, on one worker.

    .venv/bin/python bench/bench_growth.py                          # 10k, 100k, 250k, 1M SKUs; 3 runs each
    .venv/bin/python bench/bench_growth.py --sizes 10000 100000 --runs 2
    .venv/bin/python bench/bench_growth.py --plot-only bench/growth.json   # redraw bench/growth.svg

For each size a SQLite ledger (ERP + 3 channels, 1% drift: bench_reconcile.generate) is generated once, then
every run reconciles a fresh copy of it to persisted findings with GX, as one worker would: a parent process
imports what an executor's worker preloads (omnirecon.checks.preload) and forks one process per task.
Unsharded: one task (part "all", Data Docs included). Sharded: one `skus` task per shard of
`--shard-skus` SKUs (the default runtime.reconcile_shard_skus), one after the other, then the `global` task;
its wall time is the sum, its peak the largest task's. Peak RSS is the task process's `ru_maxrss` (it includes
the preloaded modules it shares with the worker). Results go to bench/growth.json and the plot to
bench/growth.svg.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _forked(fn) -> dict:
    """Run fn() in a child forked from this (preloaded) process; its result, wall time and peak RSS."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the task process
        os.close(r)
        code = 0
        try:
            t, cpu = time.perf_counter(), time.process_time()
            out = fn()
            out.update(wall_s=time.perf_counter() - t, cpu_s=time.process_time() - cpu,
                       peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        except BaseException as e:   # noqa: BLE001 (reported to the parent)
            out, code = {"error": repr(e)}, 1
        with os.fdopen(w, "w") as f:
            f.write(json.dumps(out))
        os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data)
    if "error" in out:
        raise RuntimeError(out["error"])
    return out


def one_run(db: Path, skus: int, shard_skus: int, sharded: bool) -> dict:
    from bench_reconcile import SETTINGS
    from omnirecon.checks.run import reconcile
    from omnirecon.config import settings_from_dict
    from omnirecon.ledger.db import Ledger
    from omnirecon.model.sharding import Shard, shard_count
    from omnirecon.timeutil import utcnow

    settings = settings_from_dict(SETTINGS)
    gx = str(db.parent / "gx")
    run_id, now = "bench/growth", utcnow()
    ledger = Ledger(f"sqlite:///{db}")
    ledger.begin_run(run_id, "reconcile")
    ledger.engine.dispose()   # no connection of the parent's in the forked tasks

    def task(**kw):
        def fn():
            res = reconcile(Ledger(f"sqlite:///{db}"), settings, run_id=run_id, now=now, gx_dir=gx, **kw)
            return {"findings": len(res.findings), "follow_lag": res.follow_lag}
        return fn
    if not sharded:
        r = _forked(task())
        return {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "peak_rss_mb": r["peak_rss_mb"], "tasks": 1,
                "findings": r["findings"]}
    n = shard_count(skus, shard_skus, 64)
    parts = [_forked(task(shard=Shard(i, n), part="skus", data_docs=False)) for i in range(n)]
    final = _forked(task(part="global", follow_lag=[row for p in parts for row in p["follow_lag"]]))
    tasks = parts + [final]
    return {"wall_s": sum(t["wall_s"] for t in tasks), "cpu_s": sum(t["cpu_s"] for t in tasks), "peak_rss_mb": max(t["peak_rss_mb"] for t in tasks),
            "tasks": len(tasks), "findings": sum(t["findings"] for t in tasks),
            "largest_shard_s": max(t["wall_s"] for t in parts)}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("svg")
    matplotlib.rcParams["svg.hashsalt"] = "omnirecon"   # the same numbers give the same file
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, style in (("unsharded", "o-"), ("sharded", "s--")):
        rows = sorted((r for r in results if r["mode"] == mode), key=lambda r: r["skus"])
        if not rows:
            continue
        xs = [r["skus"] for r in rows]
        a.plot(xs, [r["wall_s"]["median"] for r in rows], style, label=mode)
        a.fill_between(xs, [r["wall_s"]["min"] for r in rows], [r["wall_s"]["max"] for r in rows], alpha=0.2)
        b.plot(xs, [r["peak_rss_mb"]["median"] for r in rows], style, label=mode)
    for ax, title, unit in ((a, "reconcile wall time (one worker)", "seconds"),
                            (b, "peak RSS of the largest task", "MB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("SKUs (x 4 systems = inventory rows)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("omnirecon reconcile: growth with the catalog (bench/bench_growth.py)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 250_000, 1_000_000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--shard-skus", type=int, default=100_000)
    ap.add_argument("--modes", nargs="*", default=["unsharded", "sharded"], choices=["unsharded", "sharded"])
    ap.add_argument("--out", default=str(HERE / "growth.json"))
    ap.add_argument("--plot-only", metavar="JSON")
    args = ap.parse_args()
    svg = HERE / "growth.svg"
    if args.plot_only:
        plot(json.loads(Path(args.plot_only).read_text())["results"], svg)
        return 0

    import omnirecon.checks.preload  # noqa: F401  (what the worker holds before it forks a task)

    work = Path(tempfile.mkdtemp(prefix="omnirecon-bench-growth-"))
    results = []
    for skus in args.sizes:
        ledger = work / f"ledger-{skus}.db"
        subprocess.run([sys.executable, str(HERE / "bench_reconcile.py"), "--skus", str(skus),
                        "--generate-only", str(ledger)], check=True)
        for mode in args.modes:
            runs = []
            for i in range(args.runs):
                run_dir = work / "run"
                shutil.rmtree(run_dir, ignore_errors=True)
                run_dir.mkdir()
                shutil.copyfile(ledger, run_dir / "ledger.db")   # every run from the same ledger, no findings yet
                r = one_run(run_dir / "ledger.db", skus, args.shard_skus, mode == "sharded")
                r["load"] = os.getloadavg()[0]
                runs.append(r)
                print(f"{skus:>9,} SKUs {mode:>9} run {i + 1}: {r['wall_s']:.2f}s (CPU {r['cpu_s']:.2f}s), peak RSS {r['peak_rss_mb']:,.0f} MB, "
                      f"{r['tasks']} task(s), {r['findings']:,} findings, load {r['load']:.1f}", flush=True)

            def spread(key):
                values = [x[key] for x in runs]
                return {"median": statistics.median(values), "min": min(values), "max": max(values)}
            results.append({"skus": skus, "mode": mode, "tasks": runs[0]["tasks"], "runs": len(runs),
                            "wall_s": spread("wall_s"), "cpu_s": spread("cpu_s"), "peak_rss_mb": spread("peak_rss_mb"), "load": spread("load")})
            Path(args.out).write_text(json.dumps({"shard_skus": args.shard_skus, "results": results}, indent=1))
        ledger.unlink()
    shutil.rmtree(work, ignore_errors=True)
    plot(results, svg)
    print(f"\n| SKUs | mode | tasks | wall time, median (min-max) | CPU | peak RSS of the largest task | load |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        w, c, p, ld = r["wall_s"], r["cpu_s"], r["peak_rss_mb"], r["load"]
        print(f"| {r['skus']:,} | {r['mode']} | {r['tasks']} | {w['median']:.2f} s ({w['min']:.2f}-{w['max']:.2f}) | "
              f"{c['median']:.2f} s ({c['min']:.2f}-{c['max']:.2f}) | "
              f"{p['median']:,.0f} MB ({p['min']:,.0f}-{p['max']:,.0f}) | {ld['median']:.1f} |")
    print(f"written {args.out} and {svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
