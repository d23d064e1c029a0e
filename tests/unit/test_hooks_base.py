"""hooks/base.py and the pure helpers of the hooks, over real HTTP against a tiny scripted local server."""
from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import logging
import threading
from base64 import b64encode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from omnirecon.hooks import hook_class, hook_from_fields
from omnirecon.hooks.amazon import parse_flat_file
from omnirecon.hooks.base import ApiError, HttpCore, MalformedResponse, RetryPolicy, TokenBucket, parse_retry_after
from omnirecon.hooks.netsuite import oauth1_header
from omnirecon.hooks.shopify import reassemble_bulk


class Script:
    """A local HTTP server answering from a queue of (status, headers, body, delay)."""

    def __init__(self):
        self.answers: list = []
        self.requests: list = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                length = int(self.headers.get("Content-Length") or 0)
                script.requests.append({"path": self.path, "headers": dict(self.headers),
                                        "body": self.rfile.read(length) if length else b""})
                status, headers, body, delay = script.answers.pop(0) if script.answers else (200, {}, b"{}", 0)
                if delay:
                    threading.Event().wait(delay)
                body = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            do_POST = do_PUT = do_PATCH = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, status=200, body=None, headers=None, delay=0.0):
        self.answers.append((status, headers or {}, body if body is not None else {}, delay))


@pytest.fixture
def server():
    s = Script()
    yield s
    s.server.shutdown()
    s.server.server_close()


def _core(sleeps=None, retries=3):
    core = HttpCore("walmart", timeout=0.5, retry=RetryPolicy(max_retries=retries, backoff_base=0.01),
                    sleep=(sleeps.append if sleeps is not None else (lambda s: None)))
    events = []
    core.on_event = lambda **kw: events.append(kw)
    return core, events


def test_retries_5xx_then_succeeds_and_counts(server):
    server.add(503, {"errors": [{"code": "SYSTEM_ERROR"}]})
    server.add(502, b"bad gateway")
    server.add(200, {"ok": True})
    core, events = _core()
    resp = core.request("GET", server.url + "/x", operation="getInventory")
    assert resp.json() == {"ok": True}
    assert (core.api_calls, core.retries) == (3, 2)
    assert [e["outcome"] for e in events] == ["retry", "retry"]
    assert events[0]["status_code"] == 503 and events[0]["operation"] == "getInventory"


def test_retry_after_is_honoured_on_429(server):
    server.add(429, {"errors": [{"code": "QuotaExceeded"}]}, {"Retry-After": "7"})
    server.add(200, {})
    sleeps = []
    core, events = _core(sleeps)
    core.request("GET", server.url + "/x", operation="op")
    assert sleeps and sleeps[0] >= 7.0
    assert events[0]["outcome"] == "throttled"


def test_gives_up_after_max_retries_with_a_clear_error(server):
    for _ in range(3):
        server.add(500, {"message": "boom"})
    core, events = _core(retries=2)
    with pytest.raises(ApiError, match=r"walmart op: HTTP 500 gave up after 3 attempts"):
        core.request("GET", server.url + "/x", operation="op")
    assert core.api_calls == 3 and events[-1]["outcome"] == "error"


def test_timeout_is_retried(server):
    server.add(200, {"slow": True}, delay=1.5)
    server.add(200, {"fast": True})
    core, events = _core()
    assert core.request("GET", server.url + "/x", operation="op").json() == {"fast": True}
    assert core.retries == 1 and "timeout" in events[0]["message"]


def test_timeout_on_a_non_idempotent_call_is_not_sent_twice(server):
    """A bulk job or feed may have been created before the answer timed out: re-sending would start a second."""
    server.add(200, {"slow": True}, delay=1.5)
    server.add(200, {"second": True})
    core, events = _core()
    core.non_idempotent = frozenset({"updateBulkInventory"})
    with pytest.raises(ApiError, match="may have been applied; not retried"):
        core.request("POST", server.url + "/v3/feeds", operation="updateBulkInventory")
    assert core.api_calls == 1 and core.retries == 0
    assert core.request("GET", server.url + "/x", operation="getFeedStatus").json() == {"second": True}


