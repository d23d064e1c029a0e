"""Benchmark: full inventory + listings snapshots of a generated catalogue against the local sandbox.

    .venv/bin/python bench/bench_snapshot.py --skus 20000 [--systems erp,shopify,amazon,walmart] [--json out.json]

Prints, per system and kind: rows landed, quarantined, API calls, retries and seconds (fetch + normalise +
land). Speed lives here, never in the tests.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from omnirecon import scenario as scenario_mod  # noqa: E402
from omnirecon.config import settings_from_dict  # noqa: E402
from omnirecon.hooks import hook_from_fields  # noqa: E402
from omnirecon.ledger.db import Ledger  # noqa: E402
from omnirecon.sandbox import Sandbox  # noqa: E402
from omnirecon.snapshot import snapshot_system  # noqa: E402

CONN = {"shopify": "omnirecon_shopify", "amazon": "omnirecon_amazon", "walmart": "omnirecon_walmart",
        "erp": "omnirecon_netsuite"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skus", type=int, default=5000)
    ap.add_argument("--systems", default="erp,shopify,amazon,walmart")
    ap.add_argument("--time-scale", type=float, default=0.001)
    ap.add_argument("--ledger", help="SQLAlchemy URL (default: a temporary SQLite file)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    doc = yaml.safe_load((ROOT / "include" / "scenarios" / "demo.yaml").read_text())
    doc["faults"] = []
    doc["generate"] = {"skus": args.skus, "locations": 2, "orders": 0, "drift_fraction": 0.01, "seed": 7}
    sc = scenario_mod.from_dict(doc)
    settings = settings_from_dict(sc.settings)
    results = []
    with tempfile.TemporaryDirectory() as tmp, Sandbox(sc, time_scale=args.time_scale) as sb:
        ledger = Ledger(args.ledger or f"sqlite:///{tmp}/bench.db")
        ledger.migrate()
        for system in args.systems.split(","):
            hook = hook_from_fields(system, sb.connections()[CONN[system]], time_scale=args.time_scale)
            t0 = time.monotonic()
            out = snapshot_system(system, ledger=ledger, run_id="bench", settings=settings, hook=hook,
                                  kinds=("inventory", "listings"))
            wall = time.monotonic() - t0
            for kind, snap in out.items():
                if isinstance(snap, Exception):
                    results.append({"system": system, "kind": kind, "error": str(snap)})
                    continue
                results.append({"system": system, "kind": kind, "status": snap.status, "rows": snap.rows_valid,
                                "quarantined": snap.rows_quarantined, "api_calls": snap.api_calls,
                                "retries": snap.retries, "seconds": snap.duration_s})
            results.append({"system": system, "kind": "both", "wall_seconds": round(wall, 3)})
    for r in results:
        print("  ".join(f"{k}={v}" for k, v in r.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"skus": args.skus, "results": results}, indent=2))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
