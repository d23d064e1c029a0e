"""One reconciliation cycle in-process, without Airflow: the same library calls the DAG tasks make.

Used by tests and benchmarks that need many cycles quickly; the demo and production go through Airflow.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime

from omnirecon.adapters import all_adapters
from omnirecon.config import Settings
from omnirecon.errors import SnapshotFailed
from omnirecon.model.canonical import SNAPSHOT_KINDS


def hooks_from_connections(connections: dict, time_scale: float | None = None) -> dict:
    """{system: hook} from connection dicts such as `Sandbox.connections()`, keyed by the adapters' conn ids."""
    by_conn = {a.conn_id: a for a in all_adapters()}
    out = {}
    for conn_id, fields in connections.items():
        if conn_id in by_conn:
            if time_scale is not None:
                fields = {**fields, "extra": {**(fields.get("extra") or {}), "time_scale": time_scale}}
            out[by_conn[conn_id].system] = by_conn[conn_id].hook_from_fields(fields)
    return out


def run_cycle(ledger, settings: Settings, hooks: dict, *, run_id: str, mode: str = "apply",
              window_start: datetime | None = None, window_end: datetime | None = None,
              approve_all: bool = False, alerts: bool = False, now: datetime | None = None) -> dict:
    """snapshot every system -> reconcile -> plan -> push -> (alerts). Returns a small summary."""
    from omnirecon import cycle
    from omnirecon.remediation.plan import correction_counts

    settings = dataclasses.replace(settings, runtime={**settings.runtime, "mode": mode})
    snap_run = f"{run_id}/snapshot"
    ledger.begin_run(snap_run, "snapshot")
    failed = []
    for system, hook in hooks.items():
        results = _snapshot(system, hook, ledger, snap_run, settings, window_start, window_end)
        failed += [f"{system}.{k}" for k, v in results.items() if isinstance(v, SnapshotFailed)]
    ledger.finish_run(snap_run, "failed" if failed else "success", {"failed": failed})

    result = cycle.reconcile_whole(ledger, settings, run_id=run_id, now=now)
    batches = cycle.plan(ledger, settings, run_id=run_id, now=now,
                         approve_all_by="runner approve_all" if approve_all else None)
    for batch in batches:
        cycle.push(ledger, settings, batch, hook_factory=lambda channel: hooks[channel])
    if alerts:
        cycle.alert(ledger, settings, run_id=run_id)
    return {"run_id": run_id, "failed_snapshots": failed, "findings": result.counts,
            "skus_checked": result.skus_checked, "corrections": correction_counts(ledger, run_id),
            "findings_rows": result.findings}


def _snapshot(system, hook, ledger, run_id, settings, start, end) -> dict:
    from omnirecon.snapshot import snapshot_system
    return snapshot_system(system, ledger=ledger, run_id=run_id, settings=settings, kinds=SNAPSHOT_KINDS,
                           window_start=start, window_end=end, hook=hook)
