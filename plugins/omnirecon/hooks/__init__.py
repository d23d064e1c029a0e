"""Connectors (Airflow hooks) for the four systems, on the shared HTTP core in `base.py`.

Which hook, connection and account settings a system uses is its adapter's (omnirecon/adapters/); the names below
are kept for existing callers and delegate to the adapter registry (imported on use: adapters sit above hooks).
"""
from __future__ import annotations


def _adapter(system: str):
    from omnirecon.adapters import get_adapter
    return get_adapter(system)


def hook_class(system: str):
    """The hook class of a system (erp, shopify, amazon, walmart)."""
    return _adapter(system).hook_class()


def get_hook(system: str, conn_id: str | None = None, **kwargs):
    """A hook reading its Airflow connection (default conn id of the system)."""
    return _adapter(system).hook(conn_id, **kwargs)


def hook_from_fields(system: str, fields: dict, **kwargs):
    """A hook from plain connection fields, e.g. one entry of `Sandbox.connections()`."""
    return _adapter(system).hook_from_fields(fields, **kwargs)


def apply_account_settings(hook, system: str, settings):
    """The retailer's per-account settings on a hook (see `SystemAdapter.apply_account_settings`)."""
    return _adapter(system).apply_account_settings(hook, settings)


def __getattr__(name: str):
    if name == "CONN_IDS":   # {system: conn id} of every registered adapter
        from omnirecon.adapters import all_adapters
        return {a.system: a.conn_id for a in all_adapters()}
    raise AttributeError(name)
