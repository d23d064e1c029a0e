"""Snapshots against the sandbox over real HTTP, under every fault kind: each snapshot is complete and
correct, or absent and marked failed (never partial). Also: no credential ever reaches logs or the ledger."""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from omnirecon_contract import scenario as scenario_mod
from omnirecon.config import settings_from_dict
from omnirecon.errors import SnapshotFailed
from omnirecon.hooks import hook_from_fields
from omnirecon.ledger import models as m
from omnirecon.ledger.db import Ledger
from omnirecon_sandbox import Sandbox
from omnirecon.snapshot import snapshot_system, take_snapshot

DEMO = Path(__file__).resolve().parents[2] / "include" / "scenarios" / "demo.yaml"
SCALE = 0.01
CONN = {"shopify": "omnirecon_shopify", "amazon": "omnirecon_amazon", "walmart": "omnirecon_walmart",
        "erp": "omnirecon_netsuite"}


def demo_doc(faults=()) -> dict:
    doc = yaml.safe_load(DEMO.read_text())
    doc["faults"] = list(faults)
    return doc


@pytest.fixture
def ledger(tmp_path):
    led = Ledger("sqlite:///" + str(tmp_path / "l.db"))
    led.migrate()
    return led


class World:
    def __init__(self, sb: Sandbox, ledger: Ledger, settings):
        self.sb, self.ledger, self.settings = sb, ledger, settings

    def hook(self, system: str, **kwargs):
        kwargs.setdefault("time_scale", SCALE)
        kwargs.setdefault("timeout", 5.0)
        hook = hook_from_fields(system, self.sb.connections()[CONN[system]], **kwargs)
        return hook

    def snap(self, system: str, kind: str, hook=None, **kwargs):
        return take_snapshot(system, kind, ledger=self.ledger, run_id="run-1", settings=self.settings,
                             hook=hook or self.hook(system), **kwargs)

    def rows(self, snapshot_id: int, model=m.InventoryRow) -> list:
        with self.ledger.session() as s:
            return list(s.scalars(select(model).where(model.snapshot_id == snapshot_id)))

    def all_rows(self, model=m.InventoryRow) -> list:
        with self.ledger.session() as s:
            return list(s.scalars(select(model)))


@pytest.fixture
def world(ledger):
    worlds = []

    def make(faults=()):
        sc = scenario_mod.from_dict(demo_doc(faults))
        sb = Sandbox(sc, time_scale=SCALE).start()
        worlds.append(sb)
        return World(sb, ledger, settings_from_dict(sc.settings))
    yield make
    for sb in worlds:
        sb.stop()


# --- what the sandbox holds, in canonical terms --------------------------------------------------
def expected_inventory(state: dict, system: str) -> set:
    if system == "shopify":
        return {(v["sku"], l["location_id"], l["available"]) for v in state["shopify"]["variants"]
                for l in v.get("levels", [])}
    if system == "walmart":
        return {(i["sku"], str(i["ship_node"]), i["quantity"]) for i in state["walmart"]["items"]}
    if system == "erp":
        return {(i["itemid"], l["location"], l["on_hand"] - l.get("committed", 0)) for i in state["erp"]["items"]
                for l in i.get("locations", [])}
    if system == "amazon":
        return ({(l["sku"], "MFN", l["quantity"]) for l in state["amazon"]["listings"]}
                | {(f["sku"], "FBA", f["fulfillable_quantity"]) for f in state["amazon"].get("fba_inventory", [])})
    raise ValueError(system)


def landed(world: World, snap) -> set:
    return {(r.sku, r.location, r.available) for r in world.rows(snap.id)}


def assert_complete_and_correct(world: World, system: str, snap) -> None:
    assert snap.status == "complete", snap.error
    assert snap.rows_in == snap.rows_valid + snap.rows_quarantined
    assert landed(world, snap) == expected_inventory(world.sb.state(), system)


def assert_failed_and_absent(world: World, system: str, kind: str = "inventory") -> None:
    assert world.ledger.latest_snapshot(system, kind) is None           # no complete snapshot
    attempt = world.ledger.latest_attempt(system, kind)
    assert attempt is not None and attempt.status == "failed" and attempt.error
    model = {"inventory": m.InventoryRow, "listings": m.ListingRow, "orders": m.OrderRow}[kind]
    assert world.rows(attempt.id, model) == []                           # not one row of it is visible


# --- clean pulls ---------------------------------------------------------------------------------
@pytest.mark.parametrize("system", ["erp", "shopify", "amazon", "walmart"])
def test_clean_inventory_snapshot_is_complete_and_correct(world, system):
    w = world()
    snap = w.snap(system, "inventory")
    assert_complete_and_correct(w, system, snap)
    assert snap.api_calls > 0 and snap.fetched_at is not None and snap.duration_s is not None
    assert snap.rows_quarantined == 0


