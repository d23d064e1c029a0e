"""SKU-hash shards: how a large catalog's reconciliation is split over mapped tasks.

Every inventory and listing row is landed with `sku_bucket` = crc32(sku) mod BUCKETS (a pure function of the
row's SKU as the system shows it). Shard i of n owns the ERP SKUs whose bucket b has b mod n == i, so any
n <= BUCKETS splits the catalog evenly and a shard's rows are read by an indexed `sku_bucket IN (...)`.
Channel rows are assigned by their ERP SKU (after alias resolution), so alias rows are read by name.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # numpy/pandas only where a mask is computed: DAG files import this module
    import numpy as np
    import pandas as pd

BUCKETS = 1024


def sku_bucket(sku) -> int:
    return zlib.crc32(str(sku).encode("utf-8")) % BUCKETS


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self):
        if not (1 <= self.count <= BUCKETS and 0 <= self.index < self.count):
            raise ValueError(f"shard {self.index} of {self.count}: need 0 <= index < count <= {BUCKETS}")

    @property
    def label(self) -> str:
        return f"{self.index + 1}/{self.count}"

    @property
    def whole(self) -> bool:
        return self.count == 1

    def buckets(self) -> list[int]:
        return list(range(self.index, BUCKETS, self.count))

    def contains(self, sku) -> bool:
        return self.whole or (sku is not None and sku_bucket(sku) % self.count == self.index)

    def mask(self, skus: pd.Series) -> np.ndarray:
        """Vectorised contains() over a Series of SKUs."""
        import numpy as np
        import pandas as pd

        if self.whole:
            return np.ones(len(skus), dtype=bool)
        codes, uniques = pd.factorize(skus.astype(str), sort=False)
        owned = np.fromiter((sku_bucket(u) % self.count == self.index for u in uniques), dtype=bool, count=len(uniques))
        return np.where(codes >= 0, owned[np.maximum(codes, 0)], False)

    @classmethod
    def parse(cls, label: str) -> "Shard":
        """'3/8' -> Shard(2, 8) (labels count from 1, as people do)."""
        i, n = (int(x) for x in str(label).split("/"))
        return cls(i - 1, n)


WHOLE = Shard(0, 1)


def shard_count(skus: int, skus_per_shard: int, max_shards: int) -> int:
    """Shards needed so none holds more than skus_per_shard SKUs (at least 1, at most max_shards)."""
    if skus_per_shard <= 0:
        raise ValueError("skus_per_shard must be > 0")
    return max(1, min(max_shards, BUCKETS, -(-skus // skus_per_shard)))
