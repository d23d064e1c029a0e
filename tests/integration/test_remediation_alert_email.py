"""The alert digest e-mailed through the Airflow SMTP provider to a real local SMTP server: one per run."""
import email
import json
import socket
import sys
from email import policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_remediation_support import RUN, add_finding, add_run, fresh_snapshots, make_ledger, make_settings  # noqa: E402

from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.remediation.alerts import run_alerts  # noqa: E402


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def smtp(monkeypatch):
    inbox = Inbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"disable_tls": True, "disable_ssl": True, "retry_limit": 0}}))
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_DEFAULT", raising=False)
    try:
        yield inbox
    finally:
        controller.stop()


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
    msg = email.message_from_bytes(smtp.messages[0], policy=policy.default)
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" in text
    assert "111-9" in html and "/dags/omnirecon_reconcile/runs/" in text

    assert run_alerts(ledger, settings, run_id=RUN)["items"] == 0          # already alerted: no second mail
    assert len(smtp.messages) == 1
    with ledger.session() as s:
        assert [(a.transport, a.recipients) for a in s.scalars(select(m.Alert))] == \
            [("email", ["oncall@example.test"])] * 2
