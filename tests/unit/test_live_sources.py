"""Signatures checked as the platforms' own documentation says, on the raw body, before anything is parsed."""
import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest

from omnirecon.adapters.erp.notifications import NetSuiteSource
from omnirecon.adapters.shopify.notifications import ShopifySource
from omnirecon.adapters.walmart.notifications import WalmartSource
from omnirecon.live.sources import sources_from_connections
from omnirecon.model.notification import Rejected
from omnirecon.timeutil import iso, utcnow

BODY = json.dumps({"inventory_item_id": 1, "location_id": 2, "available": 5}).encode()


def shopify_headers(secret, body=BODY, **extra):
    sig = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"x-shopify-hmac-sha256": sig, "X-Shopify-Topic": "inventory_levels/update",
            "X-Shopify-Webhook-Id": "wh-1", "X-Shopify-Triggered-At": "2026-12-01T10:00:00Z", **extra}


def test_shopify_accepts_its_hmac_case_insensitively_and_keys_on_the_webhook_id():
    got = ShopifySource("s3cret").verify(BODY, shopify_headers("s3cret"))
    assert (got.source, got.event_id, got.topic, got.body) == ("shopify", "wh-1", "inventory_levels/update", BODY)
    assert iso(got.occurred_at) == "2026-12-01T10:00:00Z"
    assert "x-shopify-hmac-sha256" not in {k.lower() for k in got.headers}   # the signature is not kept


@pytest.mark.parametrize("body", [BODY + b" ", BODY.replace(b"5", b"6")])
def test_shopify_rejects_a_body_changed_by_one_byte(body):
    with pytest.raises(Rejected) as e:
        ShopifySource("s3cret").verify(body, shopify_headers("s3cret"))
    assert e.value.status == 401


def test_a_rotated_shopify_secret_is_accepted_for_an_hour_only():
    now = utcnow()
    src = ShopifySource("new", previous_secret="old", rotated_at=now - timedelta(minutes=59))
    assert src.verify(BODY, shopify_headers("old"), now=now).event_id == "wh-1"
    with pytest.raises(Rejected):
        src.verify(BODY, shopify_headers("old"), now=now + timedelta(minutes=2))
    assert src.verify(BODY, shopify_headers("new"), now=now + timedelta(days=3)).event_id == "wh-1"


def test_shopify_without_signature_or_ids_is_rejected():
    with pytest.raises(Rejected) as e:
        ShopifySource("s").verify(BODY, {"X-Shopify-Topic": "x"})
    assert e.value.status == 401
    h = shopify_headers("s")
    del h["X-Shopify-Webhook-Id"]
    with pytest.raises(Rejected) as e:
        ShopifySource("s").verify(BODY, h)
    assert e.value.status == 400


def walmart_body(event_id="ev-1"):
    return json.dumps({"source": {"eventType": "INVENTORY_OOS", "eventTime": "2026-12-01T10:00:00Z",
                                  "eventId": event_id}, "payload": {"sku": "MUG"}}).encode()


@pytest.mark.parametrize("encode", [lambda d: base64.b64encode(d).decode(), lambda d: d.hex()])
def test_walmart_hmac_of_the_complete_body_with_the_client_secret(encode):
    body = walmart_body()
    sig = encode(hmac.new(b"client-secret", body, hashlib.sha256).digest())
    got = WalmartSource("client-secret").verify(body, {"Authorization": sig})
    assert (got.event_id, got.topic) == ("ev-1", "INVENTORY_OOS")
    with pytest.raises(Rejected):
        WalmartSource("other-secret").verify(body, {"Authorization": sig})


def test_walmart_basic_auth_in_the_configured_header():
    src = WalmartSource("cs", auth_method="BASIC_AUTH", auth_header="X-Auth", user="abc", password="test")
    token = base64.b64encode(b"abc:test").decode()
    assert src.verify(walmart_body(), {"x-auth": f"Basic {token}"}).event_id == "ev-1"
    with pytest.raises(Rejected):
        src.verify(walmart_body(), {"X-Auth": base64.b64encode(b"abc:nope").decode()})
    with pytest.raises(Rejected):
        src.verify(walmart_body(), {"Authorization": token})   # the wrong header


