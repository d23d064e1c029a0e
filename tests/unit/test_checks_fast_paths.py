"""The 250k-SKU reconcile's shortcuts give what the plain code gave: SKU codes for joins and membership, the
id-range read of a SQLite snapshot, timestamps parsed once per distinct value, evidence copied without a JSON
round trip, GX suites set up once per project (later runs read the checkpoints back), and a SQLite ledger's rows
read as Arrow columns."""
import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from omnirecon.checks.compare import SkuCodes, of_skus
from omnirecon.checks.findings import _plain, _plain_tree
from omnirecon.checks.load import _read_arrow, _ts, read_rows
from omnirecon.checks.suites import CHECKPOINT, SETUP_MARKER, SuiteRunner
from omnirecon.config import settings_from_dict
from omnirecon.ledger import models as m
from omnirecon.ledger.db import Ledger


def test_sku_codes_agree_with_string_membership_and_lookup():
    erp = pd.Series(["A", "B", "C", "B"])
    items = pd.Series(["C", "D"])
    obs = pd.Series(["B", "X", "D", "A", "Y"])
    codes = SkuCodes(erp, items, obs, pd.Series(["Z"], dtype=object))
    erp_c, item_c, obs_c, bundle_c = codes.parts
    assert list(codes.table(erp_c, item_c, bundle_c)[obs_c]) == list(obs.isin(set(erp) | set(items) | {"Z"}))
    assert list(codes.position(item_c)[obs_c]) == list(pd.Index(items).get_indexer(obs))
    assert list(codes.of(["D", "nope"])) == [codes.names.get_loc("D"), -1]
    assert codes.table()[-1] == False and codes.position(item_c)[-1] == -1   # noqa: E712  (the slot of code -1)
    frame = pd.DataFrame({"sku": obs, "_sku": obs_c})
    rows = frame.iloc[[0, 3]]
    assert list(of_skus(frame, rows)) == list(frame["sku"].isin(rows["sku"]))
    assert list(of_skus(frame[["sku"]], rows)) == list(frame["sku"].isin(rows["sku"]))


def test_timestamps_parsed_once_per_value_equal_a_full_parse():
    raw = pd.Series(["2026-12-03 12:40:11.884430+00:00", None, "2026-12-03T10:00:00Z", "not a time",
                     "2026-12-03 12:40:11.884430+00:00", "2026-12-03 14:00:00+02:00"], index=[5, 6, 7, 8, 9, 10])
    expected = pd.to_datetime(raw, utc=True, format="ISO8601", errors="coerce")
    pd.testing.assert_series_equal(_ts(raw), expected)
    assert str(_ts(pd.Series([None, None], dtype=object)).dtype) == "datetime64[ns, UTC]"


