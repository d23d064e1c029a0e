"""Pushing batches: compare-and-swap, re-read before write, read-back, crash re-runs, audit."""
import pytest
from sqlalchemy import select

from omnirecon.ledger import models as m
from omnirecon.remediation import push as push_mod
from omnirecon.remediation.plan import plan_corrections
from omnirecon.remediation.push import NOT_APPLIED, push_batch
from tests.support.clock import FakeClock
from tests.support.remediation import (RUN, FakeAmazon, FakeShopify, FakeWalmart, add_finding, add_run,
                                      fresh_snapshots, make_ledger, make_settings)

SKUS = [f"SKU-{i}" for i in range(10)]
LOC = "gid://shopify/Location/1001"


def _plan(tmp_path, findings):
    ledger = make_ledger(tmp_path)
    add_run(ledger)
    fresh_snapshots(ledger, SKUS)
    for kw in findings:
        add_finding(ledger, **kw)
    settings = make_settings()
    return ledger, settings, plan_corrections(ledger, settings, run_id=RUN, mode="apply")


def _status(ledger):
    with ledger.session() as s:
        return {c.sku: (c.status, c.attempts, c.detail) for c in s.scalars(select(m.Correction))}


def item(sku):
    return f"gid://shopify/InventoryItem/{sku}"


def test_shopify_push_is_verified_and_a_second_push_writes_nothing(tmp_path):
    ledger, settings, plan = _plan(tmp_path, [dict(sku="SKU-1", from_qty=8, to_qty=5),
                                              dict(sku="SKU-2", from_qty=0, to_qty=3)])
    shop = FakeShopify({(item("SKU-1"), LOC): 8, (item("SKU-2"), LOC): 0})
    out = push_batch(ledger, settings, plan.batches[0], hook_factory=lambda ch: shop, clock=FakeClock())
    assert out["statuses"] == {"verified": 2} and out["pushed"] == 2
    assert shop.levels[(item("SKU-1"), LOC)] == 5 and shop.levels[(item("SKU-2"), LOC)] == 3
    call = shop.calls[0]
    assert {c["change_from"] for c in call["changes"]} == {8, 0} and len(call["key"]) == 64
    assert _status(ledger)["SKU-1"][:2] == ("verified", 1)

    again = push_batch(ledger, settings, plan.batches[0], hook_factory=lambda ch: shop, clock=FakeClock())
    assert again["pushed"] == 0 and len(shop.calls) == 1
    with ledger.session() as s:
        ops = [a.operation for a in s.scalars(select(m.AuditLog).where(m.AuditLog.correction_id.is_not(None)))]
        hook_calls = s.scalars(select(m.AuditLog).where(m.AuditLog.operation == "inventorySetQuantities")).all()
    assert {"claim", "write", "verify"} <= set(ops) and len(hook_calls) == 1


def test_shopify_stale_compare_skips_only_the_changed_row(tmp_path):
    ledger, settings, plan = _plan(tmp_path, [dict(sku="SKU-1", from_qty=8, to_qty=5),
                                              dict(sku="SKU-2", from_qty=4, to_qty=3)])
    shop = FakeShopify({(item("SKU-1"), LOC): 7, (item("SKU-2"), LOC): 4})   # SKU-1 sold one since the snapshot
    push_batch(ledger, settings, plan.batches[0], hook_factory=lambda ch: shop, clock=FakeClock())
    st = _status(ledger)
    assert st["SKU-1"][0] == "skipped_changed" and "8 -> 7" in st["SKU-1"][2]
    assert st["SKU-2"][0] == "verified"
    assert shop.levels[(item("SKU-1"), LOC)] == 7 and len(shop.calls) == 2


def test_accepted_but_not_applied_write_fails_and_is_recorded_critical(tmp_path):
    ledger, settings, plan = _plan(tmp_path, [dict(sku="SKU-1", from_qty=8, to_qty=5)])
    shop = FakeShopify({(item("SKU-1"), LOC): 8}, drop_writes=True)
    clock = FakeClock()
    push_batch(ledger, settings, plan.batches[0], hook_factory=lambda ch: shop, clock=clock)
    status, _, detail = _status(ledger)["SKU-1"]
    assert status == "failed" and detail.startswith(NOT_APPLIED)
    assert clock.sleeps == [0.5, 1, 2, 4, 8]          # read back on the backoff schedule, then concluded
    assert ledger.count(m.AuditLog, m.AuditLog.operation == "write_not_applied",
                        m.AuditLog.outcome == "critical") == 1


def test_amazon_rereads_before_writing_and_skips_a_moved_listing(tmp_path):
    ledger, settings, plan = _plan(tmp_path, [dict(channel="amazon", sku="SKU-1", from_qty=8, to_qty=5),
                                              dict(channel="amazon", sku="SKU-2", from_qty=6, to_qty=2)])
    amazon = FakeAmazon({"SKU-1": 8, "SKU-2": 9})
    out = push_batch(ledger, settings, plan.batches[0], hook_factory=lambda ch: amazon, clock=FakeClock())
    st = _status(ledger)
    assert st["SKU-1"][0] == "verified" and st["SKU-2"][0] == "skipped_changed"
    assert amazon.writes == [("SKU-1", "SHIRT", 5)] and out["pushed"] == 1