def test_walmart_signed_but_not_an_envelope_is_400():
    body = b'{"payload": {}}'
    sig = base64.b64encode(hmac.new(b"cs", body, hashlib.sha256).digest()).decode()
    with pytest.raises(Rejected) as e:
        WalmartSource("cs").verify(body, {"Authorization": sig})
    assert e.value.status == 400


def netsuite_headers(secret, body, stamp):
    sig = "sha256=" + hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Omnirecon-Timestamp": stamp, "X-Omnirecon-Signature": sig}


def test_netsuite_signature_binds_the_timestamp_and_refuses_replays():
    body = json.dumps({"eventId": "ns-1", "recordType": "inventoryadjustment", "type": "create"}).encode()
    now = utcnow()
    got = NetSuiteSource("dep-secret").verify(body, netsuite_headers("dep-secret", body, iso(now)), now=now)
    assert (got.source, got.event_id, got.topic) == ("erp", "ns-1", "inventoryadjustment/create")
    with pytest.raises(Rejected):   # the same delivery 10 minutes later
        NetSuiteSource("dep-secret").verify(body, netsuite_headers("dep-secret", body, iso(now)),
                                            now=now + timedelta(minutes=10))
    forged = netsuite_headers("dep-secret", body, iso(now))
    forged["X-Omnirecon-Timestamp"] = iso(now + timedelta(seconds=1))   # a fresh stamp on an old signature
    with pytest.raises(Rejected):
        NetSuiteSource("dep-secret").verify(body, forged, now=now)


class _Conn:
    def __init__(self, password=None, extra=None):
        self.password, self.extra_dejson = password, extra or {}


def test_sources_come_from_the_connections_and_a_missing_one_is_not_served():
    from airflow.sdk.exceptions import AirflowNotFoundException

    conns = {"omnirecon_shopify": _Conn(extra={"client_secret": "shp"}), "omnirecon_walmart": _Conn("wm"),
             "omnirecon_amazon": _Conn()}

    def get(conn_id):
        if conn_id not in conns:
            raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")
        return conns[conn_id]
    got = sources_from_connections(get)
    assert sorted(got) == ["shopify", "walmart"]
    assert got["shopify"].secret == "shp" and got["walmart"].client_secret == "wm"

    def broken(conn_id):
        raise RuntimeError("secrets backend down")
    with pytest.raises(RuntimeError):   # a failing backend is loud, never "no sources"
        sources_from_connections(broken)


def test_netsuite_unix_second_stamps_and_no_event_id_dedupe_on_the_same_bytes():
    body = json.dumps({"recordType": "salesorder", "id": 7, "type": "create", "timestamp": "2026-12-01T10:00:00Z"}).encode()
    now = utcnow()
    stamp = str(int(now.timestamp()))
    a = NetSuiteSource("dep-secret").verify(body, netsuite_headers("dep-secret", body, stamp), now=now)
    b = NetSuiteSource("dep-secret").verify(body, netsuite_headers("dep-secret", body, stamp), now=now)
    other = body.replace(b"create", b"edit")
    c = NetSuiteSource("dep-secret").verify(other, netsuite_headers("dep-secret", other, stamp), now=now)
    assert a.event_id == b.event_id != c.event_id
    with pytest.raises(Rejected):
        NetSuiteSource("dep-secret").verify(body, netsuite_headers("dep-secret", body, str(int(now.timestamp()) - 600)),
                                            now=now)


def test_netsuite_a_retry_signed_again_later_is_the_same_event():
    """The SuiteScript's retry script re-signs the unchanged body with the time of the retry: the receiver accepts it
    and keys it on the body's eventId (or, without one, on the body), not on the signature's timestamp."""
    now = utcnow()
    later = now + timedelta(minutes=30)
    for body in (json.dumps({"eventId": "7d7b6f0e-1c1e-4f55-9f7e-0b8c5a3f2d10", "recordType": "itemreceipt", "id": 9,
                             "type": "create", "timestamp": iso(now)}).encode(),
                 json.dumps({"recordType": "itemreceipt", "id": 9, "type": "create", "timestamp": iso(now)}).encode()):
        source = NetSuiteSource("dep-secret")
        first = source.verify(body, netsuite_headers("dep-secret", body, str(int(now.timestamp()))), now=now)
        retry = source.verify(body, netsuite_headers("dep-secret", body, str(int(later.timestamp()))), now=later)
        assert first.event_id == retry.event_id and first.occurred_at == retry.occurred_at
