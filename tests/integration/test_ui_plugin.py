"""The omnirecon view inside a real Airflow API server (the plugin's FastAPI app behind Airflow's login):
refused without a login, then the DOM and a headless-Chromium screenshot of the page for a logged-in user,
read from a ledger filled by one real cycle against the sandbox."""
from __future__ import annotations

import json
import secrets
import subprocess
import threading
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml
from sqlalchemy import func, select
from tests.support.browser import assert_not_blank, chromium, parse_html  # noqa: E402
from tests.support.polling import free_port, wait_for  # noqa: E402

from omnirecon import airflow_setup  # noqa: E402
from omnirecon_contract import scenario  # noqa: E402
from omnirecon.config import settings_from_dict  # noqa: E402
from omnirecon.ledger import Ledger  # noqa: E402
from omnirecon.ledger import models as m  # noqa: E402
from omnirecon.report.daily import produce_daily_report  # noqa: E402
from omnirecon.runner import hooks_from_connections, run_cycle  # noqa: E402
from omnirecon_sandbox import Sandbox  # noqa: E402
from omnirecon.timeutil import utcnow  # noqa: E402

SCALE = 0.01
RUN = "omnirecon_reconcile/manual__2026-01-05T10:00:00+00:00"
HOSTILE = "<script>alert(1)</script>"


def _fill_ledger(ledger: Ledger, demo_scenario_path: Path):
    """One cycle on the demo scenario (findings, verified pushes, one correction above the approval
    threshold), plus an open finding whose SKU is hostile markup."""
    sc = scenario.from_dict(yaml.safe_load(demo_scenario_path.read_text()))
    settings = settings_from_dict(sc.settings)
    with Sandbox(sc, time_scale=SCALE) as sb:
        now = utcnow()
        run_cycle(ledger, settings, hooks_from_connections(sb.connections(), time_scale=SCALE), run_id=RUN,
                  mode="apply", window_start=now - timedelta(days=15), window_end=now)
    with ledger.session() as s:
        fp = "f" * 64
        s.add(m.Finding(run_id=RUN, fingerprint=fp, check="mapping", severity="warning", channel="shopify",
                        sku=HOSTILE, diagnosis="sku_mapping", action="alert", detail=f"unknown SKU {HOSTILE}",
                        evidence={"channel_sku": HOSTILE}))
        s.add(m.FindingState(fingerprint=fp, check="mapping", channel="shopify", sku=HOSTILE, status="open",
                             severity="warning", first_seen_at=now, first_seen_run=RUN, last_seen_at=now,
                             last_seen_run=RUN))
    return sc.settings


