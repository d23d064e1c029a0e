"""Reconcile DAG: GX checks over the latest snapshots, then corrections (outbox, guardrails, approvals) and alerts."""
from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, AssetAll, Param, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from omnirecon import pipeline
from omnirecon.adapters import channels
from omnirecon.dag_defaults import FINDINGS_ASSET, PENDING_APPROVALS_ASSET, SNAPSHOT_ASSETS, default_args, runtime_option

DOC = """
### omnirecon_reconcile
Turns the latest complete snapshots into **findings** (Great Expectations suites: inventory drift, orders,
freshness, mapping, listing state, low stock), each with a diagnosis (which link of the chain broke) and an
evidence package, then acts on them:

1. `plan_shards` — splits the catalog into SKU-hash shards (`reconcile_shard_skus` per shard, or the `shards`
   param); `reconcile_skus` — one mapped task per shard: the per-SKU GX suites (inventory drift, mapping,
   listing state, low stock) over that shard's rows only, so memory per task stays bounded and shards spread
   over workers; `reconcile` — freshness and the order suites, and the run's totals. Each writes diagnosis,
   evidence and the findings lifecycle (new / open / resolved) to the ledger and replaces only its own findings.
2. `plan_corrections` — every intended correction goes to the outbox first, with a stable idempotency key;
   guardrails block pushes from stale/partial/failed snapshots and mass drift; large moves wait for approval.
3. `push` — one mapped task per channel batch, through the channel's own write API, with read-back.
   Corrections above `approval_threshold_units` wait for a person in `omnirecon_approvals`.
4. `alert` — email/Slack for everything not pushed, once per finding, with reminders and resolved notices.

Runs every 15 minutes and as soon as fresh snapshots of all four systems land.
Params: `mode` (apply | dry-run), `channels`, `sku_filter`, `shards` (0: automatic).

**When it fails:** a failed shard or `reconcile` pushes nothing (corrections depend on them); clearing a
failed shard re-checks that shard only. A failed `push` map index can be
cleared safely: idempotency keys and compare-and-swap make a retry apply nothing twice.
"""

snapshots = AssetAll(*(Asset(uri) for uri in SNAPSHOT_ASSETS.values()))   # every system's snapshot landed

with DAG(
    dag_id="omnirecon_reconcile",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(runtime_option("reconcile_schedule"), timezone="UTC", interval=timedelta(minutes=15)),
        assets=snapshots),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    default_args=default_args(retries=1),
    doc_md=DOC,
    tags=["omnirecon", "reconcile", "remediation"],
    params={
        "mode": Param(runtime_option("mode"), type="string", enum=["apply", "dry-run"],
                      description="apply pushes corrections; dry-run records what it would push"),
        "channels": Param(None, type=["null", "array"], items={"type": "string", "enum": list(channels())},
                          description="Limit to these channels (empty: all configured)"),
        "sku_filter": Param(None, type=["null", "string"], description="Only SKUs matching this glob, e.g. TEE-*"),
        "shards": Param(0, type="integer", minimum=0, maximum=1024,
                        description="SKU-hash shards (mapped tasks) for the per-SKU checks; 0: one per "
                                    "reconcile_shard_skus ERP SKUs (runtime.yaml)"),
        "approve_all": Param(False, type="boolean",
                             description="Approve every correction above the threshold without asking (rehearsals only)"),
    },
) as dag:
    shards = task(task_id="plan_shards")(pipeline.plan_shards_task)()
    shard_results = task(task_id="reconcile_skus", max_active_tis_per_dagrun=8)(pipeline.reconcile_skus_task).expand(
        shard=shards)
    reconciled = task(task_id="reconcile", outlets=[Asset(FINDINGS_ASSET)])(pipeline.reconcile_task)(
        shards, shard_results)
    batches = task(task_id="plan_corrections", outlets=[Asset(PENDING_APPROVALS_ASSET)])(pipeline.plan_task)(reconciled)
    pushed = task(task_id="push", max_active_tis_per_dagrun=4)(pipeline.push_task).expand(batch=batches)
    alerted = task(task_id="alert", trigger_rule="all_done")(pipeline.alert_task)(reconciled)
    pushed >> alerted
