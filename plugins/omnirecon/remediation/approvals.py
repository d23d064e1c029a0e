"""Approvals: corrections above the threshold wait for a person (Airflow HITL ApprovalOperator).

approved -> the target is re-checked against the latest complete ERP inventory snapshot first: unchanged ->
the correction becomes `planned` (pushable by the next make_batches/push); the ERP moved -> `superseded` (the next
reconcile asks for the new target), or `withdrawn` when the channel already shows it;
rejected -> `rejected`; timeout -> the runtime's approval_timeout_default (reject unless set to approve).
A request answered after its correction was superseded or withdrawn changes nothing.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from omnirecon.ledger import models as m
from omnirecon.ledger.db import Ledger
from omnirecon.timeutil import iso, utcnow

log = logging.getLogger(__name__)
DECISIONS = ("approved", "rejected", "timeout")
HITL_APPROVE, HITL_REJECT = "Approve", "Reject"   # ApprovalOperator's fixed options


class ApprovalError(ValueError):
    """A decision that cannot be applied (unknown correction, bad decision, already decided)."""


def pending_approvals(ledger: Ledger, run_id: str) -> list[dict]:
    """Corrections of the run waiting for a decision, with their approval request."""
    with ledger.session() as s:
        rows = s.execute(select(m.Correction, m.Approval).join(m.Approval, m.Approval.correction_id == m.Correction.id)
                         .where(m.Correction.run_id == run_id, m.Correction.status == "pending_approval",
                                m.Approval.decision.is_(None))
                         .order_by(m.Correction.id)).all()
        return [{"correction_id": c.id, "approval_id": a.id, "channel": c.channel, "sku": c.sku,
                 "channel_sku": c.channel_sku, "location": c.location, "from_qty": c.from_qty, "to_qty": c.to_qty,
                 "requested_at": iso(a.requested_at), "idempotency_key": c.idempotency_key} for c, a in rows]


def current_target(s, settings, c: m.Correction) -> tuple[int | None, str]:
    """The correction's target recomputed from the latest complete ERP inventory snapshot (the same expected_base as
    the checks; orders in flight at planning count as planned) -> (target, what it was based on); None: no ERP
    evidence to compare with."""
    import pandas as pd

    from omnirecon.checks.expected import expected_base

    finding = s.scalars(select(m.Finding).where(m.Finding.run_id == c.run_id,
                                                m.Finding.fingerprint == c.fingerprint)).first()
    erp = (((finding.evidence or {}).get("systems") or {}).get("erp") or {}) if finding else {}
    if erp.get("value") is None:
        return None, "no ERP value recorded with the request"
    snap = s.scalars(select(m.Snapshot).where(m.Snapshot.system == "erp", m.Snapshot.kind == "inventory",
                                              m.Snapshot.status == "complete")
                     .order_by(m.Snapshot.id.desc()).limit(1)).first()
    if snap is None:
        return None, "no complete ERP inventory snapshot"
    skus = {c.sku} | {comp["sku"] for b in settings["bundles"] if b["sku"] == c.sku for comp in b["components"]}
    cols = ["sku", "location", "on_hand", "committed", "available", "updated_at"]
    rows = s.execute(select(*[getattr(m.InventoryRow, k) for k in cols])
                     .where(m.InventoryRow.snapshot_id == snap.id, m.InventoryRow.sku.in_(skus))).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=cols)
    for col in ("on_hand", "committed", "available"):
        frame[col] = pd.to_numeric(frame[col]).astype("Float64")
    base = expected_base(frame, settings, [c.channel])
    hit = base[(base["sku"] == c.sku) & (base["channel_location"] == c.location)] if len(base) else base
    now_raw = int(hit["base"].iloc[0]) // max(1, int(erp.get("units_per_channel_unit") or 1)) if len(hit) else 0
    target = max(0, c.to_qty + now_raw - int(erp["value"]))
    return target, f"ERP snapshot {snap.id} implies {now_raw} (the request was made on {int(erp['value'])})"


def decide(ledger: Ledger, correction_id: int, decision: str, by: str, comment: str | None = None,
           timeout_default: str = "reject", settings=None) -> dict:
    """Record a person's (or the timeout's) decision and move the correction on. Returns its new state.
    With settings, an approval re-checks the target against the current ERP value before it becomes pushable."""
    if decision not in DECISIONS:
        raise ApprovalError(f"decision must be one of {', '.join(DECISIONS)} (got {decision!r})")
    if timeout_default not in ("reject", "approve"):
        raise ApprovalError(f"timeout_default must be reject or approve (got {timeout_default!r})")
    if not by:
        raise ApprovalError("a decision needs the name of who made it")
    effective = decision if decision != "timeout" else ("approved" if timeout_default == "approve" else "rejected")
    with ledger.session() as s:
        q = select(m.Correction).where(m.Correction.id == int(correction_id))
        c = s.scalars(q.with_for_update() if ledger.dialect == "postgresql" else q).first()
        if c is None:
            raise ApprovalError(f"correction {correction_id}: not found")
        approval = s.scalars(select(m.Approval).where(m.Approval.correction_id == c.id)
                             .order_by(m.Approval.id.desc()).limit(1)).first()
        if c.status != "pending_approval" or (approval is not None and approval.decision is not None):
            raise ApprovalError(f"correction {correction_id}: not waiting for approval (status {c.status}"
                                f"{', decided ' + approval.decision if approval and approval.decision else ''})")
        if approval is None:
            approval = m.Approval(correction_id=c.id)
            s.add(approval)
        approval.decision, approval.decided_by, approval.decided_at = decision, by, utcnow()
        approval.comment = comment
        previous = c.status
        c.status = "planned" if effective == "approved" else "rejected"
        c.detail = (f"{'approved' if effective == 'approved' else 'rejected'} by {by}"
                    f"{' (timeout, default ' + timeout_default + ')' if decision == 'timeout' else ''}"
                    f"{': ' + comment if comment else ''}")
        if effective == "approved" and settings is not None:
            target, basis = current_target(s, settings, c)
            if target is not None and target != c.to_qty:
                c.status = "withdrawn" if target == c.from_qty else "superseded"
                c.detail += (f"; not pushed: the ERP moved since the request ({basis}), the target is now {target}"
                             f"{'' if c.status == 'withdrawn' else ', the next reconcile asks again'}")
        c.updated_at = utcnow()
        s.add(m.AuditLog(run_id=c.run_id, actor=by[:64], system=c.channel, operation="approval_decision",
                         target=f"{c.channel_sku}@{c.location}", correction_id=c.id,
                         idempotency_key=c.idempotency_key, outcome=c.status,
                         request={"decision": decision, "from_status": previous}, detail=c.detail))
        log.info("correction %s %s by %s -> %s", c.id, decision, by, c.status)
        return {"correction_id": c.id, "decision": decision, "status": c.status}


def apply_hitl_result(ledger: Ledger, correction_ids: list[int], chosen_options: list[str] | None, by: str,
                      comment: str | None = None, timeout_default: str = "reject", settings=None) -> list[dict]:
    """Apply an ApprovalOperator response (["Approve"] / ["Reject"]; None or empty = timed out) to every
    correction still pending among correction_ids; the others (superseded, withdrawn, decided) stay as they are."""
    options = chosen_options or []
    decision = "approved" if HITL_APPROVE in options else "rejected" if HITL_REJECT in options else "timeout"
    out = []
    with ledger.session() as s:
        states = dict(s.execute(select(m.Correction.id, m.Correction.status)
                                .where(m.Correction.id.in_([int(i) for i in correction_ids]))).all())
    for cid, status in states.items():
        if status == m.OPEN_REQUEST:
            out.append(decide(ledger, cid, decision, by, comment, timeout_default, settings=settings))
        else:
            log.info("correction %s answered %s by %s after it became %s: nothing changes", cid, decision, by, status)
            out.append({"correction_id": cid, "decision": None, "status": status})
    return out


def approve_all(ledger: Ledger, settings, *, run_id: str, by: str) -> list[dict]:
    """Approve every correction of the run still waiting (rehearsals, `--approve-all`); returns push batches
    for exactly those corrections, numbered after the run's existing batches."""
    from omnirecon.remediation.plan import make_batches

    outcomes = [decide(ledger, p["correction_id"], "approved", by=by, comment="approve_all", settings=settings)
                for p in pending_approvals(ledger, run_id)]
    approved = [o["correction_id"] for o in outcomes if o["status"] == "planned"]
    return make_batches(ledger, run_id, only_ids=approved) if approved else []


