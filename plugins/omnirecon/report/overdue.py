"""The daily report's deadline alert (a DeadlineAlert callback on omnirecon_daily_report): the run has not
succeeded in time, so the ops managers have no report. Logs an error and e-mails the alert recipients."""
from __future__ import annotations

import html
import logging

from omnirecon.config import load_settings
from omnirecon.links import run_url
from omnirecon.report import mail

log = logging.getLogger(__name__)
DAG_ID = "omnirecon_daily_report"


def report_overdue(context: dict | None = None, conn_id: str = "smtp_default") -> dict:
    """Called by Airflow (executor callback) with {"dag_run": ..., "deadline": ...} when the deadline passes."""
    dag_run = (context or {}).get("dag_run") or {}
    deadline = ((context or {}).get("deadline") or {}).get("deadline_time")
    dag_id, run_id = dag_run.get("dag_id") or DAG_ID, str(dag_run.get("dag_run_id") or "")
    settings = load_settings()
    link = run_url(settings, dag_id, run_id) if run_id else str(settings.runtime.get("airflow_base_url") or "")
    subject = f"[omnirecon] The daily drift report is late: run {run_id or '?'} has not succeeded by {deadline}"
    text = (f"{subject}\n\nRun state: {dag_run.get('state', 'unknown')}, queued at {dag_run.get('queued_at')}.\n"
            f"Run in Airflow: {link}\n\nWhat to do: open the run's task log; a failed send usually means the "
            "smtp_default connection (the report files are still in data/reports/<date>/); a run still queued "
            "means the scheduler or workers are down. Re-run it with report_date set to regenerate that day.\n")
    log.error("%s (%s)", subject, link)
    recipients = list(settings.runtime.get("alert_recipients") or settings.runtime.get("report_recipients") or [])
    sent = False
    if recipients and mail.connection_exists(conn_id):
        msg = mail.build_message(subject=subject, to=recipients, text=text,
                                 html=f"<pre>{html.escape(text)}</pre>")
        mail.send_message(msg, recipients, conn_id=conn_id)
        sent = True
    elif recipients:
        log.warning("deadline alert not e-mailed: connection %s is not defined", conn_id)
    return {"dag_id": dag_id, "run_id": run_id, "sent": sent, "recipients": len(recipients) if sent else 0}
