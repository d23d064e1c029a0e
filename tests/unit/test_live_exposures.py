"""live/cycle.exposures on hand-made changes: a channel offering more than the ERP can cover is a push finding at
once (a count moved above it on its own; stock sold on another channel that the ERP has not recorded within the
SLA), with the reconcile's fingerprint; an ERP change still on its way to the channel, an order within the SLA and a
channel showing no more than the ERP implies are not."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from omnirecon.checks.findings import fingerprint
from omnirecon.config import settings_from_dict
from omnirecon.live.chain import Change, ChainMonitor
from omnirecon.live.cycle import exposures

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=timezone.utc)
SLA = 30
SETTINGS = settings_from_dict({
    "locations": [{"erp": "WH-EAST", "shopify": "gid://shopify/Location/1", "amazon": "MFN", "walmart_ship_node": "1"}],
    "channels": {"shopify": {"safety_stock": 0}, "amazon": {"safety_stock": 2}, "walmart": {"safety_stock": 1}},
    "propagation_sla_seconds": SLA})


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def monitor(*changes: Change, levels=None) -> ChainMonitor:
    mon = ChainMonitor(SETTINGS, erp_levels=levels or {("MUG", "WH-EAST"): 20, ("CAP", "WH-EAST"): 9})
    for c in (Change("erp", "order", "seed", at(-600), "recorded", channel="shopify"), *changes):
        mon.observe(c)
    return mon


def found(mon: ChainMonitor, now: float) -> dict:
    mon.tick(at(now))
    return {(f["channel"], f["sku"]): f for f in exposures(SETTINGS, mon, "omnirecon_live/1", at(now))}


def test_a_channel_count_moved_above_what_the_erp_implies_is_pushed_back_at_once():
    mon = monitor(Change("amazon", "inventory", "MUG", at(0), 30, "MFN"),     # a manual edit: ERP implies 20 - 2
                  Change("amazon", "inventory", "CAP", at(0), 7, "MFN"))      # 9 - 2: as the ERP implies
    got = found(mon, 2)
    assert list(got) == [("amazon", "MUG")]
    f = got[("amazon", "MUG")]
    assert (f["check"], f["action"], f["expected"], f["observed"], f["delta"], f["location"]) == (
        "inventory_drift", "push", "18", "30", 12, "WH-EAST")
    assert f["fingerprint"] == fingerprint("inventory_drift", "amazon", "MUG", "WH-EAST", None)   # the reconcile's
    assert "moved to 30 on its own" in f["detail"]


def test_an_erp_change_on_its_way_to_the_channel_is_left_to_the_trigger_chain():
    mon = monitor(Change("amazon", "inventory", "MUG", at(0), 18, "MFN"),
                  Change("erp", "inventory", "MUG", at(5), 10, "WH-EAST"))   # the hop has SLA seconds to carry it
    assert found(mon, 10) == {}


def test_stock_sold_elsewhere_that_the_erp_has_not_recorded_within_the_sla_is_taken_off_the_other_channels():
    order = Change("shopify", "order", "gid://shopify/Order/1", at(0), "placed", skus=("MUG",), units=(3,))
    mon = monitor(order, Change("walmart", "inventory", "MUG", at(-60), 19, "1"))
    assert found(mon, SLA - 5) == {}                      # the orders hop still has time to carry it
    got = found(mon, SLA + 1)
    assert list(got) == [("walmart", "MUG")]
    f = got[("walmart", "MUG")]
    assert (f["expected"], f["observed"], f["diagnosis"], f["evidence"]["unposted_units"]) == ("16", "19", "L3_connector", 3)
    assert found(mon, SLA + 1) and exposures(SETTINGS, mon, "r", at(SLA + 1), skip={("walmart", "MUG")}) == []


def test_the_channel_closest_to_selling_out_comes_first_and_the_run_stays_within_the_guardrail(sqlite_ledger):
    from omnirecon.live.cycle import within_guardrail
    from omnirecon.model.canonical import InventoryRecord
    from omnirecon.timeutil import utcnow
    levels = {(f"S{i}", "WH-EAST"): 40 for i in range(10)} | {("LOW", "WH-EAST"): 4}
    mon = monitor(*[Change("amazon", "inventory", f"S{i}", at(0), 45, "MFN") for i in range(10)],
                  Change("amazon", "inventory", "LOW", at(0), 9, "MFN"), levels=levels)
    mon.tick(at(2))
    found = exposures(SETTINGS, mon, "r", at(2))
    assert [f["sku"] for f in found][:1] == ["LOW"] and len(found) == 11     # implies 2: it sells out first
    sqlite_ledger.begin_run("snap", "snapshot")
    sqlite_ledger.land_snapshot(run_id="snap", system="amazon", kind="inventory", stats={"fetched_at": utcnow()},
                                quarantined=[], records=[InventoryRecord(system="amazon", sku=s, location="MFN",
                                                                         available=45, updated_at=utcnow(), ref={})
                                                         for s in ["LOW"] + [f"S{i}" for i in range(19)]])
    gap = {"channel": "amazon", "sku": "S9", "action": "push"}               # a trigger_gap push of the same run
    found = exposures(SETTINGS, mon, "r", at(2), skip={("amazon", "S9")})
    taken, left = within_guardrail(sqlite_ledger, {"max_correction_fraction": 0.2}, [gap], found)
    assert [f["sku"] for f in taken] == ["LOW", "S0", "S1"] and len(left) == 7   # 4 of 20 SKUs: 20%


def test_a_gap_is_closed_to_what_the_erp_implies_now_not_to_the_source_channels_count():
    from omnirecon.live.cycle import _to_current
    mon = monitor(Change("shopify", "inventory", "MUG", at(0), 40, "gid://shopify/Location/1"))
    mon.tick(at(1))
    gap = {"action": "push", "channel": "amazon", "sku": "MUG", "expected": "38", "observed": "30", "delta": -8,
           "evidence": {"hop": "shopify->amazon"}}                            # shopify's 40 less amazon's safety 2
    [out] = _to_current(SETTINGS, mon, [gap])
    assert (out["expected"], out["delta"], out["evidence"]["detected_expected"]) == ("18", 12, "38")   # 20 - 2


def test_only_an_exposure_not_open_already_cuts_a_runs_wait_short(sqlite_ledger):
    from omnirecon.checks.findings import persist
    from omnirecon.live.cycle import _new
    mon = monitor(Change("amazon", "inventory", "MUG", at(0), 30, "MFN"))
    mon.tick(at(2))
    found = exposures(SETTINGS, mon, "omnirecon_live/1", at(2))
    assert _new(sqlite_ledger, found) and not _new(sqlite_ledger, [])
    sqlite_ledger.begin_run("omnirecon_live/1", "live")
    persist(sqlite_ledger, "omnirecon_live/1", found, at(2), lambda st: False, shard="live", checks=("trigger_gap",))
    assert not _new(sqlite_ledger, exposures(SETTINGS, mon, "omnirecon_live/2", at(4)))   # a dry run's, unpushed
