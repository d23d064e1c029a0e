"""reconcile(): ledger -> comparison frames -> GX suites -> diagnosis + evidence -> persisted findings."""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from omnirecon.checks import compare
from omnirecon.checks.findings import FindingBuilder, persist
from omnirecon.checks.load import load_view
from omnirecon.checks.suites import SuiteRunner
from omnirecon.config import Settings
from omnirecon.errors import ConfigError
from omnirecon.model.canonical import CHECKS
from omnirecon.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass
class ReconcileResult:
    run_id: str
    skus_checked: int
    counts: dict = field(default_factory=dict)       # check -> number of findings
    findings: list = field(default_factory=list)     # dicts: findings.csv columns + fingerprint, evidence, lifecycle
    data_docs: str | None = None
    unusable_systems: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)      # stage -> seconds


def reconcile(ledger, settings: Settings, *, run_id: str, now: datetime | None = None,
              channels: list[str] | None = None, sku_filter: str | None = None,
              gx_dir: str | None = None) -> ReconcileResult:
    """Reconcile the latest complete snapshots in the ledger; persist findings for run_id (replacing earlier ones)."""
    now = now or utcnow()
    configured = settings.channels
    if channels:
        unknown = [c for c in channels if c not in configured]
        if unknown:
            raise ConfigError(f"channels: {', '.join(unknown)} not configured in settings.channels "
                              f"(configured: {', '.join(configured) or 'none'})")
    channels = [c for c in configured if not channels or c in channels]
    timings, t0 = {}, time.monotonic()

    def lap(stage):
        nonlocal t0
        timings[stage] = round(time.monotonic() - t0, 3)
        t0 = time.monotonic()

    view = load_view(ledger, now, systems=["erp"] + channels)
    lap("load")
    cmp = compare.build(view, settings, channels, sku_filter)
    lap("compare")
    runner = SuiteRunner(settings, gx_dir)
    failures = runner.run(cmp.frames, run_id)
    lap("gx")
    findings = FindingBuilder(view, settings, cmp, run_id, ledger).build(failures)
    lap("findings")
    rx = compare.sku_matcher(sku_filter)
    checked_channels = set(channels) | {"erp"}
    unusable = set(cmp.unusable)

    def in_scope(state) -> bool:
        if state.channel not in checked_channels or state.channel in unusable or "erp" in unusable and state.check != "freshness":
            return False
        return rx is None or (state.sku is not None and bool(rx.match(state.sku)))

    persist(ledger, run_id, findings, now, in_scope)
    lap("persist")
    data_docs = runner.build_data_docs()
    lap("data_docs")
    counts = Counter(f["check"] for f in findings)
    log.info("reconcile %s: %d SKUs, %d findings %s, unusable %s", run_id, cmp.skus_checked, len(findings),
             dict(counts), cmp.unusable)
    return ReconcileResult(run_id=run_id, skus_checked=cmp.skus_checked, counts={c: counts.get(c, 0) for c in CHECKS},
                           findings=findings, data_docs=data_docs, unusable_systems=list(cmp.unusable), timings=timings)
