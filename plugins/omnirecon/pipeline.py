"""Task callables: the thin glue between Airflow's context and the omnirecon library.

DAG files call these; they hold no reconciliation logic of their own.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

from omnirecon.adapters import get_adapter, systems
from omnirecon.config import load_settings, project_home, report_out_dir, reports_dir
from omnirecon.ledger import get_ledger
from omnirecon.timeutil import parse_ts, utcnow

log = logging.getLogger(__name__)


def ledger_run_id(context) -> str:
    return f"{context['dag'].dag_id}/{context['run_id']}"


def _skip(reason: str):
    from airflow.sdk.exceptions import AirflowSkipException
    raise AirflowSkipException(reason)


def _connection_exists(conn_id: str) -> bool:
    from omnirecon.connections import connection_exists
    return connection_exists(conn_id)


def orders_window(context) -> tuple[datetime, datetime]:
    """The updated-at window to pull: the run's data interval, or the params' explicit window / lookback."""
    params = context.get("params") or {}
    end = parse_ts(params.get("window_end")) or context.get("data_interval_end") or utcnow()
    if params.get("window_start"):
        return parse_ts(params["window_start"]), end
    if params.get("lookback_hours"):
        return end - timedelta(hours=float(params["lookback_hours"])), end
    start = context.get("data_interval_start")
    if start is None or start >= end:
        start = end - timedelta(minutes=15)
    return start, end


ORDERS_MAX_CATCH_UP = timedelta(minutes=15)


def is_backfill(context) -> bool:
    run_type = getattr(context.get("dag_run"), "run_type", None)
    return getattr(run_type, "value", run_type) == "backfill"   # DagRunType.BACKFILL(_JOB)


def _kinds_to_pull(system: str, kinds: list[str], ledger, context, start: datetime, end: datetime):
    """Idempotent per data interval: a backfill does not replay point-in-time inventory and listings (reconcile
    reads the latest snapshot), and orders already landed complete for this window are not pulled again (only
    a remainder, e.g. the last minutes Amazon could not serve yet). -> (kinds, orders window start)."""
    from omnirecon.snapshot import orders_gap_before, orders_landed_until

    params = context.get("params") or {}
    if is_backfill(context):
        kinds = [k for k in kinds if k == "orders"]
        if not kinds:
            _skip("inventory and listings are point in time: a backfill does not replay them")
    explicit = any(params.get(k) for k in ("window_start", "window_end", "lookback_hours"))
    landed = orders_landed_until(ledger, system, start, end) if "orders" in kinds and not explicit else None
    if landed is not None and landed >= end:
        kinds = [k for k in kinds if k != "orders"]
        if not kinds:
            _skip(f"{system} orders updated in [{start.isoformat()}, {end.isoformat()}) already landed complete")
    if "orders" in kinds and not explicit and landed is None:
        # a short gap after the previous window (SP-API serves nothing newer than 2 minutes) is pulled now;
        # a longer one is an outage, for a backfill to re-pull window by window
        start = orders_gap_before(ledger, system, start, ORDERS_MAX_CATCH_UP) or start
    return kinds, landed or start


def snapshot_task(system: str, kinds: list[str], **context) -> dict:
    """Land complete snapshots of one system; fail (and retry) rather than land a partial one."""
    from omnirecon.errors import SnapshotFailed
    from omnirecon.snapshot import snapshot_system

    settings = load_settings()
    params = context.get("params") or {}
    adapter = get_adapter(system)
    wanted = params.get("systems") or list(systems())
    if system not in wanted:
        _skip(f"{system} not selected in this run's params")
    if adapter.is_channel and system not in settings.channels:
        _skip(f"{system} is not a configured channel (settings.channels)")
    if not _connection_exists(adapter.conn_id):
        _skip(f"connection {adapter.conn_id} is not defined: {system} is not connected")
    ledger = get_ledger()
    start, end = orders_window(context)
    kinds, start = _kinds_to_pull(system, kinds, ledger, context, start, end)
    run_id = ledger_run_id(context)
    fields = dict(dag_id=context["dag"].dag_id, airflow_run_id=context["run_id"],
                  data_interval_start=context.get("data_interval_start"),
                  data_interval_end=context.get("data_interval_end"))
    ledger.begin_run(run_id, "snapshot", **fields)
    results = snapshot_system(system, ledger=ledger, run_id=run_id, settings=settings, kinds=kinds,
                              window_start=start, window_end=end)
    failed = {k: str(v) for k, v in results.items() if isinstance(v, SnapshotFailed)}
    if failed:   # the failed snapshot rows are in the ledger; fail the task so Airflow retries it
        raise SnapshotFailed(f"{system}: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    return {k: {"snapshot_id": v.id, "status": v.status, "rows": v.rows_valid, "quarantined": v.rows_quarantined}
            for k, v in results.items()}


def plan_shards_task(**context) -> list[dict]:
    """Begin the reconcile run and split its per-SKU checks into SKU-hash shards: one mapped `reconcile_skus` each."""
    from omnirecon import cycle

    settings = load_settings()
    params = context.get("params") or {}
    return cycle.plan_shards(get_ledger(), settings, run_id=ledger_run_id(context), shards=params.get("shards") or 0,
                             dag_id=context["dag"].dag_id, airflow_run_id=context["run_id"],
                             data_interval_start=context.get("data_interval_start"),
                             data_interval_end=context.get("data_interval_end"),
                             mode=params.get("mode") or settings.mode, params=dict(params))


def _reconcile_args(context) -> dict:
    params = context.get("params") or {}
    return dict(channels=params.get("channels") or None, sku_filter=params.get("sku_filter") or None,
                gx_dir=str(gx_dir()))


def reconcile_skus_task(shard: dict, **context) -> dict:
    from omnirecon import cycle
    return cycle.reconcile_shard(get_ledger(), load_settings(), shard, **_reconcile_args(context))


def reconcile_task(shards: list[dict], shard_results, **context) -> dict:
    from omnirecon import cycle
    return cycle.reconcile_global(get_ledger(), load_settings(), shards, shard_results, **_reconcile_args(context))


def run_settings(context):
    """Settings with this run's `mode` param applied."""
    import dataclasses
    settings = load_settings()
    mode = (context.get("params") or {}).get("mode")
    if mode and mode != settings.mode:
        settings = dataclasses.replace(settings, runtime={**settings.runtime, "mode": mode})
    return settings


