"""Alerts: everything the pipeline did not fix itself, with an evidence package, as ONE digest per run.

What alerts: findings that were not pushed and verified (orders, mapping, listing state, freshness, blocked,
pending, dry-run or failed corrections), guardrail trips, and failed writes. An open finding alerts once,
reminds after alert_reminder_hours, and gets one resolved notice when it clears (FindingState bookkeeping,
one Alert row per item and transport). Transports: e-mail via the Airflow SMTP provider when alert
recipients are configured, Slack (runtime `slack_channel`) when a `slack_default` connection exists, else the log.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from omnirecon.config import Settings
from omnirecon.links import run_link, run_url
from omnirecon.ledger import finding_store
from omnirecon.ledger import models as m
from omnirecon.ledger import queries
from omnirecon.ledger.db import Ledger
from omnirecon.report import mail, slack
from omnirecon.report.templating import render
from omnirecon.timeutil import iso, parse_ts, utcnow

log = logging.getLogger(__name__)
ORDER_CHECKS = ("order_missing", "order_status_mismatch", "order_sequence")
EVIDENCE_LOOKUPS = 200          # items that get per-SKU/order look-ups (the rest: the finding's own evidence)
API_ERRORS_SHOWN = 5
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass
class AlertItem:
    fingerprint: str
    kind: str                      # opened | reminder | resolved | guardrail | write_failed
    severity: str
    title: str
    channel: str
    check: str | None = None
    sku: str | None = None
    location: str | None = None
    order_id: str | None = None
    diagnosis: str | None = None
    detail: str = ""
    correction: str | None = None  # the correction's status and detail, when there is one
    values: list = field(default_factory=list)      # [{"system", "value", "updated_at"}]
    evidence: dict = field(default_factory=dict)    # the finding's own evidence


@dataclass
class AlertDigest:
    run_id: str
    run_url: str
    generated_at: str
    items: list = field(default_factory=list)
    connectors: list = field(default_factory=list)  # [{"system", "kind", "status", "fetched_at", "error"}]
    api_errors: list = field(default_factory=list)  # [{"at", "system", "operation", "status_code", "message"}]

    @property
    def subject(self) -> str:
        crit = sum(1 for i in self.items if i.severity == "critical" and i.kind != "resolved")
        opened = sum(1 for i in self.items if i.kind != "resolved")
        resolved = len(self.items) - opened
        return (f"[omnirecon] {opened} issue(s) need attention ({crit} critical), {resolved} resolved"
                f" - run {self.run_id}")

    def counts(self) -> dict:
        out: dict[str, int] = {}
        for i in self.items:
            out[i.kind] = out.get(i.kind, 0) + 1
        return out

    def html(self) -> str:
        return render("alert_digest.html.j2", d=self, subject=self.subject)

    def text(self) -> str:
        return render("alert_digest.txt.j2", d=self, subject=self.subject)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "run_url": self.run_url, "counts": self.counts(),
                "items": [asdict(i) for i in self.items]}


def _digest_fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


# -- collection ---------------------------------------------------------------------------------
def collect_alerts(ledger: Ledger, settings: Settings, *, run_id: str, now: datetime | None = None) -> AlertDigest:
    """Decide what this run alerts (new, reminder, resolved, guardrail, failed writes); sends nothing."""
    now = now or utcnow()
    remind_after = timedelta(hours=float(settings.runtime.get("alert_reminder_hours", 24)))
    with ledger.session() as s:
        digest = AlertDigest(run_id=run_id, run_url=run_link(settings, queries.run(s, run_id), run_id),
                             generated_at=iso(now))
        findings = queries.run_findings(s, run_id)
        corrections: dict[str, list[m.Correction]] = {}
        for c in queries.run_corrections(s, run_id):
            corrections.setdefault(c.fingerprint or "", []).append(c)
        present = {f.fingerprint for f in findings}
        states = queries.finding_states(s, present)
        sent_fps = queries.alerted_fingerprints(s, run_id)

        for f in findings:
            if f.action == "none":
                continue
            fixes = corrections.get(f.fingerprint, [])
            if fixes and all(c.status == "verified" for c in fixes):
                continue
            state = states.get(f.fingerprint)
            if (state is None or not state.alerts_sent or state.last_alert_at is None
                    or parse_ts(state.first_seen_at) > parse_ts(state.last_alert_at)):   # new, or re-opened
                kind = "opened"
            elif now - parse_ts(state.last_alert_at) >= remind_after:
                kind = "reminder"
            else:
                continue
            if f.fingerprint in sent_fps:
                continue
            digest.items.append(_finding_item(f, kind, fixes))

        # resolution is the checks' lifecycle (FindingState.status, scope-aware); alerts only announce it
        for state in queries.states_awaiting_resolved_notice(s):
            if state.fingerprint not in present:
                digest.items.append(AlertItem(
                    fingerprint=state.fingerprint, kind="resolved", severity="info", channel=state.channel,
                    check=state.check, sku=state.sku, order_id=state.order_id,
                    title=f"resolved: {state.check} {state.sku or state.order_id or ''} on {state.channel}".strip(),
                    detail=f"open since {iso(parse_ts(state.first_seen_at))}; no longer found"))

        for trip in queries.audit_entries(s, run_id, "guardrail_trip"):
            fp = _digest_fingerprint("guardrail", run_id, trip.system or "")
            if fp in sent_fps or any(i.fingerprint == fp for i in digest.items):
                continue
            digest.items.append(AlertItem(fingerprint=fp, kind="guardrail", severity="critical",
                                          channel=trip.system or "", title=f"guardrail tripped on {trip.system}",
                                          detail=trip.detail or "", evidence=dict(trip.request or {})))

        for c in (c for cs in corrections.values() for c in cs if c.status == "failed"):
            if c.idempotency_key in sent_fps:
                continue
            digest.items.append(AlertItem(
                fingerprint=c.idempotency_key, kind="write_failed", severity="critical", channel=c.channel,
                sku=c.sku, location=c.location, title=f"correction failed: {c.sku} on {c.channel}",
                detail=c.detail or "", correction=f"failed after {c.attempts} attempt(s)",
                values=[{"system": c.channel, "value": f"pushed {c.to_qty} (was {c.from_qty})", "updated_at": iso(
                    parse_ts(c.updated_at))}]))

        digest.items.sort(key=lambda i: (i.kind == "resolved", SEVERITY_ORDER.get(i.severity, 3), i.channel,
                                         i.sku or i.order_id or ""))
        _add_evidence(s, settings, digest)
    return digest


def _finding_item(f: m.Finding, kind: str, fixes: list[m.Correction]) -> AlertItem:
    what = f.sku or f.order_id or ""
    correction = None
    if fixes:
        correction = "; ".join(f"{c.status}" + (f": {c.detail}" if c.detail else "") for c in fixes)
    elif f.action in ("push", "approval"):
        correction = "no correction planned"
    return AlertItem(fingerprint=f.fingerprint, kind=kind, severity=f.severity, channel=f.channel, check=f.check,
                     sku=f.sku, location=f.location, order_id=f.order_id, diagnosis=f.diagnosis,
                     title=f"{f.check} {what} on {f.channel}".replace("  ", " "), detail=f.detail,
                     correction=correction, evidence={k: v for k, v in (f.evidence or {}).items() if k != "push"},
                     values=[{"system": "erp", "value": f.expected, "updated_at": None},
                             {"system": f.channel, "value": f.observed, "updated_at": None}]
                     if f.expected is not None or f.observed is not None else [])


# -- evidence -----------------------------------------------------------------------------------
def _add_evidence(s, settings: Settings, digest: AlertDigest) -> None:
    systems = ["erp"] + list(settings.channels)
    for system in systems:
        for kind in ("inventory", "listings", "orders"):
            snap = queries.latest_attempt(s, system, kind)
            if snap is not None:
                digest.connectors.append({"system": system, "kind": kind, "status": snap.status,
                                          "fetched_at": iso(parse_ts(snap.fetched_at or snap.finished_at)),
                                          "error": (snap.error or "")[:300]})
    since = parse_ts(digest.generated_at) - timedelta(hours=24)
    for ev in queries.api_errors(s, since, API_ERRORS_SHOWN * 4):
        digest.api_errors.append({"at": iso(parse_ts(ev.at)), "system": ev.system, "operation": ev.operation,
                                  "status_code": ev.status_code, "outcome": ev.outcome,
                                  "message": (ev.message or "")[:300]})
    snaps = {(sys_, kind): queries.latest_snapshot(s, sys_, kind) for sys_ in systems for kind in ("inventory", "orders")}
    for item in digest.items[:EVIDENCE_LOOKUPS]:
        if item.kind in ("resolved", "guardrail"):
            continue
        if item.sku:
            item.values = _sku_values(s, settings, snaps, item) or item.values
        elif item.order_id:
            item.values = _order_values(s, snaps, item) or item.values


def _sku_values(s, settings: Settings, snaps: dict, item: AlertItem) -> list[dict]:
    out = []
    for system in ["erp"] + ([item.channel] if item.channel != "erp" else []):
        snap = snaps.get((system, "inventory"))
        if snap is None:
            out.append({"system": system, "value": "no complete snapshot", "updated_at": None})
            continue
        sku = item.sku if system == "erp" else settings.alias(item.sku, system)[0]
        rows = queries.inventory_rows(s, snap.id, sku)
        if not rows:
            out.append({"system": system, "value": f"{sku}: not listed", "updated_at": None})
        for r in rows:
            value = r.available if system != "erp" else f"{r.available} available ({r.on_hand} on hand, {r.committed} committed)"
            out.append({"system": system, "value": f"{sku} @ {r.location}: {value}",
                        "updated_at": iso(parse_ts(r.updated_at))})
    return out


def _order_values(s, snaps: dict, item: AlertItem) -> list[dict]:
    out = []
    for (system, kind), snap in snaps.items():
        if kind != "orders" or snap is None:
            continue
        for r in queries.order_rows(s, snap.id, item.order_id):
            out.append({"system": system, "value": f"{r.status} ({r.raw_status or ''})".replace(" ()", ""),
                        "updated_at": iso(parse_ts(r.updated_at))})
    return out


# -- sending and bookkeeping ----------------------------------------------------------------------
def deliver_digest(ledger: Ledger, settings: Settings, digest: AlertDigest, *, conn_id: str = "smtp_default",
                   slack_conn_id: str = "slack_default", now: datetime | None = None) -> dict:
    """Send the digest (one e-mail, one Slack message) and record it; nothing to send -> nothing recorded."""
    if not digest.items:
        return {"run_id": digest.run_id, "items": 0, "transports": []}
    now = now or utcnow()
    transports: list[tuple[str, list | None]] = []
    recipients = list(settings.runtime.get("alert_recipients") or [])
    if recipients:
        msg = mail.build_message(subject=digest.subject, to=recipients, text=digest.text(), html=digest.html())
        mail.send_message(msg, recipients, conn_id=conn_id)
        transports.append(("email", recipients))
    if mail.connection_exists(slack_conn_id):
        try:
            slack.post(_slack_text(digest), channel=settings.runtime.slack_channel, conn_id=slack_conn_id)
            transports.append(("slack", [settings.runtime.slack_channel]))
        except Exception as e:   # e-mail already went; do not lose its bookkeeping
            log.warning("slack alert not sent: %s", type(e).__name__)
    if not transports:
        log.warning("no alert recipients configured; digest logged only:\n%s", digest.text())
        transports.append(("log", None))
    _record(ledger, digest, transports, now)
    return {"run_id": digest.run_id, "items": len(digest.items), "counts": digest.counts(),
            "transports": [t for t, _ in transports], "run_url": digest.run_url}


def _slack_text(digest: AlertDigest) -> str:
    """Every value is escaped: titles carry SKUs and details read from the channels."""
    lines = [slack.escape(digest.subject), slack.escape(digest.run_url)]
    for i in digest.items[:20]:
        lines.append(f"- [{i.severity}] {i.kind}: {slack.escape(i.title)}")
    if len(digest.items) > 20:
        lines.append(f"... and {len(digest.items) - 20} more")
    return "\n".join(lines)


def _record(ledger: Ledger, digest: AlertDigest, transports, now: datetime) -> None:
    with ledger.session() as s:
        for item in digest.items:
            for transport, recipients in transports:
                s.add(m.Alert(fingerprint=item.fingerprint, kind=item.kind, transport=transport,
                              run_id=digest.run_id, sent_at=now, subject=item.title[:2000], recipients=recipients))
            if item.kind in ("guardrail", "write_failed"):
                continue
            finding_store.record_alert(s, fingerprint=item.fingerprint, kind=item.kind, check=item.check,
                                       channel=item.channel, sku=item.sku, order_id=item.order_id,
                                       severity=item.severity, run_id=digest.run_id, now=now)


def send_alerts(ledger: Ledger, settings: Settings, *, run_id: str, dag_id: str | None = None,
                airflow_run_id: str | None = None, conn_id: str = "smtp_default",
                now: datetime | None = None) -> dict:
    """Collect and send this run's alert digest (the alert task's one call). dag_id/airflow_run_id, when
    given, build the link into the Airflow UI; otherwise they come from the ledger's run."""
    digest = collect_alerts(ledger, settings, run_id=run_id, now=now)
    if dag_id and airflow_run_id:
        digest.run_url = run_url(settings, dag_id, airflow_run_id)
    return deliver_digest(ledger, settings, digest, conn_id=conn_id, now=now)


run_alerts = send_alerts
