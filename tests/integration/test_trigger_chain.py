"""The trigger chain learned from a living world on the manual sandbox clock (tests/support/chain_world.py: the
platforms' real notifications through a real Receiver and the SQS consumer, Walmart read through its hook):
ChainMonitor maps every hop, infers its mechanism and detects the suspended one within the SLA."""
from __future__ import annotations

import csv
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from omnirecon.ledger import models as m
from omnirecon.ledger import queries
from omnirecon.report import exports
from tests.support.chain_world import run_chain_world
from tests.support.world import world_doc

SLA = 30
EVENT_LATENCY, POLL_EVERY, SUSPENDED_FROM, HORIZON = 3.0, 20.0, 150.0, 240.0
HOPS = [{"id": "erp-shopify", "from": "erp", "to": "shopify", "kind": "inventory", "mechanism": "event",
         "latency": f"{EVENT_LATENCY:g}s"},
        {"id": "erp-amazon", "from": "erp", "to": "amazon", "kind": "inventory", "mechanism": "poll",
         "every": f"{POLL_EVERY:g}s", "phase": "5s"},
        {"id": "erp-walmart", "from": "erp", "to": "walmart", "kind": "inventory", "mechanism": "event",
         "latency": "2s"}]


def _adjusts() -> list[dict]:
    """An ERP adjustment every 6.3 s over three SKUs, each down by 1 to 3 (quantities stay well above 0)."""
    out, t, n = [], 2.3, 0
    while t < HORIZON - 40:
        out.append({"at": f"+{t:.1f}s", "system": "erp", "kind": "adjust", "sku": f"SKU-{n % 3:03d}",
                    "location": "WH-EAST", "delta": -(1 + n % 3)})
        t, n = t + 6.3, n + 1
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The world for HORIZON clock seconds, the monitor ticking every 5 s; -> (monitor, ledger, detections, state)."""
    from omnirecon.ledger.db import Ledger
    ledger = Ledger(f"sqlite:///{tmp_path_factory.mktemp('chain') / 'ledger.db'}")
    ledger.migrate()
    doc = world_doc(on_hand=200, dropship=25, integration={"hops": HOPS, "defects": [
        {"hop": "erp-walmart", "kind": "suspended", "from": f"+{SUSPENDED_FROM:g}s"}]},
        events=_adjusts(), notifications={"shopify": {}, "amazon": {}, "walmart": {}, "erp": {}})
    r = run_chain_world(ledger, doc, sla=SLA, horizon_s=int(HORIZON))
    return r.monitor, r.ledger, r.found, r.state


def _hop(monitor, dst):
    return next(h for h in monitor.chain()["hops"] if h["from"] == "erp" and h["to"] == dst and h["kind"] == "inventory")


def test_event_hop_is_inferred_as_an_event_with_its_latency(run):
    monitor, *_ = run
    hop = _hop(monitor, "shopify")
    assert hop["mechanism"] == "event" and hop["poll_interval_s"] is None
    assert abs(hop["latency_s"]["p50"] - EVENT_LATENCY) <= 1.0 and hop["latency_s"]["max"] <= EVENT_LATENCY + 1.0
    assert hop["state"] == "ok" and hop["missed"] == 0 and hop["followed"] >= 20


def test_poll_hop_period_is_inferred_within_20_percent(run):
    monitor, *_ = run
    hop = _hop(monitor, "amazon")
    assert hop["mechanism"] == "poll"
    assert abs(hop["poll_interval_s"] - POLL_EVERY) <= 0.2 * POLL_EVERY, hop
    assert hop["state"] == "ok" and hop["missed"] == 0                 # a 20 s poll is within the 30 s SLA


def test_suspended_hop_is_broken_since_its_suspension_with_trigger_gaps(run):
    monitor, ledger, found, _ = run
    hop = _hop(monitor, "walmart")
    assert hop["state"] == "broken" and hop["missed"] > 0 and hop["resolution_s"] == 5.0
    assert hop["diagnosis"] == "L3_connector"                           # the other channels followed the ERP
    since = (monitor.now - timedelta(seconds=HORIZON - SUSPENDED_FROM))
    assert abs((json_ts(hop["since"]) - since).total_seconds()) <= 7
    gaps = monitor.findings("live/1")
    assert gaps and {g["channel"] for g in gaps} == {"walmart"}
    assert all(g["detail"].startswith("erp->walmart") and g["action"] == "push" and g["check"] == "trigger_gap"
               for g in gaps)
    with ledger.session() as s:
        rows = list(s.scalars(select(m.Finding).where(m.Finding.run_id == "live/1")))
    assert {r.check for r in rows} == {"trigger_gap"} and len(rows) == len(gaps)


def test_no_trigger_gap_on_a_healthy_hop(run):
    monitor, _, found, _ = run
    assert {d.hop for d, _ in found} == {"erp->walmart"}
    assert all(d.changed_at >= monitor.now - timedelta(seconds=HORIZON - SUSPENDED_FROM + 1) for d, _ in found)


def test_every_gap_is_detected_within_the_sla_plus_15_seconds_on_the_clock(run):
    _, _, found, _ = run
    assert found
    for d, at in found:
        assert d.detected_at == at
        assert SLA < (d.detected_at - d.changed_at).total_seconds() <= SLA + 15


def test_exports_detections_csv_trigger_chain_json_and_summary(run, tmp_path):
    monitor, ledger, found, _ = run
    n = exports.write_detections_csv(ledger, tmp_path / "detections.csv")
    rows = list(csv.DictReader(open(tmp_path / "detections.csv", newline="")))
    assert n == len(found) == len(rows)
    assert list(rows[0]) == ["hop", "sku", "order_id", "changed_at", "detected_at", "detection_s", "action",
                             "corrected_at", "correction_s"]
    assert {r["hop"] for r in rows} == {"erp->walmart"} and {r["action"] for r in rows} == {"push"}
    assert all(SLA < float(r["detection_s"]) <= SLA + 15 for r in rows)
    doc = exports.write_trigger_chain_json(monitor.chain(), tmp_path / "trigger_chain.json")
    assert json.loads((tmp_path / "trigger_chain.json").read_text()) == doc
    assert set(doc) == {"generated_at", "window", "hops"} and len(doc["hops"]) == 3
    assert set(doc["hops"][0]) == {"from", "to", "kind", "mechanism", "poll_interval_s", "latency_s", "resolution_s",
                                   "changes_seen", "followed", "missed", "state", "since", "diagnosis", "exposure"}
    summary = exports.build_summary(ledger, run_id="live/1", trigger_chain=doc, detections=n)
    assert summary["trigger_chain"] == {"hops": 3, "broken": 1, "slow": 0} and summary["detections"] == n
    assert "trigger_chain" not in exports.build_summary(ledger, run_id="live/1")
    with ledger.session() as s:
        history = queries.hop_history(s, "erp", "walmart", "inventory")
    assert [w.state for w in history] == ["broken"]


def json_ts(value):
    from omnirecon.timeutil import parse_ts
    return parse_ts(value)