def test_per_sku_writes_are_read_back_together_on_one_schedule(tmp_path):
    ledger, settings, plan = _plan(tmp_path, [dict(channel="amazon", sku=f"SKU-{i}", from_qty=8, to_qty=5)
                                              for i in range(3)])
    amazon = FakeAmazon({f"SKU-{i}": 8 for i in range(3)}, drop_writes=True)     # accepted, never applied
    clock = FakeClock()
    push_batch(ledger, settings, plan.batches[0], hook_factory=lambda ch: amazon, clock=clock)
    assert [st for st, _, _ in _status(ledger).values()] == ["failed"] * 3 and len(amazon.writes) == 3
    assert clock.sleeps == [0.5, 1, 2, 4, 8]          # one read-back schedule for the batch, not one per SKU


def test_walmart_put_per_sku_is_verified(tmp_path):
    ledger, settings, plan = _plan(tmp_path, [dict(channel="walmart", sku="SKU-1", from_qty=3, to_qty=1)])
    walmart = FakeWalmart({("SKU-1", "10001"): 3})
    push_batch(ledger, settings, plan.batches[0], hook_factory=lambda ch: walmart, clock=FakeClock())
    assert _status(ledger)["SKU-1"][0] == "verified" and walmart.writes == [("SKU-1", "10001", 1)]


def test_crash_after_the_write_never_applies_twice(tmp_path):
    ledger, settings, plan = _plan(tmp_path, [dict(channel="amazon", sku="SKU-1", from_qty=8, to_qty=5)])
    amazon = FakeAmazon({"SKU-1": 8}, crash_after_write=True)
    with pytest.raises(KeyboardInterrupt):
        push_batch(ledger, settings, plan.batches[0], hook_factory=lambda ch: amazon, clock=FakeClock())
    assert _status(ledger)["SKU-1"][0] == "planned"          # the claim rolled back with the worker
    push_batch(ledger, settings, plan.batches[0], hook_factory=lambda ch: amazon, clock=FakeClock())
    status, _, detail = _status(ledger)["SKU-1"]
    assert status == "verified" and len(amazon.writes) == 1   # re-read found the target: no second write


def test_rows_not_planned_are_left_alone(tmp_path):
    ledger, settings, plan = _plan(tmp_path, [dict(sku="SKU-1", from_qty=8, to_qty=5),
                                              dict(sku="SKU-2", from_qty=200, to_qty=5)])
    shop = FakeShopify({(item("SKU-1"), LOC): 8, (item("SKU-2"), LOC): 200})
    with ledger.session() as s:
        pending = s.scalar(select(m.Correction.id).where(m.Correction.status == "pending_approval"))
    batch = dict(plan.batches[0], correction_ids=plan.batches[0]["correction_ids"] + [pending])
    push_batch(ledger, settings, batch, hook_factory=lambda ch: shop, clock=FakeClock())
    assert _status(ledger)["SKU-2"][0] == "pending_approval" and shop.levels[(item("SKU-2"), LOC)] == 200


class FeedAmazon(FakeAmazon):
    def __init__(self, q, result):
        super().__init__(q)
        self.result = result

    def submit_listings_feed(self, messages):
        self.writes.append(("feed", [msg["sku"] for msg in messages]))
        for msg in messages:
            if msg["sku"] not in {i["sku"] for i in (self.result.get("report") or {}).get("issues", [])}:
                if self.result.get("status") == "DONE":
                    self.q[msg["sku"]] = msg["patches"][0]["value"][0]["quantity"]
        return "feed-9"

    def feed_result(self, feed_id):
        return self.result


def _feed_batch(plan):
    return dict(plan.batches[0], method="feed")


def test_feed_errors_fail_their_rows_and_the_rest_verify(tmp_path):
    ledger, settings, plan = _plan(tmp_path, [dict(channel="amazon", sku="SKU-1", from_qty=8, to_qty=5),
                                              dict(channel="amazon", sku="SKU-2", from_qty=6, to_qty=2)])
    result = {"status": "DONE", "report": {"issues": [{"messageId": 2, "sku": "SKU-2", "code": "90220",
                                                       "severity": "ERROR", "message": "bad attribute"}]}}
    amazon = FeedAmazon({"SKU-1": 8, "SKU-2": 6}, result)
    push_batch(ledger, settings, _feed_batch(plan), hook_factory=lambda ch: amazon, clock=FakeClock())
    st = _status(ledger)
    assert st["SKU-1"][0] == "verified"
    assert st["SKU-2"][0] == "failed" and "90220: bad attribute" in st["SKU-2"][2]
    assert amazon.writes == [("feed", ["SKU-1", "SKU-2"])]


def test_feed_still_processing_stays_applied_not_failed(tmp_path):
    ledger, settings, plan = _plan(tmp_path, [dict(channel="amazon", sku="SKU-1", from_qty=8, to_qty=5)])
    amazon = FeedAmazon({"SKU-1": 8}, {"status": "IN_PROGRESS", "report": None})
    clock = FakeClock()
    push_batch(ledger, settings, _feed_batch(plan), hook_factory=lambda ch: amazon, clock=clock)
    status, _, detail = _status(ledger)["SKU-1"]
    assert status == "applied" and "processing not confirmed" in detail
    polls = push_mod.FEED_POLLS * [push_mod.FEED_POLL_DELAY_S]
    assert clock.sleeps[:len(polls)] == polls                # polled the feed its full schedule first