def plan_task(reconciled: dict, **context) -> list[dict]:
    from omnirecon import cycle

    params = context.get("params") or {}
    return cycle.plan(get_ledger(), run_settings(context), run_id=reconciled["run_id"],
                      channels=params.get("channels") or None,
                      approve_all_by=f"param approve_all ({context['run_id']})" if params.get("approve_all") else None)


def push_task(batch: dict, **context) -> dict:
    from omnirecon import cycle
    return cycle.push(get_ledger(), run_settings(context), batch)


def alert_task(reconciled: dict, **context) -> dict:
    from omnirecon import cycle
    return cycle.alert(get_ledger(), load_settings(), run_id=reconciled["run_id"],
                       dag_id=context["dag"].dag_id, airflow_run_id=context["run_id"])


def report_task(**context) -> dict:
    from omnirecon.report.daily import produce_daily_report

    params = context.get("params") or {}
    settings = load_settings()
    day = params.get("report_date") or (context.get("data_interval_end") or utcnow()).date().isoformat()
    out_dir = report_out_dir(params.get("out_dir"), day)
    return produce_daily_report(get_ledger(), settings, report_date=day, out_dir=out_dir,
                                send=bool(params.get("send", True)), gx_docs=str(gx_dir()))


def gx_dir() -> Path:
    path = Path(os.environ.get("OMNIRECON_GX_DIR") or project_home() / "data" / "gx")
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- approvals (omnirecon_approvals DAG) -----------------------------------------------------
MAX_APPROVAL_REQUESTS = 50


