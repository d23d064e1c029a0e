"""The daily drift report: headline figures, changes since the previous report, top offenders, per-channel
table, a 14-day trend chart and every finding as CSV; rendered from the ledger (so any past day can be
regenerated) and e-mailed through the Airflow SMTP provider."""
from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from omnirecon.config import Settings
from omnirecon.links import run_link
from omnirecon.ledger import models as m
from omnirecon.ledger import queries
from omnirecon.ledger.db import Ledger
from omnirecon.report import chain, exports, mail
from omnirecon.report.templating import render
from omnirecon.timeutil import iso, parse_ts, utcnow

log = logging.getLogger(__name__)
PENALTY_PER_INCIDENT = 35.0          # USD; practitioners quote $25-50 per oversell incident
TREND_DAYS = 14
TOP_OFFENDERS = 10
CHANGES_LISTED = 20
CHART_CID = "trend-chart"
CHAIN_CID = "trigger-chain"
ORDER_CHECKS = ("order_missing", "order_status_mismatch", "order_sequence")


@dataclass
class ReportContent:
    html: str                  # as e-mailed: the chart is cid:trend-chart
    text: str
    chart_png: bytes
    findings_csv: bytes
    summary: dict
    subject: str = ""
    report_date: str = ""
    html_standalone: str = ""  # report.html: the same page with the chart as a data: URI
    chain_png: bytes | None = None   # the trigger chain's picture (None: no hop mapped yet)

    def write_html(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html_standalone, encoding="utf-8")
        return path


@dataclass
class _Day:
    start: datetime            # UTC bounds of the report day in the report timezone
    end: datetime


def _day_bounds(d: date, tz: ZoneInfo) -> _Day:
    start = datetime.combine(d, time.min, tzinfo=tz).astimezone(timezone.utc)
    end = datetime.combine(d + timedelta(days=1), time.min, tzinfo=tz).astimezone(timezone.utc)
    return _Day(start, end)


def _headline(run: m.Run | None, findings: list[m.Finding], corrections: dict, stale: list[dict],
              penalty: float) -> dict:
    drift = [f for f in findings if f.check == "inventory_drift" and f.diagnosis != "in_flight"]
    oversell = [f for f in drift if (f.delta or 0) > 0]
    checked = int(((run.stats if run else None) or {}).get("skus_checked", 0))
    disagree = len({f.sku for f in drift if f.sku})
    return {
        "skus_checked": checked,
        "skus_in_disagreement": disagree,
        "agreement_pct": (100.0 * max(checked - disagree, 0) / checked) if checked else None,
        "oversell_units": sum(f.delta or 0 for f in oversell),
        "oversell_skus": len({f.sku for f in oversell if f.sku}),
        "oversell_incidents": len(oversell),
        "penalty_per_incident": penalty,
        "penalty_exposure": penalty * len(oversell),
        "corrections": {
            "verified": corrections.get("verified", 0),
            "pending": corrections.get("pending_approval", 0) + corrections.get("planned", 0)
            + corrections.get("applied", 0),
            "blocked": corrections.get("blocked_guardrail", 0),
            "failed": corrections.get("failed", 0),
            "other": {k: v for k, v in corrections.items()
                      if k not in ("verified", "pending_approval", "planned", "applied", "blocked_guardrail",
                                   "failed")},
        },
        "order_mismatches": {c: sum(1 for f in findings if f.check == c) for c in ORDER_CHECKS},
        "findings_total": len(findings),
        "critical": sum(1 for f in findings if f.severity == "critical"),
        "stale_systems": stale,
    }


def _stale_systems(s, settings: Settings, run: m.Run | None, findings: list[m.Finding]) -> list[dict]:
    """Systems whose latest snapshot (as of the run) is failed/unusable/stale, or that a freshness finding names
    (e.g. a channel that has not followed the ERP); each with when its inventory was last fetched."""
    out: dict[str, dict] = {}
    latest: dict[str, m.Snapshot] = {}
    if run is not None:
        as_of = parse_ts(run.started_at)
        limit = timedelta(minutes=int(settings["freshness_minutes"]))
        for system in ["erp"] + list(settings.channels):
            snap = queries.latest_attempt(s, system, "inventory", started_by=run.started_at)
            if snap is None:
                continue
            latest[system] = snap
            fetched = parse_ts(snap.fetched_at or snap.finished_at)
            if snap.status != "complete":
                out[system] = {"system": system, "reason": f"inventory snapshot {snap.status}",
                               "fetched_at": iso(fetched)}
            elif fetched is None or as_of - fetched > limit:
                out[system] = {"system": system, "reason": "inventory snapshot older than "
                               f"{int(settings['freshness_minutes'])} min", "fetched_at": iso(fetched)}
    for f in findings:
        if f.check == "freshness" and f.channel not in out:
            snap = latest.get(f.channel)
            fetched = parse_ts(snap.fetched_at or snap.finished_at) if snap is not None else None
            out[f.channel] = {"system": f.channel, "reason": f.detail, "fetched_at": iso(fetched) if fetched else None}
    return sorted(out.values(), key=lambda x: x["system"])


