"""What the omnirecon view in the Airflow UI shows, read from the ledger: latest drift per channel, open
findings with diagnosis and evidence, pending approvals, last snapshot age per system, the latest report."""
from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from omnirecon.config import Settings, reports_dir
from omnirecon.ledger import models as m
from omnirecon.ledger import queries
from omnirecon.ledger.db import Ledger
from omnirecon.model.values import severity_rank
from omnirecon.report import chain
from omnirecon.report.daily import per_channel, sells_past_zero
from omnirecon.timeutil import iso, parse_ts, utcnow

SNAPSHOT_KINDS = ("inventory", "listings", "orders")
MAX_FINDINGS = 200


def latest_report() -> Path | None:
    days = sorted(p for p in reports_dir().glob("*/report.html") if p.is_file())
    return days[-1] if days else None


def run_href(run: m.Run | None, run_id: str | None) -> str | None:
    """The run's page in the Airflow UI, relative to the API server that serves this view."""
    if not run_id:
        return None
    dag_id, airflow_run_id = queries.airflow_ids(run, run_id)
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(airflow_run_id, safe='')}"


def _age_minutes(at, now: datetime) -> float | None:
    ts = parse_ts(at)
    return None if ts is None else max((now - ts).total_seconds() / 60.0, 0.0)


def _snapshot_ages(s, settings: Settings, now: datetime) -> list[dict]:
    limit = int(settings["freshness_minutes"])
    systems = ["erp", *settings.channels]
    systems += sorted(queries.snapshot_systems(s) - set(systems))
    out = []
    for system in systems:
        for kind in SNAPSHOT_KINDS:
            latest = queries.latest_attempt(s, system, kind)
            failed = latest is not None and latest.status != "complete"
            complete = queries.latest_snapshot(s, system, kind) if failed else latest
            fetched = (complete.fetched_at or complete.finished_at) if complete is not None else None
            age = _age_minutes(fetched, now)
            out.append({"system": system, "kind": kind, "last_attempt": latest.status if latest else "none",
                        "fetched_at": iso(parse_ts(fetched)) if fetched else None,
                        "age_minutes": None if age is None else round(age, 1),
                        "stale": age is None or age > limit or failed,
                        "error": (latest.error or "")[:300] if failed else ""})
    return out


def _open_findings(s, now: datetime) -> tuple[list[dict], int]:
    states = queries.open_states(s)
    if not states:
        return [], 0
    rows = queries.latest_findings_of(s, states)
    rows.sort(key=lambda f: (severity_rank(f.severity, 9), f.channel, f.check, f.sku or "", f.order_id or ""))
    runs = queries.runs(s, {f.run_id for f in rows[:MAX_FINDINGS]})
    out = []
    for f in rows[:MAX_FINDINGS]:
        st = states[f.fingerprint]
        out.append({"check": f.check, "severity": f.severity, "channel": f.channel, "sku": f.sku or "",
                    "location": f.location or "", "order_id": f.order_id or "", "expected": f.expected or "",
                    "observed": f.observed or "", "delta": f.delta, "diagnosis": f.diagnosis, "action": f.action,
                    "detail": f.detail, "problem": sells_past_zero(f), "evidence": f.evidence or {},
                    "first_seen_at": iso(parse_ts(st.first_seen_at)),
                    "open_hours": round((_age_minutes(st.first_seen_at, now) or 0) / 60.0, 1),
                    "run_id": f.run_id, "run_href": run_href(runs.get(f.run_id), f.run_id)})
    return out, len(rows)


def _pending_approvals(s) -> list[dict]:
    corrections = queries.corrections_waiting_for_approval(s)
    asked = queries.open_approval_requests(s, [c.id for c in corrections])
    runs = queries.runs(s, {c.run_id for c in corrections})
    return [{"id": c.id, "channel": c.channel, "sku": c.sku, "location": c.location, "from_qty": c.from_qty,
             "to_qty": c.to_qty, "change": c.to_qty - c.from_qty, "detail": c.detail or "",
             "created_at": iso(parse_ts(c.created_at)),
             "requested_at": iso(parse_ts(asked[c.id].requested_at)) if c.id in asked else None,
             "run_id": c.run_id, "run_href": run_href(runs.get(c.run_id), c.run_id)} for c in corrections]


def overview(ledger: Ledger, settings: Settings, now: datetime | None = None) -> dict:
    """Everything the view renders, as plain values (the template escapes them)."""
    now = now or utcnow()
    with ledger.session() as s:
        run = queries.latest_reconcile_run(s, now)
        findings = queries.run_findings(s, run.id if run else None)
        corrections = queries.run_corrections(s, run.id if run else None)
        open_findings, open_total = _open_findings(s, now)
        latest = {"run_id": run.id if run else None, "status": run.status if run else None,
                  "started_at": iso(parse_ts(run.started_at)) if run else None,
                  "skus_checked": int((run.stats or {}).get("skus_checked", 0)) if run else 0,
                  "href": run_href(run, run.id) if run else None}
        report = queries.latest_report(s)
        report_row = {"report_date": report.report_date, "status": report.status} if report else None
        hops = chain.chain_hops(s)
        picture = chain.render_chain_png(hops)
        return {"hops": hops, "hop_history": chain.hop_history(s, now), "chain_summary": chain.summary(hops),
                "chain_src": "data:image/png;base64," + base64.b64encode(picture).decode("ascii") if picture else None,
                "now": iso(now), "latest_run": latest, "drift": per_channel(findings, corrections),
                "open_findings": open_findings, "open_total": open_total, "max_findings": MAX_FINDINGS,
                "approvals": _pending_approvals(s), "snapshots": _snapshot_ages(s, settings, now),
                "freshness_minutes": int(settings["freshness_minutes"]), "report": report_row,
                "report_file": latest_report() is not None}
