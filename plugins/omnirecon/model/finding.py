"""A finding as the checks produce it, and the column lists of findings.csv and corrections.csv (outputs.md)."""
from __future__ import annotations

from dataclasses import dataclass, fields

from omnirecon.model.values import Action, Check, Diagnosis, Severity

FINDINGS_COLUMNS = ("run_id", "check", "severity", "channel", "sku", "location", "order_id", "expected",
                    "observed", "delta", "diagnosis", "action", "detail")
CORRECTIONS_COLUMNS = ("run_id", "channel", "sku", "channel_sku", "location", "from_qty", "to_qty", "status",
                       "idempotency_key", "attempts", "detail")


@dataclass
class Finding:
    """One finding of one run: the findings.csv columns, its fingerprint (stable across runs), its evidence
    (plain JSON) and its lifecycle (`new` or `open`, set when it is persisted)."""
    run_id: str
    check: Check
    severity: Severity
    channel: str
    sku: str
    location: str
    order_id: str
    expected: str | None
    observed: str | None
    delta: int | None
    diagnosis: Diagnosis
    action: Action
    detail: str
    evidence: dict
    fingerprint: str
    lifecycle: str | None = None

    def __post_init__(self):
        self.check, self.severity = Check(self.check), Severity(self.severity)
        self.diagnosis, self.action = Diagnosis(self.diagnosis), Action(self.action)

    def row(self) -> dict:
        """Every field by name (shallow: the evidence is shared, not copied)."""
        return {name: getattr(self, name) for name in FIELDS}


FIELDS = tuple(f.name for f in fields(Finding))
