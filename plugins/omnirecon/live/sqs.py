"""Amazon's notifications arrive in an SQS queue (SP-API delivers only to SQS or EventBridge). This consumer
moves them into the ledger inbox and deletes a message only after the inbox has committed it, so a crash at any
point leaves the message in the queue, redelivered after its visibility timeout (and de-duplicated on its
NotificationId when it was already stored). A message that is not an SP-API notification envelope is kept in
the inbox with the reason (quarantined) and deleted, so it neither blocks the queue nor vanishes uncounted.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import Counter

from omnirecon.live.inbox import Inbox
from omnirecon.model.notification import Incoming
from omnirecon.timeutil import parse_ts

log = logging.getLogger(__name__)
ENVELOPE_FIELDS = ("NotificationVersion", "NotificationType", "PayloadVersion", "EventTime", "Payload",
                   "NotificationMetadata")


def sqs_client(endpoint_url: str | None, region: str, access_key: str, secret_key: str):
    """A real AWS SDK client (botocore, SigV4); `endpoint_url` points it at a compatible endpoint."""
    import boto3
    return boto3.client("sqs", region_name=region, endpoint_url=endpoint_url or None,
                        aws_access_key_id=access_key, aws_secret_access_key=secret_key)


def to_incoming(message: dict) -> Incoming:
    raw = message.get("Body", "").encode("utf-8")
    fallback_id = f"sqs:{message.get('MessageId', '?')}"
    try:
        doc = json.loads(raw)
    except ValueError as e:
        return Incoming("amazon", fallback_id, "unparseable", raw, quarantined=f"body is not JSON: {e}")
    missing = [f for f in ENVELOPE_FIELDS if not isinstance(doc, dict) or f not in doc]
    meta = doc.get("NotificationMetadata") if isinstance(doc, dict) else None
    if missing or not isinstance(meta, dict) or not meta.get("NotificationId"):
        return Incoming("amazon", fallback_id, str(doc.get("NotificationType", "unknown")) if isinstance(doc, dict)
                        else "unknown", raw, quarantined="not an SP-API notification envelope: missing "
                        + ", ".join(missing or ["NotificationMetadata.NotificationId"]))
    try:
        occurred = parse_ts(doc.get("EventTime"))
    except (ValueError, TypeError):
        occurred = None
    return Incoming("amazon", str(meta["NotificationId"]), str(doc["NotificationType"]), raw, occurred,
                    {"SubscriptionId": meta.get("SubscriptionId"), "MessageId": message.get("MessageId")})


class SqsConsumer:
    def __init__(self, client, queue_url: str, inbox: Inbox, wait_s: int = 20, batch: int = 10,
                 visibility_s: int = 60, store_timeout_s: float = 30.0):
        self.client, self.queue_url, self.inbox, self.store_timeout_s = client, queue_url, inbox, store_timeout_s
        self.wait_s, self.batch, self.visibility_s = wait_s, batch, visibility_s
        self.counts: Counter = Counter()
        self.stop_flag = threading.Event()

    def poll_once(self) -> int:
        """One long poll -> messages handled. Each is deleted only once it is in the ledger."""
        resp = self.client.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch,
                                           WaitTimeSeconds=self.wait_s, VisibilityTimeout=self.visibility_s,
                                           AttributeNames=["ApproximateReceiveCount"])
        messages = resp.get("Messages", [])
        for msg in messages:
            self.counts["in"] += 1
            item = to_incoming(msg)
            stored = self.inbox.put(item, timeout_s=self.store_timeout_s)      # raises InboxUnavailable: the message stays, it will come back
            self.counts["quarantined" if item.quarantined else ("stored" if stored else "duplicate")] += 1
            self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=msg["ReceiptHandle"])
        return len(messages)

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                self.poll_once()
            except Exception as e:  # noqa: BLE001 - logged and retried; nothing was deleted unstored
                self.counts["errors"] += 1
                log.error("SQS poll failed (%s: %s); retrying", type(e).__name__, e)
                self.stop_flag.wait(5)


def serve(queue_url: str, get_connection=None) -> int:
    """Blocking: consume queue_url into the configured ledger's inbox until SIGINT/SIGTERM. The AWS endpoint,
    region and keys come from the `omnirecon_amazon` connection's extra (`sqs_endpoint`, `aws_region`,
    `aws_access_key_id`, `aws_secret_access_key`); without keys the AWS SDK's own chain (instance role) is used."""
    import signal
    from omnirecon.ledger import get_ledger
    if get_connection is None:
        from airflow.sdk import BaseHook
        get_connection = BaseHook.get_connection
    from omnirecon.adapters import get_adapter
    x = get_connection(get_adapter("amazon").conn_id).extra_dejson or {}
    client = sqs_client(x.get("sqs_endpoint"), x.get("aws_region", "us-east-1"), x.get("aws_access_key_id"),
                        x.get("aws_secret_access_key"))
    inbox = Inbox(get_ledger()).start()
    consumer = SqsConsumer(client, queue_url, inbox)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: consumer.stop_flag.set())
    print(f"omnirecon sqs-consumer: {queue_url} -> the ledger inbox", flush=True)
    try:
        consumer.run()   # returns after the long poll in progress once stopped
    finally:
        inbox.stop()
    return 0