def approval_requests_task(**context) -> list[dict]:
    """Corrections waiting for a person and not yet asked by a live approvals run, one request each, with the
    evidence as the request body. Each is marked as asked by this run (asked_in), so runs never ask twice; a request
    older than the response timeout (its run ended without an answer recorded) is asked again."""
    from sqlalchemy import or_, select, update

    from omnirecon.ledger import models as m
    from omnirecon.remediation.approvals import approval_request_body

    settings = load_settings()
    ledger = get_ledger()
    now = utcnow()
    stale = now - timedelta(minutes=int(settings.runtime["approval_timeout_minutes"]) + 10)
    asked_in = ledger_run_id(context)
    with ledger.session() as s:
        rows = s.execute(select(m.Correction, m.Approval).join(m.Approval, m.Approval.correction_id == m.Correction.id)
                         .where(m.Correction.status == m.OPEN_REQUEST, m.Approval.decision.is_(None),
                                or_(m.Approval.asked_in.is_(None), m.Approval.asked_in == asked_in,
                                    m.Approval.requested_at < stale))
                         .order_by(m.Correction.id).limit(MAX_APPROVAL_REQUESTS)).all()
        for _, a in rows:
            s.execute(update(m.Approval).where(m.Approval.id == a.id).values(asked_in=asked_in, requested_at=now))
    if not rows:
        _skip("no correction is waiting for approval")
    return [{"correction_id": c.id, "run_id": c.run_id,
             "subject": f"Approve inventory correction: {c.channel} {c.sku} at {c.location}: {c.from_qty} -> {c.to_qty}",
             "body": approval_request_body(ledger, [c.id])} for c, _ in rows]


def hitl_kwargs(request: dict) -> dict:
    """One approval group's arguments (used with XComArg.map): the HITL request's text and the request itself."""
    return {"subject": request["subject"], "body": request["body"], "request": request}


def _responder(response) -> str | None:
    user = (response or {}).get("responded_by_user")
    if isinstance(user, dict):
        return user.get("name") or user.get("id")
    return user or None


def apply_decision_task(request: dict, response, **context) -> dict:
    """One correction's decision, recorded and (approved) pushed at once."""
    from omnirecon import cycle

    by = _responder(response)
    return cycle.decide(get_ledger(), run_settings(context), run_id=request["run_id"],
                        correction_id=request["correction_id"], chosen=(response or {}).get("chosen_options"), by=by)


def live_task(**context) -> dict:
    """One change-driven run: the inbox's notifications -> trigger chain -> trigger_gap findings (+ push evidence)."""
    from omnirecon.live.cycle import live_cycle, silent_target_reader

    settings = run_settings(context)
    ledger = get_ledger()
    run_id = ledger_run_id(context)
    ledger.begin_run(run_id, "live", mode=settings.mode)
    reader, readable = silent_target_reader(settings)
    result = live_cycle(ledger, settings, run_id=run_id, reader=reader, readable=readable,
                        out_dir=reports_dir(), resubscribe=_resubscriber())
    ledger.finish_run(run_id, "success", {k: result[k] for k in ("notifications", "findings", "hops", "broken",
                                                                 "next_deadline")})
    return result


def _resubscriber():
    """Re-creates a silent platform's subscriptions when the receiver's public URL is known (env
    OMNIRECON_RECEIVER_URL; Amazon with OMNIRECON_SQS_QUEUE_ARN), else None (the finding says to re-subscribe)."""
    url = os.environ.get("OMNIRECON_RECEIVER_URL")
    if not url:
        return None

    def resubscribe(system: str) -> str:
        from omnirecon.live.subscriptions import ensure_all
        rows = ensure_all(url, os.environ.get("OMNIRECON_SQS_QUEUE_ARN"))
        return ", ".join(f"{topic} {action}" for sys, topic, _id, action in rows if sys == system) or "none"
    return resubscribe
