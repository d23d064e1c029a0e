"""SKU-hash shards: the per-SKU checks split over shards plus the global part find exactly what one unsharded
reconcile finds (bundles and aliases whose rows hash into other shards included), and a retried shard
replaces only its own findings."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from omnirecon.checks.run import reconcile, reconcile_in_shards  # noqa: E402
from omnirecon.checks.scope import Scope  # noqa: E402
from omnirecon.config import settings_from_dict  # noqa: E402
from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.ledger.db import Ledger  # noqa: E402
from omnirecon.model.sharding import BUCKETS, Shard, shard_count, sku_bucket  # noqa: E402
from omnirecon_contract.scenario import load  # noqa: E402
from tests.support.ledger_from_scenario import land_scenario  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = [ROOT / "include" / "scenarios" / "demo.yaml"] + sorted((ROOT / "tests" / "scenarios" / "checks").glob("*.yaml"))
SAME = ("fingerprint", "check", "severity", "channel", "sku", "location", "order_id", "expected", "observed", "delta",
        "diagnosis", "action", "detail", "evidence")


def _ledger(tmp_path: Path, name: str, scenario) -> Ledger:
    ledger = Ledger(f"sqlite:///{tmp_path / name}")
    ledger.migrate()
    land_scenario(ledger, scenario)
    return ledger


def _cross_shard(settings, n: int) -> tuple[bool, bool]:
    """Does some bundle have a component in another shard, and some alias a channel SKU in another shard?"""
    shard_of = lambda sku: sku_bucket(sku) % n   # noqa: E731
    bundle = any(shard_of(c["sku"]) != shard_of(b["sku"]) for b in settings["bundles"] for c in b["components"])
    alias = any(shard_of(a["channel_sku"]) != shard_of(a["sku"]) for a in settings["sku_aliases"])
    return bundle, alias


def test_shards_partition_the_buckets():
    for n in (1, 2, 3, 7, 64, BUCKETS):
        owned = [b for i in range(n) for b in Shard(i, n).buckets()]
        assert sorted(owned) == list(range(BUCKETS))
    skus = [f"SKU-{i:06d}" for i in range(20000)]
    sizes = [sum(Shard(i, 8).contains(s) for s in skus) for i in range(8)]
    assert sum(sizes) == len(skus) and max(sizes) < 1.1 * len(skus) / 8, sizes
    assert shard_count(1_000_000, 100_000, 64) == 10 and shard_count(0, 100_000, 64) == 1
    assert shard_count(10**9, 1, 64) == 64
    assert Shard.parse("3/8") == Shard(2, 8) and Shard(2, 8).label == "3/8"
    with pytest.raises(ValueError):
        Shard(8, 8)


def test_scope_reads_aliases_and_bundle_components_by_name():
    settings = settings_from_dict({"bundles": [{"sku": "KIT", "components": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}]}],
                                   "sku_aliases": [{"channel": "amazon", "channel_sku": "KIT-FBM", "sku": "KIT"}]})
    n = 4
    owner = Shard(sku_bucket("KIT") % n, n)
    extra = Scope(part="skus", shard=owner).extra_skus(settings)
    assert extra == {"erp": {"A", "B"}, "amazon": {"KIT-FBM"}}
    other = Shard((owner.index + 1) % n, n)
    assert Scope(part="skus", shard=other).extra_skus(settings) == {}
    with pytest.raises(ValueError):
        Scope(part="global", shard=other)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_sharded_reconcile_finds_what_one_reconcile_finds(path, tmp_path):
    scenario = load(path)
    settings = settings_from_dict(scenario.raw.get("settings"))
    n = next((k for k in range(2, 40) if all(_cross_shard(settings, k))), 3)
    whole_ledger, sharded_ledger = _ledger(tmp_path, "whole.db", scenario), _ledger(tmp_path, "sharded.db", scenario)
    for led in (whole_ledger, sharded_ledger):
        led.begin_run("reconcile/r1", "reconcile")
    whole = reconcile(whole_ledger, settings, run_id="reconcile/r1", now=scenario.as_of)
    sharded = reconcile_in_shards(sharded_ledger, settings, run_id="reconcile/r1", shards=n, now=scenario.as_of)

    def keyed(findings):
        return {f["fingerprint"]: {k: f[k] for k in SAME} for f in findings}
    assert len(sharded.findings) == len(keyed(sharded.findings)), "a finding came from two shards"
    assert keyed(sharded.findings) == keyed(whole.findings)
    assert sharded.counts == whole.counts and sharded.skus_checked == whole.skus_checked
    with sharded_ledger.session() as s:
        rows = s.execute(select(m.Finding.fingerprint, m.Finding.shard).where(m.Finding.run_id == "reconcile/r1")).all()
    assert sorted(fp for fp, _ in rows) == sorted(f["fingerprint"] for f in whole.findings)
    assert {shard for _, shard in rows} <= {f"{i + 1}/{n}" for i in range(n)} | {"global"}


def test_demo_split_crosses_shards_for_bundles_and_aliases():
    """The equivalence above is only meaningful if the demo's bundles and aliases straddle shards."""
    settings = settings_from_dict(load(SCENARIOS[0]).raw.get("settings"))
    assert any(all(_cross_shard(settings, k)) for k in range(2, 40))


