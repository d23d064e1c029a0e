"""The alert digest e-mailed through the Airflow SMTP provider to a real local SMTP server: one per run."""
import email
from email import policy

from sqlalchemy import select
from tests.support.remediation import RUN, add_finding, add_run, fresh_snapshots, make_ledger, make_settings  # noqa: E402

from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.remediation.alerts import run_alerts  # noqa: E402


def test_one_digest_email_per_run_with_escaped_evidence(tmp_path, smtp):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    fresh_snapshots(ledger, ["SKU-1", "<b>bold</b>"])
    settings = make_settings({"alert_recipients": ["oncall@example.test"]})
    add_finding(ledger, sku="<b>bold</b>", action="alert", severity="critical", push=False)
    add_finding(ledger, check="order_status_mismatch", action="alert", order_id="111-9", push=False, sku=None)

    out = run_alerts(ledger, settings, run_id=RUN)
    assert out["transports"] == ["email"] and out["items"] == 2
    assert len(smtp.messages) == 1
    msg = email.message_from_bytes(smtp.messages[0][2], policy=policy.default)
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" in text
    assert "111-9" in html and "/dags/omnirecon_reconcile/runs/" in text

    assert run_alerts(ledger, settings, run_id=RUN)["items"] == 0          # already alerted: no second mail
    assert len(smtp.messages) == 1
    with ledger.session() as s:
        assert [(a.transport, a.recipients) for a in s.scalars(select(m.Alert))] == \
            [("email", ["oncall@example.test"])] * 2