def test_connection_error_is_retried_then_fails():
    core, events = _core(retries=1)
    with pytest.raises(ApiError, match="connection error after 2 attempts"):
        core.request("GET", "http://127.0.0.1:9/nothing", operation="op")
    assert core.api_calls == 2


def test_4xx_is_not_retried_and_error_names_the_code(server):
    server.add(400, {"errors": [{"code": "INVALID_REQUEST_PARAM", "message": "bad sku"}]})
    core, _ = _core()
    with pytest.raises(ApiError) as e:
        core.request("GET", server.url + "/x", operation="op")
    assert e.value.status_code == 400 and e.value.code == "INVALID_REQUEST_PARAM" and core.api_calls == 1


def test_malformed_answers_are_retried_when_parse_is_given(server):
    server.add(200, b"{not json")
    server.add(200, {"elements": {}})
    server.add(200, {"elements": {"inventories": []}})
    core, events = _core()
    body = core.request("GET", server.url + "/x", operation="op",
                        parse=core.json_parser("op", "elements.inventories"))
    assert body == {"elements": {"inventories": []}} and core.retries == 2


def test_malformed_answer_fails_after_retries(server):
    for _ in range(3):
        server.add(200, b"<html>")
    core, _ = _core(retries=2)
    with pytest.raises(MalformedResponse, match="not JSON"):
        core.request("GET", server.url + "/x", operation="op", parse=core.json_parser("op"))


def test_secrets_are_masked_in_events_logs_and_errors(server, caplog):
    secret = "sk_live_SUPERSECRET_123"
    server.add(500, {"echo": f"token {secret} rejected"})
    server.add(401, {"echo": f"token {secret} rejected"})
    core, events = _core(retries=1)
    core.add_secret(secret)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ApiError) as e:
        core.request("GET", server.url + "/x", operation="op")
    assert secret not in str(e.value)
    assert secret not in caplog.text and "***" in caplog.text
    assert all(secret not in ev["message"] for ev in events)


def test_token_bucket_paces_and_honours_new_rates():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s
    bucket = TokenBucket(rate=2.0, burst=2, clock=lambda: now[0], sleep=sleep)
    assert bucket.acquire() == 0 and bucket.acquire() == 0
    assert bucket.acquire() == pytest.approx(0.5)
    bucket.set_rate(0.5)
    assert bucket.wait_time() == pytest.approx(2.0)
    bucket.empty()
    now[0] += 1.0
    assert bucket.wait_time() == pytest.approx(1.0)


@pytest.mark.parametrize("value,expected", [("3", 3.0), ("0.5", 0.5), (None, None), ("soon", None)])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected


def test_oauth1_signature_matches_an_independent_computation():
    url = "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/query/v1/suiteql?limit=1000&offset=0"
    header = oauth1_header("POST", url, realm="1234567_SB1", consumer_key="ck", consumer_secret="cs&1",
                           token_id="tid", token_secret="ts", nonce="abc", timestamp="1700000000")
    params = sorted([("limit", "1000"), ("offset", "0"), ("oauth_consumer_key", "ck"), ("oauth_nonce", "abc"),
                     ("oauth_signature_method", "HMAC-SHA256"), ("oauth_timestamp", "1700000000"),
                     ("oauth_token", "tid"), ("oauth_version", "1.0")])
    norm = "&".join(f"{k}={v}" for k, v in params)
    base = "POST&" + quote("https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/query/v1/suiteql", safe="") \
        + "&" + quote(norm, safe="")
    expected = b64encode(hmac.new(b"cs%261&ts", base.encode(), hashlib.sha256).digest()).decode()
    assert f'oauth_signature="{quote(expected, safe="")}"' in header
    assert header.startswith('OAuth realm="1234567_SB1", ')
    assert 'oauth_signature_method="HMAC-SHA256"' in header


