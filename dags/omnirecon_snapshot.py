"""Snapshot DAG: land complete, atomic snapshots of the ERP and every channel in the ledger."""
from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, Param, task
from airflow.timetables.trigger import CronTriggerTimetable

from omnirecon import pipeline
from omnirecon.adapters import all_adapters, systems
from omnirecon.dag_defaults import SNAPSHOT_ASSETS, default_args, runtime_option

DOC = """
### omnirecon_snapshot
Pulls a **complete** snapshot of every connected system into the omnirecon ledger: inventory per SKU and
location and listing state (point in time), and orders updated in this run's data interval (incremental, so a
backfill of a window re-pulls exactly the orders updated in it).

* One task per system and kind, in a pool sized from that API's limits (`omnirecon_netsuite`, `omnirecon_shopify`, ...).
* A snapshot becomes visible only when complete; a failed page fails the task, which retries, and leaves a
  `failed` snapshot row with the error — never a partial snapshot. Bad rows go to quarantine with a reason.
* Each system emits its Asset (`omnirecon://snapshots/<system>`); reconciliation runs when all have landed.

**When it fails:** open the failed task's log (the error names the API call and status), check the system's
connection (`omnirecon_<system>`) and the `api_events` table; the next run or a clear of the task re-pulls.
After an outage, backfill this DAG over the missed window (README "After an outage").
"""

with DAG(
    dag_id="omnirecon_snapshot",
    schedule=CronTriggerTimetable(runtime_option("snapshot_schedule"), timezone="UTC", interval=timedelta(minutes=15)),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=45),
    default_args=default_args(),
    doc_md=DOC,
    tags=["omnirecon", "snapshot"],
    params={
        "systems": Param(list(systems()), type="array", items={"type": "string", "enum": list(systems())},
                         description="Systems to snapshot"),
        "lookback_hours": Param(None, type=["null", "number"], minimum=0,
                                description="Pull orders updated in the last N hours instead of the data interval"),
        "window_start": Param(None, type=["null", "string"], format="date-time", description="Explicit orders window start (ISO-8601)"),
        "window_end": Param(None, type=["null", "string"], format="date-time", description="Explicit orders window end (ISO-8601)"),
    },
) as dag:
    for system, pool in ((a.system, a.pool) for a in all_adapters()):
        asset = Asset(SNAPSHOT_ASSETS[system])
        task(task_id=f"{system}_inventory", pool=pool, outlets=[asset],
             doc_md=f"Inventory and listing state of {system} (point in time).")(pipeline.snapshot_task)(
            system=system, kinds=["inventory", "listings"])
        task(task_id=f"{system}_orders", pool=pool,
             doc_md=f"Orders of {system} updated in the data interval.")(pipeline.snapshot_task)(
            system=system, kinds=["orders"])
