"""The ledger's read side: the questions checks, remediation, report and the UI ask, each asked one way.

Every function takes an open session (`with ledger.session() as s`), so callers keep one transaction.
Writes go through the table's owner (docs/ledger.md).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select

from omnirecon.ledger import models as m

COMPLETE = ("complete",)
RECONCILE_KIND = "reconcile"


# -- snapshots ------------------------------------------------------------------------------
def latest_snapshot(s, system: str, kind: str, statuses=COMPLETE, *,
                    started_by: datetime | None = None) -> m.Snapshot | None:
    """The newest snapshot of a system and kind in one of `statuses` (default: the latest complete one);
    started_by: only snapshots started at or before that moment."""
    q = select(m.Snapshot).where(m.Snapshot.system == system, m.Snapshot.kind == kind,
                                 m.Snapshot.status.in_(tuple(statuses)))
    if started_by is not None:
        q = q.where(m.Snapshot.started_at <= started_by)
    return s.scalars(q.order_by(m.Snapshot.id.desc()).limit(1)).first()


def latest_attempt(s, system: str, kind: str, *, started_by: datetime | None = None) -> m.Snapshot | None:
    """The newest finished snapshot (complete, unusable or failed) of a system and kind."""
    q = select(m.Snapshot).where(m.Snapshot.system == system, m.Snapshot.kind == kind,
                                 m.Snapshot.status != "running")
    if started_by is not None:
        q = q.where(m.Snapshot.started_at <= started_by)
    return s.scalars(q.order_by(m.Snapshot.id.desc()).limit(1)).first()


def recent_attempts(s, system: str, kind: str, limit: int) -> list[m.Snapshot]:
    """The newest finished snapshots of a system and kind, newest first."""
    return list(s.scalars(select(m.Snapshot).where(m.Snapshot.system == system, m.Snapshot.kind == kind,
                                                   m.Snapshot.status != "running")
                          .order_by(m.Snapshot.id.desc()).limit(limit)))


def inventory_rows(s, snapshot_id: int, sku: str) -> list[m.InventoryRow]:
    """One SKU's rows of an inventory snapshot."""
    return list(s.scalars(select(m.InventoryRow).where(m.InventoryRow.snapshot_id == snapshot_id,
                                                       m.InventoryRow.sku == sku)))


def order_rows(s, snapshot_id: int, order_id: str) -> list[m.OrderRow]:
    """One order's rows of an orders snapshot."""
    return list(s.scalars(select(m.OrderRow).where(m.OrderRow.snapshot_id == snapshot_id,
                                                   m.OrderRow.order_id == order_id)))


def complete_snapshot_ids(s, system: str, kind: str, *, finished_since: datetime) -> list[int]:
    """Ids of the complete snapshots of a system and kind finished since a moment, newest first."""
    return list(s.scalars(select(m.Snapshot.id).where(m.Snapshot.system == system, m.Snapshot.kind == kind,
                                                      m.Snapshot.status == "complete",
                                                      m.Snapshot.finished_at >= finished_since)
                          .order_by(m.Snapshot.id.desc())))


def latest_attempt_per_system_kind(s) -> list[m.Snapshot]:
    """Each (system, kind)'s newest finished snapshot, by id."""
    latest = (select(func.max(m.Snapshot.id)).where(m.Snapshot.status != "running")
              .group_by(m.Snapshot.system, m.Snapshot.kind))
    return list(s.scalars(select(m.Snapshot).where(m.Snapshot.id.in_(latest)).order_by(m.Snapshot.id)))


def snapshots_of_runs(s, run_ids) -> list[m.Snapshot]:
    return list(s.scalars(select(m.Snapshot).where(m.Snapshot.run_id.in_(list(run_ids))).order_by(m.Snapshot.id)))


def snapshot_systems(s) -> set[str]:
    """Every system that has a snapshot."""
    return set(s.scalars(select(m.Snapshot.system).distinct()))


# -- runs -----------------------------------------------------------------------------------
def run(s, run_id: str) -> m.Run | None:
    return s.get(m.Run, run_id)


def runs(s, run_ids) -> dict[str, m.Run]:
    ids = list(set(run_ids))
    return {r.id: r for r in s.scalars(select(m.Run).where(m.Run.id.in_(ids)))} if ids else {}


def latest_reconcile_run(s, before: datetime) -> m.Run | None:
    """The newest reconciliation started before `before`: the newest successful one, else the newest."""
    q = (select(m.Run).where(m.Run.kind == RECONCILE_KIND, m.Run.started_at < before)
         .order_by(m.Run.started_at.desc(), m.Run.id.desc()))
    return s.scalars(q.where(m.Run.status == "success").limit(1)).first() or s.scalars(q.limit(1)).first()