def sells_past_zero(f: m.Finding) -> str | None:
    """Why a channel keeps selling an item the ERP has none of (inventory policy CONTINUE, or not tracked):
    quantities agree, the listing is what is wrong."""
    listing = (f.evidence or {}).get("listing") or {}
    if f.check != "inventory_drift" or f.delta or not listing:
        return None
    if listing.get("inventory_policy") == "CONTINUE":
        return "sells past zero (inventory policy CONTINUE)"
    if listing.get("tracked") is False:
        return "sells past zero (inventory not tracked)"
    return None


def per_channel(findings: list[m.Finding], corrections: list[m.Correction]) -> list[dict]:
    channels = sorted({f.channel for f in findings} | {c.channel for c in corrections})
    rows = []
    for ch in channels:
        fs = [f for f in findings if f.channel == ch]
        cs = [c for c in corrections if c.channel == ch]
        drift = [f for f in fs if f.check == "inventory_drift" and f.diagnosis != "in_flight"]
        rows.append({
            "channel": ch, "findings": len(fs), "critical": sum(1 for f in fs if f.severity == "critical"),
            "drift_skus": len({f.sku for f in drift if f.sku}),
            "oversell_units": sum(f.delta for f in drift if (f.delta or 0) > 0),
            "orders": sum(1 for f in fs if f.check in ORDER_CHECKS),
            "verified": sum(1 for c in cs if c.status == "verified"),
            "pending": sum(1 for c in cs if c.status in ("pending_approval", "planned", "applied")),
            "blocked": sum(1 for c in cs if c.status == "blocked_guardrail"),
            "failed": sum(1 for c in cs if c.status == "failed"),
        })
    return rows


def _finding_view(f: m.Finding) -> dict:
    return {"check": f.check, "severity": f.severity, "channel": f.channel, "sku": f.sku or "",
            "location": f.location or "", "order_id": f.order_id or "", "expected": f.expected or "",
            "observed": f.observed or "", "delta": f.delta, "diagnosis": f.diagnosis, "action": f.action,
            "detail": f.detail, "problem": sells_past_zero(f)}


def _changes(s, report_date: date, run: m.Run | None, findings: list[m.Finding]) -> dict:
    prev = queries.previous_report(s, report_date.isoformat())
    current = {f.fingerprint: f for f in findings}
    previous: dict[str, m.Finding] = {}
    if prev is not None and (run is None or prev.run_id != run.id):
        for f in queries.run_findings(s, prev.run_id):
            previous[f.fingerprint] = f
    new = [current[k] for k in current if k not in previous]
    resolved = [previous[k] for k in previous if k not in current]
    still = [current[k] for k in current if k in previous]
    return {"previous_report": prev.report_date if prev else None,
            "new": len(new), "resolved": len(resolved), "still_open": len(still),
            "new_list": [_finding_view(f) for f in new[:CHANGES_LISTED]],
            "resolved_list": [_finding_view(f) for f in resolved[:CHANGES_LISTED]]}


def _trend(s, report_date: date, tz: ZoneInfo) -> list[dict]:
    first = _day_bounds(report_date - timedelta(days=TREND_DAYS - 1), tz)
    last = _day_bounds(report_date, tz)
    last_of_day: dict[date, m.Run] = {}
    for r in queries.reconcile_runs_between(s, first.start, last.end):
        last_of_day[parse_ts(r.started_at).astimezone(tz).date()] = r   # the day's last run wins
    counts = queries.finding_counts_by_run(s, [r.id for r in last_of_day.values()])
    out = []
    for k in range(TREND_DAYS):
        d = report_date - timedelta(days=TREND_DAYS - 1 - k)
        run = last_of_day.get(d)
        c = counts.get(run.id, {}) if run else {}
        out.append({"date": d.isoformat(), "has_run": run is not None,
                    "inventory_drift": c.get("inventory_drift", 0),
                    "orders": sum(c.get(x, 0) for x in ORDER_CHECKS),
                    "other": sum(v for x, v in c.items() if x != "inventory_drift" and x not in ORDER_CHECKS)})
    return out