def test_snapshot_system_lands_every_kind_and_amazon_report_is_fetched_once(world):
    w = world()
    hook = w.hook("amazon")
    out = snapshot_system("amazon", ledger=w.ledger, run_id="run-1", settings=w.settings, hook=hook)
    assert {k: v.status for k, v in out.items()} == {"inventory": "complete", "listings": "complete",
                                                    "orders": "complete"}
    assert hook.core.calls_by_operation["createReport"] == 1   # one report serves both snapshots
    listing_rows = w.rows(out["listings"].id, m.ListingRow)
    assert {r.sku for r in listing_rows} == {l["sku"] for l in w.sb.state()["amazon"]["listings"]}
    assert out["listings"].api_calls == 0    # the shared pull was counted on the inventory snapshot
    assert out["orders"].window_end is not None and out["orders"].window_start < out["orders"].window_end


# --- transient faults: retried, snapshot complete ------------------------------------------------
def test_shopify_throttled_answers_are_waited_out_and_complete(world):
    w = world([{"system": "shopify", "operation": "*", "kind": "throttle", "after": 1, "count": 3}])
    hook = w.hook("shopify")
    snap = w.snap("shopify", "inventory", hook=hook)
    assert_complete_and_correct(w, "shopify", snap)
    assert snap.retries == 3
    with w.ledger.session() as s:
        outcomes = [e.outcome for e in s.scalars(select(m.ApiEvent).where(m.ApiEvent.system == "shopify"))]
    assert outcomes.count("throttled") == 3


def test_unbounded_throttle_enforces_the_real_bucket_and_the_snapshot_completes(world):
    """The contract's own example, `{system: shopify, operation: "*", kind: throttle}`: strict real limits."""
    w = world([{"system": "shopify", "operation": "*", "kind": "throttle"}])
    hook = w.hook("shopify")
    snap = w.snap("shopify", "inventory", hook=hook)
    assert_complete_and_correct(w, "shopify", snap)
    assert snap.retries >= 1                      # the drained bucket throttled at least once, then refilled


def test_shopify_bulk_failure_falls_back_to_paged_listing(world):
    w = world([{"system": "shopify", "operation": "bulkOperationRunQuery", "kind": "http_status", "status": 500}])
    snap = w.snap("shopify", "inventory")
    assert_complete_and_correct(w, "shopify", snap)
    assert snap.detail == {"method": "paged"}
    with w.ledger.session() as s:
        events = list(s.scalars(select(m.ApiEvent).where(m.ApiEvent.system == "shopify")))
    assert any(e.status_code == 500 and e.outcome == "retry" for e in events)


def test_walmart_5xx_mid_pagination_is_retried(world):
    op = "getMultiNodeInventoryForAllSkuAndAllShipNodes"
    w = world([{"system": "walmart", "operation": op, "kind": "http_status", "status": 503, "count": 2, "after": 1}])
    hook = w.hook("walmart")
    hook.inventory_page_size = 3
    snap = w.snap("walmart", "inventory", hook=hook)
    assert_complete_and_correct(w, "walmart", snap)
    assert snap.retries >= 2
    with w.ledger.session() as s:
        events = list(s.scalars(select(m.ApiEvent).where(m.ApiEvent.operation == op)))
    assert [e.status_code for e in events if e.outcome == "retry"] == [503, 503]
    assert all(e.run_id == "run-1" for e in events)


def test_netsuite_timeout_is_retried(world):
    w = world([{"system": "erp", "operation": "suiteql", "kind": "timeout", "seconds": 300, "count": 1}])
    snap = w.snap("erp", "inventory", hook=w.hook("erp", timeout=1.0))
    assert_complete_and_correct(w, "erp", snap)
    assert snap.retries >= 1


def test_amazon_expired_token_mid_pagination_refreshes_and_completes(world):
    w = world([{"system": "amazon", "operation": "getOrderItems", "kind": "expired_token", "after": 1, "count": 1}])
    hook = w.hook("amazon")
    snap = w.snap("amazon", "orders", hook=hook)
    assert snap.status == "complete"
    expected = {o["amazon_order_id"] for o in w.sb.state()["amazon"]["orders"]}
    assert {r.order_id for r in w.rows(snap.id, m.OrderRow)} == expected
    assert snap.retries >= 1


def test_walmart_malformed_answer_is_retried(world):
    op = "getMultiNodeInventoryForAllSkuAndAllShipNodes"
    w = world([{"system": "walmart", "operation": op, "kind": "malformed", "count": 1}])
    snap = w.snap("walmart", "inventory")
    assert_complete_and_correct(w, "walmart", snap)
    assert snap.retries == 1


# --- lasting faults: no snapshot, marked failed, nothing partial ----------------------------------
def test_erp_down_fails_the_snapshot_and_lands_nothing(world):
    w = world([{"system": "erp", "operation": "*", "kind": "down"}])
    with pytest.raises(SnapshotFailed, match="erp inventory snapshot failed"):
        w.snap("erp", "inventory")
    assert_failed_and_absent(w, "erp")
    attempt = w.ledger.latest_attempt("erp", "inventory")
    assert attempt.api_calls >= 2 and attempt.retries >= 1


