"""The bundled living world (include/scenarios/world.yaml) heard only through the platforms' own notifications and
reads, on the manual clock (tests/support/chain_world.py), SLA 30 s, 11 clock minutes: every hop the scenario breaks
is found broken with the layer its defect implies, the hops it leaves alone are not, mechanisms and poll periods
are learned where the hop carried enough to learn them, and every gap on an event hop is detected within the
SLA + 15 s. The world's notification defects run too: Shopify delivers up to 5 s out of order (reorder) and falls
silent after 40 deliveries (stop_after), Walmart duplicates 20 %; a Shopify snapshot at the end makes that silence
a finding, as on the live path.

Every expectation is derived from the scenario's own `integration` block and the sandbox's hop log and writes."""
from __future__ import annotations

import threading
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from omnirecon.adapters import get_adapter
from omnirecon.config import settings_from_dict
from omnirecon.ledger.db import Ledger
from omnirecon.live.chain import MIN_CHANGES
from omnirecon.live.cycle import silence_findings
from omnirecon.model.values import Action, Check, Diagnosis
from omnirecon.runner import hooks_from_connections
from omnirecon.snapshot import snapshot_system
from omnirecon.timeutil import iso, parse_ts, utcnow
from tests.support.chain_world import run_chain_world

WORLD = Path(__file__).resolve().parents[2] / "include" / "scenarios" / "world.yaml"
SLA, TICK = 30, 5
HORIZON = 660        # the last timed defect (+6 m) and a change it stopped, missed after 1.5 x the 3-minute poll
VALUE_DEFECTS = ("wrong_location", "ignores_safety_stock")      # a carried value is not the contract's value


def _seconds(text) -> float:
    text = str(text).lstrip("+")
    return float(text[:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]] if text[-1] in "smh" else float(text)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    doc = yaml.safe_load(WORLD.read_text())
    doc["as_of"] = iso(utcnow().replace(microsecond=0))     # `now` on a whole second: the platforms stamp seconds
    ledger = Ledger(f"sqlite:///{tmp_path_factory.mktemp('world') / 'ledger.db'}")
    ledger.migrate()

    def safety_net(sb, settings):
        """The scheduled snapshots of Shopify and the ERP at the end (the clock ticking on meanwhile), then the
        live run's silence check."""
        hooks = hooks_from_connections(sb.connections(), time_scale=0.01)
        ledger.begin_run("snapshot/end", "snapshot")
        done = threading.Event()
        ticker = threading.Thread(target=lambda: [sb.world.advance(0.5) for _ in iter(lambda: done.wait(0.02), True)])
        ticker.start()
        try:
            for system in ("erp", "shopify"):
                snapshot_system(system, ledger=ledger, run_id="snapshot/end", settings=settings, hook=hooks[system],
                                window_start=sb.clock.started_at - timedelta(days=1), window_end=sb.clock.now())
        finally:
            done.set()
            ticker.join()
        return silence_findings(ledger, settings, "live/2", sb.clock.now())

    return doc, run_chain_world(ledger, doc, sla=SLA, horizon_s=HORIZON, tick_s=TICK, at_end=safety_net)


def _hops(doc) -> list[dict]:
    return doc["integration"]["hops"]


def _defects(doc) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for d in doc["integration"]["defects"]:
        out[d["hop"]].append(d)
    return out


def _expected_diagnosis(hop: dict, defects: list[dict]) -> str | None:
    """The layer (shared/domain.md) a hop's defects imply; None where it is not broken.

    Where two defects share a hop, the one that shapes what the hop carries for the whole run is the diagnosis:
    - erp-shopify (min_delta + a lag from +2 to +5 m): the threshold leaves changes uncarried (broken); the lag only
      delays what is carried (slow), and a broken hop is diagnosed by what it did not carry: L4.
    - erp-walmart (ignores_safety_stock + suspended from +4 m): every value the hop wrote shows the feed's buffer
      rule (L2); the pause leaves the later changes uncarried, and a value that merely stayed where it was is no
      evidence of a layer: the rule, in force from the first wake, stays the diagnosis.
    A channel -> channel inventory relay (shopify-amazon) that drops changes is a feed from a channel manager into one
    marketplace, which alone then differs: domain.md's L2 row, not the orders connector's L3."""
    kinds = [d["kind"] for d in defects if d["kind"] != "lag"]
    if not kinds:
        return None
    listing = get_adapter(hop["to"]).listing_diagnosis if hop["to"] != "erp" else Diagnosis.L3_CONNECTOR
    layer = {"min_delta": Diagnosis.L4_ERP_CONFIG, "wrong_location": Diagnosis.LOCATION_MAPPING,
             "ignores_safety_stock": listing, "event_filter": Diagnosis.L3_CONNECTOR,
             "expired_credentials": Diagnosis.L3_CONNECTOR, "suspended": Diagnosis.L3_CONNECTOR,
             "drop": listing if hop["kind"] == "inventory" and hop["from"] != "erp" else Diagnosis.L3_CONNECTOR}
    for kind in ("wrong_location", "ignores_safety_stock", "min_delta", "event_filter", "drop", "suspended",
                 "expired_credentials"):
        if kind in kinds:
            return str(layer[kind])
    raise AssertionError(f"no layer for {kinds}")