def reconcile_runs_between(s, start: datetime, end: datetime) -> list[m.Run]:
    """Reconciliations started in [start, end), oldest first."""
    return list(s.scalars(select(m.Run).where(m.Run.kind == RECONCILE_KIND, m.Run.started_at >= start,
                                              m.Run.started_at < end).order_by(m.Run.started_at)))


def airflow_ids(run_row: m.Run | None, run_id: str) -> tuple[str, str]:
    """(dag_id, Airflow run id) of a ledger run: its columns, else parsed from `{dag_id}/{run id}`."""
    if run_row is not None and run_row.dag_id and run_row.airflow_run_id:
        return run_row.dag_id, run_row.airflow_run_id
    dag_id, _, airflow_run_id = run_id.partition("/")
    return (dag_id, airflow_run_id) if airflow_run_id else ("omnirecon_reconcile", run_id)


# -- findings and corrections of a run -----------------------------------------------------------
def run_findings(s, run_id: str | None) -> list[m.Finding]:
    """A run's findings in the order they were found."""
    if run_id is None:
        return []
    return list(s.scalars(select(m.Finding).where(m.Finding.run_id == run_id).order_by(m.Finding.id)))


def run_corrections(s, run_id: str | None) -> list[m.Correction]:
    """A run's corrections in the order they were planned."""
    if run_id is None:
        return []
    return list(s.scalars(select(m.Correction).where(m.Correction.run_id == run_id).order_by(m.Correction.id)))


def day_corrections(s, start: datetime, end: datetime, run_id: str | None) -> list[m.Correction]:
    """A day's corrections: verified during [start, end), or planned during it and not verified (yet), and
    the run's own. A daily report counts the day, not only its last run."""
    def during(col):
        return and_(col >= start, col < end)
    cond = or_(during(m.Correction.verified_at),
               and_(during(m.Correction.created_at), m.Correction.status != "verified"))
    if run_id:
        cond = or_(cond, m.Correction.run_id == run_id)
    return list(s.scalars(select(m.Correction).where(cond).order_by(m.Correction.id)))


def finding_counts(s, run_id: str) -> dict[str, int]:
    """{check: findings} of a run."""
    return {k: int(v) for k, v in s.execute(select(m.Finding.check, func.count()).where(m.Finding.run_id == run_id)
                                            .group_by(m.Finding.check))}


def finding_counts_by_run(s, run_ids) -> dict[str, dict[str, int]]:
    """{run_id: {check: findings}} of several runs."""
    counts: dict[str, dict[str, int]] = {}
    ids = list(run_ids)
    for i in range(0, len(ids), 500):
        for run_id, check, n in s.execute(select(m.Finding.run_id, m.Finding.check, func.count())
                                          .where(m.Finding.run_id.in_(ids[i:i + 500]))
                                          .group_by(m.Finding.run_id, m.Finding.check)):
            counts.setdefault(run_id, {})[check] = n
    return counts


def correction_counts(s, run_id: str) -> dict[str, int]:
    """{status: corrections} of a run."""
    return {k: int(v) for k, v in s.execute(select(m.Correction.status, func.count())
                                            .where(m.Correction.run_id == run_id)
                                            .group_by(m.Correction.status))}


IN_FLIGHT = ("planned", "applied")     # on its way to the channel: not pushed yet, or accepted and not read back
IN_FLIGHT_WINDOW = timedelta(minutes=15)   # planned or accepted longer ago than this: a crashed push's leftover, which
                                           # the channel's own protection covers on a re-run


def corrections_in_flight(s, now: datetime, other_than: str | None = None) -> list[m.Correction]:
    """Corrections on their way to a channel (of runs other than `other_than`), oldest first: overlapping runs
    must not write the same count twice."""
    where = m.Correction.status.in_(IN_FLIGHT) & (m.Correction.updated_at >= now - IN_FLIGHT_WINDOW)
    if other_than is not None:
        where &= m.Correction.run_id != other_than
    return list(s.scalars(select(m.Correction).where(where).order_by(m.Correction.id)))


def corrections_waiting_for_approval(s) -> list[m.Correction]:
    """Every correction waiting for a person's decision, oldest first."""
    return list(s.scalars(select(m.Correction).where(m.Correction.status == "pending_approval")
                          .order_by(m.Correction.created_at, m.Correction.id)))


def open_approval_requests(s, correction_ids) -> dict[int, m.Approval]:
    """{correction id: its undecided approval request}."""
    ids = list(correction_ids)
    if not ids:
        return {}
    return {a.correction_id: a for a in s.scalars(select(m.Approval).where(m.Approval.correction_id.in_(ids),
                                                                          m.Approval.decided_at.is_(None)))}


