"""E-mail through the Airflow SMTP provider: multipart messages (text + HTML + inline images + attachments)."""
from __future__ import annotations

import logging
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

log = logging.getLogger(__name__)
DEFAULT_FROM = "omnirecon@localhost"


def build_message(*, subject: str, to: list[str], text: str, html: str, sender: str | None = None,
                  inline_images: dict[str, bytes] | None = None,
                  attachments: list[tuple[str, bytes, str]] | None = None) -> EmailMessage:
    """multipart/mixed [ multipart/alternative [ text/plain, multipart/related [ text/html, image/png... ] ],
    attachments... ]. inline_images: {content-id (without <>): PNG bytes}, referenced as cid:<id> in the HTML."""
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = " ".join(subject.split())
    msg["From"] = sender or DEFAULT_FROM
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain="omnirecon")
    msg.set_content(text, subtype="plain", charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    if inline_images:
        html_part = msg.get_payload()[1]
        for cid, data in inline_images.items():
            html_part.add_related(data, maintype="image", subtype="png", cid=f"<{cid}>",
                                  disposition="inline", filename=f"{cid}.png")
    for filename, data, mimetype in attachments or []:
        maintype, subtype = mimetype.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg


def send_message(msg: EmailMessage, recipients: list[str], conn_id: str = "smtp_default") -> None:
    """Send through the connection's SMTP server (Airflow SmtpHook: host, port, TLS, login from the connection)."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    if not recipients:
        raise ValueError("no recipients")
    with SmtpHook(smtp_conn_id=conn_id) as hook:
        if hook.from_email and msg["From"] == DEFAULT_FROM:
            msg.replace_header("From", hook.from_email)
        # SmtpHook.send_email_smtp builds its own HTML-only message; send our multipart one on its client.
        client = hook._smtp_client
        last: Exception | None = None
        for _ in range(hook.smtp_retry_limit + 1):
            try:
                client.sendmail(msg["From"], list(recipients), msg.as_bytes())
                log.info("sent %r to %d recipient(s) via %s", msg["Subject"], len(recipients), conn_id)
                return
            except Exception as e:   # retried like the hook does; the message names no credential
                last = e
        raise last


def connection_exists(conn_id: str) -> bool:
    from omnirecon.connections import connection_exists as exists
    return exists(conn_id)
