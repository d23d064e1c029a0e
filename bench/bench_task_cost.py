"""Benchmark: the fixed cost of one reconcile task on a handful of SKUs (the bundled demo scenario, 28 SKUs).

A task process does what Airflow's task runner does before our code (import the Task SDK's runner), parses the
DAG file (dags/omnirecon_reconcile.py), then reconciles to persisted findings in the shared GX project (the
reconcile DAG's `gx_dir`). Its cost beyond Airflow's own start-up is the time of a `--task` process minus the
time of an `--airflow-only` process; time both as whole processes, A/B in turn:

    .venv/bin/python bench/bench_task_cost.py --prepare /tmp/taskcost      # ledger + GX project, once
    /usr/bin/time -v .venv/bin/python bench/bench_task_cost.py --task /tmp/taskcost
    /usr/bin/time -v .venv/bin/python bench/bench_task_cost.py --airflow-only

`--task DIR --stages` prints where the time went inside the process (imports, DAG parse, reconcile stages).
`--forked DIR [--runs N]` measures what a task costs when the executor's worker has preloaded
`omnirecon.checks.preload` (LocalExecutor with the scheduler's forkserver preload, see airflow_setup.py): the
parent imports it once, then each run is a forked child timed from fork to exit.
`--docs-growth DIR [--runs N]` reconciles N times in one GX project, each run building its Data Docs as the
reconcile task does, and prints the Data Docs stage as the project's history grows.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

T0 = time.monotonic()
ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "include" / "scenarios" / "demo.yaml"


def prepare(work: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from omnirecon_contract import scenario
    from omnirecon.ledger import Ledger
    from tests.support.ledger_from_scenario import land_scenario

    work.mkdir(parents=True, exist_ok=True)
    db = work / "ledger.db"
    db.unlink(missing_ok=True)
    ledger = Ledger(f"sqlite:///{db}")
    ledger.migrate()
    land_scenario(ledger, scenario.load(SCENARIO))
    (work / "retailer.yaml").write_text(_settings_yaml())
    task(work, stages=False)   # the GX project exists from the first run on, as in production
    print(f"prepared {work}")


def _settings_yaml() -> str:
    import yaml
    return yaml.safe_dump(yaml.safe_load(SCENARIO.read_text()).get("settings", {}), sort_keys=False)


def _env(work: Path) -> None:
    os.environ["OMNIRECON_LEDGER_URL"] = f"sqlite:///{work / 'ledger.db'}"
    os.environ["OMNIRECON_SETTINGS"] = str(work / "retailer.yaml")
    os.environ["OMNIRECON_HOME"] = str(work)


def airflow_only() -> dict:
    import airflow.sdk.execution_time.task_runner  # noqa: F401  (what every task process imports first)
    return {"airflow": round(time.monotonic() - T0, 3)}


def task(work: Path, stages: bool = True, run: int = 0) -> dict:
    import importlib.util

    _env(work)
    laps = airflow_only()
    t = time.monotonic()
    spec = importlib.util.spec_from_file_location("omnirecon_reconcile_dag", ROOT / "dags" / "omnirecon_reconcile.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    laps["dag_parse"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    from omnirecon.checks.run import reconcile
    from omnirecon.config import load_settings
    from omnirecon.ledger import get_ledger
    laps["import_checks"] = round(time.monotonic() - t, 3)
    t = time.monotonic()
    ledger = get_ledger()
    run_id = f"bench/task-cost/{os.getpid()}-{run}"
    ledger.begin_run(run_id, "reconcile")
    result = reconcile(ledger, load_settings(), run_id=run_id, gx_dir=str(work / "gx"), data_docs=False)
    laps["reconcile"] = round(time.monotonic() - t, 3)
    laps.update({f"  {k}": v for k, v in result.timings.items()})
    laps["total"] = round(time.monotonic() - T0, 3)
    laps["findings"] = sum(result.counts.values())
    if stages:
        for k, v in laps.items():
            print(f"{k:16s} {v}")
    return laps


def docs_growth(work: Path, runs: int) -> None:
    """The Data Docs stage of run 1..N in one GX project (its validation results accumulate, as in production)."""
    _env(work)
    from omnirecon.checks.run import reconcile
    from omnirecon.config import load_settings
    from omnirecon.ledger import get_ledger
    ledger, settings = get_ledger(), load_settings()
    gx_dir = work / "gx-growth"
    shutil.rmtree(gx_dir, ignore_errors=True)
    docs, cpu = [], []
    for i in range(1, runs + 1):
        run_id = f"bench/docs-growth/{i}"
        ledger.begin_run(run_id, "reconcile")
        c = time.process_time()
        result = reconcile(ledger, settings, run_id=run_id, gx_dir=str(gx_dir))
        cpu.append(time.process_time() - c)
        docs.append(result.timings["data_docs"])
        if i in (1, 2, 5) or i % 10 == 0:
            last = docs[-5:]
            print(f"run {i:4d}: data_docs {docs[-1]:.3f} s (median of the last {len(last)}: "
                  f"{statistics.median(last):.3f} s), reconcile CPU {cpu[-1]:.2f} s; load {os.getloadavg()[0]:.1f}",
                  flush=True)


def forked(work: Path, runs: int) -> None:
    """Preload once, then fork a child per run (as the LocalExecutor worker forks each task) and time it."""
    t = time.monotonic()
    import airflow.sdk.execution_time.task_runner  # noqa: F401
    import omnirecon.checks.preload  # noqa: F401
    print(f"parent preload: {time.monotonic() - t:.2f} s (paid once per worker)")
    walls = []
    for i in range(runs + 1):
        t = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                task(work, stages=False, run=i)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        if i:   # the first child warms the page cache
            walls.append(time.monotonic() - t)
    print(f"forked task, fork to exit, {runs} runs: median {statistics.median(walls):.3f} s "
          f"(min {min(walls):.3f}, max {max(walls):.3f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--prepare", type=Path, metavar="DIR")
    g.add_argument("--task", type=Path, metavar="DIR")
    g.add_argument("--forked", type=Path, metavar="DIR")
    g.add_argument("--airflow-only", action="store_true")
    g.add_argument("--docs-growth", type=Path, metavar="DIR")
    p.add_argument("--stages", action="store_true", help="with --task: print the time of each stage")
    p.add_argument("--runs", type=int, default=7)
    a = p.parse_args()
    if a.prepare:
        prepare(a.prepare)
    elif a.task:
        task(a.task, stages=a.stages)
    elif a.forked:
        forked(a.forked, a.runs)
    elif a.docs_growth:
        docs_growth(a.docs_growth, a.runs)
    else:
        airflow_only()


if __name__ == "__main__":
    main()
