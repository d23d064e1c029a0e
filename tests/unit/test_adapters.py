"""The adapter registry: one adapter per system account; the kept hook helpers and tables follow it."""
import pytest

from omnirecon import adapters
from omnirecon import hooks as hooks_mod
from omnirecon.adapters.walmart import WalmartAdapter
from omnirecon.remediation import channels as channels_mod
from omnirecon.remediation.plan import batch_method

WALMART_RAW = {"inventories": [{"sku": "TEE", "nodes": [{"shipNode": "10001", "inputQty": {"amount": 4}}]}],
               "items": [], "orders": []}


@pytest.fixture
def walmart_ca():
    adapter = adapters.register(WalmartAdapter("walmart_ca", conn_id="omnirecon_walmart_ca"))
    yield adapter
    adapters.unregister("walmart_ca")


def test_the_four_systems_and_their_connections():
    assert adapters.systems() == ("erp", "shopify", "amazon", "walmart")
    assert adapters.channels() == ("shopify", "amazon", "walmart")
    assert hooks_mod.CONN_IDS == {"erp": "omnirecon_netsuite", "shopify": "omnirecon_shopify",
                                  "amazon": "omnirecon_amazon", "walmart": "omnirecon_walmart"}
    assert {a.system: a.pool for a in adapters.all_adapters()} == hooks_mod.CONN_IDS
    with pytest.raises(ValueError, match="unknown system 'ebay'"):
        adapters.get_adapter("ebay")


def test_a_second_account_is_registered_once_and_everything_follows_it(walmart_ca):
    assert adapters.get_adapter("walmart_ca") is walmart_ca and "walmart_ca" in adapters.channels()
    assert hooks_mod.CONN_IDS["walmart_ca"] == channels_mod.CONN_IDS["walmart_ca"] == "omnirecon_walmart_ca"
    assert walmart_ca.pool == "omnirecon_walmart_ca" and walmart_ca.hook_class() is hooks_mod.hook_class("walmart")
    hook = hooks_mod.get_hook("walmart_ca")
    assert hook.conn_id == "omnirecon_walmart_ca"
    assert batch_method("walmart_ca", 3) == batch_method("walmart", 3) == ("put", 50)
    with pytest.raises(ValueError, match="already registered"):
        adapters.register(WalmartAdapter("walmart_ca"))


def test_records_of_a_second_account_carry_its_name(walmart_ca):
    mine, _ = walmart_ca.normalize("inventory", WALMART_RAW)
    first, _ = adapters.get_adapter("walmart").normalize("inventory", WALMART_RAW)
    assert [(r.system, r.sku, r.location, r.available) for r in mine] == [("walmart_ca", "TEE", "10001", 4)]
    assert [(r.system, r.available) for r in first] == [("walmart", 4)]


def test_the_erp_has_no_write_path():
    erp = adapters.get_adapter("erp")
    assert not erp.is_channel
    with pytest.raises(ValueError, match="no write path"):
        erp.write_path(None)
    with pytest.raises(ValueError, match="no write path"):
        channels_mod.default_hook("erp")
    assert adapters.get_adapter("amazon").write_path(None) == ("patch", "per_sku")
    assert adapters.get_adapter("shopify").write_path("set_quantities") == ("set_quantities", "batch")


def test_a_second_account_is_heard_under_its_own_name(walmart_ca):
    """Its deliveries are verified at /notifications/walmart_ca with its own secret, read as its changes, and its
    quantities are read back like the first account's (both notify only at zero)."""
    import base64
    import hashlib
    import hmac
    import json

    from airflow.sdk.exceptions import AirflowNotFoundException

    from omnirecon.live.chain import changes_from, silent_kinds
    from omnirecon.live.sources import sources_from_connections

    class Conn:
        def __init__(self, password=None, extra=None):
            self.password, self.extra_dejson = password, extra or {}
    conns = {"omnirecon_walmart": Conn("first-secret"), "omnirecon_walmart_ca": Conn("second-secret")}

    def get(conn_id):
        if conn_id not in conns:
            raise AirflowNotFoundException(conn_id)
        return conns[conn_id]
    sources = sources_from_connections(get)
    assert sorted(sources) == ["walmart", "walmart_ca"] and sources["walmart_ca"].name == "walmart_ca"
    body = json.dumps({"source": {"eventType": "INVENTORY_OOS", "eventId": "e1", "eventTime": "2026-12-03T10:00:00Z"},
                       "payload": {"sku": "TEE-CA", "shipNodes": [{"shipNode": "20001", "availToSellQty": 0}]}}).encode()
    signed = {"Authorization": base64.b64encode(hmac.new(b"second-secret", body, hashlib.sha256).digest()).decode()}
    note = sources["walmart_ca"].verify(body, signed)
    assert (note.source, note.event_id, note.topic) == ("walmart_ca", "e1", "INVENTORY_OOS")
    with pytest.raises(Exception, match="does not authenticate"):
        sources["walmart"].verify(body, signed)          # the first account's secret does not sign it
    (change,) = changes_from(note.source, note.topic, body, erp_sku=lambda sku, ch: {"TEE-CA": "TEE"}[sku])
    assert (change.system, change.kind, change.key, change.value, change.location) == (
        "walmart_ca", "inventory", "TEE", 0, "20001")
    assert {("walmart", "inventory"), ("walmart_ca", "inventory")} <= silent_kinds()
    assert walmart_ca.listing_diagnosis == "L2_marketplace_listing"
    assert adapters.get_adapter("shopify").listing_diagnosis == "L1_storefront_feed"