def test_retried_shard_replaces_its_own_findings_and_lifecycle_holds(tmp_path):
    scenario = load(SCENARIOS[0])
    settings = settings_from_dict(scenario.raw.get("settings"))
    ledger = _ledger(tmp_path, "ledger.db", scenario)
    ledger.begin_run("reconcile/r1", "reconcile")
    first = reconcile_in_shards(ledger, settings, run_id="reconcile/r1", shards=4, now=scenario.as_of)
    busiest = max(range(4), key=lambda i: sum(1 for f in first.findings if Shard(i, 4).contains(f["sku"])
                                             and f["check"] in Scope(part="skus").checks))
    again = reconcile(ledger, settings, run_id="reconcile/r1", now=scenario.as_of, shard=Shard(busiest, 4), part="skus")
    assert again.findings, "the retried shard has findings to replace"
    with ledger.session() as s:
        fps = s.scalars(select(m.Finding.fingerprint).where(m.Finding.run_id == "reconcile/r1")).all()
        open_states = s.scalars(select(m.FindingState.fingerprint).where(m.FindingState.status == "open")).all()
    assert sorted(fps) == sorted(f["fingerprint"] for f in first.findings)
    assert sorted(open_states) == sorted({f["fingerprint"] for f in first.findings})
    # a second run sharded differently: nothing resolves, nothing is duplicated, every finding is "open" now
    ledger.begin_run("reconcile/r2", "reconcile")
    second = reconcile_in_shards(ledger, settings, run_id="reconcile/r2", shards=3, now=scenario.as_of)
    assert {f["fingerprint"] for f in second.findings} == {f["fingerprint"] for f in first.findings}
    assert {f["lifecycle"] for f in second.findings} == {"open"}
    with ledger.session() as s:
        assert s.scalar(select(m.FindingState.fingerprint).where(m.FindingState.status == "resolved")) is None
    # the run is re-split: findings of the old split go
    assert ledger.keep_findings_of("reconcile/r2", ["1/2", "2/2", "global"]) == sum(
        1 for f in second.findings if f["check"] in Scope(part="skus").checks)


def test_shard_summaries_are_plain_json_and_add_up(tmp_path):
    """What a shard task hands on through XCom: plain JSON (follow-lag rows included); totals add up."""
    import json

    from omnirecon.checks.run import run_totals
    scenario = load(ROOT / "tests" / "scenarios" / "checks" / "connector-stale.yaml")
    settings = settings_from_dict(scenario.raw.get("settings"))
    ledger = _ledger(tmp_path, "ledger.db", scenario)
    ledger.begin_run("reconcile/r1", "reconcile")
    parts = [reconcile(ledger, settings, run_id="reconcile/r1", now=scenario.as_of, shard=Shard(i, 2), part="skus")
             for i in range(2)]
    lags = [row for p in parts for row in p.summary()["follow_lag"]]
    assert lags, "the stale connector leaves SKUs that have not followed the ERP"
    summaries = [json.loads(json.dumps(p.summary())) for p in parts]   # raises on numpy scalars
    final = reconcile(ledger, settings, run_id="reconcile/r1", now=scenario.as_of, part="global", follow_lag=lags)
    totals = run_totals(summaries, final.summary())
    assert totals["skus_checked"] == sum(p.skus_checked for p in parts)
    assert sum(totals["findings"].values()) == sum(len(p.findings) for p in parts) + len(final.findings)


