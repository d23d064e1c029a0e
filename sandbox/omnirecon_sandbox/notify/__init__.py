"""The four platforms' own change notifications on their real wire formats (shared/contracts/world.md)."""
from omnirecon_sandbox.notify.hub import Notifications

__all__ = ["Notifications"]
