"""What one reconcile task checks: which checks (all, the per-SKU ones of a shard, or the global ones) and which
SKUs (a SKU-hash shard and/or the sku_filter glob).

A large catalog is reconciled as n `skus` tasks (one per shard, each reading only its shard's rows) and one
`global` task (freshness and the order checks, which are keyed by system or order, not by SKU).
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from omnirecon.model.sharding import WHOLE, Shard

SKU_CHECKS = ("inventory_drift", "mapping", "listing_state", "low_stock")
GLOBAL_CHECKS = ("freshness", "order_missing", "order_status_mismatch", "order_sequence")
PARTS = {"all": SKU_CHECKS + GLOBAL_CHECKS, "skus": SKU_CHECKS, "global": GLOBAL_CHECKS}


@dataclass(frozen=True)
class Scope:
    part: str = "all"            # all | skus | global
    shard: Shard = WHOLE         # only with part "skus"
    glob: str | None = None      # the sku_filter param, e.g. TEE-*

    def __post_init__(self):
        if self.part not in PARTS:
            raise ValueError(f"scope part {self.part!r}: one of {', '.join(PARTS)}")
        if self.part != "skus" and not self.shard.whole:
            raise ValueError("only the per-SKU checks are sharded")

    @property
    def checks(self) -> tuple:
        return PARTS[self.part]

    @property
    def label(self) -> str:
        """Findings of a run are replaced per label: a retried shard replaces its own findings only."""
        return self.shard.label if self.part == "skus" else self.part

    @cached_property
    def rx(self):
        return re.compile(fnmatch.translate(self.glob)) if self.glob else None

    @property
    def everything(self) -> bool:
        return self.shard.whole and not self.glob

    def sku_ok(self, sku) -> bool:
        if sku is None:
            return self.glob is None and self.shard.whole
        rx = self.rx
        return self.shard.contains(sku) and (rx is None or bool(rx.match(str(sku))))

    def sku_mask(self, skus: pd.Series) -> np.ndarray:
        mask = self.shard.mask(skus)
        if self.glob:
            mask &= skus.astype(str).str.match(self.rx).to_numpy(dtype=bool)
        return mask

    def owns(self, check: str, sku) -> bool:
        """Was this (check, sku) entity checked by a task of this scope (so it may resolve there)?"""
        return check in self.checks and (self.everything or self.sku_ok(sku))

    def extra_skus(self, settings) -> dict[str, set]:
        """Rows a shard reads by name beyond its buckets, so that every SKU it owns is whole: ERP components of
        its bundles, and channel SKUs aliased to its ERP SKUs (their own bucket may be another shard's)."""
        if self.shard.whole:
            return {}
        out: dict[str, set] = {}
        for bundle in settings["bundles"]:
            if self.shard.contains(bundle["sku"]):
                out.setdefault("erp", set()).update(c["sku"] for c in bundle["components"])
        for alias in settings["sku_aliases"]:
            if self.shard.contains(alias["sku"]):
                out.setdefault(alias["channel"], set()).add(alias["channel_sku"])
        return out


EVERYTHING = Scope()
