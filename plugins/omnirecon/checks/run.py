"""reconcile(): ledger -> comparison frames -> GX suites -> diagnosis + evidence -> persisted findings."""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from omnirecon.checks import compare
from omnirecon.checks.findings import FindingBuilder, persist, silence_fingerprint
from omnirecon.checks.load import load_view
from omnirecon.checks.scope import Scope
from omnirecon.checks.suites import SuiteRunner
from omnirecon.config import Settings
from omnirecon.errors import ConfigError
from omnirecon.model.canonical import CHECKS
from omnirecon.model.sharding import WHOLE, Shard
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
    shard: str = "all"                               # the scope's label: all | global | 3/8
    follow_lag: list = field(default_factory=list)   # a shard's follow-lag rows, for the global part's freshness

    def summary(self) -> dict:
        """What a reconcile task hands on (JSON: XCom-safe, no evidence)."""
        return {"shard": self.shard, "skus_checked": self.skus_checked, "findings": self.counts,
                "unusable_systems": list(self.unusable_systems), "follow_lag": self.follow_lag}


def run_totals(shard_summaries: list[dict], final: dict) -> dict:
    """One run's totals from its shards' summaries and the global part's: SKUs, findings per check, unusable."""
    counts = Counter(final["findings"])
    for part in shard_summaries:
        counts.update(part["findings"])
    return {"skus_checked": sum(p["skus_checked"] for p in shard_summaries),
            "findings": {c: counts.get(c, 0) for c in CHECKS},
            "unusable_systems": sorted(set(final["unusable_systems"]).union(
                *(p["unusable_systems"] for p in shard_summaries)))}


def reconcile(ledger, settings: Settings, *, run_id: str, now: datetime | None = None,
              channels: list[str] | None = None, sku_filter: str | None = None,
              gx_dir: str | None = None, shard: Shard | None = None, part: str = "all",
              follow_lag: list[dict] | None = None, data_docs: bool = True) -> ReconcileResult:
    """Reconcile the latest complete snapshots in the ledger and persist the findings for run_id.

    part "all" runs every check; a large catalog runs part "skus" once per shard (the per-SKU checks of that
    shard's SKUs only) and then part "global" (freshness, with the shards' follow lags, and the order checks).
    Each part replaces only its own findings of the run, so a retried task never duplicates or drops one."""
    now = now or utcnow()
    scope = Scope(part=part, shard=shard or WHOLE, glob=sku_filter or None)
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

    view = load_view(ledger, now, systems=["erp"] + channels, scope=scope, settings=settings)
    lap("load")
    lags = [pd.DataFrame.from_records(follow_lag)] if follow_lag else []
    cmp = compare.build(view, settings, channels, scope, follow_lag_parts=lags)
    lap("compare")
    runner = SuiteRunner(settings, gx_dir)
    failures = runner.run(cmp.frames, run_id if scope.label == "all" else f"{run_id}#{scope.label}")
    lap("gx")
    findings = FindingBuilder(view, settings, cmp, run_id, ledger,
                              buckets=None if scope.shard.whole else scope.shard.buckets()).build(failures)
    lap("findings")
    checked_channels = set(channels) | {"erp"}
    unusable = set(cmp.unusable)

    live_owned = {silence_fingerprint(c) for c in checked_channels}

    def in_scope(state) -> bool:
        if state.fingerprint in live_owned:
            return False
        if state.channel not in checked_channels or state.channel in unusable or "erp" in unusable and state.check != "freshness":
            return False
        return scope.owns(state.check, state.sku)

    persist(ledger, run_id, findings, now, in_scope, shard=scope.label, checks=scope.checks,
            buckets=None if scope.shard.whole else scope.shard.buckets())
    lap("persist")
    docs = runner.build_data_docs(run_id, keep_days=settings.runtime["gx_results_days"]) if data_docs else None
    lap("data_docs")
    counts = Counter(f["check"] for f in findings)
    log.info("reconcile %s [%s]: %d SKUs, %d findings %s, unusable %s", run_id, scope.label, cmp.skus_checked,
             len(findings), dict(counts), cmp.unusable)
    # plain JSON numbers (XCom), not numpy scalars
    lag = json.loads(cmp.follow_lag.to_json(orient="records")) if cmp.follow_lag is not None else []
    return ReconcileResult(run_id=run_id, skus_checked=cmp.skus_checked,
                           counts={c: counts.get(c, 0) for c in CHECKS if c in scope.checks}, findings=findings, data_docs=docs,
                           unusable_systems=list(cmp.unusable), timings=timings, shard=scope.label, follow_lag=lag)


def reconcile_in_shards(ledger, settings: Settings, *, run_id: str, shards: int, now: datetime | None = None,
                        **kwargs) -> ReconcileResult:
    """The reconcile DAG's split in one process (tests, benchmarks): every shard's per-SKU checks, then the
    global part with their follow lags. One result for the whole run."""
    now = now or utcnow()
    parts = [reconcile(ledger, settings, run_id=run_id, now=now, shard=Shard(i, shards), part="skus",
                       data_docs=False, **kwargs) for i in range(shards)]
    final = reconcile(ledger, settings, run_id=run_id, now=now, part="global",
                      follow_lag=[row for p in parts for row in p.follow_lag], **kwargs)
    totals = run_totals([p.summary() for p in parts], final.summary())
    timings = Counter()
    for p in parts + [final]:
        timings.update(p.timings)
    return ReconcileResult(run_id=run_id, skus_checked=totals["skus_checked"], counts=totals["findings"],
                           findings=[f for p in parts for f in p.findings] + final.findings,
                           data_docs=final.data_docs, timings=dict(timings),
                           unusable_systems=totals["unusable_systems"], shard=f"{shards} shards + global")
