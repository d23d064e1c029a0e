"""The self-contained report.html as a browser renders it (headless Chromium): headline figures in the DOM,
a hostile SKU shown as text (no element injected), a non-blank screenshot."""
from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from tests.support.browser import assert_not_blank, chromium, parse_html  # noqa: E402
from tests.support.remediation import add_finding, add_run, fresh_snapshots, make_ledger, make_settings  # noqa: E402

from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.report.daily import build_report  # noqa: E402

DAY = date(2026, 1, 5)
HOSTILE = "<script>alert(1)</script>"


def _report(tmp_path) -> tuple[Path, dict]:
    ledger = make_ledger(tmp_path)
    fresh_snapshots(ledger, ["TEE", "MUG", HOSTILE])
    run = add_run(ledger, "omnirecon_reconcile/scheduled__2026-01-05T10:00:00+00:00",
                  started_at=datetime(2026, 1, 5, 10, tzinfo=timezone.utc), stats={"skus_checked": 40})
    add_finding(ledger, run, sku=HOSTILE, channel="amazon", from_qty=30, to_qty=2, severity="critical",
                detail=f"amazon shows 30 for {HOSTILE}")                                   # oversell 28
    add_finding(ledger, run, sku="TEE", channel="shopify", from_qty=9, to_qty=4)          # oversell 5
    add_finding(ledger, run, sku="MUG", channel="walmart", from_qty=0, to_qty=6)          # under-listed
    add_finding(ledger, run, check="order_missing", action="alert", order_id="111-222", push=False, sku=None)
    with ledger.session() as s:
        s.add(m.Correction(idempotency_key="k1", run_id=run, channel="shopify", sku="TEE", channel_sku="TEE",
                           location="L", from_qty=9, to_qty=4, status="verified"))
    content = build_report(ledger, make_settings(), report_date=DAY, links={})
    return content.write_html(tmp_path / "report" / "report.html"), content.summary


def test_report_renders_in_chromium_with_figures_and_escaped_values(tmp_path):
    path, summary = _report(tmp_path)
    assert (summary["skus_checked"], summary["skus_in_disagreement"], summary["oversell_units"]) == (40, 3, 33)

    dom = parse_html(chromium(path.as_uri(), tmp_path))
    assert list(dom.iter("script")) == [], "a value from the data became a script element"
    text = dom.text_content()
    assert "Daily drift report · 2026-01-05" in text
    tiles = dom.find("table", **{"class": "tiles"}).cells()
    assert tiles[0].split()[-1] == "40"                                   # SKUs checked
    assert "92.5%" in tiles[1] and "3 SKU(s) drifting" in tiles[1]        # (40 - 3) / 40
    assert "33 units" in tiles[2] and "2 SKU(s)" in tiles[2]
    offenders = next(t for t in dom.iter("table") if "Channel shows" in t.text_content())
    first = offenders.rows()[0].cells()
    assert first[:2] == [HOSTILE, "amazon"] and first[5] == "+28"         # the SKU is text, biggest delta first
    img = dom.find("img")
    assert img is not None and img.attrs["src"].startswith("data:image/png;base64,")

    shot = tmp_path / "report.png"
    chromium(path.as_uri(), tmp_path, screenshot=shot)
    assert_not_blank(shot)
