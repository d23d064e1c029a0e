"""The living world (shared/contracts/world.md): events, demand, the retailer's integration hops and their
defects, oversell accounting, run on the sandbox clock by one scheduler loop."""
from __future__ import annotations

WORLD_KEYS = ("integration", "events", "demand", "notifications")


def has_world(data: dict) -> bool:
    """A scenario without any world block is the static world of scenario.md, served as before."""
    return any(k in data for k in WORLD_KEYS)


from omnirecon_sandbox.world.engine import World  # noqa: E402

__all__ = ["World", "has_world", "WORLD_KEYS"]