def _md(value) -> str:
    """Markdown-safe cell text: no table breaks, no HTML, no code spans."""
    text = "" if value is None else str(value)
    for ch in ("\\", "|", "`", "*", "_", "[", "]", "<", ">", "#"):
        text = text.replace(ch, "\\" + ch)
    return " ".join(text.split())


def approval_request_body(ledger: Ledger, correction_ids: list[int]) -> str:
    """Markdown for the ApprovalOperator body: each correction with the evidence behind it."""
    with ledger.session() as s:
        rows = list(s.scalars(select(m.Correction).where(m.Correction.id.in_([int(i) for i in correction_ids]))
                              .order_by(m.Correction.id)))
        findings = {}
        fps = {c.fingerprint for c in rows if c.fingerprint}
        if fps:
            for f in s.scalars(select(m.Finding).where(m.Finding.fingerprint.in_(fps),
                                                       m.Finding.run_id.in_({c.run_id for c in rows}))):
                findings[(f.run_id, f.fingerprint)] = f
    if not rows:
        return "No corrections are waiting for approval."
    total = sum(abs(c.to_qty - c.from_qty) for c in rows)
    lines = [f"**{len(rows)} inventory correction(s)** moving {total} units in all need approval.",
             "Approve pushes every correction below to the channel (ERP is the source of truth); "
             "Reject leaves the channels unchanged.", "",
             "| # | channel | SKU | channel SKU | location | channel now | ERP implies | change | diagnosis | evidence |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in rows:
        f = findings.get((c.run_id, c.fingerprint))
        lines.append("| " + " | ".join(_md(v) for v in (
            c.id, c.channel, c.sku, c.channel_sku, c.location, c.from_qty, c.to_qty, f"{c.to_qty - c.from_qty:+d}",
            f.diagnosis if f else "", f.detail if f else c.detail or "")) + " |")
    lines += ["", f"Run: {_md(rows[0].run_id)}"]
    return "\n".join(lines)
