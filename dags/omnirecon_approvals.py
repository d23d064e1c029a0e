"""Approvals DAG: corrections above the approval threshold wait for a person (Airflow human-in-the-loop)."""
from datetime import datetime, timedelta

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import DAG, Asset, task, task_group
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.trigger import CronTriggerTimetable

from omnirecon import pipeline
from omnirecon.dag_defaults import PENDING_APPROVALS_ASSET, default_args, runtime_option
from omnirecon.remediation.approval_notify import ApproverNotifier

DOC = """
### omnirecon_approvals
A correction that moves a channel quantity by more than `approval_threshold_units` is never pushed on its own.
This DAG asks a person, one Human-in-the-loop request per correction (one open request per channel, SKU and
location, whichever reconcile run planned it), with the evidence in the request (channel value, what the ERP
implies, diagnosis, the finding's detail). Each answer is recorded and acted on by its own `apply_decision` task
as soon as it is given; it never waits for the other requests.

* **Approve** -> the target is re-checked against the current ERP value (changed: `superseded`, asked again by the
  next reconcile), then the correction is pushed (compare-and-swap / re-read first: if the channel moved meanwhile it is
  `skipped_changed`, never overwritten), then read back and `verified`.
* **Reject** -> recorded as `rejected`; nothing is pushed.
* A request whose correction a later reconcile **superseded** (new target) or **withdrew** (drift cleared)
  changes nothing when answered.
* **No answer** within `approval_timeout_minutes` -> `approval_timeout_default` (runtime.yaml; default reject).

Approvers (`approval_recipients`, else `alert_recipients`; and Slack `slack_channel` when `slack_default`
exists) get each request with its link. Respond there or in the Airflow UI: *Browse -> Required Actions*.
Runs when the reconcile DAG plans corrections that need approval, and every 30 minutes.

**When it fails:** decisions already recorded stay recorded (ledger `approvals`, `audit_log`); clear the
failed task to continue.
"""

_timeout_default = "Approve" if runtime_option("approval_timeout_default") == "approve" else "Reject"


@task_group(group_id="approval")
def approval(subject, body, request):
    """One correction: ask, then record (and push) that answer on its own."""
    answer = HITLOperator(
        task_id="request_approval",
        subject=subject,
        body=body,
        options=["Approve", "Reject"],
        defaults=[_timeout_default],
        response_timeout=timedelta(minutes=int(runtime_option("approval_timeout_minutes"))),
        notifiers=[ApproverNotifier()],
        retries=0,
    )
    task(task_id="apply_decision", trigger_rule="all_done")(pipeline.apply_decision_task)(request, answer.output)


with DAG(
    dag_id="omnirecon_approvals",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/30 * * * *", timezone="UTC", interval=timedelta(minutes=30)),
        assets=Asset(PENDING_APPROVALS_ASSET)),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=16,       # a run waiting for answers never holds back the next: each asks only what is unasked
    default_args=default_args(),
    doc_md=DOC,
    tags=["omnirecon", "remediation", "approvals"],
) as dag:
    requests = task(task_id="collect_pending")(pipeline.approval_requests_task)()
    approval.expand_kwargs(requests.map(pipeline.hitl_kwargs))
