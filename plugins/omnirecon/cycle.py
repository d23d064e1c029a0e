"""The reconciliation cycle's steps after the checks, in one place: plan -> (approve all) -> push -> alert.

The Airflow task callables (pipeline.py, one step per task) and the in-process runner (runner.py, all steps
in a row) both call these; neither orchestrates the library itself.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from omnirecon.config import Settings
from omnirecon.timeutil import REAL_CLOCK, Clock


def reconcile_whole(ledger, settings: Settings, *, run_id: str, now: datetime | None = None):
    """One unsharded reconcile run (begin, every check, finish) -> the checks' result."""
    from omnirecon.checks.run import reconcile

    ledger.begin_run(run_id, "reconcile", mode=settings.mode)
    result = reconcile(ledger, settings, run_id=run_id, now=now)
    ledger.finish_run(run_id, "success", {"skus_checked": result.skus_checked, "findings": result.counts})
    return result


def plan(ledger, settings: Settings, *, run_id: str, channels=None, approve_all_by: str | None = None,
         now: datetime | None = None) -> list[dict]:
    """The run's corrections into the outbox -> push batches; approve_all_by: also approve (and batch) every
    correction waiting for a person, recorded as approved by that name."""
    from omnirecon.remediation.plan import plan_corrections

    batches = list(plan_corrections(ledger, settings, run_id=run_id, mode=settings.mode, channels=channels,
                                    now=now).batches)
    if approve_all_by:
        from omnirecon.remediation.approvals import approve_all
        batches += approve_all(ledger, settings, run_id=run_id, by=approve_all_by)
    return batches


def push(ledger, settings: Settings, batch: dict, *, hook_factory: Callable[[str], object] | None = None,
         clock: Clock = REAL_CLOCK) -> dict:
    """Push one batch and read it back."""
    from omnirecon.remediation.push import push_batch
    return push_batch(ledger, settings, batch, hook_factory=hook_factory, clock=clock)


def alert(ledger, settings: Settings, *, run_id: str, dag_id: str | None = None,
          airflow_run_id: str | None = None) -> dict:
    """Send the run's alert digest."""
    from omnirecon.remediation.alerts import send_alerts
    return send_alerts(ledger, settings, run_id=run_id, dag_id=dag_id, airflow_run_id=airflow_run_id)