def render_chart(trend: list[dict]) -> bytes:
    """14-day stacked bars of findings by kind (PNG, matplotlib Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 2.8), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    labels = [t["date"][5:] for t in trend]
    drift = [t["inventory_drift"] for t in trend]
    orders = [t["orders"] for t in trend]
    other = [t["other"] for t in trend]
    ax.bar(labels, drift, color="#cf222e", label="inventory drift")
    ax.bar(labels, orders, bottom=drift, color="#0969da", label="orders")
    ax.bar(labels, other, bottom=[a + b for a, b in zip(drift, orders)], color="#9a6700", label="other")
    ax.set_title(f"Findings per day (last reconciliation of the day), {len(trend)} days", fontsize=10)
    ax.tick_params(axis="x", labelsize=7, rotation=45)
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def build_report(ledger: Ledger, settings: Settings, *, report_date: date, run_id: str | None = None,
                 links: dict | None = None, penalty_per_incident: float | None = None) -> ReportContent:
    """Render the report for report_date from the ledger (the day's last reconciliation unless run_id is
    given) and upsert its Report row."""
    tz = ZoneInfo(str(settings.runtime.get("report_timezone") or "UTC"))
    penalty = float(penalty_per_incident if penalty_per_incident is not None
                    else settings.get("x_penalty_per_incident", PENALTY_PER_INCIDENT))
    day = _day_bounds(report_date, tz)
    links = dict(links or {})
    with ledger.session() as s:
        run = queries.run(s, run_id) if run_id else queries.latest_reconcile_run(s, day.end)
        if run_id and run is None:
            raise ValueError(f"run {run_id!r}: not in the ledger")
        rid = run.id if run else None
        findings = queries.run_findings(s, rid)
        corrections = queries.day_corrections(s, day.start, day.end, rid)
        by_status: dict[str, int] = {}
        for c in corrections:
            by_status[c.status] = by_status.get(c.status, 0) + 1
        stale = _stale_systems(s, settings, run, findings)
        headline = _headline(run, findings, by_status, stale, penalty)
        changes = _changes(s, report_date, run, findings)
        trend = _trend(s, report_date, tz)
        offenders = sorted((f for f in findings if f.check == "inventory_drift" and f.delta),
                           key=lambda f: (-abs(f.delta), f.channel, f.sku or ""))[:TOP_OFFENDERS]
        offenders += [f for f in findings if sells_past_zero(f)][:TOP_OFFENDERS]
        channels = per_channel(findings, corrections)
        if run is not None and "run" not in links:
            links["run"] = run_link(settings, run, rid)
        run_started = iso(parse_ts(run.started_at)) if run else None
        hops = chain.chain_hops(s)

    summary = {"report_date": report_date.isoformat(), "run_id": rid, "run_started_at": run_started, **headline,
               "changes": {k: changes[k] for k in ("previous_report", "new", "resolved", "still_open")},
               "per_channel": channels, "trigger_chain": chain.summary(hops)}
    chart = render_chart(trend)
    chain_png = chain.render_chain_png(hops)
    subject = (f"[omnirecon] Daily drift report {report_date.isoformat()}: "
               f"{headline['skus_in_disagreement']} SKU(s) drifting, {headline['oversell_units']} units oversell "
               f"exposure")
    ctx = dict(r=summary, h=headline, changes=changes, offenders=[_finding_view(f) for f in offenders],
               per_channel=channels, trend=trend, links=links, subject=subject, generated_at=iso(utcnow()),
               hops=hops)
    html = render("daily_report.html.j2", chart_src=f"cid:{CHART_CID}",
                  chain_src=f"cid:{CHAIN_CID}" if chain_png else None, **ctx)
    standalone = render("daily_report.html.j2",
                        chart_src="data:image/png;base64," + base64.b64encode(chart).decode("ascii"),
                        chain_src=("data:image/png;base64," + base64.b64encode(chain_png).decode("ascii"))
                        if chain_png else None, **ctx)
    text = render("daily_report.txt.j2", **ctx)
    csv_data = exports.csv_bytes([exports.finding_row(f) for f in findings], exports.FINDINGS_COLUMNS)
    _upsert_report(ledger, report_date.isoformat(), rid, summary, status="generated")
    return ReportContent(html=html, text=text, chart_png=chart, findings_csv=csv_data, summary=summary,
                         subject=subject, report_date=report_date.isoformat(), html_standalone=standalone,
                         chain_png=chain_png)


def _upsert_report(ledger: Ledger, report_date: str, run_id: str | None, summary: dict, *, status: str,
                   recipients: list | None = None) -> None:
    with ledger.session() as s:
        row = queries.report_row(s, report_date, run_id)
        if row is None:
            s.add(m.Report(report_date=report_date, run_id=run_id, status=status, summary=summary,
                           recipients=recipients))
        else:
            row.generated_at, row.status = utcnow(), status
            row.summary = summary
            if recipients is not None:
                row.recipients = recipients


def send_report(content: ReportContent, recipients: list[str], conn_id: str = "smtp_default", *,
                ledger: Ledger | None = None) -> None:
    """E-mail the report: text + HTML (inline chart) + findings.csv, through the Airflow SMTP connection."""
    recipients = [r for r in (recipients or []) if r]
    if not recipients:
        raise ValueError("send_report: no recipients (set runtime report_recipients)")
    msg = mail.build_message(subject=content.subject, to=recipients, text=content.text, html=content.html,
                             inline_images={CHART_CID: content.chart_png,
                                            **({CHAIN_CID: content.chain_png} if content.chain_png else {})},
                             attachments=[(f"findings-{content.report_date}.csv", content.findings_csv, "text/csv")])
    try:
        mail.send_message(msg, recipients, conn_id=conn_id)
    except Exception:
        if ledger is not None:
            _upsert_report(ledger, content.report_date, content.summary.get("run_id"), content.summary,
                           status="failed", recipients=recipients)
        raise
    if ledger is not None:
        _upsert_report(ledger, content.report_date, content.summary.get("run_id"), content.summary,
                       status="sent", recipients=recipients)


def _data_docs_link(run_stats: dict | None, gx_docs: str | None) -> str | None:
    link = (run_stats or {}).get("data_docs")
    if link:
        return str(link) if "://" in str(link) else Path(link).resolve().as_uri()
    if gx_docs:
        found = sorted(Path(gx_docs).glob("**/data_docs/**/index.html")) or sorted(Path(gx_docs).glob("**/index.html"))
        if found:
            return found[0].resolve().as_uri()
    return None


def produce_daily_report(ledger: Ledger, settings: Settings, *, report_date, out_dir, send: bool = True,
                         gx_docs: str | None = None, conn_id: str = "smtp_default") -> dict:
    """Build the day's report, write report.html / findings.csv / trend.png to out_dir, then e-mail it to the
    runtime's report_recipients (files first, so a mail failure loses nothing). Small dict for XCom."""
    day = report_date if isinstance(report_date, date) else date.fromisoformat(str(report_date))
    with ledger.session() as s:
        tz = ZoneInfo(str(settings.runtime.get("report_timezone") or "UTC"))
        run = queries.latest_reconcile_run(s, _day_bounds(day, tz).end)
        stats = dict(run.stats or {}) if run else {}
    links = {"airflow": str(settings.runtime.get("airflow_base_url") or "").rstrip("/") + "/"}
    docs = _data_docs_link(stats, gx_docs)
    if docs:
        links["data_docs"] = docs
    content = build_report(ledger, settings, report_date=day, links=links)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [content.write_html(out / "report.html")]
    (out / "findings.csv").write_bytes(content.findings_csv)
    (out / "trend.png").write_bytes(content.chart_png)
    files += [out / "findings.csv", out / "trend.png"]
    if content.chain_png:
        (out / "trigger_chain.png").write_bytes(content.chain_png)
        files.append(out / "trigger_chain.png")
    recipients = list(settings.runtime.get("report_recipients") or [])
    sent = False
    if send and recipients:
        send_report(content, recipients, conn_id=conn_id, ledger=ledger)
        sent = True
    elif send:
        log.warning("report %s not e-mailed: no report_recipients configured (files in %s)", day, out)
    return {"report_date": day.isoformat(), "run_id": content.summary["run_id"], "out_dir": str(out),
            "files": [str(f) for f in files], "sent": sent, "recipients": len(recipients) if sent else 0,
            "skus_checked": content.summary["skus_checked"], "oversell_units": content.summary["oversell_units"]}
