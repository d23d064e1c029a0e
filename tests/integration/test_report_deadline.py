"""The daily report DAG's deadline alert: declared on the DAG (queued time + 1 h, an importable executor
callback), and the callback e-mails the alert recipients through a real SMTP server when called the way
Airflow calls it (context = {"dag_run": ..., "deadline": ...})."""
from __future__ import annotations

import email
import importlib
from datetime import timedelta
from email import policy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_daily_report_dag_declares_the_deadline():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import DeadlineReference
    from airflow.serialization.serialized_objects import DagSerialization

    bag = DagBag(dag_folder=str(ROOT / "dags" / "omnirecon_daily_report.py"))
    assert bag.import_errors == {}
    [alert] = bag.get_dag("omnirecon_daily_report").deadline
    assert alert.reference == DeadlineReference.DAGRUN_QUEUED_AT and alert.interval == timedelta(hours=1)
    from omnirecon.report.overdue import report_overdue
    module, _, name = alert.callback.path.rpartition(".")
    assert getattr(importlib.import_module(module), name) is report_overdue
    serialized = DagSerialization.to_dict(bag.get_dag("omnirecon_daily_report"))["dag"]["deadline"]
    assert serialized[0]["reference"] == {"reference_type": "DagRunQueuedAtDeadline"}


def test_overdue_callback_emails_the_alert_recipients(tmp_path, monkeypatch, smtp):
    from omnirecon.config import default_runtime_path
    runtime = yaml.safe_load(default_runtime_path().read_text())
    runtime.update(alert_recipients=["ops@example.test"], airflow_base_url="http://airflow.test")
    (tmp_path / "runtime.yaml").write_text(yaml.safe_dump(runtime))
    monkeypatch.setenv("OMNIRECON_RUNTIME", str(tmp_path / "runtime.yaml"))
    from omnirecon.report.overdue import report_overdue

    context = {"dag_run": {"dag_id": "omnirecon_daily_report", "dag_run_id": "scheduled__2026-01-05T07:00:00+00:00",
                           "state": "running", "queued_at": "2026-01-05T07:00:02Z"},
               "deadline": {"id": "d1", "deadline_time": "2026-01-05T08:00:02Z"}}
    out = report_overdue(context=context)
    assert out == {"dag_id": "omnirecon_daily_report", "run_id": "scheduled__2026-01-05T07:00:00+00:00",
                   "sent": True, "recipients": 1}
    [(sender, rcpts, raw)] = smtp.messages
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert rcpts == ["ops@example.test"] and "daily drift report is late" in msg["Subject"]
    body = msg.get_body(("plain",)).get_content()
    assert "http://airflow.test/dags/omnirecon_daily_report/runs/scheduled__2026-01-05T07%3A00%3A00%2B00%3A00" in body
    assert "smtp_default" in body and "2026-01-05T08:00:02Z" in msg["Subject"]
