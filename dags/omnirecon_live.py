"""Live DAG: change-driven runs, woken by the platforms' own change notifications landing in the ledger inbox."""
from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, AssetWatcher, Param, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from omnirecon import pipeline
from omnirecon.dag_defaults import INBOX_ASSET, PENDING_APPROVALS_ASSET, default_args, runtime_option
from omnirecon.live.trigger import InboxTrigger

DOC = """
### omnirecon_live
The event-driven path on top of the scheduled safety net (`omnirecon_snapshot` + `omnirecon_reconcile`).
The notification receiver (`omnirecon receiver`) and the Amazon SQS consumer store every verified change
notification in the ledger inbox before they acknowledge it; an `AssetWatcher` around `InboxTrigger` (in the
triggerer) updates the `omnirecon://ledger/inbox` Asset while the inbox holds notifications no run has taken,
and each update starts a run of this DAG (and a safety tick every 5 minutes, so a gap whose deadline passes with
nothing new arriving is still found):

1. `watch` — takes every unprocessed notification (several wake-ups folded into one run lose nothing), feeds the
   trigger-chain monitor (which also reads Walmart, which sends no notification for a quantity change above
   zero), waits for a propagation deadline (`propagation_sla_seconds`) only if it is at most 30 s ahead and
   stops as soon as it finds a channel newly offering more than the ERP covers (a later deadline is the next
   run's: the trigger wakes it 25 s before),
   then persists each hop that did not follow as a `trigger_gap` finding, and each channel offering more than
   the ERP can cover (a count moved above it, or stock sold elsewhere that the ERP has not recorded within the
   SLA) as an `inventory_drift` finding, with the push evidence where omnirecon may close the gap itself, and
   writes `trigger_chain.json` and `detections.csv` to the reports folder. Notifications are marked processed
   only after that, so a failed run leaves them to the next (the trigger rings again for work left
   unprocessed).
2. `plan_corrections` / `push` / `alert` — the same outbox, guardrails, approvals, compare-and-swap or re-read
   and read-back as the scheduled reconcile. Up to four runs may be active: the next run's `watch` starts while
   earlier runs' pushes still read back (one `watch` and one `plan_corrections` at a time across runs), and a SKU whose
   correction is still on its way is not pushed again. A gap the retailer's integration keeps re-opening after omnirecon
   closed it (`integration_fight_rounds` in an hour) is alerted, naming the hop, instead of pushed again.

**When it fails:** clear it; nothing was marked processed, corrections are idempotent. While it is paused,
notifications wait in the ledger (the trigger rings again once it is unpaused).
"""

inbox = Asset(INBOX_ASSET, watchers=[AssetWatcher(name="omnirecon_inbox_watcher", trigger=InboxTrigger())])

with DAG(
    dag_id="omnirecon_live",
    # every wake-up of the inbox watcher, and every 5 minutes as a safety tick (deadlines pass with nothing new)
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/5 * * * *", timezone="UTC", interval=timedelta(minutes=5)), assets=inbox),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # runs' pushes may still read back (Amazon applies a patch seconds after accepting it) while the next run
    # watches: detection never waits for a push. Watches and plans run one at a time, in order, so more runs
    # only queue more watches: with 2 slots runs still pushing held the next watch 30-50 s; with 8, runs queued
    # behind each other's watches (wake-up -> watch 50 s median); 4 lets wake-ups fold into the next run
    # (bench/README.md)
    max_active_runs=4,
    dagrun_timeout=timedelta(minutes=30),
    default_args=default_args(retries=1, retry_delay=timedelta(seconds=10), execution_timeout=timedelta(minutes=10)),
    doc_md=DOC,
    tags=["omnirecon", "live", "remediation"],
    params={
        "mode": Param(runtime_option("mode"), type="string", enum=["apply", "dry-run"],
                      description="apply pushes corrections; dry-run records what it would push"),
    },
) as dag:
    watched = task(task_id="watch", max_active_tis_per_dag=1)(pipeline.live_task)()
    batches = task(task_id="plan_corrections", max_active_tis_per_dag=1,
                   outlets=[Asset(PENDING_APPROVALS_ASSET)])(pipeline.plan_task)(watched)
    pushed = task(task_id="push", max_active_tis_per_dagrun=4)(pipeline.push_task).expand(batch=batches)
    alerted = task(task_id="alert", trigger_rule="all_done")(pipeline.alert_task)(watched)
    pushed >> alerted