def _max_delay(hop: dict) -> float:
    if hop["mechanism"] == "poll":
        return _seconds(hop["every"])
    return _seconds(hop["latency"]) + _seconds(hop.get("jitter", 0))


def _state(run, hop: dict) -> dict | None:
    return next((h for h in run.monitor.chain()["hops"]
                 if (h["from"], h["to"], h["kind"]) == (hop["from"], hop["to"], hop["kind"])), None)


def _visible_correct_carries(doc, run, hop: dict, defects: list[dict]) -> list[float]:
    """Clock offsets of the hop's carries that omnirecon could see, with the contract's value: an order recorded in
    the ERP (it notifies every sales order), or a channel write of the value carried at that moment (a carry that
    changed nothing notifies nothing), while no defect altered the value."""
    settings = settings_from_dict(doc["settings"])
    at = lambda e: (parse_ts(e["at"]) - run.started).total_seconds()
    writes = defaultdict(list)               # (channel, ERP SKU, value) -> when the integration wrote it
    for w in run.state["world"]["writes"]:
        if w["by"] == "integration":
            writes[(w["system"], settings.erp_sku_for(w["sku"], w["system"]), w["value"])].append(at(w))

    def altered(t: float) -> bool:
        for d in defects:
            if d["kind"] in VALUE_DEFECTS and _seconds(d.get("from", 0)) <= t < _seconds(d.get("until", "1e9s")):
                return True
        return False

    out = []
    for e in run.log(hop["id"]):
        if e["outcome"] != "carried" or altered(at(e)):
            continue
        if hop["kind"] != "inventory" or any(abs(t - at(e)) <= 1 for t in writes[(hop["to"], e["sku"], e["value"])]):
            out.append(at(e))
    return sorted(out)


def _wakes(times: list[float]) -> int:
    """Distinct instants a hop carried at (one wake carries several changes)."""
    return sum(1 for i, t in enumerate(times) if i == 0 or t - times[i - 1] > 2)


def test_the_world_runs_its_defects(world):
    """The horizon covers every timed defect and what it leaves unfollowed; each defect kind left its trace."""
    doc, run = world
    longest = max(_max_delay(h) for h in _hops(doc))
    assert HORIZON >= max(_seconds(d.get("from", 0)) for d in doc["integration"]["defects"]) + 1.5 * longest
    outcomes = defaultdict(set)
    for e in run.state["world"]["hop_log"]:
        outcomes[e["hop"]].add(e["outcome"])
    trace = {"min_delta": "below_min_delta", "drop": "dropped", "event_filter": "filtered",
             "expired_credentials": "auth_error", "suspended": "suspended"}
    for hop_id, defects in _defects(doc).items():
        for d in defects:
            if d["kind"] in trace:
                assert trace[d["kind"]] in outcomes[hop_id], (hop_id, d)
    stop = next(d for d in doc["notifications"]["defects"] if d["kind"] == "stop_after")
    delivered = sum(n["delivered"] - n["duplicates"] for n in run.state["world"]["notifications"]
                    if n["system"] == stop["system"])
    assert delivered == stop["deliveries"]                 # Shopify fell silent mid-run, and said nothing


def test_every_broken_hop_is_found_with_the_layer_its_defect_implies(world):
    doc, run = world
    defects = _defects(doc)
    for hop in _hops(doc):
        layer = _expected_diagnosis(hop, defects.get(hop["id"], []))
        if layer is None:
            continue
        state = _state(run, hop)
        assert state is not None, hop["id"]
        assert (state["state"], state["diagnosis"]) == ("broken", layer), (hop["id"], state)
        found = [d for d, _ in run.found if d.hop == f"{hop['from']}->{hop['to']}" and d.kind == state["kind"]]
        assert found, hop["id"]
        timed = [d for d in defects[hop["id"]] if d.get("from") and d["kind"] != "lag"]
        if len(defects[hop["id"]]) == 1 and timed:    # broken since the defect began, give or take a carry; healthy before
            began = run.started + timedelta(seconds=_seconds(timed[0]["from"]))
            slack = timedelta(seconds=_max_delay(hop))
            assert began - slack <= parse_ts(state["since"]) <= began + slack, (hop["id"], state["since"])
            early = [d for d in found if d.changed_at < began - slack]
            for d in early:                           # a poll slower than the SLA has gaps of its own, each closed
                assert hop["mechanism"] == "poll" and d.corrected_at is not None, (hop["id"], d)   # by its next wake
                assert (d.corrected_at - d.changed_at).total_seconds() <= _max_delay(hop) + 1, (hop["id"], d)


