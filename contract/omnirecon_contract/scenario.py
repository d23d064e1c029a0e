"""Scenario files (shared/contracts/scenario.md): load, validate against the JSON Schema, resolve time."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from omnirecon_contract.errors import ConfigError, parse_error
from omnirecon_contract.timeutil import iso, parse_ts, utcnow
from omnirecon_contract.validation import validate

SYSTEMS = ("erp", "shopify", "amazon", "walmart")
CHANNELS = ("shopify", "amazon", "walmart")

# Paths (as key tuples, '*' = every list element) of every timestamp field in the format.
_TS_FIELDS = {
    "erp": [("items", "*", "last_modified"), ("items", "*", "locations", "*", "last_modified"),
            ("sales_orders", "*", "created"), ("sales_orders", "*", "last_modified"),
            ("sales_orders", "*", "fulfillments", "*", "shipped_at")],
    "shopify": [("variants", "*", "levels", "*", "updated_at"), ("orders", "*", "created_at"),
                ("orders", "*", "updated_at"), ("orders", "*", "cancelled_at")],
    "amazon": [("listings", "*", "last_updated"), ("fba_inventory", "*", "last_updated"),
               ("orders", "*", "purchase_date"), ("orders", "*", "last_update_date")],
    "walmart": [("items", "*", "last_updated"), ("orders", "*", "order_date"), ("orders", "*", "last_modified")],
}


def _walk(node, path, fn):
    if not path or node is None:
        return
    key, rest = path[0], path[1:]
    if key == "*":
        for item in node if isinstance(node, list) else []:
            _walk(item, rest, fn)
    elif isinstance(node, dict) and key in node:
        if rest:
            _walk(node[key], rest, fn)
        else:
            node[key] = fn(node[key])


@dataclass
class Scenario:
    raw: dict                      # as written (offsets kept), validated
    data: dict                     # timestamps resolved to ISO-8601 UTC strings
    as_of: datetime
    source: str = "<memory>"
    systems: tuple = field(default=())

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def settings(self) -> dict:
        return self.data.get("settings", {})

    @property
    def faults(self) -> list:
        return self.data.get("faults", [])


def read_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: scenario file not found")
    text = path.read_text(encoding="utf-8")
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise parse_error(path, e) from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: (root): must be a mapping")
    return doc


def from_dict(doc: dict, source: str = "<memory>", as_of: datetime | None = None) -> Scenario:
    validate(doc, "scenario.schema.json")
    _check_references(doc)
    ref = as_of or parse_ts(doc.get("as_of", "now"), utcnow())
    data = copy.deepcopy(doc)
    for system, paths in _TS_FIELDS.items():
        for p in paths:
            _walk(data.get(system), p, lambda v: iso(parse_ts(v, ref)))
    data["as_of"] = iso(ref)
    return Scenario(raw=doc, data=data, as_of=ref, source=source,
                    systems=tuple(s for s in SYSTEMS if s in doc))


def load(path: str | Path, as_of: datetime | None = None) -> Scenario:
    doc = read_file(path)   # its errors name the file (and line) already
    try:
        return from_dict(doc, source=str(path), as_of=as_of)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _check_references(doc: dict) -> None:
    """Cross-field rules JSON Schema cannot express."""
    erp = doc.get("erp") or {}
    names = [l["name"] for l in erp.get("locations", [])]
    for i, item in enumerate(erp.get("items", [])):
        for j, loc in enumerate(item.get("locations", [])):
            if names and loc["location"] not in names:
                raise ConfigError(f"erp.items[{i}].locations[{j}].location: unknown ERP location {loc['location']!r} (known: {', '.join(names)})")
            if "committed" in loc and loc["committed"] > loc["on_hand"] + 10**9:
                raise ConfigError(f"erp.items[{i}].locations[{j}].committed: implausible")
    for i, loc in enumerate((doc.get("settings") or {}).get("locations", [])):
        if names and loc["erp"] not in names:
            raise ConfigError(f"settings.locations[{i}].erp: unknown ERP location {loc['erp']!r} (known: {', '.join(names)})")
