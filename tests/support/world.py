"""A small world for the world-engine tests: one ERP location mapped everywhere, a DROPSHIP location mapped
nowhere, N plain SKUs on every channel; hops, defects, events and demand are added per test."""
from __future__ import annotations

import copy
import statistics

from omnirecon_contract.scenario import from_dict
from omnirecon_sandbox.clock import ManualClock
from omnirecon_sandbox.core import Sandbox

SHOP_LOC = "gid://shopify/Location/1001"


def world_doc(skus: int = 3, on_hand: int = 10, dropship: int = 25, **blocks) -> dict:
    names = [f"SKU-{i:03d}" for i in range(skus)]
    doc = {
        "version": 1, "name": "world-test", "as_of": "now",
        "settings": {"locations": [{"erp": "WH-EAST", "shopify": SHOP_LOC, "walmart_ship_node": "10001",
                                    "amazon": "MFN"}],
                     "channels": {"shopify": {"safety_stock": 0}, "amazon": {"safety_stock": 2},
                                  "walmart": {"safety_stock": 1}}},
        "erp": {"locations": [{"id": 1, "name": "WH-EAST"}, {"id": 2, "name": "DROPSHIP"}],
                "items": [{"id": 500 + i, "itemid": s, "type": "InvtPart",
                           "locations": [{"location": "WH-EAST", "on_hand": on_hand, "committed": 0},
                                         {"location": "DROPSHIP", "on_hand": dropship, "committed": 0}]}
                          for i, s in enumerate(names)],
                "sales_orders": []},
        "shopify": {"locations": [{"id": SHOP_LOC, "name": "East", "active": True}],
                    "variants": [{"id": f"gid://shopify/ProductVariant/{i + 1}", "sku": s, "inventory_policy": "DENY",
                                  "levels": [{"location_id": SHOP_LOC, "available": on_hand}]}
                                 for i, s in enumerate(names)], "orders": []},
        "amazon": {"listings": [{"sku": s, "quantity": max(0, on_hand - 2), "status": ["BUYABLE", "DISCOVERABLE"]}
                                for s in names], "orders": []},
        "walmart": {"items": [{"sku": s, "ship_node": "10001", "quantity": max(0, on_hand - 1)} for s in names],
                    "orders": []},
    }
    doc.update(copy.deepcopy(blocks))
    return doc


def manual_world(doc: dict) -> Sandbox:
    scenario = from_dict(doc)
    return Sandbox(scenario, world_clock=ManualClock(scenario.as_of))


def outcomes(sb: Sandbox, hop: str) -> list[str]:
    return [e["outcome"] for e in sb.world.hop_log if e["hop"] == hop]


def delays(sb: Sandbox, hop: str, outcome: str = "carried") -> list[float]:
    return [e["delay_s"] for e in sb.world.hop_log if e["hop"] == hop and e["outcome"] == outcome]


def quartiles(values: list[float]) -> list[float]:
    return statistics.quantiles(values, n=4)
