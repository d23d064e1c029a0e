"""The fast paths of a 100k-row snapshot: ledger rows via executemany / PostgreSQL COPY (same values, still
atomic), the listings flat file, and polling of server-side jobs (bench/bench_snapshot.py measures them)."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from omnirecon.hooks import hook_from_fields
from omnirecon.hooks.amazon import parse_flat_file
from omnirecon.ledger import models as m
from omnirecon.model.canonical import InventoryRecord, ListingRecord, Quarantined

AWKWARD = "tab\there, new\nline, back\\slash, quote \" and 'é'"
STAMP = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _records():
    inv = [InventoryRecord(system="erp", sku=AWKWARD, location="WH-1", available=5, on_hand=7, committed=2,
                           updated_at=STAMP, ref={"note": AWKWARD, "ids": [1, 2], "none": None}),
           InventoryRecord(system="erp", sku="PLAIN", location="WH-1")]          # NULLs and an empty ref
    listings = [ListingRecord(system="erp", sku="K1", state="active", tracked=True, is_inactive=False,
                              issues=[{"code": "X", "message": AWKWARD}]),
                ListingRecord(system="erp", sku="K2", state="inactive", tracked=None, is_inactive=True)]
    return inv, listings


def _land_and_read(led):
    inv, listings = _records()
    led.begin_run("r", "snapshot")
    a = led.land_snapshot(run_id="r", system="erp", kind="inventory", records=inv, stats={}, max_quarantine_fraction=1,
                          quarantined=[Quarantined(7, "BAD", "negative quantity -1", {"sku": "BAD", "qty": -1})])
    b = led.land_snapshot(run_id="r", system="erp", kind="listings", records=listings, quarantined=[], stats={})
    with led.session() as s:
        inv_rows = s.scalars(select(m.InventoryRow).where(m.InventoryRow.snapshot_id == a.id)
                             .order_by(m.InventoryRow.id)).all()
        list_rows = s.scalars(select(m.ListingRow).where(m.ListingRow.snapshot_id == b.id)
                              .order_by(m.ListingRow.id)).all()
        quarantine = s.scalars(select(m.QuarantinedRow)).all()
    return inv_rows, list_rows, quarantine


def _check_round_trip(led):
    inv_rows, list_rows, quarantine = _land_and_read(led)
    first, second = inv_rows
    assert (first.sku, first.available, first.on_hand, first.committed) == (AWKWARD, 5, 7, 2)
    assert first.updated_at.astimezone(timezone.utc) == STAMP
    assert first.ref == {"note": AWKWARD, "ids": [1, 2], "none": None}
    assert (second.sku, second.available, second.updated_at, second.ref) == ("PLAIN", None, None, {})
    assert [(r.sku, r.tracked, r.is_inactive, r.issues) for r in list_rows] == [
        ("K1", True, False, [{"code": "X", "message": AWKWARD}]), ("K2", None, True, [])]
    assert [(q.row_index, q.key, q.payload) for q in quarantine] == [(7, "BAD", {"sku": "BAD", "qty": -1})]


def _check_atomic(led):
    inv, _ = _records()
    inv.append(InventoryRecord(system="erp", sku="BROKEN", location="WH-1", available=object()))   # not storable
    led.begin_run("r2", "snapshot")
    with pytest.raises(Exception):
        led.land_snapshot(run_id="r2", system="erp", kind="inventory", records=inv, quarantined=[], stats={})
    with led.session() as s:
        assert s.scalars(select(m.Snapshot).where(m.Snapshot.run_id == "r2")).all() == []
        assert len(s.scalars(select(m.InventoryRow).where(m.InventoryRow.sku == "PLAIN")).all()) == 1   # round trip


def test_sqlite_rows_round_trip_and_stay_atomic(sqlite_ledger):
    _check_round_trip(sqlite_ledger)
    _check_atomic(sqlite_ledger)


@pytest.mark.postgres
def test_postgres_copy_rows_round_trip_and_stay_atomic(pg_ledger):
    _check_round_trip(pg_ledger)
    _check_atomic(pg_ledger)


def test_flat_file_short_rows_blank_lines_and_extra_fields():
    content = b"seller-sku\tquantity\tstatus\n A-1 \t 3 \tActive\n\nB-2\t4\nC-3\t5\tActive\textra\n"
    assert parse_flat_file(content) == [{"seller-sku": "A-1", "quantity": "3", "status": "Active"},
                                        {"seller-sku": "B-2", "quantity": "4", "status": None},
                                        {"seller-sku": "C-3", "quantity": "5", "status": "Active"}]


@pytest.mark.parametrize("age, expected", [(0.0, 0.5), (40.0, 4.0), (10_000.0, 15.0)])
def test_job_polls_wait_a_tenth_of_the_job_age_within_bounds(age, expected):
    hook = hook_from_fields("amazon", {"host": "http://127.0.0.1:9", "login": "id", "password": "secret",
                                       "extra": {"refresh_token": "rt"}}, time_scale=0.5)
    waits = []
    hook.wait = waits.append
    hook.poll_wait(time.monotonic() - age * 0.5, longest=15.0)     # `age` documented seconds ago
    assert waits[0] == pytest.approx(expected, abs=0.05)