def test_no_trigger_gap_on_a_healthy_hop(world):
    """A hop the scenario leaves alone is never broken. Within the SLA it has no gap at all; a healthy poll slower
    than the SLA (walmart-erp, every 3 m) is `slow`, and each of its gaps (the contract: a change not followed
    within the SLA) was closed by the hop's own next wake."""
    doc, run = world
    defects = _defects(doc)
    end = run.started + timedelta(seconds=HORIZON)
    for hop in _hops(doc):
        if defects.get(hop["id"]):
            continue
        state = _state(run, hop)
        name = f"{hop['from']}->{hop['to']}"
        gaps = [d for d, _ in run.found if d.hop == name and d.kind == hop["kind"]]
        if state is None:        # never seen carrying: erp-shopify-status fulfilled an order Shopify showed fulfilled
            assert not gaps, hop["id"]
            continue
        assert state["missed"] == 0 and state["state"] != "broken", (hop["id"], state)
        if 0.95 * _max_delay(hop) <= SLA:
            assert state["state"] in ("ok", "unknown") and not gaps, (hop["id"], state, gaps)
            continue
        assert state["state"] == "slow", (hop["id"], state)
        for d in gaps:
            if d.corrected_at is None:
                assert (end - d.changed_at).total_seconds() < _max_delay(hop) + TICK, (hop["id"], d)
            else:
                assert (d.corrected_at - d.changed_at).total_seconds() <= _max_delay(hop) + 1, (hop["id"], d)


def test_mechanisms_and_poll_periods_are_learned(world):
    """A mechanism, when the monitor names one, is the scenario's; it must name it once the hop visibly carried
    MIN_CHANGES changes with the right value, and a poll's period within 20 % once it carried at three wakes."""
    doc, run = world
    defects = _defects(doc)
    learned, seen = 0, {}
    for hop in _hops(doc):
        state = _state(run, hop)
        if state is None:
            continue
        carries = _visible_correct_carries(doc, run, hop, defects.get(hop["id"], []))
        seen[hop["id"]] = (len(carries), _wakes(carries), state["mechanism"], state["poll_interval_s"])
        assert state["mechanism"] in (hop["mechanism"], "unknown"), (hop["id"], state)
        if len(carries) >= MIN_CHANGES:
            assert state["mechanism"] == hop["mechanism"], (hop["id"], state, carries)
            learned += 1
        if hop["mechanism"] == "poll" and _wakes(carries) >= 3:
            every = _seconds(hop["every"])
            assert abs(state["poll_interval_s"] - every) <= 0.2 * every, (hop["id"], state)
            learned += 1
    assert learned >= 5, seen    # shopify-amazon (90 s) and walmart-erp (3 m): mechanism and period; amazon-erp


def test_every_gap_on_an_event_hop_is_detected_within_the_sla_and_15_s(world):
    doc, run = world
    event_hops = {(f"{h['from']}->{h['to']}", h["kind"]) for h in _hops(doc) if h["mechanism"] == "event"}
    found = [d for d, _ in run.found if (d.hop, d.kind) in event_hops]
    assert len(found) >= 20
    for d in found:
        assert SLA < (d.detected_at - d.changed_at).total_seconds() <= SLA + 15, d


def test_a_platform_that_fell_silent_is_a_finding(world):
    """Shopify stops delivering after 40 notifications without a word (stop_after); its snapshot shows changes
    after the last one: a freshness finding on Shopify alone (the ERP kept notifying), L3_connector, alert."""
    doc, run = world
    silent = run.extra
    assert [(f["channel"], f["check"], f["diagnosis"], f["action"]) for f in silent] == \
        [("shopify", Check.FRESHNESS, Diagnosis.L3_CONNECTOR, Action.ALERT)]
    last = parse_ts(silent[0]["evidence"]["last_notification_at"])
    assert (last - run.started).total_seconds() < HORIZON - 60 and silent[0]["evidence"]["changes_after"] >= 1
