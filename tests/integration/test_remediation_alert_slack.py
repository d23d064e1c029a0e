"""Alerts reach Slack through Airflow's SlackNotifier when a `slack_default` connection exists: a local HTTP
server plays Slack's Web API (chat.postMessage) at the connection's base_url."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from tests.support.remediation import RUN, add_finding, add_run, fresh_snapshots, make_ledger, make_settings  # noqa: E402

from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.remediation.alerts import run_alerts  # noqa: E402

TOKEN = "xoxb-test-secret-token"


class FakeSlack(BaseHTTPRequestHandler):
    posts: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        payload = json.loads(body) if self.headers.get("Content-Type", "").startswith("application/json") \
            else {k: v[0] for k, v in parse_qs(body).items()}
        FakeSlack.posts.append({"path": self.path, "auth": self.headers.get("Authorization"), "payload": payload})
        out = json.dumps({"ok": True, "channel": "C0ALERTS", "ts": "1700000000.000100"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def slack(monkeypatch):
    FakeSlack.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSlack)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_DEFAULT", json.dumps({
        "conn_type": "slack", "password": TOKEN,
        "extra": {"base_url": f"http://127.0.0.1:{server.server_address[1]}/api/", "timeout": 5}}))
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    yield FakeSlack.posts
    server.shutdown()
    server.server_close()


def test_digest_is_posted_to_slack_once_per_run(tmp_path, slack, caplog):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    fresh_snapshots(ledger, ["SKU-1"])
    add_finding(ledger, sku="SKU-1", action="alert", severity="critical", push=False)
    out = run_alerts(ledger, make_settings(), run_id=RUN)
    assert out["transports"] == ["slack"]
    assert len(slack) == 1
    post = slack[0]
    assert post["path"].endswith("/chat.postMessage") and post["auth"] == f"Bearer {TOKEN}"
    assert "SKU-1" in post["payload"]["text"] and "critical" in post["payload"]["text"]
    assert ledger.count(m.Alert, m.Alert.transport == "slack") == 1
    assert TOKEN not in caplog.text
    assert run_alerts(ledger, make_settings(), run_id=RUN)["items"] == 0     # an open finding alerts once
    assert len(slack) == 1


def test_alert_goes_to_the_configured_channel_with_channel_values_escaped(tmp_path, slack):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    sku = "<!channel> & <@U024BE7LH>"   # a SKU as a channel returned it
    fresh_snapshots(ledger, [sku])
    add_finding(ledger, sku=sku, action="alert", severity="critical", push=False)
    settings = make_settings({"slack_channel": "#inventory-ops"})
    assert run_alerts(ledger, settings, run_id=RUN)["transports"] == ["slack"]
    assert len(slack) == 1
    payload = slack[0]["payload"]
    assert payload["channel"] == "#inventory-ops"
    text = payload["text"]
    assert "&lt;!channel&gt; &amp; &lt;@U024BE7LH&gt;" in text
    assert "<!" not in text and "<@" not in text and "& " not in text
    assert ledger.count(m.Alert, m.Alert.transport == "slack") == 1


def test_slack_escape_is_total():
    from omnirecon.report.slack import escape
    assert escape("a&b<c>d") == "a&amp;b&lt;c&gt;d"
    assert escape("&amp;") == "&amp;amp;"      # escaped once more: shows as typed
    assert escape(None) == "" and escape(5) == "5"


def test_approval_request_reaches_slack_escaped_with_the_hitl_link(tmp_path, slack, monkeypatch):
    """The approvals DAG's notifier, called as HITLOperator.execute calls it: Slack gets the subject (values from
    the channel escaped) and the link the operator generates, in the configured channel."""
    from types import SimpleNamespace

    import yaml
    from airflow.providers.standard.operators.hitl import HITLOperator

    from omnirecon.remediation.approval_notify import ApproverNotifier
    runtime = tmp_path / "runtime.yaml"
    runtime.write_text(yaml.safe_dump({"slack_channel": "#stock-approvals"}))
    monkeypatch.setenv("OMNIRECON_RUNTIME", str(runtime))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080")
    op = HITLOperator(task_id="request_approval", subject="walmart <!channel> & BOOK-XL: 0 -> 119",
                      options=["Approve", "Reject"])
    ti = SimpleNamespace(dag_id="omnirecon_approvals", run_id="manual__2026-01-05", task_id="request_approval",
                         map_index=3)
    ApproverNotifier().notify({"task": op, "task_instance": ti})
    assert len(slack) == 1
    payload = slack[0]["payload"]
    assert payload["channel"] == "#stock-approvals"
    assert "walmart &lt;!channel&gt; &amp; BOOK-XL: 0 -&gt; 119" in payload["text"] and "<!" not in payload["text"]
    assert ("http://airflow.example:8080/dags/omnirecon_approvals/runs/manual__2026-01-05/tasks/request_approval/"
            "required_actions?map_index=3") in payload["text"]
