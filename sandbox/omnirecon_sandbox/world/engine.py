"""World engine (placeholder until the scheduler lands)."""
from __future__ import annotations

from omnirecon_contract.timeutil import iso


class World:
    def __init__(self, sandbox):
        self.sb = sandbox

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def dump(self) -> dict:
        clock = self.sb.world_clock
        return {"clock": {"started_at": iso(clock.started_at), "dumped_at": iso(clock.now())},
                "hop_log": [], "oversells": [], "notifications": [], "writes": []}
