"""The daily drift report: figures, changes, trend chart, escaping, Report upsert."""
import base64
import csv
import io
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select

from omnirecon.ledger import models as m
from omnirecon.report.daily import build_report, produce_daily_report
from tests.support.remediation import add_finding, add_run, add_snapshot, make_ledger, make_settings

DAY = date(2026, 1, 5)
HOSTILE = "<script>alert('x')</script>"


def at(d: date, hour=10):
    return datetime(d.year, d.month, d.day, hour, tzinfo=timezone.utc)


def _run(ledger, d, n=0, skus=200):
    rid = f"omnirecon_reconcile/scheduled__{d.isoformat()}T{10 + n:02d}:00:00+00:00"
    add_run(ledger, rid, started_at=at(d, 10 + n), stats={"skus_checked": skus})
    return rid


def _ledger(tmp_path):
    ledger = make_ledger(tmp_path)
    prev = _run(ledger, DAY - timedelta(days=1))
    add_finding(ledger, prev, sku="OLD-GONE", from_qty=3, to_qty=1)
    add_finding(ledger, prev, sku="STILL", from_qty=9, to_qty=4)
    for back in range(2, 5):
        r = _run(ledger, DAY - timedelta(days=back))
        add_finding(ledger, r, sku="STILL", from_qty=9, to_qty=4)
    cur = _run(ledger, DAY)
    add_finding(ledger, cur, sku="STILL", from_qty=9, to_qty=4)                       # oversell 5
    add_finding(ledger, cur, sku=HOSTILE, channel="amazon", from_qty=30, to_qty=2,    # oversell 28
                detail=f"amazon shows 30 for {HOSTILE}")
    add_finding(ledger, cur, sku="UNDER", channel="walmart", from_qty=0, to_qty=6)    # under-listed
    add_finding(ledger, cur, sku="FLY", from_qty=5, to_qty=4, diagnosis="in_flight", action="none")
    add_finding(ledger, cur, check="order_status_mismatch", action="alert", order_id="O-1", push=False, sku=None)
    add_finding(ledger, cur, check="order_missing", action="alert", order_id="O-2", push=False, sku=None)
    add_finding(ledger, cur, check="freshness", action="alert", channel="walmart", push=False, sku=None,
                detail="walmart has not followed the ERP for 45 minutes")
    with ledger.session() as s:
        for status, n in (("verified", 2), ("pending_approval", 1), ("blocked_guardrail", 3), ("failed", 1)):
            for i in range(n):
                s.add(m.Correction(idempotency_key=f"{status}{i}", run_id=cur, channel="shopify", sku=f"S{i}",
                                   channel_sku=f"S{i}", location="L", from_qty=1, to_qty=2, status=status))
    _run(ledger, DAY + timedelta(days=1))                                               # after the day: ignored
    return ledger, cur


def test_headline_figures_and_sections(tmp_path):
    ledger, cur = _ledger(tmp_path)
    from omnirecon.report.daily import _upsert_report
    _upsert_report(ledger, (DAY - timedelta(days=1)).isoformat(),
                   f"omnirecon_reconcile/scheduled__{(DAY - timedelta(days=1)).isoformat()}T10:00:00+00:00", {},
                   status="sent")
    content = build_report(ledger, make_settings(), report_date=DAY, links={"data_docs": "http://gx/index.html"})
    s = content.summary
    assert s["run_id"] == cur and s["skus_checked"] == 200
    assert s["skus_in_disagreement"] == 3 and s["agreement_pct"] == 98.5
    assert (s["oversell_units"], s["oversell_skus"], s["oversell_incidents"]) == (33, 2, 2)
    assert s["penalty_exposure"] == 70.0
    assert s["corrections"]["verified"] == 2 and s["corrections"]["pending"] == 1
    assert s["corrections"]["blocked"] == 3 and s["corrections"]["failed"] == 1
    assert s["order_mismatches"] == {"order_missing": 1, "order_status_mismatch": 1, "order_sequence": 0}
    assert [x["system"] for x in s["stale_systems"]] == ["walmart"]
    assert s["changes"] == {"previous_report": "2026-01-04", "new": 6, "resolved": 1, "still_open": 1}
    walmart = next(c for c in s["per_channel"] if c["channel"] == "walmart")
    assert walmart["drift_skus"] == 1 and walmart["oversell_units"] == 0
    for page in (content.html, content.html_standalone, content.text):
        assert "98.5%" in page and "$70" in page and "OLD-GONE" in page
    assert "http://gx/index.html" in content.html
    assert "http://localhost:8080/dags/omnirecon_reconcile/runs/scheduled__2026-01-05T10%3A00%3A00%2B00%3A00" \
        in content.html
    top = content.html.index("Top offenders")
    assert content.html.index("&lt;script&gt;", top) < content.html.index("STILL", top)   # biggest delta first


