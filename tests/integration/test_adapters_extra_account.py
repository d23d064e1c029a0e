"""A second Walmart account is one more adapter instance: registered, it is snapshotted and corrected against the
real sandbox over HTTP by the unchanged snapshot, plan and push code."""
import pytest
from sqlalchemy import select
from tests.support.clock import ScaledClock
from tests.support.remediation import RUN, add_finding, add_run, make_ledger
from tests.support.sandbox_http import scenario_doc

from omnirecon import adapters
from omnirecon.adapters.walmart import WalmartAdapter
from omnirecon.config import settings_from_dict
from omnirecon import hooks as hooks_mod
from omnirecon.ledger import models as m
from omnirecon.remediation.plan import plan_corrections
from omnirecon.remediation.push import push_batch
from omnirecon.runner import hooks_from_connections
from omnirecon.snapshot import snapshot_system
from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox import Sandbox

TIME_SCALE = 0.05
SNAP_RUN = "omnirecon_snapshot/extra-account"


@pytest.fixture
def walmart_ca():
    adapter = adapters.register(WalmartAdapter("walmart_ca", conn_id="omnirecon_walmart_ca"))
    yield adapter
    adapters.unregister("walmart_ca")


def test_a_registered_second_account_lands_a_snapshot_and_pushes_a_correction(tmp_path, walmart_ca):
    doc = scenario_doc()
    sb = Sandbox(from_dict(doc), time_scale=TIME_SCALE).start()
    try:
        conns = sb.connections()
        # the second account's connection (here: the same sandbox seller under its own conn id)
        hooks = hooks_from_connections({**conns, "omnirecon_walmart_ca": conns["omnirecon_walmart"]}, TIME_SCALE)
        assert {"erp", "walmart", "walmart_ca"} <= set(hooks) and hooks_mod.CONN_IDS["walmart_ca"] == "omnirecon_walmart_ca"
        settings = settings_from_dict({**doc["settings"], "approval_threshold_units": 50,
                                       "max_correction_fraction": 1.0, "freshness_minutes": 15}, {"mode": "apply"})
        ledger = make_ledger(tmp_path)
        ledger.begin_run(SNAP_RUN, "snapshot")

        erp = snapshot_system("erp", ledger=ledger, run_id=SNAP_RUN, settings=settings, hook=hooks["erp"],
                              kinds=("inventory", "listings"))
        landed = snapshot_system("walmart_ca", ledger=ledger, run_id=SNAP_RUN, settings=settings,
                                 hook=hooks["walmart_ca"])
        assert {k: s.status for k, s in erp.items()} == {"inventory": "complete", "listings": "complete"}
        assert {k: s.status for k, s in landed.items()} == {
            "inventory": "complete", "listings": "complete", "orders": "complete"}
        inv = landed["inventory"]
        with ledger.session() as s:
            rows = {(r.system, r.sku, r.location): r.available
                    for r in s.scalars(select(m.InventoryRow).where(m.InventoryRow.snapshot_id == inv.id))}
            orders = set(s.scalars(select(m.OrderRow.channel).where(
                m.OrderRow.snapshot_id == landed["orders"].id)))
        assert inv.system == "walmart_ca"
        assert rows == {("walmart_ca", i["sku"], i["ship_node"]): i["quantity"] for i in doc["walmart"]["items"]}
        assert orders == {"walmart_ca"}

        add_run(ledger)
        add_finding(ledger, channel="walmart_ca", sku="TEE-BLK-M", from_qty=7, to_qty=5, snapshot_id=inv.id,
                    channel_location="10001", ref={"ship_node": "10001"})
        plan = plan_corrections(ledger, settings, run_id=RUN, mode="apply", channels=["walmart_ca"])
        assert [(b["channel"], b["method"], len(b["correction_ids"])) for b in plan.batches] == [("walmart_ca", "put", 1)]
        out = push_batch(ledger, settings, plan.batches[0], hook_factory=lambda channel: hooks[channel],
                         clock=ScaledClock(0.2))
        assert out["statuses"] == {"verified": 1}

        state = {(i["sku"], i["ship_node"]): i["quantity"] for i in sb.state()["walmart"]["items"]}
        assert state[("TEE-BLK-M", "10001")] == 5 and state[("TEE-BLK-M", "10002")] == 3
        with ledger.session() as s:
            audited = {a.system for a in s.scalars(select(m.AuditLog).where(m.AuditLog.operation == "write"))}
        assert audited == {"walmart_ca"}
    finally:
        sb.stop()