def test_bulk_jsonl_is_reassembled_under_parents():
    jsonl = "\n".join(json.dumps(o) for o in [
        {"id": "gid://shopify/ProductVariant/1", "sku": "A", "inventoryItem": {"id": "I1", "tracked": True}},
        {"location": {"id": "L1"}, "quantities": [], "__parentId": "gid://shopify/ProductVariant/1"},
        {"location": {"id": "L9"}, "quantities": [], "__parentId": "gid://shopify/ProductVariant/2"},
        {"id": "gid://shopify/ProductVariant/2", "sku": "B", "inventoryItem": {"id": "I2", "tracked": False}},
    ]).encode()
    variants = reassemble_bulk(jsonl)
    assert [v["sku"] for v in variants] == ["A", "B"]
    assert variants[0]["inventoryItem"]["inventoryLevels"]["nodes"] == [{"location": {"id": "L1"}, "quantities": []}]
    assert variants[1]["inventoryItem"]["inventoryLevels"]["nodes"][0]["location"]["id"] == "L9"
    with pytest.raises(MalformedResponse, match="unknown parent"):
        reassemble_bulk(b'{"id": "L", "__parentId": "nobody"}')


def test_flat_file_decodes_cp1252_and_utf8():
    header = "item-name\tseller-sku\tquantity\tstatus\n"
    cp = (header + "Caf\xe9 mug\tMUG-1\t3\tActive\n").encode("cp1252")
    assert parse_flat_file(cp)[0] == {"item-name": "Caf\xe9 mug", "seller-sku": "MUG-1", "quantity": "3",
                                      "status": "Active"}
    utf = ("\ufeff" + header + "Tee \u2013 black\tTEE\t\tInactive\n").encode("utf-8")
    assert parse_flat_file(utf)[0]["item-name"] == "Tee \u2013 black"
    with pytest.raises(MalformedResponse, match="seller-sku"):
        parse_flat_file(b"a\tb\n1\t2\n")
    assert gzip.decompress(gzip.compress(cp)) == cp


def test_hooks_declare_airflow_metadata_and_fields():
    expected = {"shopify": ("omnirecon_shopify", "api_version"), "amazon": ("omnirecon_amazon", "refresh_token"),
                "walmart": ("omnirecon_walmart", "svc_name"), "erp": ("omnirecon_netsuite", "token_secret")}
    for system, (conn_type, extra) in expected.items():
        cls = hook_class(system)
        assert cls.conn_type == conn_type and cls.default_conn_name == conn_type and cls.hook_name
        behaviour = cls.get_ui_field_behaviour()
        assert "relabeling" in behaviour and "hidden_fields" in behaviour
        hook = hook_from_fields(system, {"host": "http://127.0.0.1:1", "login": "l", "password": "p",
                                         "extra": json.dumps({extra: "v", "time_scale": 0.5})})
        assert hook.extra(extra) == "v" and hook.time_scale == 0.5


def test_provider_info_lists_the_four_connection_types():
    from omnirecon.provider import get_provider_info
    info = get_provider_info()
    assert info["package-name"] == "omnirecon"
    types = {c["connection-type"]: c for c in info["connection-types"]}
    assert set(types) == {"omnirecon_shopify", "omnirecon_amazon", "omnirecon_walmart", "omnirecon_netsuite"}
    assert types["omnirecon_amazon"]["conn-fields"]["refresh_token"]["schema"]["format"] == "password"
    for c in types.values():
        assert hook_class({"omnirecon_shopify": "shopify", "omnirecon_amazon": "amazon", "omnirecon_walmart": "walmart",
                           "omnirecon_netsuite": "erp"}[c["connection-type"]]).__module__ + "." + \
            c["hook-class-name"].rsplit(".", 1)[1] == c["hook-class-name"]


def test_airflow_providers_manager_registers_the_connection_forms():
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
    pm, runtime = ProvidersManager(), ProvidersManagerTaskRuntime()
    for conn_type, cls in [("omnirecon_shopify", "ShopifyHook"), ("omnirecon_amazon", "AmazonSPAPIHook"),
                           ("omnirecon_walmart", "WalmartHook"), ("omnirecon_netsuite", "NetSuiteHook")]:
        info = runtime.hooks.get(conn_type)
        assert info is not None and info.hook_class_name.endswith("." + cls)
        assert pm.field_behaviours[conn_type]["relabeling"]
    widgets = pm.connection_form_widgets
    assert "extra__omnirecon_amazon__refresh_token" in widgets and widgets["extra__omnirecon_amazon__refresh_token"].is_sensitive
    assert "extra__omnirecon_netsuite__token_secret" in widgets
