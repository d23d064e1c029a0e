"""NetSuite, the ERP: the source of truth. Read only (SuiteQL over REST, OAuth 1.0a); never written."""
from __future__ import annotations

from datetime import datetime

from omnirecon.adapters.base import SystemAdapter
from omnirecon.adapters.erp import notifications as nt
from omnirecon.model import normalize as nz


class NetSuiteAdapter(SystemAdapter):
    platform = "erp"
    conn_type = "omnirecon_netsuite"
    hook_path = "omnirecon.hooks.netsuite.NetSuiteHook"
    is_channel = False
    normalizers = {"inventory": nz.erp_inventory, "listings": nz.erp_listings, "orders": nz.erp_orders}

    def notification_source(self, conn):
        """Extra `webhook_secret`: the SuiteScript deployment's parameter."""
        secret = ((conn.extra_dejson or {}) if conn is not None else {}).get("webhook_secret")
        return nt.NetSuiteSource(secret, name=self.system) if secret else None

    def ensure_subscriptions(self, make_hook, conn, receiver_base_url: str, sqs_queue_arn: str | None = None):
        secret = ((conn.extra_dejson or {}) if conn is not None else {}).get("webhook_secret")
        if not secret:
            return []
        return nt.NetSuiteDeployment(make_hook(), secret).ensure(f"{receiver_base_url}/notifications/{self.system}")

    def notification_changes(self, topic, doc, when, *, erp_sku=None, item_skus=None) -> list:
        return nt.changes(self.system, topic, doc, when)

    def fetch_catalog(self, hook) -> dict:
        return hook.fetch_inventory()

    def fetch_orders(self, hook, start: datetime, end: datetime) -> tuple[dict, datetime]:
        return hook.fetch_orders(start, end), end
