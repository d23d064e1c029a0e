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
    _check_world(doc)
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


_HOP_ROUTES = {"inventory": "erp->channel or channel->channel", "orders": "channel->erp", "status": "erp->channel"}
_DEFECT_HOP_KINDS = {"min_delta": ("inventory",), "wrong_location": ("inventory",), "ignores_safety_stock": ("inventory",),
                     "event_filter": ("orders",)}


def _route_ok(kind: str, src: str, dst: str) -> bool:
    if src == dst:
        return False
    if kind == "inventory":
        return dst in CHANNELS
    return (src in CHANNELS and dst == "erp") if kind == "orders" else (src == "erp" and dst in CHANNELS)


def _channel_skus(doc: dict, channel: str) -> set:
    block = doc.get(channel) or {}
    rows = block.get("variants" if channel == "shopify" else "listings" if channel == "amazon" else "items", [])
    return {r.get("sku") for r in rows}


def _channel_orders(doc: dict, channel: str) -> set:
    block = doc.get(channel) or {}
    key = {"shopify": "id", "amazon": "amazon_order_id", "walmart": "purchase_order_id"}[channel]
    return {o.get(key) for o in block.get("orders", [])}


def _check_world(doc: dict) -> None:
    """world.md: hops, defects, events and demand refer to systems, hops, SKUs, locations and orders that exist."""
    import fnmatch
    present = {s for s in SYSTEMS if s in doc}
    erp = doc.get("erp") or {}
    erp_skus = {i["itemid"] for i in erp.get("items", [])}
    erp_locations = {l["name"] for l in erp.get("locations", [])}
    hops = (doc.get("integration") or {}).get("hops", [])
    by_id = {}
    for i, hop in enumerate(hops):
        where = f"integration.hops[{i}]"
        if hop["id"] in by_id:
            raise ConfigError(f"{where}.id: duplicate hop id {hop['id']!r}")
        by_id[hop["id"]] = hop
        for end in ("from", "to"):
            if hop[end] not in present:
                raise ConfigError(f"{where}.{end}: system {hop[end]!r} is not in this scenario")
        if not _route_ok(hop["kind"], hop["from"], hop["to"]):
            raise ConfigError(f"{where}.to: a {hop['kind']} hop runs {_HOP_ROUTES[hop['kind']]} "
                              f"(got {hop['from']}->{hop['to']})")
    for i, defect in enumerate((doc.get("integration") or {}).get("defects", [])):
        where = f"integration.defects[{i}]"
        hop = by_id.get(defect["hop"])
        if hop is None:
            raise ConfigError(f"{where}.hop: unknown hop {defect['hop']!r} (known: {', '.join(by_id) or 'none'})")
        kinds = _DEFECT_HOP_KINDS.get(defect["kind"])
        if kinds and hop["kind"] not in kinds:
            raise ConfigError(f"{where}.kind: {defect['kind']} applies to {'/'.join(kinds)} hops, "
                              f"{defect['hop']!r} is a {hop['kind']} hop")
        if defect["kind"] == "wrong_location":
            if hop["from"] != "erp":
                raise ConfigError(f"{where}.hop: wrong_location reads an ERP location; {defect['hop']!r} reads {hop['from']}")
            if defect["reads"] not in erp_locations:
                raise ConfigError(f"{where}.reads: unknown ERP location {defect['reads']!r}")
    all_orders = set().union(*(_channel_orders(doc, c) for c in CHANNELS if c in present)) if present else set()
    for i, ev in enumerate(doc.get("events", [])):
        where, system, kind = f"events[{i}]", ev["system"], ev["kind"]
        if system not in present:
            raise ConfigError(f"{where}.system: system {system!r} is not in this scenario")
        erp_kinds, channel_kinds = ("adjust", "receive", "ship"), ("order", "cancel", "set")
        if (system == "erp") != (kind in erp_kinds):
            allowed = erp_kinds if system == "erp" else channel_kinds
            raise ConfigError(f"{where}.kind: {system} events are {', '.join(allowed)} (got {kind})")
        if "sku" in ev:
            known = erp_skus if system == "erp" else _channel_skus(doc, system)
            if ev["sku"] not in known:
                raise ConfigError(f"{where}.sku: unknown {system} SKU {ev['sku']!r}")
        if system == "erp" and "location" in ev and ev["location"] not in erp_locations:
            raise ConfigError(f"{where}.location: unknown ERP location {ev['location']!r}")
        if kind == "cancel" and ev["order"] not in _channel_orders(doc, system):
            raise ConfigError(f"{where}.order: unknown {system} order {ev['order']!r}")
        if kind == "ship" and ev["channel_order"] not in all_orders | {s.get("channel_order_id") for s in erp.get("sales_orders", [])}:
            raise ConfigError(f"{where}.channel_order: unknown channel order {ev['channel_order']!r}")
    demand = doc.get("demand")
    if demand:
        for ch in demand["channels"]:
            if ch not in present:
                raise ConfigError(f"demand.channels.{ch}: channel {ch!r} is not in this scenario")
        if not sum(demand["channels"].values()) > 0:
            raise ConfigError("demand.channels: the proportions must not all be 0")
        glob = demand.get("skus", "*")
        if not doc.get("generate") and not any(fnmatch.fnmatchcase(s, glob) for s in erp_skus):
            raise ConfigError(f"demand.skus: {glob!r} matches no ERP SKU")
    for i, defect in enumerate((doc.get("notifications") or {}).get("defects", [])):
        if defect["system"] not in present:
            raise ConfigError(f"notifications.defects[{i}].system: system {defect['system']!r} is not in this scenario")
