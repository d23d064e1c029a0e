"""The trigger chain for people: the newest window of each hop, its picture and its history, in the Airflow UI view
and the daily report (HTML with the picture inline by cid, the standalone page with it embedded, the text)."""
import base64
from datetime import date, datetime, timedelta, timezone

from omnirecon.ledger import models as m
from omnirecon.report import chain
from omnirecon.report.daily import build_report
from omnirecon.report.templating import render
from omnirecon.ui import views
from tests.support.browser import parse_html
from tests.support.remediation import make_ledger, make_settings

NOW = datetime(2026, 1, 5, 12, tzinfo=timezone.utc)


def _window(s, src, dst, kind, state, at, **kw):
    defaults = dict(mechanism="event", latency_p50_s=3.0, latency_p95_s=4.0, latency_max_s=4.4, changes_seen=10,
                    followed=10, missed=0)
    s.add(m.HopWindow(from_system=src, to_system=dst, kind=kind, state=state, window_from=at - timedelta(minutes=5),
                      window_to=at, **{**defaults, **kw}))


def _ledger(tmp_path):
    ledger = make_ledger(tmp_path)
    with ledger.session() as s:
        _window(s, "erp", "shopify", "inventory", "ok", NOW - timedelta(days=2))
        _window(s, "erp", "shopify", "inventory", "ok", NOW)
        _window(s, "erp", "walmart", "inventory", "ok", NOW - timedelta(days=1, hours=1))
        _window(s, "erp", "walmart", "inventory", "broken", NOW - timedelta(days=1), mechanism="unknown",
                latency_p50_s=None, latency_p95_s=None, latency_max_s=None, followed=0, missed=4,
                since=NOW - timedelta(days=1, minutes=3), diagnosis="L3_connector")
        _window(s, "erp", "walmart", "inventory", "ok", NOW - timedelta(days=1, hours=-2))
        _window(s, "erp", "amazon", "inventory", "slow", NOW, mechanism="poll", poll_interval_s=60.0,
                latency_p50_s=31.0, latency_p95_s=58.0, latency_max_s=60.0)
        _window(s, "shopify", "erp", "orders", "broken", NOW, mechanism="unknown", latency_p50_s=None,
                latency_p95_s=None, latency_max_s=None, followed=0, missed=2, diagnosis="L3_connector")
    return ledger


def test_hops_at_their_newest_window_worst_first_with_labels(tmp_path):
    ledger = _ledger(tmp_path)
    with ledger.session() as s:
        hops = chain.chain_hops(s)
    assert [(h["from"], h["to"], h["kind"], h["state"]) for h in hops] == [
        ("shopify", "erp", "orders", "broken"), ("erp", "amazon", "inventory", "slow"),
        ("erp", "shopify", "inventory", "ok"), ("erp", "walmart", "inventory", "ok")]
    assert [h["label"] for h in hops] == ["unknown · 2 missed", "poll 60 s · p95 58 s", "event · p95 4 s",
                                          "event · p95 4 s"]
    assert chain.summary(hops) == {"hops": 4, "ok": 2, "slow": 1, "broken": 1, "unknown": 0}


def test_history_is_the_worst_state_of_each_day(tmp_path):
    ledger = _ledger(tmp_path)
    with ledger.session() as s:
        rows = {(r["hop"], r["kind"]): [d["state"] for d in r["days"]] for r in chain.hop_history(s, NOW)}
    # 2025-12-30 .. 2026-01-05: the Walmart hop broke for a while on the 4th, ok before and after that day
    assert rows[("erp->walmart", "inventory")] == [None, None, None, None, None, "broken", None]
    assert rows[("erp->shopify", "inventory")] == [None, None, None, None, "ok", None, "ok"]
    assert len(rows) == 4


def test_the_picture_is_a_png_and_no_hops_draw_nothing(tmp_path):
    ledger = _ledger(tmp_path)
    with ledger.session() as s:
        png = chain.render_chain_png(chain.chain_hops(s))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert chain.render_chain_png([]) is None


def test_the_daily_report_shows_the_chain(tmp_path):
    ledger = _ledger(tmp_path)
    content = build_report(ledger, make_settings(), report_date=date(2026, 1, 5), links={})
    assert content.chain_png.startswith(b"\x89PNG") and 'src="cid:trigger-chain"' in content.html
    b64 = base64.b64encode(content.chain_png).decode()
    assert f'src="data:image/png;base64,{b64}"' in content.html_standalone
    assert content.summary["trigger_chain"] == {"hops": 4, "ok": 2, "slow": 1, "broken": 1, "unknown": 0}
    assert "  shopify->erp orders: broken, unknown · 2 missed, 10 / 0 / 2, L3_connector" in content.text
    assert "  erp->amazon inventory: slow, poll 60 s · p95 58 s, 10 / 10 / 0" in content.text
    (tmp_path / "empty").mkdir()
    empty = build_report(make_ledger(tmp_path / "empty"), make_settings(), report_date=date(2026, 1, 5), links={})
    assert empty.chain_png is None and "No hop mapped yet" in empty.html and "cid:trigger-chain" not in empty.html


def test_the_ui_view_shows_the_chain_picture_hops_and_history(tmp_path):
    ledger = _ledger(tmp_path)
    data = views.overview(ledger, make_settings(), now=NOW)
    dom = parse_html(render("ui_overview.html.j2", d=data, prefix="/omnirecon"))
    assert dom.find("img", id="chain-picture").attrs["src"].startswith("data:image/png;base64,iVBOR")
    rows = {(r.attrs["data-hop"], r.attrs["data-kind"]): r.attrs["data-state"]
            for r in dom.find("table", id="hops").rows() if "data-hop" in r.attrs}
    assert rows == {("shopify->erp", "orders"): "broken", ("erp->amazon", "inventory"): "slow",
                    ("erp->shopify", "inventory"): "ok", ("erp->walmart", "inventory"): "ok"}
    history = [r for r in dom.find("table", id="hop-history").rows() if r.attrs.get("data-hop") == "erp->walmart"]
    assert history[0].cells()[2:] == ["·", "·", "·", "·", "·", "broken", "·"]
    (tmp_path / "empty").mkdir()
    empty = views.overview(make_ledger(tmp_path / "empty"), make_settings(), now=NOW)
    assert empty["hops"] == [] and empty["chain_src"] is None
    assert "No hop mapped yet" in render("ui_overview.html.j2", d=empty, prefix="/omnirecon")
