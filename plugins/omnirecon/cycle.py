"""The reconciliation cycle's steps in one place: reconcile (whole, or planned into SKU shards plus the global
part) -> plan -> (approve) -> push -> alert, and a person's decision on one correction.

The Airflow task callables (pipeline.py, one step per task; `omnirecon demo` runs them through the real DAGs) and
the in-process runner (runner.py, all steps in a row) call these; neither orchestrates the library itself.
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


def _peak_rss_mb() -> float:
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)   # KiB on Linux


def _cpu_s() -> float:
    """CPU seconds of this process so far (a task: from its fork by the executor's worker: imports, DAG parse, work)."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return round(usage.ru_utime + usage.ru_stime, 2)


def plan_shards(ledger, settings: Settings, *, run_id: str, shards: int = 0, now: datetime | None = None,
                **run_fields) -> list[dict]:
    """Begin a reconcile run and split its per-SKU checks into SKU-hash shards (checks/scope.py), sized by the ERP
    catalog unless `shards` is given -> one spec per shard, every one checking as of the same instant."""
    import logging

    from omnirecon.checks.load import catalog_size
    from omnirecon.model.sharding import shard_count
    from omnirecon.timeutil import utcnow

    ledger.begin_run(run_id, "reconcile", **run_fields)
    skus = catalog_size(ledger)
    count = int(shards or 0) or shard_count(skus, settings.runtime["reconcile_shard_skus"],
                                            settings.runtime["reconcile_max_shards"])
    labels = [f"{i + 1}/{count}" for i in range(count)]
    ledger.keep_findings_of(run_id, labels + ["global"])   # a re-planned run drops findings of an old split
    logging.getLogger(__name__).info("reconcile %s: %d ERP SKUs in %d shard(s)", run_id, skus, count)
    at = (now or utcnow()).isoformat()
    return [{"run_id": run_id, "now": at, "shard": label} for label in labels]


def reconcile_shard(ledger, settings: Settings, shard: dict, **check_args) -> dict:
    """The per-SKU checks of one shard, reading only that shard's rows; its findings replace its own."""
    import time

    from omnirecon.checks.run import reconcile
    from omnirecon.model.sharding import Shard
    from omnirecon.timeutil import parse_ts

    t0 = time.monotonic()
    result = reconcile(ledger, settings, run_id=shard["run_id"], now=parse_ts(shard["now"]),
                       shard=Shard.parse(shard["shard"]), part="skus", data_docs=False, **check_args)
    return {**result.summary(), "seconds": round(time.monotonic() - t0, 2), "peak_rss_mb": _peak_rss_mb(),
            "cpu_s": _cpu_s()}


def reconcile_global(ledger, settings: Settings, shards: list[dict], shard_results, **check_args) -> dict:
    """Freshness (with every shard's follow lag) and the order checks, then the run's totals; finishes the run."""
    from omnirecon.checks.run import reconcile, run_totals
    from omnirecon.timeutil import parse_ts

    parts = list(shard_results)
    run_id, now = shards[0]["run_id"], parse_ts(shards[0]["now"])
    result = reconcile(ledger, settings, run_id=run_id, now=now, part="global",
                       follow_lag=[row for part in parts for row in part["follow_lag"]], **check_args)
    stats = {**run_totals(parts, result.summary()), "data_docs": result.data_docs, "peak_rss_mb": _peak_rss_mb(),
             "shards": [{k: p[k] for k in ("shard", "skus_checked", "seconds", "peak_rss_mb", "cpu_s") if k in p}
                        for p in parts]}
    ledger.finish_run(run_id, "success", stats)
    return {"run_id": run_id, **stats}


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


def decide(ledger, settings: Settings, *, run_id: str, correction_id: int, chosen, by: str | None) -> dict:
    """Record one correction's decision as soon as it is made (no responder: the timeout default), then push it
    at once when approved: no decision waits for another."""
    from omnirecon.remediation.approvals import apply_hitl_result
    from omnirecon.remediation.plan import make_batches

    outcomes = apply_hitl_result(ledger, [correction_id], chosen if by else None, by=by or "timeout",
                                 timeout_default=settings.runtime["approval_timeout_default"], settings=settings)
    approved = [o["correction_id"] for o in outcomes if o.get("status") == "planned"]
    pushed = [push(ledger, settings, b) for b in (make_batches(ledger, run_id, only_ids=approved) if approved else [])]
    return {"correction_id": correction_id, "outcomes": outcomes, "pushed": pushed}