def test_a_whole_sqlite_snapshot_reads_the_rows_the_index_gives_in_the_same_order(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.migrate()
    now = datetime(2026, 12, 3, tzinfo=timezone.utc)
    ledger.begin_run("snap", "snapshot")
    with ledger.session() as s:
        snaps = [m.Snapshot(run_id="snap", system="shopify", kind="inventory", status="complete", started_at=now,
                            finished_at=now) for _ in range(2)]
        s.add_all(snaps)
        s.flush()
        for i in range(30):   # the two snapshots' rows interleaved, so the id range holds the other one's too
            s.add(m.InventoryRow(snapshot_id=snaps[i % 2].id, system="shopify", sku=f"S{i:03d}", location="L",
                                 available=i, updated_at=now))
        s.flush()
        sid = snaps[1].id
    with ledger.engine.connect() as conn:
        fast = read_rows(conn, "inventory", sid, "shopify")
        plain = pd.read_sql_query("SELECT id, sku, location, available, updated_at FROM inventory_rows "
                                  f"WHERE snapshot_id = {sid}", conn)
        empty = read_rows(conn, "inventory", 999, "shopify")
    assert list(fast["id"]) == list(plain["id"]) and list(fast["sku"]) == [f"S{i:03d}" for i in range(1, 30, 2)]
    assert list(fast["available"]) == list(plain["available"])
    assert empty.empty and list(empty.columns) == ["id", "sku", "location", "available", "updated_at"]


def _awkward_ledger(tmp_path, rows: int):
    """A snapshot of channel inventory and listings with NULLs, an all-NULL column and JSON text."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.migrate()
    now = datetime(2026, 12, 3, tzinfo=timezone.utc)
    ledger.begin_run("snap", "snapshot")
    with ledger.session() as s:
        inv, lst = (m.Snapshot(run_id="snap", system="shopify", kind=k, status="complete", started_at=now,
                               finished_at=now) for k in ("inventory", "listings"))
        s.add_all([inv, lst])
        s.flush()
        s.add_all(m.InventoryRow(snapshot_id=inv.id, system="shopify", sku=f"S{i:05d}", location=f"L{i % 3}",
                                 available=None if i % 7 == 0 else i - 5, updated_at=None if i < 1500 else now)
                  for i in range(rows))
        s.add_all(m.ListingRow(snapshot_id=lst.id, system="shopify", sku=f"S{i:05d}", state="active",
                               inventory_policy=None, tracked=None if i % 2 else bool(i % 4),
                               issues=None if i % 3 else [{"code": "x", "n": i}])
                  for i in range(rows))
        s.flush()
        return ledger, inv.id, lst.id


def _cursor_only(monkeypatch):
    import omnirecon.checks.load as load
    monkeypatch.setattr(load, "_read_arrow", lambda *args: None)


def test_arrow_reads_of_a_sqlite_ledger_equal_the_cursors(tmp_path, monkeypatch):
    """Snapshots of at least ARROW_MIN_ROWS rows are read through Arrow. NULLs in the first 1,500 rows (beyond one
    default Arrow batch), an all-NULL column, booleans with NULLs and JSON text: the same frame, dtypes included,
    whole and by shard."""
    import omnirecon.checks.load as load
    from omnirecon.model.sharding import Shard
    ledger, inv, lst = _awkward_ledger(tmp_path, 3000)
    monkeypatch.setattr(load, "ARROW_MIN_ROWS", 1000)   # (3,000 rows: a snapshot this small reads through the cursor)
    arrow_reads = []
    monkeypatch.setattr(load, "_read_arrow", lambda *a: arrow_reads.append(a[1]) or _read_arrow(*a))
    with ledger.engine.connect() as conn:
        reads = [read_rows(conn, kind, sid, "shopify", shard) for kind, sid in (("inventory", inv), ("listings", lst))
                 for shard in (Shard(0, 1), Shard(1, 4))]
    assert len(arrow_reads) == 4
    with ledger.engine.connect() as conn:
        with monkeypatch.context() as mp:
            _cursor_only(mp)
            plain = [read_rows(conn, kind, sid, "shopify", shard) for kind, sid in (("inventory", inv), ("listings", lst))
                     for shard in (Shard(0, 1), Shard(1, 4))]
    for a, b in zip(reads, plain):
        pd.testing.assert_frame_equal(a, b)
    assert reads[2]["inventory_policy"].isna().all() and reads[2]["inventory_policy"].dtype == object


def test_rows_arrow_cannot_type_are_read_through_the_cursor(tmp_path):
    """A column holding an integer and text in one batch (SQLite keeps what it is given): Arrow cannot type it, the
    cursor reads it, and the frame holds both values."""
    from sqlalchemy import text
    from omnirecon.checks.load import _read
    ledger, inv, _ = _awkward_ledger(tmp_path, 10)
    with ledger.engine.begin() as conn:
        conn.execute(text("UPDATE inventory_rows SET available = 'n/a' WHERE sku = 'S00003'"))
    sql = "SELECT sku, available FROM inventory_rows WHERE snapshot_id = :sid ORDER BY sku"
    with ledger.engine.connect() as conn:
        assert _read_arrow(conn, sql.replace(":sid", "?"), [inv], ["sku", "available"], {"available"}) is None
        frame = _read(conn, "inventory_rows", sql, ["sku", "available"], arrow=True, sid=inv)   # Arrow asked, cursor reads
    assert frame["available"].tolist()[2:5] == [-3, "n/a", -1]


def test_evidence_copy_equals_the_json_round_trip():
    value = {"systems": {"erp": {"value": 3, "at": None, "f": 1.5, "nan": float("nan"), "ok": True},
                         "shopify": {"L1": {"value": np.int64(4), "updated_at": pd.Timestamp("2026-12-03", tz="UTC")}}},
             "list": (1, "a", [np.float64(2.5), np.bool_(False)]), "keys": {1: "int key"}, "na": pd.NA}
    fast, slow = _plain_tree(value), json.loads(json.dumps(value, default=_plain))
    assert json.dumps(fast, sort_keys=True) == json.dumps(slow, sort_keys=True)
    assert fast["systems"]["erp"] is not value["systems"]["erp"]   # a copy, as the round trip made


def test_gx_setup_once_per_project_then_read_back(tmp_path):
    frame = pd.DataFrame({"delta": [0, 4, -2], "raw_delta": [0, 4, -2], "sells_past_zero": [False, False, True],
                          "row": [0, 1, 2]})
    gx_dir = tmp_path / "gx"

    def rules(settings):
        runner = SuiteRunner(settings, gx_dir=str(gx_dir))
        return {f.rule: f.rows for f in runner.run({"inventory_drift": frame}, "r1")["inventory_drift"]}

    first = rules(settings_from_dict({}))
    stamp = (gx_dir / SETUP_MARKER).read_text()
    stores = sorted(p for p in (gx_dir / "gx").rglob("*.json") if "validations" not in p.parts)
    written = {p: p.stat().st_mtime_ns for p in stores}
    assert any(CHECKPOINT in p.name or CHECKPOINT in p.read_text() for p in stores)
    assert rules(settings_from_dict({})) == first
    assert first["oversell"] == [1] and first["undersell"] == [2] and first["sells_past_zero"] == [2]
    assert {p: p.stat().st_mtime_ns for p in stores} == written   # nothing set up again
    assert rules(settings_from_dict({"tolerance_units": 3})) == {"oversell": [1], "in_flight": [1], "sells_past_zero": [2]}
    assert (gx_dir / SETUP_MARKER).read_text() != stamp        # changed suites: set up again, newly stamped


def test_gx_codes_come_from_the_distinct_values_as_from_every_row():
    from omnirecon.checks.suites import gx_frame
    frame = pd.DataFrame({"channel": ["a", None, "b", "a", ""], "channel_sku": [None, "x", "", "x", np.nan],
                          "location": ["L", "L", None, "M", "L"]})
    compact = gx_frame("mapping", frame)
    for c in ("channel", "channel_sku", "location"):
        assert list(compact[c]) == list(pd.factorize(frame[c].fillna("").astype(str), sort=False)[0])
        assert compact[c].dtype == "int32"
