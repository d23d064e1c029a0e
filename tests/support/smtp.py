"""A real SMTP server on a free local port (aiosmtpd), wired in as Airflow's smtp_default."""
from __future__ import annotations

import json

import pytest
from aiosmtpd.controller import Controller

from tests.support.polling import free_port


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))  # (from, to, raw)
        return "250 OK"


@pytest.fixture
def smtp(monkeypatch):
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "omnirecon@example.test", "retry_limit": 0}}))
    try:
        yield inbox
    finally:
        controller.stop()
