"""The one writer of `Finding` rows and `FindingState`: a run's findings and their lifecycle (open, refresh,
resolve), the alerting bookkeeping on a state, and the escalation of a finding whose write did not apply.
Callers: checks (persist a run's findings), remediation/alerts.py (alert sent), remediation/push.py (escalate).
Reads are in ledger/queries.py."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select

from omnirecon.ledger import models as m
from omnirecon.ledger import queries
from omnirecon.model.canonical import CHECKS
from omnirecon.model.sharding import sku_bucket


# -- a run's findings and their lifecycle --------------------------------------------------------
def persist_findings(ledger, run_id: str, findings: list[dict], now: datetime, scope, shard: str = "all",
                     checks=CHECKS, buckets=None) -> None:
    """Replace this run's findings of one shard; open/refresh FindingState; resolve open states in scope not
    seen now. Sets each finding dict's "lifecycle" (new | open).

    scope(state) -> bool says whether a state's entity was checked in this run (only those can resolve);
    shard labels the task that checked them (checks/scope.py), checks are the checks it ran, buckets the SKU
    buckets of its shard (None: every state), so a shard reads only the open states it may resolve."""
    fps = {f["fingerprint"] for f in findings}
    with ledger.session() as s:
        s.execute(delete(m.Finding).where(m.Finding.run_id == run_id, m.Finding.shard == shard))
        states = queries.states_to_refresh(s, checks, fps, buckets)
        new_states: dict[str, dict] = {}   # first seen now: inserted in bulk, not as ORM objects
        for f in findings:
            fp = f["fingerprint"]
            st = states.get(fp)
            if st is None:
                f["lifecycle"] = "new"
                row = new_states.setdefault(fp, dict(
                    fingerprint=fp, check=f["check"], channel=f["channel"], sku=f["sku"] or None,
                    sku_bucket=sku_bucket(f["sku"]) if f["sku"] else None,
                    order_id=f["order_id"] or None, status="open", first_seen_at=now, first_seen_run=run_id,
                    last_seen_at=now, last_seen_run=run_id))
                row["severity"] = f["severity"]
                continue
            if st.status == "resolved" and st.last_seen_run != run_id:
                f["lifecycle"] = "new"
                st.status, st.first_seen_at, st.first_seen_run, st.resolved_at = "open", now, run_id, None
                st.resolved_notice_sent = False
            else:
                f["lifecycle"] = "new" if st.first_seen_run == run_id else "open"
                st.status, st.resolved_at = "open", None
            st.last_seen_at, st.last_seen_run, st.severity = now, run_id, f["severity"]
        for st in states.values():
            if st.status == "open" and st.fingerprint not in fps and scope(st):
                st.status, st.resolved_at = "resolved", now
        s.flush()
        ledger.bulk_insert(s, m.FindingState, [dict(r, alerts_sent=0, resolved_notice_sent=False, resolved_at=None,
                                                    last_alert_at=None) for r in new_states.values()])
        ledger.bulk_insert(s, m.Finding, [dict(f, created_at=now, shard=shard) for f in findings])


def keep_findings_of(ledger, run_id: str, shards: list[str]) -> int:
    """Drop a run's findings found by shards other than these (the run was re-split); the number dropped."""
    with ledger.session() as s:
        return s.execute(delete(m.Finding).where(m.Finding.run_id == run_id,
                                                 m.Finding.shard.not_in(shards))).rowcount or 0


# -- alerting bookkeeping ------------------------------------------------------------------------
def record_alert(s, *, fingerprint: str, kind: str, check: str | None, channel: str, sku: str | None,
                 order_id: str | None, severity: str, run_id: str, now: datetime) -> None:
    """An alert of `kind` about a finding went out (in the caller's session): count it on its state, or mark
    its resolved notice sent (resolving the state if still open). A state the checks never opened (an alert
    about an entity of no finding state yet) is opened here."""
    state = s.get(m.FindingState, fingerprint)
    if state is None:
        state = m.FindingState(fingerprint=fingerprint, check=check or "", channel=channel, sku=sku,
                               order_id=order_id, status="open", severity=severity,   # sku_bucket: the column default
                               first_seen_at=now, first_seen_run=run_id, last_seen_at=now,
                               last_seen_run=run_id, alerts_sent=0, resolved_notice_sent=False)
        s.add(state)
    if kind == "resolved":
        state.resolved_notice_sent = True
        if state.status != "resolved":
            state.status, state.resolved_at = "resolved", now
    else:
        state.alerts_sent = (state.alerts_sent or 0) + 1
        state.last_alert_at = now
        state.resolved_notice_sent = False


# -- escalation ----------------------------------------------------------------------------------
def escalate_unapplied_write(s, *, run_id: str, fingerprint: str, to_qty: int, shown: int | None) -> None:
    """The finding behind an unapplied write becomes critical and an alert (in the caller's session): the
    channel's write path is broken."""
    finding = s.scalars(select(m.Finding).where(m.Finding.run_id == run_id,
                                                m.Finding.fingerprint == fingerprint)).first()
    if finding is None:
        return
    finding.severity, finding.action = "critical", "alert"
    finding.observed = None if shown is None else str(shown)
    finding.detail = (f"{finding.detail} The channel accepted the correction to {to_qty} but still shows "
                      f"{shown}: its write path is not applying updates.")
    state = s.get(m.FindingState, fingerprint)
    if state is not None:
        state.severity = "critical"
