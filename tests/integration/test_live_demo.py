"""`omnirecon demo --live 90s` end to end on a small living world: the real sandbox in real time, the receiver,
the platforms' subscriptions, the SQS consumer and `airflow standalone` (scheduler, triggerer, dag-processor,
api-server). Checks the output files of outputs.md and world.md, the world block of sandbox_state.json, that
the inbox watcher woke Airflow and a live DAG run took the notifications, and that nothing is left running."""
from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from omnirecon.adapters.amazon.notifications import TOPICS as AMAZON_TOPICS
from omnirecon.adapters.shopify.notifications import TOPICS as SHOPIFY_TOPICS
from omnirecon.adapters.walmart.notifications import TOPICS as WALMART_TOPICS

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "scenarios" / "live" / "small-world.yaml"
FINDINGS_COLS = ["run_id", "check", "severity", "channel", "sku", "location", "order_id", "expected", "observed",
                 "delta", "diagnosis", "action", "detail"]
CORRECTIONS_COLS = ["run_id", "channel", "sku", "channel_sku", "location", "from_qty", "to_qty", "status",
                    "idempotency_key", "attempts", "detail"]
DETECTIONS_COLS = ["hop", "sku", "order_id", "changed_at", "detected_at", "detection_s", "action", "corrected_at",
                   "correction_s"]
pytestmark = pytest.mark.slow


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def _mentions(p: psutil.Process, text: str) -> bool:
    """A process whose command line or environment names this demo's folder: its sandbox, its Airflow."""
    try:
        return any(text in a for a in p.cmdline()) or any(text in v for v in p.environ().values())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    out = tmp_path_factory.mktemp("live") / "out"
    env = dict(os.environ)
    env.pop("OMNIRECON_LEDGER_URL", None)
    cmd = [sys.executable, "-m", "omnirecon.cli", "demo", "--live", "90s", "--scenario", str(SCENARIO),
           "--out", str(out), "--mode", "apply"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1200)
    assert r.returncode == 0, f"live demo failed ({r.returncode}):\n{r.stdout[-5000:]}\n{r.stderr[-5000:]}"
    return r, out


def test_every_output_file_follows_the_contract(live):
    r, out = live
    for name in ("findings.csv", "corrections.csv", "report.html", "sandbox_state.json", "summary.json",
                 "trigger_chain.json", "detections.csv"):
        assert (out / name).exists(), f"{name} missing\n{r.stdout[-3000:]}"
    header, findings = read_csv(out / "findings.csv")
    assert header[:len(FINDINGS_COLS)] == FINDINGS_COLS
    header, corrections = read_csv(out / "corrections.csv")
    assert header[:len(CORRECTIONS_COLS)] == CORRECTIONS_COLS
    assert read_csv(out / "detections.csv")[0][:len(DETECTIONS_COLS)] == DETECTIONS_COLS
    assert "<html" in (out / "report.html").read_text().lower()

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"run_id", "skus_checked", "findings", "corrections", "snapshots", "duration_s",
                            "trigger_chain", "detections"}
    assert set(summary["trigger_chain"]) == {"hops", "broken", "slow"}
    chain = json.loads((out / "trigger_chain.json").read_text())
    assert set(chain) >= {"generated_at", "window", "hops"}
    assert summary["trigger_chain"]["hops"] == len(chain["hops"])
    for hop in chain["hops"]:
        assert hop["state"] in ("ok", "slow", "broken", "unknown") and hop["mechanism"] in ("event", "poll", "unknown")
    # findings.csv and summary.json cover the same runs: every run of the live period
    counted: dict[str, int] = {}
    for f in findings:
        counted[f["check"]] = counted.get(f["check"], 0) + 1
    assert summary["findings"] == counted
    assert summary["detections"] == len(read_csv(out / "detections.csv")[1])


def test_sandbox_state_has_the_world_block(live):
    _, out = live
    world = json.loads((out / "sandbox_state.json").read_text())["world"]
    assert set(world) >= {"clock", "hop_log", "oversells", "notifications", "writes"}
    assert any(e["hop"] == "erp-shopify" and e["outcome"] == "carried" for e in world["hop_log"])
    delivered = {(n["system"], n["topic"]) for n in world["notifications"] if n["delivered"] > 0}
    assert {s for s, _ in delivered} >= {"shopify", "erp"}, world["notifications"]


def test_subscriptions_were_made_and_notifications_reached_the_ledger(live):
    r, out = live
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("[subscriptions]"))
    assert f"shopify {len(SHOPIFY_TOPICS)}" in line and f"walmart {len(WALMART_TOPICS)}" in line
    assert f"amazon {len(AMAZON_TOPICS) + 1}" in line and "erp 1" in line      # Amazon: the destination too
    with sqlite3.connect(out / "state" / "ledger.db") as db:
        sources = dict(db.execute("SELECT source, count(*) FROM notifications GROUP BY source").fetchall())
    assert sources.get("shopify", 0) > 0 and sources.get("erp", 0) > 0 and sources.get("amazon", 0) > 0, sources


def test_the_inbox_watcher_woke_airflow_and_a_live_run_took_the_notifications(live):
    r, out = live
    with sqlite3.connect(out / "state" / "airflow.db") as db:
        rang = db.execute("SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                          "WHERE a.uri = 'omnirecon://ledger/inbox'").fetchone()[0]
        watched = db.execute("SELECT count(*) FROM task_instance WHERE dag_id = 'omnirecon_live' "
                             "AND task_id = 'watch' AND state = 'success'").fetchone()[0]
        paused = dict(db.execute("SELECT dag_id, is_paused FROM dag WHERE dag_id IN "
                                 "('omnirecon_live', 'omnirecon_snapshot', 'omnirecon_reconcile')").fetchall())
    assert rang > 0, "the InboxTrigger's watcher never updated the inbox asset"
    assert watched >= 1, f"no live DAG run got through `watch`\n{r.stdout[-3000:]}"
    assert paused == {"omnirecon_live": 0, "omnirecon_snapshot": 0, "omnirecon_reconcile": 0}
    with sqlite3.connect(out / "state" / "ledger.db") as db:
        live_runs = db.execute("SELECT count(*) FROM runs WHERE kind = 'live' AND status = 'success'").fetchone()[0]
        taken = db.execute("SELECT count(*) FROM notifications WHERE processed_at IS NOT NULL").fetchone()[0]
    assert live_runs >= 1 and taken > 0
    assert "Airflow UI: http://localhost:" in r.stdout and "live runs" in r.stdout   # UI printed, heartbeat shown


def test_nothing_is_left_running(live):
    _, out = live
    left = [" ".join(p.cmdline()) for p in psutil.process_iter() if _mentions(p, str(out))]
    assert left == []
