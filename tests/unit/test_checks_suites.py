"""GX suites: exported JSON, compact GX frames, per-row results (frame rows), Data Docs in the caller's dir."""
import json
from pathlib import Path

import pandas as pd

from omnirecon.checks import suites
from omnirecon.checks.suites import SPECS, SuiteRunner, build_suites, export_suites, gx_frame
from omnirecon.config import settings_from_dict
from omnirecon.model.canonical import CHECKS

REPO = Path(__file__).resolve().parents[2]


def test_every_check_has_a_suite_and_committed_exports_match(tmp_path):
    assert set(SPECS) == set(CHECKS)
    paths = export_suites(tmp_path)
    assert sorted(p.stem for p in paths) == sorted(CHECKS)
    for p in paths:
        doc = json.loads(p.read_text())
        assert doc["name"] == p.stem and doc["expectations"]
        committed = REPO / "include" / "gx" / "expectations" / p.name
        assert json.loads(committed.read_text()) == doc, f"{committed} is stale: re-run export_suites"


def test_suite_tolerance_comes_from_settings():
    suite = build_suites(settings_from_dict({"tolerance_units": 3}))["inventory_drift"]
    kwargs = [e["kwargs"] for e in suite.to_json_dict()["expectations"]]
    assert {"column": "delta", "max_value": 3.0} in kwargs


def test_runner_returns_failing_rows_per_rule_and_builds_data_docs(tmp_path):
    frame = pd.DataFrame({"channel": ["shopify", "amazon", "walmart"], "sku": ["A", "B", "C"], "location": ["L"] * 3,
                          "delta": [0, 4, -2], "raw_delta": [0, 4, -2], "sells_past_zero": [False, False, True],
                          "row": [0, 1, 2]})
    runner = SuiteRunner(settings_from_dict({}), gx_dir=str(tmp_path / "gx"))
    failures = {f.rule: f for f in runner.run({"inventory_drift": frame}, "omnirecon_reconcile/manual__2026-03-01T12:00:00+00:00")["inventory_drift"]}
    assert failures["oversell"].rows == [1] and failures["oversell"].severity == "critical"
    assert failures["undersell"].rows == [2] and failures["undersell"].severity == "warning"
    assert failures["sells_past_zero"].rows == [2]
    url = runner.build_data_docs()
    assert url and url.startswith("file://")
    index = Path(url[len("file://"):])
    assert index.exists() and str(tmp_path) in str(index)
    validations = list((tmp_path / "gx").rglob("validations/**/*.json"))
    assert validations, "GX validation results were not kept"


def _drift_frame(delta):
    return pd.DataFrame({"channel": ["shopify"], "sku": ["A"], "location": ["L"], "delta": [delta],
                         "raw_delta": [delta], "sells_past_zero": [False], "row": [0]})


def _pages(gx_dir: Path) -> dict:
    """Rendered validation pages -> modification time (ns)."""
    return {p: p.stat().st_mtime_ns for p in gx_dir.rglob("data_docs/local_site/validations/**/*.html")}


