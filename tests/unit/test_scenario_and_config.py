"""Scenario and settings loading: every contract rule, with errors that name the bad field."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from omnirecon_contract import scenario
from omnirecon.config import load_settings, settings_from_dict
from omnirecon.errors import ConfigError


@pytest.fixture
def demo_doc(demo_scenario_path):
    return yaml.safe_load(demo_scenario_path.read_text())


def test_demo_scenario_is_valid(demo_scenario_path):
    sc = scenario.load(demo_scenario_path)
    assert sc.systems == ("erp", "shopify", "amazon", "walmart")
    assert sc.settings["channels"]["amazon"]["safety_stock"] == 2


def test_offsets_resolve_against_as_of(demo_doc):
    doc = copy.deepcopy(demo_doc)
    doc["as_of"] = "2026-03-01T12:00:00Z"
    sc = scenario.from_dict(doc)
    item = sc.data["erp"]["items"][0]
    assert item["last_modified"] == "2026-03-01T09:00:00Z"          # -3h
    shipped = sc.data["erp"]["sales_orders"][3]["fulfillments"][0]["shipped_at"]
    assert shipped == "2026-03-01T09:00:00Z"
    assert sc.raw["erp"]["items"][0]["last_modified"] == "-3h"       # the raw document is untouched


def test_as_of_now_moves_with_the_clock(demo_doc):
    t = datetime(2030, 1, 1, tzinfo=timezone.utc)
    sc = scenario.from_dict(demo_doc, as_of=t)
    assert sc.data["shopify"]["orders"][0]["created_at"] == (t - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("mutate, path, words", [
    (lambda d: d["erp"]["items"][3]["locations"][0].__setitem__("on_hand", -1),
     "erp.items[3].locations[0].on_hand", "must be an integer >= 0"),
    (lambda d: d["erp"]["items"][3]["locations"][0].__setitem__("on_hand", "ten"),
     "erp.items[3].locations[0].on_hand", "must be an integer"),
    (lambda d: d["shopify"]["variants"][0].__setitem__("inventory_policy", "SOMETIMES"),
     "shopify.variants[0].inventory_policy", "must be one of DENY, CONTINUE"),
    (lambda d: d["amazon"]["orders"][0].__setitem__("order_status", "Lost"),
     "amazon.orders[0].order_status", "must be one of"),
    (lambda d: d.__setitem__("colour", "blue"), "(root)", "unknown key(s) colour"),
    (lambda d: d["settings"].__setitem__("max_correction_fraction", 3), "settings.max_correction_fraction", "must be <= 1"),
    (lambda d: d["walmart"]["items"][0].__setitem__("last_updated", "yesterday"), "walmart.items[0].last_updated", "timestamp"),
    (lambda d: d["erp"]["items"][0]["locations"][0].__setitem__("location", "NOWHERE"),
     "erp.items[0].locations[0].location", "unknown ERP location"),
    (lambda d: d.__setitem__("faults", [{"system": "erp", "operation": "*", "kind": "http_status"}]),
     "faults[0]", "status"),
    (lambda d: d.__setitem__("name", "Bad Name"), "name", "must match"),
    (lambda d: d["settings"].__setitem__("propagation_sla_seconds", 0), "settings.propagation_sla_seconds", "must be a number > 0"),
])
def test_invalid_scenarios_name_the_bad_field(demo_doc, mutate, path, words):
    doc = copy.deepcopy(demo_doc)
    mutate(doc)
    with pytest.raises(ConfigError) as e:
        scenario.from_dict(doc)
    assert str(e.value).startswith(f"{path}:"), str(e.value)
    assert words in str(e.value)


def test_a_scenario_sets_the_propagation_sla_as_scenario_md_shows(demo_doc):
    doc = copy.deepcopy(demo_doc)
    doc["settings"]["propagation_sla_seconds"] = 30
    assert settings_from_dict(scenario.from_dict(doc).settings)["propagation_sla_seconds"] == 30


def test_x_prefixed_keys_are_allowed(demo_doc):
    doc = copy.deepcopy(demo_doc)
    doc["x_expected"] = [1, 2]
    doc["erp"]["items"][0]["x_note"] = "fine"
    assert scenario.from_dict(doc).raw["x_expected"] == [1, 2]


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        scenario.load(bad)
    with pytest.raises(ConfigError, match="not found"):
        scenario.load(tmp_path / "missing.yaml")


def test_settings_defaults_and_lookups(demo_doc):
    s = settings_from_dict(demo_doc["settings"])
    assert s.safety_stock("TEE-BLK-M", "amazon") == 5          # per-SKU override
    assert s.safety_stock("MUG-WHT", "amazon") == 2            # channel default
    assert s.alias("TEE-BLK-M", "amazon") == ("TEE-BLK-M-FBM", 1)
    assert s.erp_sku_for("TEE-BLK-M-FBM", "amazon") == "TEE-BLK-M"
    assert s.bundle("GIFT-SET")[0] == {"sku": "MUG-WHT", "qty": 2}
    assert [l["erp"] for l in s.mapped_locations("shopify")] == ["WH-EAST", "WH-WEST"]
    assert s.mode == "apply"
    minimal = settings_from_dict({})
    assert minimal["freshness_minutes"] == 15 and minimal["approval_threshold_units"] == 50


def test_project_config_files_are_valid():
    s = load_settings()
    assert s.channels == ["shopify", "amazon", "walmart"]
    assert s.runtime["report_time"] == "07:00"


def test_bad_settings_file_names_file_and_field(tmp_path):
    p = tmp_path / "retailer.yaml"
    p.write_text("tolerance_units: -2\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p, runtime_path=tmp_path / "none.yaml")
    assert str(e.value) == f"{p}: settings.tolerance_units: must be an integer >= 0"


def test_bad_runtime_option(tmp_path):
    p = tmp_path / "retailer.yaml"
    p.write_text("{}\n")
    r = tmp_path / "runtime.yaml"
    r.write_text("mode: yolo\n")
    with pytest.raises(ConfigError, match="runtime.mode"):
        load_settings(p, runtime_path=r)
