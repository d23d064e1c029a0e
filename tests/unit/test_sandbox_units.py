"""Sandbox building blocks without HTTP: generator, faults counting, search syntax, SuiteQL translation,
rate-limit table against the models, OAuth signature vector, state round trip."""
import base64
import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from omnirecon_sandbox import Sandbox
from omnirecon_sandbox.amazon import RATE_LIMITS, reference_dir
from omnirecon_sandbox.faults import FaultBook
from omnirecon_sandbox.netsuite import oauth_signature, translate
from omnirecon_sandbox.clock import ManualClock
from omnirecon_sandbox.ratelimit import TokenBucket
from omnirecon_sandbox.shopify_search import matcher
from omnirecon_contract.scenario import from_dict
from tests.support.sandbox_http import scenario_doc

BASE = {"version": 1, "name": "gen", "as_of": "2026-03-01T12:00:00Z",
        "settings": {"locations": [{"erp": "WH-EAST", "shopify": "gid://shopify/Location/1001",
                                    "walmart_ship_node": "10001", "amazon": "MFN"}],
                     "channels": {"shopify": {"safety_stock": 0}, "amazon": {"safety_stock": 2},
                                  "walmart": {"safety_stock": 1}}},
        "erp": {"locations": [{"id": 1, "name": "WH-EAST"}]}, "shopify": {}, "amazon": {}, "walmart": {}}


def _gen(**spec):
    doc = json.loads(json.dumps(BASE))
    doc["generate"] = dict({"skus": 400, "locations": 2, "orders": 60, "seed": 7}, **spec)
    return Sandbox(from_dict(doc)).state()


def _drifting(state) -> int:
    net = {i["itemid"]: sum(l["on_hand"] - l["committed"] for l in i["locations"] if l["location"] == "WH-EAST")
           for i in state["erp"]["items"]}
    bad = sum(1 for v in state["shopify"]["variants"] if v["levels"][0]["available"] != max(0, net[v["sku"]]))
    bad += sum(1 for l in state["amazon"]["listings"] if l["quantity"] != max(0, net[l["sku"]] - 2))
    bad += sum(1 for w in state["walmart"]["items"] if w["quantity"] != max(0, net[w["sku"]] - 1))
    return bad


def test_generate_is_deterministic_and_covers_every_system():
    a, b = _gen(), _gen()
    assert a == b
    assert a != _gen(seed=8)
    assert len(a["erp"]["items"]) == 400 and len(a["erp"]["locations"]) == 2
    assert {v["sku"] for v in a["shopify"]["variants"]} == {i["itemid"] for i in a["erp"]["items"]}
    assert len(a["amazon"]["listings"]) == len(a["walmart"]["items"]) == 400
    channel_orders = len(a["shopify"]["orders"]) + len(a["amazon"]["orders"]) + len(a["walmart"]["orders"])
    assert channel_orders == 60 == len(a["erp"]["sales_orders"])
    assert {so["channel_order_id"] for so in a["erp"]["sales_orders"]} >= {o["id"] for o in a["shopify"]["orders"]}


def test_generate_drift_fraction():
    assert _drifting(_gen(drift_fraction=0.0)) == 0
    drifted = _drifting(_gen(drift_fraction=0.1, skus=2000, orders=0))
    assert 0.07 * 6000 < drifted < 0.13 * 6000          # 3 channels x 2000 SKU pairs


def test_generated_state_is_a_valid_scenario():
    state = _gen(skus=30, orders=10)
    assert from_dict(state).data["erp"]["items"][0]["itemid"] == "GEN-000001"


def test_fault_counting_after_and_count():
    book = FaultBook([{"system": "amazon", "operation": "getOrders", "kind": "http_status", "status": 500, "count": 2, "after": 1},
                      {"system": "amazon", "operation": "*", "kind": "drop_writes"}])
    hits = [sorted(book.hit("amazon", ["getOrders"])) for _ in range(5)]
    assert hits == [["drop_writes"], ["drop_writes", "http_status"], ["drop_writes", "http_status"], ["drop_writes"], ["drop_writes"]]
    assert book.hit("walmart", ["getOrders"]) == {}
    assert book.hit("amazon", ["token"]) == {"drop_writes": book.faults[1]}


def test_token_bucket_scaled_refill():
    clock = ManualClock(time_scale=0.5)
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.seconds_until(1) == pytest.approx(0.25)    # 1 token at 2/s = 0.5 s, scaled by 0.5
    clock.advance(0.2)
    assert not bucket.take()
    clock.advance(0.05)
    assert bucket.take() and not bucket.take()


