"""One factory for the channel hooks remediation writes through (injectable for tests)."""
from __future__ import annotations

from typing import Callable

from omnirecon.adapters import all_adapters, get_adapter

_factory: Callable[[str], object] | None = None


def default_hook(channel: str):
    """The real hook for a channel, on its adapter's Airflow connection (`omnirecon_<channel>`)."""
    adapter = get_adapter(channel)
    if not adapter.is_channel:
        raise ValueError(f"no write path for {channel!r}")
    return adapter.hook()


def set_hook_factory(factory: Callable[[str], object] | None) -> None:
    """Replace the process-wide hook factory (None restores the default)."""
    global _factory
    _factory = factory


def get_hook(channel: str, factory: Callable[[str], object] | None = None):
    return (factory or _factory or default_hook)(channel)


def __getattr__(name: str):
    if name == "CONN_IDS":   # {channel: conn id}
        return {a.system: a.conn_id for a in all_adapters() if a.is_channel}
    raise AttributeError(name)
