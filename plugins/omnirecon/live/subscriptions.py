"""Subscriptions to the platforms' own change notifications, created and kept alive through each platform's API by
its adapter (`ensure_subscriptions`, adapters/<system>/notifications.py) on the existing hooks: idempotent (a
second call creates nothing), and what the platform deleted is re-created. Secrets are never logged."""
from __future__ import annotations

from omnirecon.adapters import all_adapters


def ensure_all(receiver_base_url: str, sqs_queue_arn: str | None = None, get_connection=None) -> list[tuple]:
    """Ensure every connected system's subscriptions, from its Airflow connection's secrets; Amazon's only with the
    SQS queue's ARN. Returns (system, topic, id, action) rows; a system without its connection or secret is
    skipped."""
    if get_connection is None:
        from airflow.sdk import BaseHook
        get_connection = BaseHook.get_connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    base = receiver_base_url.rstrip("/")
    out = []
    for adapter in all_adapters():
        try:
            conn = get_connection(adapter.conn_id)
        except AirflowNotFoundException:
            continue
        rows = adapter.ensure_subscriptions(adapter.hook, conn, base, sqs_queue_arn)
        out += [(adapter.system, *r) for r in rows]
    return out
