"""Benchmark: reconcile tasks under a real LocalExecutor, with and without the workers' preload.

`airflow standalone` (scheduler with LocalExecutor, dag-processor, api-server, triggerer) in a fresh Airflow home,
a ledger holding the bundled demo scenario (28 SKUs), then N runs of omnirecon_reconcile in dry-run, one after
the other. Each task process is forked from a LocalExecutor worker, and the worker from a process that imported
`omnirecon.checks.preload`. Figures are Airflow's own task durations (task_instance.duration: task start to end,
in the task process) for `reconcile_skus` and `reconcile`.

    .venv/bin/python bench/bench_executor_preload.py [--runs 5] [--configs fork forkserver]

`fork` is Airflow's default start method: workers forked from the scheduler, which imported the preload when its
Job started (airflow_plugin.SchedulerPreload); `forkserver`: workers from a forkserver that preloaded it
(`[scheduler] mp_forkserver_preload`, opt-in).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "include" / "scenarios" / "demo.yaml"
DAG = "omnirecon_reconcile"


def _prepare(work: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    import yaml
    from omnirecon_contract import scenario
    from omnirecon.ledger import Ledger
    from tests.support.ledger_from_scenario import land_scenario

    ledger = Ledger(f"sqlite:///{work / 'ledger.db'}")
    ledger.migrate()
    land_scenario(ledger, scenario.load(SCENARIO))
    settings = work / "retailer.yaml"
    settings.write_text(yaml.safe_dump(yaml.safe_load(SCENARIO.read_text()).get("settings", {}), sort_keys=False))
    return {"OMNIRECON_LEDGER_URL": f"sqlite:///{work / 'ledger.db'}", "OMNIRECON_SETTINGS": str(settings),
            "OMNIRECON_GX_DIR": str(work / "gx"), "OMNIRECON_TASK_RETRIES": "0"}


def _durations(db: Path, run_id: str) -> dict:
    with sqlite3.connect(db) as c:
        rows = c.execute("select task_id, state, duration from task_instance where dag_id=? and run_id=?",
                         (DAG, run_id)).fetchall()
    return {t: (s, d) for t, s, d in rows}


def run_config(config: str, runs: int, work: Path) -> dict:
    home = work / f"air-{config}"
    os.environ["AIRFLOW_HOME"] = str(home)
    from omnirecon import airflow_setup
    airflow_setup.init(quiet=True)
    extra = _prepare(work / config) if (work / config).mkdir(parents=True) is None else {}
    extra["AIRFLOW__SCHEDULER__MP_START_METHOD"] = config
    env = airflow_setup.airflow_env({**extra, "AIRFLOW__API__PORT": "18793",
                                     "AIRFLOW__API__BASE_URL": "http://localhost:18793",
                                     "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://localhost:18793/execution/"})
    af = airflow_setup.airflow_bin()
    log = open(work / f"standalone-{config}.log", "w")
    proc = subprocess.Popen([af, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    out = {"reconcile_skus": [], "reconcile": [], "runs": []}
    try:
        for _ in range(300):   # the dag-processor has parsed and stored the DAG
            if (home / "airflow.db").exists():
                with sqlite3.connect(home / "airflow.db") as c:
                    try:
                        if c.execute("select 1 from dag where dag_id=?", (DAG,)).fetchone():
                            break
                    except sqlite3.OperationalError:
                        pass
            time.sleep(1)
        subprocess.run([af, "dags", "unpause", DAG], env=env, check=True, capture_output=True)
        for i in range(runs + 1):
            run_id = f"bench_{config}_{i}"
            subprocess.run([af, "dags", "trigger", DAG, "-r", run_id, "-c", json.dumps({"mode": "dry-run"})],
                           env=env, check=True, capture_output=True)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                d = _durations(home / "airflow.db", run_id)
                if d.get("alert", ("",))[0] in ("success", "failed", "upstream_failed") and \
                        all(s in ("success", "failed", "upstream_failed", "skipped") for s, _ in d.values()):
                    break
                time.sleep(1)
            if i == 0:
                continue   # the first run creates the GX project and warms the page cache
            out["runs"].append({t: v for t, v in d.items()})
            for t in ("reconcile_skus", "reconcile"):
                if d.get(t, (None,))[0] == "success":
                    out[t].append(d[t][1])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--configs", nargs="+", default=["fork", "forkserver"], choices=["fork", "forkserver"])
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-preload-"))
    print(f"work dir {work}")
    for config in a.configs:
        res = run_config(config, a.runs, work)
        for t in ("reconcile_skus", "reconcile"):
            v = res[t]
            if v:
                print(f"{config:8s} {t:15s} task duration s: median {statistics.median(v):.2f} "
                      f"(min {min(v):.2f}, max {max(v):.2f}, {len(v)} runs)")
            else:
                print(f"{config:8s} {t:15s} no successful run: {res['runs']}")


if __name__ == "__main__":
    main()
