"""The omnirecon UI view's data and page without a server: empty ledger, stale and failed snapshots,
latest report lookup, escaping."""

from omnirecon.report.templating import render
from omnirecon.ui import views
from tests.support.remediation import add_finding, add_run, add_snapshot, make_ledger, make_settings
from tests.support.browser import parse_html  # noqa: E402


def _page(ledger):
    data = views.overview(ledger, make_settings())
    return data, parse_html(render("ui_overview.html.j2", d=data, prefix="/omnirecon"))


def test_empty_ledger_renders_an_empty_overview(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIRECON_REPORTS_DIR", str(tmp_path / "none"))
    data, dom = _page(make_ledger(tmp_path))
    assert data["latest_run"]["run_id"] is None and data["open_total"] == 0 and data["approvals"] == []
    assert "No reconciliation yet." in dom.find("table", id="drift").text_content()
    assert "no daily report written yet" in dom.find(id="meta").text_content()
    never = [r for r in dom.find("table", id="snapshots").rows() if r.attrs["data-system"] == "erp"]
    assert [r.cells()[4] for r in never] == ["never"] * 3 and all(r.cells()[5] == "stale" for r in never)


def test_failed_and_old_snapshots_are_stale(tmp_path):
    ledger = make_ledger(tmp_path)
    add_snapshot(ledger, "erp", age_minutes=5)
    add_snapshot(ledger, "shopify", age_minutes=300)                        # older than freshness_minutes
    add_snapshot(ledger, "amazon", age_minutes=2)
    add_snapshot(ledger, "amazon", status="failed", age_minutes=1)          # last attempt failed
    data, _ = _page(ledger)
    inv = {s["system"]: s for s in data["snapshots"] if s["kind"] == "inventory"}
    assert not inv["erp"]["stale"] and inv["erp"]["age_minutes"] >= 5
    assert inv["shopify"]["stale"] and inv["shopify"]["last_attempt"] == "complete"
    assert inv["amazon"]["stale"] and inv["amazon"]["last_attempt"] == "failed" and inv["amazon"]["age_minutes"] >= 2


def test_latest_report_is_the_newest_day(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIRECON_REPORTS_DIR", str(tmp_path))
    for day in ("2026-01-04", "2026-01-06", "2026-01-05"):
        (tmp_path / day).mkdir()
        (tmp_path / day / "report.html").write_text(day)
    (tmp_path / "2026-01-07").mkdir()                                      # a day without a report yet
    assert views.latest_report() == tmp_path / "2026-01-06" / "report.html"


def test_values_from_the_ledger_are_escaped(tmp_path):
    ledger = make_ledger(tmp_path)
    run = add_run(ledger)
    hostile = '"><img src=x onerror=alert(1)>'
    f = add_finding(ledger, run, sku=hostile, detail=f"detail {hostile}", evidence={"note": hostile})
    from omnirecon.ledger import models as m
    from omnirecon.timeutil import utcnow
    with ledger.session() as s:
        s.add(m.FindingState(fingerprint=f.fingerprint, check=f.check, channel=f.channel, sku=hostile, status="open",
                             severity=f.severity, first_seen_at=utcnow(), first_seen_run=run, last_seen_at=utcnow(),
                             last_seen_run=run))
    data, dom = _page(ledger)
    html = render("ui_overview.html.j2", d=data, prefix="/omnirecon")
    assert hostile not in html and list(dom.iter("img")) == []
    [row] = dom.find("table", id="findings").rows()
    assert row.cells()[3] == hostile and hostile in row.find("pre").text_content()
    assert row.find("a").attrs["href"] == "/dags/omnirecon_reconcile/runs/manual__2026-01-05T10%3A00%3A00%2B00%3A00"


def test_sells_past_zero_shows_what_is_wrong_not_a_zero_delta(tmp_path):
    from omnirecon.ledger import models as m
    from omnirecon.timeutil import utcnow
    ledger = make_ledger(tmp_path)
    run = add_run(ledger)
    f = add_finding(ledger, run, sku="TEE-CONT", from_qty=0, to_qty=0, severity="critical", action="alert", push=False,
                    evidence={"listing": {"state": "active", "inventory_policy": "CONTINUE", "tracked": True}})
    with ledger.session() as s:
        s.add(m.FindingState(fingerprint=f.fingerprint, check=f.check, channel=f.channel, sku="TEE-CONT", status="open",
                             severity="critical", first_seen_at=utcnow(), first_seen_run=run, last_seen_at=utcnow(),
                             last_seen_run=run))
    data, dom = _page(ledger)
    [row] = dom.find("table", id="findings").rows()
    assert "sells past zero (inventory policy CONTINUE)" in row.cells()
    assert "+0" not in row.cells()
