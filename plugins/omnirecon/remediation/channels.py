"""One factory for the channel hooks remediation writes through (injectable for tests)."""
from __future__ import annotations

from typing import Callable

CONN_IDS = {"shopify": "omnirecon_shopify", "amazon": "omnirecon_amazon", "walmart": "omnirecon_walmart"}

_factory: Callable[[str], object] | None = None


def default_hook(channel: str):
    """The real hook for a channel, on the Airflow connection `omnirecon_<channel>`."""
    if channel not in CONN_IDS:
        raise ValueError(f"no write path for channel {channel!r} (known: {', '.join(CONN_IDS)})")
    from omnirecon.hooks import get_hook as connector
    return connector(channel, CONN_IDS[channel])


def set_hook_factory(factory: Callable[[str], object] | None) -> None:
    """Replace the process-wide hook factory (None restores the default)."""
    global _factory
    _factory = factory


def get_hook(channel: str, factory: Callable[[str], object] | None = None):
    return (factory or _factory or default_hook)(channel)