def test_hostile_values_are_escaped_in_html_but_kept_in_text_and_csv(tmp_path):
    ledger, cur = _ledger(tmp_path)
    content = build_report(ledger, make_settings(), report_date=DAY, links={})
    for page in (content.html, content.html_standalone):
        assert HOSTILE not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert HOSTILE in content.text
    rows = list(csv.DictReader(io.StringIO(content.findings_csv.decode("utf-8"))))
    with ledger.session() as s:
        expected = s.scalars(select(m.Finding).where(m.Finding.run_id == cur).order_by(m.Finding.id)).all()
    assert [r["sku"] for r in rows] == [f.sku or "" for f in expected] and HOSTILE in {r["sku"] for r in rows}


def test_chart_is_a_png_inline_by_cid_and_embedded_in_the_standalone_page(tmp_path):
    ledger, _ = _ledger(tmp_path)
    content = build_report(ledger, make_settings(), report_date=DAY, links={})
    assert content.chart_png.startswith(b"\x89PNG\r\n\x1a\n")
    assert 'src="cid:trend-chart"' in content.html and "data:image" not in content.html
    b64 = base64.b64encode(content.chart_png).decode()
    assert f'src="data:image/png;base64,{b64}"' in content.html_standalone
    assert "cid:" not in content.html_standalone
    trend_lines = [ln for ln in content.text.splitlines() if ln.startswith(("  2025-12-", "  2026-01-"))]
    assert len(trend_lines) == 14 and trend_lines[-1] == "  2026-01-05: 4 / 2 / 1"
    assert "2025-12-23: no run" in content.text


def test_past_day_regenerates_and_upserts_its_report_row(tmp_path):
    ledger, _ = _ledger(tmp_path)
    past = DAY - timedelta(days=1)
    first = build_report(ledger, make_settings(), report_date=past, links={})
    again = build_report(ledger, make_settings(), report_date=past, links={})
    assert first.summary == again.summary and first.summary["run_id"].endswith("2026-01-04T10:00:00+00:00")
    assert first.summary["skus_in_disagreement"] == 2
    with ledger.session() as s:
        rows = s.scalars(select(m.Report).where(m.Report.report_date == past.isoformat())).all()
    assert len(rows) == 1 and rows[0].status == "generated"
    content = build_report(ledger, make_settings(), report_date=past, links={}).write_html(tmp_path / "r.html")
    assert content.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_a_day_without_runs_still_renders(tmp_path):
    ledger = make_ledger(tmp_path)
    content = build_report(ledger, make_settings(), report_date=DAY, links={})
    assert content.summary["run_id"] is None and "No reconciliation run" in content.html
    assert content.findings_csv.decode().splitlines() == [
        "run_id,check,severity,channel,sku,location,order_id,expected,observed,delta,diagnosis,action,detail"]


def test_failed_snapshot_before_the_run_marks_the_system_stale(tmp_path):
    ledger, cur = _ledger(tmp_path)
    sid = add_snapshot(ledger, "erp", [], status="failed")
    with ledger.session() as s:
        s.get(m.Snapshot, sid).started_at = at(DAY, 9)
    content = build_report(ledger, make_settings(), report_date=DAY, links={})
    assert {x["system"] for x in content.summary["stale_systems"]} == {"erp", "walmart"}