def test_a_shard_reads_and_resolves_only_its_own_open_states(tmp_path):
    """A shard's persist loads the open states of its own SKU buckets (and of what it found now), never another
    shard's: at 1M SKUs every shard loading every open state cost shards x open findings. It resolves its own
    states that it no longer finds; other shards' states stay open, untouched."""
    from sqlalchemy import event

    from omnirecon.ledger import finding_store
    from omnirecon.timeutil import utcnow

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    n, now = 4, utcnow()
    skus = [f"SKU-{i:03d}" for i in range(40)]
    finding = lambda sku, run: {"run_id": run, "fingerprint": f"fp-{sku}", "check": "inventory_drift", "severity": "warning",  # noqa: E731
                           "channel": "shopify", "sku": sku, "order_id": "", "diagnosis": "unknown",
                           "action": "alert", "detail": f"{sku} differs"}
    ledger.begin_run("r1", "reconcile")
    finding_store.persist_findings(ledger, "r1", [finding(x, "r1") for x in skus], now, lambda st: True,
                                   checks=Scope().checks)
    with ledger.session() as s:   # an alert about an entity of no state yet opens one: it carries its bucket too
        finding_store.record_alert(s, fingerprint="fp-SKU-ALERTED", kind="opened", check="inventory_drift",
                                   channel="amazon", sku="SKU-ALERTED", order_id=None, severity="warning",
                                   run_id="r1", now=now)
        assert {st.sku_bucket for st in s.scalars(select(m.FindingState))} == {sku_bucket(x) for x in skus + ["SKU-ALERTED"]}
    shard = Shard(sku_bucket("SKU-ALERTED") % n, n)
    mine = {f"fp-{x}" for x in skus + ["SKU-ALERTED"] if shard.contains(x)}
    still = sorted(x for x in skus if shard.contains(x))[0]       # found again now; the rest of the shard clears
    assert 1 < len(mine) < len(skus)

    loaded = []
    listener = lambda target, context: loaded.append(target.fingerprint)   # noqa: E731
    event.listen(m.FindingState, "load", listener)
    try:
        ledger.begin_run("r2", "reconcile")
        scope = Scope(part="skus", shard=shard)
        finding_store.persist_findings(ledger, "r2", [finding(still, "r2")], now, lambda st: scope.owns(st.check, st.sku),
                                       shard=scope.label, checks=scope.checks, buckets=shard.buckets())
    finally:
        event.remove(m.FindingState, "load", listener)
    assert set(loaded) == mine, "the shard loaded another shard's open states"
    with ledger.session() as s:
        status = dict(s.execute(select(m.FindingState.fingerprint, m.FindingState.status)).all())
        last_run = dict(s.execute(select(m.FindingState.fingerprint, m.FindingState.last_seen_run)).all())
    assert {fp for fp, st in status.items() if st == "resolved"} == mine - {f"fp-{still}"}
    others = set(status) - mine
    assert others and all(status[fp] == "open" and last_run[fp] == "r1" for fp in others)
    assert status[f"fp-{still}"] == "open" and last_run[f"fp-{still}"] == "r2"


def test_a_shard_task_loads_no_other_shards_states(tmp_path):
    """The same through reconcile(): a shard task's persist loads its own buckets' states and its findings'."""
    from sqlalchemy import event

    scenario = load(SCENARIOS[0])
    settings = settings_from_dict(scenario.raw.get("settings"))
    ledger = _ledger(tmp_path, "ledger.db", scenario)
    ledger.begin_run("reconcile/r1", "reconcile")
    reconcile_in_shards(ledger, settings, run_id="reconcile/r1", shards=4, now=scenario.as_of)
    shard = Shard(0, 4)
    loaded = []
    listener = lambda target, context: loaded.append(target)   # noqa: E731
    event.listen(m.FindingState, "load", listener)
    try:
        ledger.begin_run("reconcile/r2", "reconcile")
        again = reconcile(ledger, settings, run_id="reconcile/r2", now=scenario.as_of, shard=shard, part="skus")
    finally:
        event.remove(m.FindingState, "load", listener)
    found = {f["fingerprint"] for f in again.findings}
    assert all(st.fingerprint in found or st.sku_bucket in shard.buckets() for st in loaded)
    with ledger.session() as s:
        others = s.scalars(select(m.FindingState.fingerprint).where(m.FindingState.status == "open")).all()
    assert set(others) - {st.fingerprint for st in loaded}, "other shards' open states exist and were not loaded"