def test_sandbox_clock_of_an_as_of_now_scenario_shows_real_time():
    from omnirecon_contract.timeutil import utcnow
    demo_doc = scenario_doc()
    loaded_earlier = from_dict(demo_doc, as_of=utcnow() - timedelta(seconds=90))   # as_of: now, a while ago
    sb = Sandbox(loaded_earlier)
    assert abs((sb.clock.now() - utcnow()).total_seconds()) < 5
    fixed = from_dict(dict(demo_doc, as_of="2026-03-01T12:00:00Z"))                  # a fixed as_of is where it starts
    assert abs((Sandbox(fixed).clock.now() - datetime(2026, 3, 1, 12, tzinfo=timezone.utc)).total_seconds()) < 5


def test_manual_clock_moves_only_when_told():
    start = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    clock = ManualClock(start, time_scale=0.01)
    t0 = clock.monotonic()
    assert clock.monotonic() == t0 and clock.now() == start
    clock.advance(clock.scaled(60))                        # one documented minute
    clock.sleep(0.4)                                       # a sleep on a manual clock passes at once
    assert clock.monotonic() - t0 == pytest.approx(1.0)
    assert clock.now() == start + timedelta(seconds=1)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_outbox_due_counts_only_what_the_clock_has_reached():
    """A delivery a defect or a backoff put off is pending but not yet due: a ManualClock harness waits for due()."""
    from omnirecon_sandbox.notify.delivery import Outbox
    clock = ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc))
    outbox = Outbox(clock, on_result=None)                 # not started: nothing is sent
    outbox.submit(lambda: None)
    outbox.submit(lambda: None, delay_s=4.5)
    assert (outbox.pending(), outbox.due()) == (2, 1)
    clock.advance(4.0)
    assert outbox.due() == 1
    clock.advance(0.5)
    assert outbox.due() == 2

def test_shopify_search_syntax():
    rec = {"updated_at": "2026-03-01T10:00:00Z", "sku": "TEE-BLK-M", "n": 5}
    fields = {"updated_at": lambda r: r["updated_at"], "sku": lambda r: r["sku"], "n": lambda r: r["n"]}
    assert matcher("updated_at:>='2026-03-01T09:00:00Z' AND updated_at:<'2026-03-01T11:00:00Z'", fields)(rec)
    assert not matcher("updated_at:>'2026-03-01T10:00:00Z'", fields)(rec)
    assert matcher("sku:TEE-* AND n:>=5", fields)(rec)
    assert matcher("sku:NOPE OR n:5", fields)(rec)
    assert not matcher("-sku:TEE-BLK-M", fields)(rec)
    assert matcher("", fields) is None


def test_suiteql_translation():
    sql = translate("SELECT BUILTIN.DF(iil.location) loc, BUILTIN.DF(t.status) s FROM transaction t "
                    "JOIN inventoryitemlocations iil ON 1=1 FETCH FIRST 5 ROWS ONLY")
    assert "FROM location _df WHERE _df.id = iil.location" in sql
    assert "ns_df_status(t.type, t.status)" in sql and '"transaction" t' in sql and sql.endswith("LIMIT 5")


def test_oauth_signature_matches_rfc5849_construction():
    # A worked vector computed independently of the sandbox (hmac over the RFC 5849 base string).
    import hashlib
    import hmac
    params = {"oauth_consumer_key": "ck", "oauth_token": "tk", "oauth_signature_method": "HMAC-SHA256",
              "oauth_timestamp": "1700000000", "oauth_nonce": "abc", "oauth_version": "1.0"}
    base = ("POST&http%3A%2F%2F127.0.0.1%3A8080%2Fservices%2Frest%2Fquery%2Fv1%2Fsuiteql&"
            "limit%3D5%26oauth_consumer_key%3Dck%26oauth_nonce%3Dabc%26oauth_signature_method%3DHMAC-SHA256"
            "%26oauth_timestamp%3D1700000000%26oauth_token%3Dtk%26oauth_version%3D1.0%26offset%3D0")
    expected = base64.b64encode(hmac.new(b"cs&ts", base.encode(), hashlib.sha256).digest()).decode()
    got = oauth_signature("POST", "http://127.0.0.1:8080/services/rest/query/v1/suiteql", "limit=5&offset=0",
                          params, "cs", "ts")
    assert got == expected


MODELS = reference_dir() / "sp-api-models"


@pytest.mark.skipif(not MODELS.exists(), reason="../shared/reference is absent: no SP-API models to check against")
def test_amazon_rate_table_matches_the_models():
    found = {}
    for f in MODELS.glob("*.json"):
        doc = json.loads(f.read_text())
        for ops in (doc.get("paths") or {}).values():
            for op in ops.values():
                if isinstance(op, dict) and op.get("operationId") in RATE_LIMITS:
                    m = re.search(r"\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", op.get("description", ""))
                    found[op["operationId"]] = (float(m.group(1)), float(m.group(2)))
    assert set(found) == set(RATE_LIMITS)
    assert found == {k: (float(r), float(b)) for k, (r, b) in RATE_LIMITS.items()}