@pytest.fixture(scope="module")
def ui(tmp_path_factory, demo_scenario_path):
    tmp = tmp_path_factory.mktemp("ui")
    airflow_setup.init(quiet=True)
    ledger = Ledger(f"sqlite:///{tmp / 'ledger.db'}")
    ledger.migrate()
    settings_doc = _fill_ledger(ledger, demo_scenario_path)
    (tmp / "retailer.yaml").write_text(yaml.safe_dump(settings_doc))
    today = date.today().isoformat()
    produce_daily_report(ledger, settings_from_dict(settings_doc), report_date=today,
                         out_dir=tmp / "reports" / today, send=False)
    password = secrets.token_urlsafe(12)
    (tmp / "passwords.json").write_text(json.dumps({"admin": password}))
    port = free_port()
    env = airflow_setup.airflow_env({
        "OMNIRECON_LEDGER_URL": ledger.url, "OMNIRECON_SETTINGS": str(tmp / "retailer.yaml"),
        "OMNIRECON_REPORTS_DIR": str(tmp / "reports"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp / "passwords.json"),
        "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
    })
    log = tmp / "api-server.log"
    with open(log, "w") as out:
        api = subprocess.Popen([airflow_setup.airflow_bin(), "api-server", "--port", str(port), "--workers", "1"],
                               env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(f"{base}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False
    try:
        wait_for(up, 120, "the Airflow API server", proc=api)
        yield {"base": base, "password": password, "ledger": ledger, "tmp": tmp, "report": tmp / "reports" / today}
    finally:
        api.terminate()
        try:
            api.wait(30)
        except subprocess.TimeoutExpired:
            api.kill()


def _token(ui) -> str:
    r = requests.post(f"{ui['base']}/auth/token", json={"username": "admin", "password": ui["password"]}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["access_token"]


def test_view_refuses_requests_without_login(ui):
    base = ui["base"]
    for path in ("/omnirecon/", "/omnirecon/report"):
        r = requests.get(base + path, headers={"Accept": "application/json"}, timeout=10)
        assert r.status_code == 401, (path, r.status_code)
        assert "MUG-WHT" not in r.text and "<table" not in r.text
    browser = requests.get(f"{base}/omnirecon/", headers={"Accept": "text/html"}, allow_redirects=False, timeout=10)
    assert browser.status_code == 303 and browser.headers["location"].startswith("/auth/login?next=")
    forged = requests.get(f"{base}/omnirecon/", headers={"Authorization": "Bearer not-a-jwt"}, timeout=10)
    assert forged.status_code in (401, 403)
    wrong = requests.post(f"{base}/auth/token", json={"username": "admin", "password": "wrong"}, timeout=10)
    assert wrong.status_code == 401


def test_plugin_is_registered_with_a_navigation_entry(ui):
    r = requests.get(f"{ui['base']}/api/v2/plugins", headers={"Authorization": f"Bearer {_token(ui)}"}, timeout=10)
    assert r.status_code == 200, r.text
    plugin = next(p for p in r.json()["plugins"] if p["name"] == "omnirecon")
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/omnirecon"]
    view = plugin["external_views"][0]
    assert (view["href"], view["url_route"], view["destination"]) == ("/omnirecon/", "omnirecon", "nav")


def test_logged_in_user_sees_drift_findings_approvals_and_snapshot_ages(ui):
    token = _token(ui)
    for how in ({"headers": {"Authorization": f"Bearer {token}"}}, {"cookies": {"_token": token}}):
        r = requests.get(f"{ui['base']}/omnirecon/", timeout=30, **how)
        assert r.status_code == 200, r.text[-2000:]
    assert "script-src" not in r.headers["content-security-policy"] and "default-src 'none'" in \
        r.headers["content-security-policy"]
    dom = parse_html(r.text)
    ledger = ui["ledger"]

    assert list(dom.iter("script")) == []
    with ledger.session() as s:
        open_total = s.scalar(select(func.count()).select_from(m.FindingState).where(m.FindingState.status == "open"))
        pending = list(s.scalars(select(m.Correction).where(m.Correction.status == "pending_approval")))
        drift = dict(s.execute(select(m.Finding.channel, func.count()).where(m.Finding.run_id == RUN)
                               .group_by(m.Finding.channel)).all())
    assert dom.find(id="open-total").text_content() == str(open_total)

    findings = dom.find("table", id="findings").rows()
    assert len(findings) == open_total
    mug = next(row for row in findings if row.attrs["data-channel"] == "amazon" and "MUG-WHT" in row.cells()[3])
    cells = mug.cells()
    assert cells[0] == "critical" and cells[1] == "inventory_drift" and cells[7] == "+10"
    assert cells[8] == "L3_connector" and '"atp": 30' in mug.find("pre", **{"class": "evidence"}).text_content()
    assert mug.find("a").attrs["href"] == "/dags/omnirecon_reconcile/runs/manual__2026-01-05T10%3A00%3A00%2B00%3A00"
    hostile = next(row for row in findings if row.attrs["data-check"] == "mapping" and row.cells()[3] == HOSTILE)
    assert hostile.cells()[10].startswith(f"unknown SKU {HOSTILE}")

    approvals = dom.find("table", id="approvals").rows()
    assert [(a.cells()[1], a.cells()[2], a.cells()[5]) for a in approvals] == \
        [(c.channel, c.sku, str(c.to_qty)) for c in pending] and pending

    per_channel = {row.attrs["data-channel"]: row.cells() for row in dom.find("table", id="drift").rows()}
    assert {ch: int(c[1]) for ch, c in per_channel.items()} == drift

    snaps = dom.find("table", id="snapshots").rows()
    assert {(r.attrs["data-system"], r.attrs["data-kind"]) for r in snaps} == \
        {(sy, k) for sy in ("erp", "shopify", "amazon", "walmart") for k in ("inventory", "listings", "orders")}
    for row in snaps:
        assert 0 <= float(row.attrs["data-age-minutes"]) < 60 and row.cells()[2] == "complete"

    report_link = dom.find("a", id="latest-report")
    assert report_link.attrs["href"] == "/omnirecon/report"
    report = requests.get(ui["base"] + report_link.attrs["href"], cookies={"_token": token}, timeout=10)
    assert report.status_code == 200 and report.text == (ui["report"] / "report.html").read_text()


class _LoginRedirect(BaseHTTPRequestHandler):
    """Sets Airflow's `_token` cookie for 127.0.0.1 (cookies ignore ports), then sends the browser on to the
    same path on the API server."""
    token = base = ""

    def do_GET(self):
        self.send_response(302)
        self.send_header("Set-Cookie", f"_token={self.token}; Path=/; HttpOnly; SameSite=Lax")
        self.send_header("Location", self.base + self.path)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_view_in_headless_chromium_alone_and_inside_the_airflow_ui(ui):
    handler = type("Login", (_LoginRedirect,), {"token": _token(ui), "base": ui["base"]})
    helper = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=helper.serve_forever, daemon=True).start()
    login = f"http://127.0.0.1:{helper.server_address[1]}"
    tmp = ui["tmp"]
    try:
        view = parse_html(chromium(f"{login}/omnirecon/", tmp / "view"))
        chromium(f"{login}/omnirecon/", tmp / "view", screenshot=tmp / "omnirecon-view.png")
        airflow_ui = parse_html(chromium(f"{login}/plugin/omnirecon", tmp / "airflow-ui"))
        chromium(f"{login}/plugin/omnirecon", tmp / "airflow-ui", screenshot=tmp / "airflow-ui.png")
    finally:
        helper.shutdown()
    assert "reconciliation overview" in view.text_content()
    assert list(view.iter("script")) == []
    assert len(view.find("table", id="snapshots").rows()) == 12
    assert any(r.cells()[3] == HOSTILE for r in view.find("table", id="findings").rows())
    assert_not_blank(tmp / "omnirecon-view.png")

    # The Airflow UI lists the view in its navigation and shows it in a frame.
    assert airflow_ui.find("a", href="/plugin/omnirecon") is not None
    assert airflow_ui.find("iframe", src="/omnirecon/") is not None
    assert_not_blank(tmp / "airflow-ui.png")

    anonymous = parse_html(chromium(f"{ui['base']}/omnirecon/", tmp / "anonymous"))   # no cookie: login page
    assert anonymous.find("table", id="findings") is None