def test_produce_daily_report_writes_files_and_skips_mail_without_recipients(tmp_path):
    ledger, cur = _ledger(tmp_path)
    with ledger.session() as s:
        s.get(m.Run, cur).stats = {"skus_checked": 200, "data_docs": str(tmp_path / "gx" / "index.html")}
    out = produce_daily_report(ledger, make_settings(), report_date="2026-01-05", out_dir=tmp_path / "rep")
    assert out["run_id"] == cur and out["sent"] is False
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and (tmp_path / "gx" / "index.html").as_uri() in html
    assert (tmp_path / "rep" / "trend.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "rep" / "findings.csv").read_bytes().splitlines()[0].startswith(b"run_id,check,")


def _correction(ledger, run_id, key, status, verified_at=None, created_at=None, channel="shopify"):
    with ledger.session() as s:
        s.add(m.Correction(idempotency_key=key, run_id=run_id, channel=channel, sku=key, channel_sku=key,
                           location="L", from_qty=0, to_qty=119, status=status, verified_at=verified_at,
                           created_at=created_at or verified_at or at(DAY, 9)))


def test_verified_counts_every_correction_of_the_day_not_only_the_last_run(tmp_path):
    ledger = make_ledger(tmp_path)
    early, late = _run(ledger, DAY, 0), _run(ledger, DAY, 5)        # 10:00 and 15:00; the report shows 15:00
    for i in range(8):                                              # 8 pushes verified during the day
        _correction(ledger, early, f"v{i}", "verified", verified_at=at(DAY, 10) + timedelta(minutes=i))
    yesterday = _run(ledger, DAY - timedelta(days=1))
    _correction(ledger, yesterday, "old", "verified", verified_at=at(DAY - timedelta(days=1), 11))
    _correction(ledger, early, "f1", "failed", created_at=at(DAY, 10))
    content = build_report(ledger, make_settings(), report_date=DAY, links={})
    assert content.summary["run_id"] == late
    assert content.summary["corrections"]["verified"] == 8 and content.summary["corrections"]["failed"] == 1
    shopify = next(c for c in content.summary["per_channel"] if c["channel"] == "shopify")
    assert shopify["verified"] == 8
    assert "8 verified" in content.text


def test_system_stale_by_follow_lag_shows_when_it_was_last_fetched(tmp_path):
    ledger, cur = _ledger(tmp_path)           # walmart: a freshness finding (has not followed the ERP)
    sid = add_snapshot(ledger, "walmart", ["STILL"])
    with ledger.session() as s:
        snap = s.get(m.Snapshot, sid)
        snap.started_at = snap.fetched_at = snap.finished_at = at(DAY, 10) - timedelta(minutes=3)
    content = build_report(ledger, make_settings(), report_date=DAY, links={})
    walmart = next(x for x in content.summary["stale_systems"] if x["system"] == "walmart")
    assert walmart["fetched_at"] and walmart["fetched_at"].startswith("2026-01-05T09:57")
    assert walmart["fetched_at"] in content.html


def test_sells_past_zero_shows_what_is_wrong_not_a_zero_delta(tmp_path):
    ledger = make_ledger(tmp_path)
    cur = _run(ledger, DAY)
    add_finding(ledger, cur, sku="TEE-CONT", from_qty=0, to_qty=0, severity="critical", action="alert", push=False,
                diagnosis="L1_storefront_feed", evidence={"listing": {"state": "active", "inventory_policy": "CONTINUE",
                                                                      "tracked": True}})
    content = build_report(ledger, make_settings(), report_date=DAY, links={})
    top = content.html[content.html.index("Top offenders"):]
    assert "TEE-CONT" in top and "sells past zero (inventory policy CONTINUE)" in top
    assert "+0" not in top
    line = next(x for x in content.text.split("Top offenders", 1)[1].splitlines() if "TEE-CONT" in x)
    assert "sells past zero (inventory policy CONTINUE)" in line and "(+0)" not in line
