"""The output files of shared/contracts/outputs.md: findings.csv, corrections.csv, summary.json."""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from omnirecon.ledger import queries
from omnirecon.ledger.db import Ledger
from omnirecon.model.finding import CORRECTIONS_COLUMNS, FINDINGS_COLUMNS
from omnirecon.timeutil import iso, parse_ts


def _cell(value) -> str:
    return "" if value is None else str(value)


def finding_row(f) -> dict:
    """A finding (ledger row) as a findings.csv row."""
    return {col: _cell(getattr(f, col)) for col in FINDINGS_COLUMNS}


def findings_rows(ledger: Ledger, run_id: str) -> list[dict]:
    with ledger.session() as s:
        return [finding_row(f) for f in queries.run_findings(s, run_id)]


def corrections_rows(ledger: Ledger, run_id: str) -> list[dict]:
    with ledger.session() as s:
        return [{col: _cell(getattr(c, col)) for col in CORRECTIONS_COLUMNS}
                for c in queries.run_corrections(s, run_id)]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?")


def safe_cell(value) -> str:
    """A cell a spreadsheet cannot run: text starting with = + - @ tab or CR gets a leading quote (values come
    from the channels). A number (e.g. delta -3) is data and stays as it is."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_bytes(rows: list[dict], columns) -> bytes:
    """Every CSV this product writes (findings.csv, corrections.csv, the e-mailed attachment) goes through here."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\r\n")
    w.writeheader()
    w.writerows({k: safe_cell(v) for k, v in row.items()} for row in rows)
    return buf.getvalue().encode("utf-8")


def findings_csv_bytes(ledger: Ledger, run_id: str) -> bytes:
    return csv_bytes(findings_rows(ledger, run_id), FINDINGS_COLUMNS)


def write_findings_csv(ledger: Ledger, run_id: str, path) -> int:
    """findings.csv; returns the number of rows written."""
    rows = findings_rows(ledger, run_id)
    _write(path, csv_bytes(rows, FINDINGS_COLUMNS))
    return len(rows)


def write_corrections_csv(ledger: Ledger, run_id: str, path) -> int:
    rows = corrections_rows(ledger, run_id)
    _write(path, csv_bytes(rows, CORRECTIONS_COLUMNS))
    return len(rows)


def _write(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def snapshot_summary(ledger: Ledger, snapshot_run_ids=None) -> dict:
    """{system: {"rows", "quarantined", "fetched_at", "status"}} over the snapshots of the given runs
    (default: each system's latest attempt per kind). status: the worst of its snapshots."""
    rank = {"complete": 0, "running": 1, "unusable": 2, "failed": 3}
    with ledger.session() as s:
        snaps = (queries.snapshots_of_runs(s, snapshot_run_ids) if snapshot_run_ids
                 else queries.latest_attempt_per_system_kind(s))
    out: dict[str, dict] = {}
    for snap in snaps:
        entry = out.setdefault(snap.system, {"rows": 0, "quarantined": 0, "fetched_at": None, "status": "complete"})
        entry["rows"] += snap.rows_valid or 0
        entry["quarantined"] += snap.rows_quarantined or 0
        fetched = parse_ts(snap.fetched_at)
        if fetched and (entry["fetched_at"] is None or iso(fetched) > entry["fetched_at"]):
            entry["fetched_at"] = iso(fetched)
        if rank.get(snap.status, 3) > rank.get(entry["status"], 3):
            entry["status"] = snap.status
    return out


def build_summary(ledger: Ledger, *, run_id: str, snapshot_run_ids=None, duration_s: float | None = None,
                  trigger_chain: dict | None = None, detections: int | None = None) -> dict:
    """summary.json; with a live world (world.md) also `trigger_chain` {hops, broken, slow} (from the
    trigger_chain.json document) and `detections` (how many gaps were detected)."""
    with ledger.session() as s:
        run = queries.run(s, run_id)
        findings = queries.finding_counts(s, run_id)
        corrections = queries.correction_counts(s, run_id)
    return {
        "run_id": run_id,
        "skus_checked": int(((run.stats if run else None) or {}).get("skus_checked", 0)),
        "findings": {k: int(v) for k, v in sorted(findings.items())},
        "corrections": {k: int(v) for k, v in sorted(corrections.items())},
        "snapshots": snapshot_summary(ledger, snapshot_run_ids),
        "duration_s": round(float(duration_s), 3) if duration_s is not None else None,
    } | ({"trigger_chain": chain_counts(trigger_chain)} if trigger_chain is not None else {}) \
      | ({"detections": int(detections)} if detections is not None else {})


def write_summary_json(ledger: Ledger, *, run_id: str, snapshot_run_ids=None, duration_s: float | None = None,
                       path, trigger_chain: dict | None = None, detections: int | None = None) -> dict:
    summary = build_summary(ledger, run_id=run_id, snapshot_run_ids=snapshot_run_ids, duration_s=duration_s,
                            trigger_chain=trigger_chain, detections=detections)
    _write(path, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    return summary


# -- the trigger chain (world.md, "What omnirecon writes") -----------------------------------------------------
DETECTIONS_COLUMNS = ("hop", "sku", "order_id", "changed_at", "detected_at", "detection_s", "action",
                      "corrected_at", "correction_s")


def chain_counts(doc: dict) -> dict:
    """summary.json's `trigger_chain`: hops mapped, broken, slow."""
    hops = doc.get("hops", [])
    return {"hops": len(hops), "broken": sum(h["state"] == "broken" for h in hops),
            "slow": sum(h["state"] == "slow" for h in hops)}


def detection_row(hop, sku, order_id, changed_at, detected_at, action, corrected_at) -> dict:
    """A detections.csv row; detection_s and correction_s count from the source change's own time."""
    changed_at, detected_at, corrected_at = (parse_ts(v) for v in (changed_at, detected_at, corrected_at))
    secs = lambda t: "" if t is None else round((t - changed_at).total_seconds(), 3)
    return {"hop": hop, "sku": sku or "", "order_id": order_id or "", "changed_at": iso(changed_at),
            "detected_at": iso(detected_at), "detection_s": secs(detected_at), "action": str(action),
            "corrected_at": iso(corrected_at) if corrected_at else "", "correction_s": secs(corrected_at)}


def detections_rows(ledger: Ledger, *, run_id: str | None = None, since=None) -> list[dict]:
    with ledger.session() as s:
        return [detection_row(d.hop, d.sku, d.order_id, d.changed_at, d.detected_at, d.action, d.corrected_at)
                for d in queries.detections(s, run_id=run_id, since=since)]


def write_detections_csv(ledger: Ledger, path, *, run_id: str | None = None, since=None) -> int:
    """detections.csv (every detection in the ledger, or a run's, or since a moment); returns the rows written."""
    rows = detections_rows(ledger, run_id=run_id, since=since)
    _write(path, csv_bytes(rows, DETECTIONS_COLUMNS))
    return len(rows)


def write_trigger_chain_json(doc: dict, path) -> dict:
    """trigger_chain.json, the map as live/chain.py learned it."""
    _write(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
    return doc
