"""Scenario faults (contracts/scenario.md "faults"): which calls they hit, counted exactly.

A fault counts every call to its system whose operation matches (`*` matches every call, token calls
included). Call number n (1-based) is hit when `after < n <= after + count` (`count` absent: for ever).
`throttle` with a count answers throttled on each hit; without one it drains the rate-limit bucket at its
first hit and then leaves the real limits, always enforced, to throttle the client.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

KINDS = ("down", "http_status", "timeout", "throttle", "expired_token", "malformed", "drop_writes")


@dataclass
class Fault:
    system: str
    operation: str
    kind: str
    count: int | None = None
    after: int = 0
    status: int | None = None
    seconds: float = 0.0
    options: dict = field(default_factory=dict)   # the fault's x_ keys (x_drop, x_variant)
    calls: int = 0
    hits: int = 0

    @classmethod
    def from_dict(cls, doc: dict) -> "Fault":
        return cls(system=doc["system"], operation=doc["operation"], kind=doc["kind"], count=doc.get("count"),
                   after=doc.get("after", 0), status=doc.get("status"), seconds=float(doc.get("seconds", 0)),
                   options={k: v for k, v in doc.items() if k.startswith("x_")})

    def matches(self, operation: str) -> bool:
        return self.operation == "*" or self.operation == operation

    def to_dict(self) -> dict:
        out = {"system": self.system, "operation": self.operation, "kind": self.kind, "after": self.after,
               "calls": self.calls, "hits": self.hits}
        if self.count is not None:
            out["count"] = self.count
        return out


class FaultBook:
    """Every fault of a scenario; `hit(system, operations)` counts one call and returns the faults it triggers."""

    def __init__(self, faults: list[dict]):
        self.faults = [Fault.from_dict(f) for f in faults or []]
        self.lock = threading.Lock()

    def hit(self, system: str, operations: list[str]) -> dict:
        """-> {kind: Fault} for the faults this call triggers (first matching fault of each kind)."""
        fired: dict = {}
        with self.lock:
            for f in self.faults:
                if f.system != system or not any(f.matches(op) for op in operations):
                    continue
                f.calls += 1
                if f.calls > f.after and (f.count is None or f.calls <= f.after + f.count):
                    f.hits += 1
                    fired.setdefault(f.kind, f)
        return fired

    def add(self, doc: dict) -> Fault:
        """Start a fault at runtime (same keys as a scenario fault)."""
        if doc.get("kind") not in KINDS or not doc.get("system") or not doc.get("operation"):
            raise ValueError(f"a fault needs system, operation and kind (one of {', '.join(KINDS)})")
        fault = Fault.from_dict(doc)
        with self.lock:
            self.faults.append(fault)
        return fault

    def lift(self, system: str | None = None, kind: str | None = None, operation: str | None = None) -> int:
        """End the faults matching every given field (none given: all); -> how many were lifted."""
        def hit(f: Fault) -> bool:
            return all(want is None or want == have
                       for want, have in ((system, f.system), (kind, f.kind), (operation, f.operation)))
        with self.lock:
            before = len(self.faults)
            self.faults = [f for f in self.faults if not hit(f)]
            return before - len(self.faults)

    def summary(self) -> list[dict]:
        with self.lock:
            return [f.to_dict() for f in self.faults]
