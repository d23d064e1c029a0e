"""Tell approvers that a correction waits for them: e-mail (approver recipients, SMTP connection) and Slack
(runtime slack_channel, when `slack_default` exists), each with the link the HITL operator generates to the
request's page in the Airflow UI. Runs inside HITLOperator.execute, after the request is written."""
from __future__ import annotations

import html
import logging
import smtplib

from airflow.sdk.bases.notifier import BaseNotifier

from omnirecon.config import load_settings
from omnirecon.report import mail, slack

log = logging.getLogger(__name__)


class ApproverNotifier(BaseNotifier):
    """No template fields: subject and body carry values read from the channels and are never Jinja-rendered here."""

    def __init__(self, *, smtp_conn_id: str = "smtp_default", slack_conn_id: str = "slack_default"):
        super().__init__()
        self.smtp_conn_id, self.slack_conn_id = smtp_conn_id, slack_conn_id

    def notify(self, context) -> None:
        from airflow.providers.standard.operators.hitl import HITLOperator

        runtime = load_settings().runtime
        task = context["task"]
        link = HITLOperator.generate_link_to_ui_from_context(context=context)   # on Airflow's [api] base_url
        sent = []
        if runtime.approvers:
            msg = mail.build_message(
                subject=f"[omnirecon] approval needed: {task.subject}", to=list(runtime.approvers),
                text=f"{task.subject}\n\nApprove or reject: {link}\n\n{task.body or ''}\n",
                html=(f"<p>{html.escape(task.subject)}</p><p><a href=\"{html.escape(link)}\">Approve or reject in "
                      f"Airflow</a></p><pre>{html.escape(task.body or '')}</pre>"))
            try:
                mail.send_message(msg, list(runtime.approvers), conn_id=self.smtp_conn_id)
                sent.append("email")
            except (OSError, smtplib.SMTPException) as e:   # the request stands in the UI; say loudly it was not mailed
                log.error("approval request not e-mailed (%s); it waits in the UI: %s", type(e).__name__, link)
        if mail.connection_exists(self.slack_conn_id):
            text = f"Approval needed: {slack.escape(task.subject)}\nApprove or reject: {slack.escape(link)}"
            try:
                slack.post(text, channel=runtime.slack_channel, conn_id=self.slack_conn_id)
                sent.append("slack")
            except Exception as e:   # slack_sdk errors have no common base with requests'; logged, not hidden
                log.error("approval request not posted to Slack (%s); it waits in the UI: %s", type(e).__name__, link)
        if not sent:
            log.warning("no approver configured (runtime approval_recipients / alert_recipients, slack_default); "
                        "the request waits in the UI: %s", link)
        else:
            log.info("approvers told via %s: %s", ", ".join(sent), link)
