"""The receiver's sources: one verifier per connected system that delivers to it, built by the system's adapter
(`notification_source`, adapters/<system>/notifications.py) from its Airflow connection's secrets, never from code.

A source turns (raw body, headers) into an `Incoming` (platform event id, topic, when it happened) or raises
`Rejected` with the HTTP status to answer and a reason; nothing is parsed before the signature holds.
"""
from __future__ import annotations

from omnirecon.adapters import all_adapters


def sources_from_connections(get_connection=None, conn_ids: dict | None = None) -> dict:
    """{receiver path name: source} for every system whose connection holds its notification secret (see each
    adapter's `notification_source` for the fields). A system without its connection or secret is not served (its
    deliveries get 404); a connection that cannot be read for another reason is an error."""
    if get_connection is None:
        from airflow.sdk import BaseHook
        get_connection = BaseHook.get_connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    out: dict = {}
    for adapter in all_adapters():
        try:
            conn = get_connection((conn_ids or {}).get(adapter.system, adapter.conn_id))
        except AirflowNotFoundException:
            continue
        source = adapter.notification_source(conn)
        if source is not None:
            out[adapter.system] = source
    return out
