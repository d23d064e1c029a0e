"""NetSuite, the ERP: the source of truth. Read only (SuiteQL over REST, OAuth 1.0a); never written."""
from __future__ import annotations

from datetime import datetime

from omnirecon.adapters.base import SystemAdapter
from omnirecon.model import normalize as nz


class NetSuiteAdapter(SystemAdapter):
    platform = "erp"
    conn_type = "omnirecon_netsuite"
    hook_path = "omnirecon.hooks.netsuite.NetSuiteHook"
    is_channel = False
    normalizers = {"inventory": nz.erp_inventory, "listings": nz.erp_listings, "orders": nz.erp_orders}

    def fetch_catalog(self, hook) -> dict:
        return hook.fetch_inventory()

    def fetch_orders(self, hook, start: datetime, end: datetime) -> tuple[dict, datetime]:
        return hook.fetch_orders(start, end), end