# -- finding states -----------------------------------------------------------------------------
def finding_states(s, fingerprints) -> dict[str, m.FindingState]:
    """The states of the given fingerprints (those that have one)."""
    out: dict[str, m.FindingState] = {}
    fps = sorted(fingerprints)
    for i in range(0, len(fps), 500):
        for st in s.scalars(select(m.FindingState).where(m.FindingState.fingerprint.in_(fps[i:i + 500]))):
            out[st.fingerprint] = st
    return out


def states_to_refresh(s, checks, fingerprints, buckets=None, chunk: int = 30000) -> dict[str, m.FindingState]:
    """The states a run's persist may change: the open ones of these checks (of these SKU buckets only, when
    given: a shard's, so a shard never loads another shard's states) and those of the fingerprints found now."""
    open_ = (m.FindingState.status == "open") & m.FindingState.check.in_(list(checks))
    if buckets is not None:
        open_ &= m.FindingState.sku_bucket.in_(list(buckets))
    fps = list(fingerprints)
    states = {st.fingerprint: st for st in s.scalars(select(m.FindingState).where(
        open_ | m.FindingState.fingerprint.in_(fps[:chunk])))}
    for i in range(chunk, len(fps), chunk):   # very large runs: the rest in chunks
        states.update({st.fingerprint: st for st in s.scalars(select(m.FindingState).where(
            m.FindingState.fingerprint.in_(fps[i:i + chunk])))})
    return states


def open_states(s) -> dict[str, m.FindingState]:
    return {st.fingerprint: st for st in s.scalars(select(m.FindingState).where(m.FindingState.status == "open"))}


def states_awaiting_resolved_notice(s) -> list[m.FindingState]:
    """Resolved states that were alerted but whose resolution was not announced yet."""
    return list(s.scalars(select(m.FindingState).where(m.FindingState.alerts_sent > 0,
                                                       m.FindingState.status == "resolved",
                                                       m.FindingState.resolved_notice_sent.is_(False))))


def first_seen_of_open(s, buckets=None) -> dict:
    """{fingerprint: first_seen_at} of the open states (of these SKU buckets only, when given: a shard's)."""
    where = m.FindingState.status == "open"
    if buckets is not None:
        where &= m.FindingState.sku_bucket.in_(list(buckets))
    return dict(s.execute(select(m.FindingState.fingerprint, m.FindingState.first_seen_at).where(where)).all())


def latest_findings_of(s, fingerprints) -> list[m.Finding]:
    """The newest finding row of each fingerprint."""
    latest_ids = (select(func.max(m.Finding.id)).where(m.Finding.fingerprint.in_(list(fingerprints)))
                  .group_by(m.Finding.fingerprint))
    return list(s.scalars(select(m.Finding).where(m.Finding.id.in_(latest_ids))))


# -- API events ---------------------------------------------------------------------------------
def api_errors(s, since: datetime, limit: int) -> list[m.ApiEvent]:
    """Errors, retries and throttles seen since a moment, newest first."""
    return list(s.scalars(select(m.ApiEvent).where(m.ApiEvent.at >= since, m.ApiEvent.outcome != "ok")
                          .order_by(m.ApiEvent.id.desc()).limit(limit)))


# -- audit and alerts ---------------------------------------------------------------------------
def audit_entries(s, run_id: str, operation: str) -> list[m.AuditLog]:
    return list(s.scalars(select(m.AuditLog).where(m.AuditLog.run_id == run_id, m.AuditLog.operation == operation)))


def alerted_fingerprints(s, run_id: str) -> set[str]:
    """Fingerprints (or correction keys) a run already sent an alert for."""
    return set(s.scalars(select(m.Alert.fingerprint).where(m.Alert.run_id == run_id)))


# -- reports ------------------------------------------------------------------------------------
def report_row(s, report_date: str, run_id: str | None) -> m.Report | None:
    q = select(m.Report).where(m.Report.report_date == report_date)
    q = q.where(m.Report.run_id == run_id) if run_id is not None else q.where(m.Report.run_id.is_(None))
    return s.scalars(q.limit(1)).first()


def previous_report(s, report_date: str) -> m.Report | None:
    """The newest report of a reconciliation run dated before report_date."""
    return s.scalars(select(m.Report).where(m.Report.report_date < report_date, m.Report.run_id.is_not(None))
                     .order_by(m.Report.report_date.desc(), m.Report.id.desc()).limit(1)).first()


def latest_report(s) -> m.Report | None:
    return s.scalars(select(m.Report).order_by(m.Report.report_date.desc(), m.Report.id.desc()).limit(1)).first()


# -- the trigger chain (live) -------------------------------------------------------------------
def notifications_after(s, after_id: int, limit: int = 10_000) -> list[m.Notification]:
    """Stored, usable notifications with an id above `after_id`, oldest first (a reader's cursor: unlike a
    live reconcile run, reading them does not take them)."""
    return list(s.scalars(select(m.Notification).where(m.Notification.id > after_id,
                                                       m.Notification.quarantined.is_(None))
                          .order_by(m.Notification.id).limit(limit)))


