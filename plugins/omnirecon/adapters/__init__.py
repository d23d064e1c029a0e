"""The registry of system adapters: one `SystemAdapter` per system account (adapters/base.py).

Snapshot, remediation, the DAG files and the CLI ask here (`get_adapter("walmart")`) instead of switching on the
system's name. A second account or a fifth system is one `register(...)` of another adapter instance.
"""
from __future__ import annotations

from omnirecon.adapters.amazon import AmazonAdapter
from omnirecon.adapters.base import SystemAdapter, WriteResult
from omnirecon.adapters.erp import NetSuiteAdapter
from omnirecon.adapters.shopify import ShopifyAdapter
from omnirecon.adapters.walmart import WalmartAdapter

__all__ = ["SystemAdapter", "WriteResult", "all_adapters", "channels", "get_adapter", "register", "unregister",
           "systems", "with_role"]

_REGISTRY: dict[str, SystemAdapter] = {}


def register(adapter: SystemAdapter, *, replace: bool = False) -> SystemAdapter:
    """Add an adapter (e.g. a second account); its `system` name must be new unless `replace`."""
    if adapter.system in _REGISTRY and not replace:
        raise ValueError(f"an adapter for {adapter.system!r} is already registered")
    _REGISTRY[adapter.system] = adapter
    return adapter


def unregister(system: str) -> None:
    _REGISTRY.pop(system, None)


def get_adapter(system: str) -> SystemAdapter:
    try:
        return _REGISTRY[system]
    except KeyError:
        raise ValueError(f"unknown system {system!r} (expected one of {', '.join(_REGISTRY)})") from None


def all_adapters() -> list[SystemAdapter]:
    """Every registered adapter, the ERP first, in registration order."""
    return list(_REGISTRY.values())


def systems() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def channels() -> tuple[str, ...]:
    """The systems corrections can be written to (every one but the ERP)."""
    return tuple(a.system for a in _REGISTRY.values() if a.is_channel)


def with_role(role: str) -> tuple[str, ...]:
    """The channels of one role: `storefront` (the retailer's own shop) or `marketplace`."""
    return tuple(a.system for a in _REGISTRY.values() if a.channel_role == role)


for _adapter in (NetSuiteAdapter(), ShopifyAdapter(), AmazonAdapter(), WalmartAdapter()):
    register(_adapter)