def test_failure_after_some_pages_leaves_no_partial_snapshot(world):
    op = "getMultiNodeInventoryForAllSkuAndAllShipNodes"
    w = world([{"system": "walmart", "operation": op, "kind": "http_status", "status": 500, "after": 2}])
    hook = w.hook("walmart")
    hook.inventory_page_size = 2
    with pytest.raises(SnapshotFailed, match="HTTP 500"):
        w.snap("walmart", "inventory", hook=hook)
    assert_failed_and_absent(w, "walmart")
    assert w.all_rows() == []


def test_lasting_malformed_answers_fail_the_snapshot(world):
    w = world([{"system": "shopify", "operation": "*", "kind": "malformed", "after": 1}])
    with pytest.raises(SnapshotFailed, match="shopify inventory snapshot failed"):
        w.snap("shopify", "inventory")
    assert_failed_and_absent(w, "shopify")


def test_expired_token_that_refresh_cannot_fix_fails(world):
    w = world([{"system": "amazon", "operation": "getInventorySummaries", "kind": "expired_token"}])
    with pytest.raises(SnapshotFailed, match="credentials rejected"):
        w.snap("amazon", "inventory")
    assert_failed_and_absent(w, "amazon")


def test_a_failed_kind_does_not_stop_the_others(world):
    w = world([{"system": "walmart", "operation": "getAllOrders", "kind": "down"}])
    out = snapshot_system("walmart", ledger=w.ledger, run_id="run-1", settings=w.settings, hook=w.hook("walmart"))
    assert out["inventory"].status == "complete" and out["listings"].status == "complete"
    assert isinstance(out["orders"], SnapshotFailed)
    assert_failed_and_absent(w, "walmart", "orders")


def test_too_many_quarantined_rows_make_the_snapshot_unusable(world):
    w = world()
    settings = settings_from_dict(w.settings.raw, {"max_quarantine_fraction": 0.0})
    hook = w.hook("shopify")
    state = w.sb.state()
    # a variant without a SKU is a quarantined row; the demo catalogue has none, so add one through the hook's output
    real_fetch = hook.fetch_variants

    def fetch_with_bad_row(use_bulk=True):
        raw = real_fetch(use_bulk)
        bad = copy.deepcopy(raw["variants"][0])
        bad["sku"] = ""
        raw["variants"].append(bad)
        return raw
    hook.fetch_variants = fetch_with_bad_row
    snap = take_snapshot("shopify", "inventory", ledger=w.ledger, run_id="run-1", settings=settings, hook=hook)
    assert snap.status == "unusable" and "max_quarantine_fraction" in snap.error
    assert snap.rows_quarantined == len(state["shopify"]["variants"][0]["levels"])
    assert w.ledger.latest_snapshot("shopify", "inventory") is None


# --- secrets ---------------------------------------------------------------------------------------
def test_no_secret_reaches_logs_events_errors_or_audit(world, caplog, capfd):
    w = world([{"system": "walmart", "operation": "*", "kind": "http_status", "status": 503, "count": 2},
               {"system": "erp", "operation": "*", "kind": "down"},
               {"system": "amazon", "operation": "getOrders", "kind": "expired_token", "count": 1}])
    caplog.set_level(logging.DEBUG)
    secrets = set()
    for fields in w.sb.connections().values():
        secrets.add(fields["password"])
        for k in ("refresh_token", "token_id", "token_secret"):
            if fields["extra"].get(k):
                secrets.add(fields["extra"][k])
    errors = []
    audits = []
    for system in ("shopify", "amazon", "walmart", "erp"):
        hook = w.hook(system)
        hook.audit = lambda **kw: audits.append(kw)
        out = snapshot_system(system, ledger=w.ledger, run_id="run-1", settings=w.settings, hook=hook)
        errors += [str(v) for v in out.values() if isinstance(v, Exception)]
    shop = w.hook("shopify")
    shop.audit = lambda **kw: audits.append(kw)
    variant = w.sb.state()["shopify"]["variants"][0]
    level = variant["levels"][0]
    shop.set_available([{"inventory_item_id": variant["inventory_item_id"], "location_id": level["location_id"],
                         "quantity": level["available"], "change_from": level["available"]}], "key-secret-test")
    assert errors and audits
    out, err = capfd.readouterr()
    with w.ledger.session() as s:
        stored = json.dumps([[e.message for e in s.scalars(select(m.ApiEvent))],
                             [x.error for x in s.scalars(select(m.Snapshot))]], default=str)
    haystack = "\n".join([caplog.text, out, err, stored, json.dumps(audits, default=str), *errors])
    assert secrets and all(len(sec) > 8 for sec in secrets)
    for sec in secrets:
        assert sec not in haystack, "a credential leaked"


def test_hook_is_built_from_the_airflow_connection_when_not_given(world, monkeypatch):
    w = world()
    fields = dict(w.sb.connections()["omnirecon_walmart"])
    fields["extra"] = dict(fields["extra"], time_scale=SCALE)
    monkeypatch.setenv("AIRFLOW_CONN_OMNIRECON_WALMART", json.dumps(fields))
    snap = take_snapshot("walmart", "listings", ledger=w.ledger, run_id="run-1", settings=w.settings)
    assert snap.status == "complete"
    assert {r.sku for r in w.rows(snap.id, m.ListingRow)} == {i["sku"] for i in w.sb.state()["walmart"]["items"]}
