"""The daily report e-mailed through the Airflow SMTP provider to a real local SMTP server (aiosmtpd)."""
import csv
import email
import io
import json
from datetime import date, timedelta
from email import policy

import pytest
from sqlalchemy import select
from tests.support.polling import free_port
from tests.support.remediation import add_finding, add_run, make_ledger, make_settings  # noqa: E402

from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.report.daily import build_report, send_report  # noqa: E402

DAY = date(2026, 1, 5)
HOSTILE = '<img src=x onerror="alert(1)">'


def test_report_email_has_text_html_inline_chart_and_findings_csv(tmp_path, smtp):
    ledger = make_ledger(tmp_path)
    run = "omnirecon_reconcile/scheduled__2026-01-05T10:00:00+00:00"
    from datetime import datetime, timezone
    add_run(ledger, run, started_at=datetime(2026, 1, 5, 10, tzinfo=timezone.utc), stats={"skus_checked": 50})
    add_finding(ledger, run, sku=HOSTILE, from_qty=9, to_qty=2, detail=f"shopify shows 9 for {HOSTILE}")
    add_finding(ledger, run, sku="TEE-BLK-M", channel="amazon", from_qty=1, to_qty=4)
    add_finding(ledger, run, check="order_missing", action="alert", order_id="111-0000000-0000001", push=False,
                sku=None)

    content = build_report(ledger, make_settings(), report_date=DAY, links={"data_docs": "http://gx/docs"})
    send_report(content, ["ops@example.test", "lead@example.test"], ledger=ledger)

    assert len(smtp.messages) == 1
    mail_from, rcpts, raw = smtp.messages[0]
    assert mail_from == "omnirecon@example.test" and rcpts == ["ops@example.test", "lead@example.test"]
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg.get_content_type() == "multipart/mixed" and "2026-01-05" in msg["Subject"]
    alternative = next(p for p in msg.walk() if p.get_content_type() == "multipart/alternative")
    text = alternative.get_body(("plain",)).get_content()
    html_part = alternative.get_body(("html",))
    html = html_part.get_content()
    assert "SKUs checked" in text and HOSTILE in text
    assert HOSTILE not in html and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert 'src="cid:trend-chart"' in html

    related = next(p for p in msg.walk() if p.get_content_type() == "multipart/related")
    image = next(p for p in related.iter_parts() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == "<trend-chart>" and image.get_content() == content.chart_png

    attachment = next(p for p in msg.iter_attachments() if p.get_filename() == "findings-2026-01-05.csv")
    rows = list(csv.DictReader(io.StringIO(attachment.get_content() if isinstance(attachment.get_content(), str)
                                            else attachment.get_content().decode("utf-8"))))
    with ledger.session() as s:
        findings = s.scalars(select(m.Finding).where(m.Finding.run_id == run).order_by(m.Finding.id)).all()
        report = s.scalars(select(m.Report).where(m.Report.report_date == "2026-01-05")).one()
    assert [(r["check"], r["sku"], r["order_id"], r["detail"]) for r in rows] == \
        [(f.check, f.sku or "", f.order_id or "", f.detail) for f in findings]
    assert report.status == "sent" and report.recipients == ["ops@example.test", "lead@example.test"]


def test_unreachable_smtp_marks_the_report_failed(tmp_path, monkeypatch):
    ledger = make_ledger(tmp_path)
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": free_port(),
        "extra": {"disable_tls": True, "disable_ssl": True, "retry_limit": 0, "timeout": 5}}))
    content = build_report(ledger, make_settings(), report_date=DAY - timedelta(days=3), links={})
    with pytest.raises(Exception):
        send_report(content, ["ops@example.test"], ledger=ledger)
    with ledger.session() as s:
        assert s.scalars(select(m.Report.status)).one() == "failed"