def test_data_docs_render_only_this_runs_results(tmp_path):
    gx_dir = tmp_path / "gx"
    SuiteRunner(settings_from_dict({}), gx_dir=str(gx_dir)).run({"inventory_drift": _drift_frame(4)}, "dag/run1")
    # a sharded run: two shard parts and the global part validate under run2, one runner each (one task each)
    for part in ("run2#0/2", "run2#1/2"):
        SuiteRunner(settings_from_dict({}), gx_dir=str(gx_dir)).run({"inventory_drift": _drift_frame(1)}, f"dag/{part}")
    final = SuiteRunner(settings_from_dict({}), gx_dir=str(gx_dir))
    final.run({"inventory_drift": _drift_frame(0)}, "dag/run2#global")
    final.build_data_docs("dag/run2")
    pages = _pages(gx_dir)
    assert len(pages) == 3 and all("run2" in str(p) for p in pages), "run1 was never asked for"
    assert list(gx_dir.rglob("data_docs/local_site/expectations/inventory_drift.html")), "suite page on a new site"

    later = SuiteRunner(settings_from_dict({}), gx_dir=str(gx_dir))
    later.run({"inventory_drift": _drift_frame(2)}, "dag/run3")
    later.build_data_docs()   # the runs this runner validated
    after = _pages(gx_dir)
    assert len(after) == 4
    assert {p: after[p] for p in pages} == pages, "earlier runs' pages were rendered again"
    index = (gx_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").read_text()
    assert "run3" in index and "run2#0__2" in index


def _validate_and_build(gx_dir: Path, run: str, **kwargs) -> SuiteRunner:
    runner = SuiteRunner(settings_from_dict({}), gx_dir=str(gx_dir))
    runner.run({"inventory_drift": _drift_frame(4), "low_stock": pd.DataFrame({"sku": ["A"], "cover_days": [1.0],
                                                                               "row": [0]})}, run)
    runner.build_data_docs(run, **kwargs)
    return runner


def test_older_runs_results_leave_gx_for_the_archive_which_the_retention_empties(tmp_path, monkeypatch):
    """GX keeps the newest DOCS_RUNS runs' results (every Data Docs build lists and parses all it holds); older
    runs' results and pages move to the archive by run day, and archive days past gx_results_days are deleted."""
    from datetime import datetime, timedelta, timezone
    monkeypatch.setattr(suites, "DOCS_RUNS", 2)
    gx_dir = tmp_path / "gx"
    for run in ("dag/r1", "dag/r2", "dag/r3#0/2", "dag/r3#1/2", "dag/r3#global", "dag/r4"):
        _validate_and_build(gx_dir, run.split("#")[0] if run.endswith("global") else run, keep_days=30)
    store = gx_dir / "gx" / "uncommitted" / "validations"
    kept = sorted(p.parent.parent.name for p in store.rglob("*.json"))
    assert set(kept) == {"dag__r3#0__2", "dag__r3#1__2", "dag__r3", "dag__r4"}, kept   # r3's three parts: one run
    archive = gx_dir / "gx" / "uncommitted" / "archive"   # archive/<run day>/ (GX stamps results with the wall clock)
    moved = sorted(p.relative_to(archive).parts[1:4] for p in archive.rglob("*.json"))
    assert moved == sorted(("validations", s, r) for r in ("dag__r1", "dag__r2") for s in ("inventory_drift", "low_stock"))
    assert len(list(archive.glob("*/data_docs/**/*.html"))) == 4, "rendered pages go with their results"
    assert not list((gx_dir / "gx" / "uncommitted" / "data_docs").rglob("*dag__r1*")), "no page or folder of r1 left"
    index = (gx_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").read_text()
    assert "dag__r4" in index and "dag__r1" not in index

    _validate_and_build(gx_dir, "dag/r5", keep_days=30, now=datetime.now(timezone.utc) + timedelta(days=31))
    assert not list(archive.iterdir()), "archive days past the retention are deleted (with r3, archived by this build)"
    assert sorted(p.parent.parent.name for p in store.rglob("*.json")) == ["dag__r4"] * 2 + ["dag__r5"] * 2, \
        "the newest two runs stay in GX, whatever their age"


def test_clean_frame_has_no_failures():
    frame = pd.DataFrame({"channel": ["shopify"], "sku": ["A"], "location": ["L"], "delta": [0], "raw_delta": [0],
                          "sells_past_zero": [False], "row": [0]})
    assert SuiteRunner(settings_from_dict({})).run({"inventory_drift": frame}, "r")["inventory_drift"] == []


def test_gx_frame_holds_only_what_the_expectations_read_and_duplicates_still_fail_per_row():
    frame = pd.DataFrame({"channel": ["shopify", "shopify", "shopify"], "sku": ["A", "A", "B"],
                          "channel_sku": ["A", "A", "B"], "location": ["L1", "L1", None], "observed": [1, 2, 3],
                          "erp_known": [True, True, False], "location_mapped": [True] * 3, "item_sellable": [True] * 3,
                          "listed_on_channel": [True] * 3, "row": [0, 1, 2]})
    compact = gx_frame("mapping", frame)
    assert list(compact.columns) == list(dict.fromkeys(SPECS["mapping"].columns))
    assert "observed" not in compact and "sku" not in compact
    assert all(str(compact[c].dtype) == "int32" for c in SPECS["mapping"].coded)
    assert list(compact.index) == [0, 1, 2]
    failures = {f.rule: f.rows for f in SuiteRunner(settings_from_dict({})).run({"mapping": frame}, "r")["mapping"]}
    assert failures == {"unknown_sku": [2], "duplicate": [0, 1]}
