"""The Amazon SQS consumer against the sandbox's SQS-compatible queue through a real AWS SDK (botocore, SigV4):
a message is deleted only once it is in the ledger; one the ledger could not take comes back after its visibility
timeout and is stored once; a non-envelope is kept as quarantined and deleted, never silently dropped."""
import json
import sqlite3
import time

import pytest
from sqlalchemy import select

from omnirecon.ledger import models as m
from omnirecon.live.inbox import Inbox, InboxUnavailable
from omnirecon.live.sqs import SqsConsumer, sqs_client
from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox import Sandbox
from tests.support.sandbox_http import scenario_doc


def envelope(n: int) -> str:
    return json.dumps({
        "NotificationVersion": "1.0", "NotificationType": "LISTINGS_ITEM_MFN_QUANTITY_CHANGE", "PayloadVersion": "1.0",
        "EventTime": "2026-12-01T10:00:00.000Z",
        "Payload": {"SellerId": "A1", "FulfillmentChannelCode": "DEFAULT", "Sku": f"SKU-{n}", "Quantity": n},
        "NotificationMetadata": {"ApplicationId": "amzn1.sp.solution.x", "SubscriptionId": "sub-1",
                                 "PublishTime": "2026-12-01T10:00:01.000Z", "NotificationId": f"n-{n}"}})


@pytest.fixture
def queue():
    with Sandbox(from_dict(scenario_doc(notifications={"amazon": {}}))) as sb:
        extra = sb.connections()["omnirecon_amazon"]["extra"]
        client = sqs_client(extra["sqs_endpoint"], extra["aws_region"], extra["aws_access_key_id"],
                            extra["aws_secret_access_key"])
        url = client.create_queue(QueueName="omnirecon-notifications")["QueueUrl"]
        yield client, url


def stored(ledger):
    with ledger.session() as s:
        return sorted((n.event_id, n.quarantined is not None) for n in s.scalars(select(m.Notification)))


def test_messages_are_stored_then_deleted_and_a_malformed_one_is_quarantined(queue, sqlite_ledger):
    client, url = queue
    for n in (1, 2):
        client.send_message(QueueUrl=url, MessageBody=envelope(n))
    client.send_message(QueueUrl=url, MessageBody=envelope(1))          # Amazon delivers at least once
    client.send_message(QueueUrl=url, MessageBody="not an envelope")
    consumer = SqsConsumer(client, url, Inbox(sqlite_ledger), wait_s=1, visibility_s=1)
    handled = 0
    for _ in range(10):
        handled += consumer.poll_once()
        if handled >= 4:
            break
    assert handled == 4
    assert [e for e, q in stored(sqlite_ledger) if not q] == ["n-1", "n-2"]
    assert sum(q for _, q in stored(sqlite_ledger)) == 1
    assert dict(consumer.counts) == {"in": 4, "stored": 2, "duplicate": 1, "quarantined": 1}
    time.sleep(1.5)                                                      # past the visibility timeout
    assert client.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", []) == []


def test_a_message_the_ledger_could_not_take_stays_queued_and_comes_back(queue, sqlite_ledger):
    client, url = queue
    client.send_message(QueueUrl=url, MessageBody=envelope(3))
    consumer = SqsConsumer(client, url, Inbox(sqlite_ledger), wait_s=1, visibility_s=1, store_timeout_s=0.5)
    blocker = sqlite3.connect(sqlite_ledger.engine.url.database, timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(InboxUnavailable):
        for _ in range(5):
            consumer.poll_once()
    blocker.rollback()
    blocker.close()
    consumer.store_timeout_s = 30
    deadline = time.monotonic() + 30
    while consumer.counts["stored"] + consumer.counts["duplicate"] == 0 and time.monotonic() < deadline:
        consumer.poll_once()                                             # redelivered after the visibility timeout
    assert [e for e, _ in stored(sqlite_ledger)] == ["n-3"]
    time.sleep(1.5)
    assert client.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", []) == []


def test_the_sqs_consumer_command_stores_the_queue_into_the_ledger_and_stops_on_sigterm(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from omnirecon.ledger.db import Ledger
    from tests.support.polling import wait_for
    url_db = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url_db)
    ledger.migrate()
    with Sandbox(from_dict(scenario_doc(notifications={"amazon": {}}))) as sb:
        fields = sb.connections()["omnirecon_amazon"]
        x = fields["extra"]
        client = sqs_client(x["sqs_endpoint"], x["aws_region"], x["aws_access_key_id"], x["aws_secret_access_key"])
        url = client.create_queue(QueueName="omnirecon-notifications")["QueueUrl"]
        client.send_message(QueueUrl=url, MessageBody=envelope(7))
        env = dict(os.environ, OMNIRECON_LEDGER_URL=url_db, AIRFLOW_CONN_OMNIRECON_AMAZON=json.dumps(fields))
        proc = subprocess.Popen([sys.executable, "-m", "omnirecon.cli", "sqs-consumer", "--queue-url", url], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: stored(ledger) == [("n-7", False)], timeout=60, what="the message in the ledger")
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, out
        assert x["aws_secret_access_key"] not in out
        assert client.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", []) == []
