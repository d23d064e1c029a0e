"""Order snapshots are incremental windows: the checks see every order of the horizon at its newest state."""
from __future__ import annotations

from datetime import timedelta

from omnirecon.checks.load import load_view
from omnirecon.model.canonical import OrderRecord
from omnirecon.timeutil import utcnow


def _land(led, run, orders):
    led.begin_run(run, "snapshot")
    return led.land_snapshot(run_id=run, system="amazon", kind="orders", records=orders, quarantined=[],
                             stats={"fetched_at": utcnow()})


def test_orders_from_every_window_are_merged_newest_wins(sqlite_ledger):
    now = utcnow()
    a = OrderRecord(system="amazon", order_id="A", channel="amazon", status="acknowledged", updated_at=now - timedelta(hours=2))
    b = OrderRecord(system="amazon", order_id="B", channel="amazon", status="placed", updated_at=now - timedelta(hours=1))
    _land(sqlite_ledger, "w1", [a, b])
    a2 = OrderRecord(system="amazon", order_id="A", channel="amazon", status="shipped", updated_at=now)
    _land(sqlite_ledger, "w2", [a2])                       # the next window only has the order that changed

    view = load_view(sqlite_ledger, now + timedelta(minutes=1), systems=("amazon",))
    cur = view.frame("amazon", "orders").set_index("order_id")["status"].to_dict()
    assert cur == {"A": "shipped", "B": "placed"}
    (_, previous), = view.history[("amazon", "orders")]
    assert previous.set_index("order_id")["status"].to_dict() == {"A": "acknowledged"}