def shopify_item_skus(s) -> dict[str, str]:
    """{numeric Shopify inventory item id: channel SKU} from the latest complete Shopify inventory snapshot
    (Shopify's inventory notifications name the item, not the SKU)."""
    snap = latest_snapshot(s, "shopify", "inventory")
    if snap is None:
        return {}
    out = {}
    for sku, ref in s.execute(select(m.InventoryRow.sku, m.InventoryRow.ref)
                              .where(m.InventoryRow.snapshot_id == snap.id)):
        item = (ref or {}).get("inventory_item_id")
        if item:
            out[str(item).rsplit("/", 1)[-1]] = sku
    return out


def hop_history(s, from_system: str | None = None, to_system: str | None = None, kind: str | None = None,
                since: datetime | None = None) -> list[m.HopWindow]:
    """A hop's windows (or every hop's), oldest first."""
    q = select(m.HopWindow)
    for col, value in ((m.HopWindow.from_system, from_system), (m.HopWindow.to_system, to_system),
                       (m.HopWindow.kind, kind)):
        if value is not None:
            q = q.where(col == value)
    if since is not None:
        q = q.where(m.HopWindow.window_to >= since)
    return list(s.scalars(q.order_by(m.HopWindow.window_to, m.HopWindow.id)))


def latest_hop_windows(s) -> dict[tuple[str, str, str], m.HopWindow]:
    """The newest window of every hop ever mapped, by (from, to, kind)."""
    newest = (select(m.HopWindow.from_system, m.HopWindow.to_system, m.HopWindow.kind,
                     func.max(m.HopWindow.id).label("id"))
              .group_by(m.HopWindow.from_system, m.HopWindow.to_system, m.HopWindow.kind).subquery())
    rows = s.scalars(select(m.HopWindow).join(newest, m.HopWindow.id == newest.c.id))
    return {(w.from_system, w.to_system, w.kind): w for w in rows}


def detections(s, *, run_id: str | None = None, since: datetime | None = None) -> list[m.TriggerDetection]:
    """Detected trigger gaps (of a run, or since a moment), in detection order."""
    q = select(m.TriggerDetection)
    if run_id is not None:
        q = q.where(m.TriggerDetection.run_id == run_id)
    if since is not None:
        q = q.where(m.TriggerDetection.detected_at >= since)
    return list(s.scalars(q.order_by(m.TriggerDetection.detected_at, m.TriggerDetection.id)))


def erp_levels(s) -> dict[tuple[str, str], int]:
    """{(ERP SKU, location): available} from the latest complete ERP inventory snapshot (the live path's
    starting point for what each channel should show)."""
    snap = latest_snapshot(s, "erp", "inventory")
    if snap is None:
        return {}
    rows = s.execute(select(m.InventoryRow.sku, m.InventoryRow.location, m.InventoryRow.available)
                     .where(m.InventoryRow.snapshot_id == snap.id))
    return {(sku, loc): int(avail or 0) for sku, loc, avail in rows}


def channel_levels(s, channels, erp_sku) -> dict[tuple[str, str, str], int]:
    """{(channel, ERP SKU, channel location): available} from each channel's latest complete inventory snapshot
    (the live path's starting picture of what each channel shows; `erp_sku(sku, channel)` resolves aliases)."""
    out = {}
    for channel in channels:
        snap = latest_snapshot(s, channel, "inventory")
        if snap is None:
            continue
        for sku, loc, avail in s.execute(select(m.InventoryRow.sku, m.InventoryRow.location, m.InventoryRow.available)
                                         .where(m.InventoryRow.snapshot_id == snap.id)):
            out[(channel, erp_sku(sku, channel), str(loc))] = int(avail or 0)
    return out


def last_notification_per_source(s) -> dict[str, datetime]:
    """{source: when the newest change it notified happened, by its own clock}: which platforms notify, and
    since when not (comparable with the platform's own updated_at in its snapshots)."""
    rows = s.execute(select(m.Notification.source,
                            func.max(func.coalesce(m.Notification.occurred_at, m.Notification.received_at)))
                     .where(m.Notification.quarantined.is_(None)).group_by(m.Notification.source))
    return {source: at for source, at in rows}


def rows_changed_after(s, snapshot_id: int, after: datetime, sample: int = 5) -> tuple[int, list[m.InventoryRow]]:
    """(how many, the newest few) inventory rows of a snapshot that the system itself says changed after a moment
    (its own updated_at)."""
    where = (m.InventoryRow.snapshot_id == snapshot_id, m.InventoryRow.updated_at > after)
    count = s.scalar(select(func.count(m.InventoryRow.id)).where(*where)) or 0
    rows = list(s.scalars(select(m.InventoryRow).where(*where).order_by(m.InventoryRow.updated_at.desc()).limit(sample)))
    return int(count), rows
