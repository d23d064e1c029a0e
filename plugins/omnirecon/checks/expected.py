"""What each channel should show, derived from the ERP (shared/contracts/scenario.md), vectorised.

expected (ERP units) = max(0, sum over the channel location's mapped ERP locations of (on_hand - committed)
                           - safety stock); bundles: min over components of floor(component / qty);
channel quantity = floor(expected / units_per_channel_unit). FBA: ERP FBA stock, no safety stock, never pushed.
In-flight: channel orders not yet in the ERP reduce what the channel should show.
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from omnirecon.adapters import get_adapter
from omnirecon.config import Settings

FBA = "FBA"
OPEN_STATUSES = ("placed", "acknowledged", "partially_shipped")


def location_map(settings: Settings, channels: list[str]) -> pd.DataFrame:
    """Rows (channel, erp_location, channel_location) from settings.locations."""
    keys = {ch: get_adapter(ch).location_key for ch in channels}
    rows = [(ch, loc["erp"], str(loc[keys[ch]])) for ch in channels for loc in settings.mapped_locations(keys[ch])]
    return pd.DataFrame(rows, columns=["channel", "erp_location", "channel_location"])


def alias_frame(settings: Settings) -> pd.DataFrame:
    """Rows (channel, channel_sku, sku, units) for every SKU alias."""
    rows = [(a["channel"], a["channel_sku"], a["sku"], int(a.get("units_per_channel_unit", 1)))
            for a in settings["sku_aliases"]]
    return pd.DataFrame(rows, columns=["channel", "channel_sku", "sku", "units"]).drop_duplicates(["channel", "channel_sku"])


def to_erp_sku(frame: pd.DataFrame, aliases: pd.DataFrame, sku_col: str = "channel_sku") -> pd.DataFrame:
    """Add `sku` (ERP SKU) and `units` to a frame with channel + channel SKU columns."""
    if aliases.empty:   # a shallow copy: the new columns do not touch the caller's frame
        out = frame.copy(deep=False)
        out["sku"], out["units"] = out[sku_col], 1
        return out
    out = frame.merge(aliases.rename(columns={"channel_sku": sku_col}), on=["channel", sku_col], how="left")
    out["sku"] = out["sku"].fillna(out[sku_col])
    out["units"] = pd.to_numeric(out["units"]).fillna(1).astype("int64")
    return out


def default_channel_sku(settings: Settings, frame: pd.DataFrame) -> pd.DataFrame:
    """channel_sku and units for (channel, sku) rows that have no observed row: the first alias, else the SKU."""
    first = alias_frame(settings).drop_duplicates(["channel", "sku"])
    out = frame.merge(first.rename(columns={"channel_sku": "_alias", "units": "_units"}), on=["channel", "sku"], how="left")
    out["channel_sku"] = out["_alias"].fillna(out["sku"])
    out["units"] = out["_units"].fillna(1).astype("int64")
    return out.drop(columns=["_alias", "_units"])


def safety_stock(settings: Settings, frame: pd.DataFrame) -> pd.Series:
    """Safety stock per (channel, sku) row: the override, else the channel default."""
    default = frame["channel"].map({c: int(v.get("safety_stock", 0)) for c, v in settings["channels"].items()}).fillna(0)
    overrides = {(o["channel"], o["sku"]): int(o["units"]) for o in settings["safety_stock_overrides"]}
    if not overrides:
        return default.astype("int64")
    keys = pd.Series(list(zip(frame["channel"], frame["sku"])), index=frame.index)
    return keys.map(overrides).fillna(default).astype("int64")


def erp_atp(erp_inventory: pd.DataFrame) -> pd.DataFrame:
    """ERP rows with atp = on_hand - committed (available when on_hand is absent)."""
    inv = erp_inventory[["sku", "location", "on_hand", "committed", "available", "updated_at"]].copy()
    atp = inv["on_hand"].fillna(inv["available"]).fillna(0) - inv["committed"].fillna(0)
    inv["atp"] = atp.where(inv["on_hand"].notna(), inv["available"].fillna(0)).astype("int64")
    return inv.rename(columns={"location": "erp_location", "updated_at": "erp_updated_at"})


def expected_base(erp_inventory: pd.DataFrame, settings: Settings, channels: list[str]) -> pd.DataFrame:
    """Per (channel, sku, channel_location): atp, safety, base (ERP units after safety stock), erp_updated_at."""
    locs = location_map(settings, channels)
    cols = ["channel", "sku", "channel_location", "atp", "safety", "base", "erp_updated_at", "is_fba"]
    if locs.empty or erp_inventory is None or erp_inventory.empty:
        return pd.DataFrame(columns=cols)
    atp = erp_atp(erp_inventory)
    codes, names = pd.factorize(atp["erp_location"])
    parts, takes = [], []   # atp.merge(locs, on="erp_location"), one slice per mapped location (few, against ~1M rows)
    for ch, erp_loc, ch_loc in locs.itertuples(index=False):
        rows = np.flatnonzero(codes == names.get_indexer([erp_loc])[0]) if erp_loc in names else np.array([], dtype="int64")
        part = atp.take(rows)
        part["channel"], part["channel_location"] = ch, ch_loc
        parts.append(part)
        takes.append(rows)
    inv = pd.concat(parts, ignore_index=True)
    if locs.duplicated(["channel", "channel_location"]).any() or _repeats_a_slot(atp, locs, takes):
        grouped = (inv.groupby(["channel", "sku", "channel_location"], sort=False)
                   .agg(atp=("atp", "sum"), erp_updated_at=("erp_updated_at", "max")).reset_index())
    else:   # one ERP row per channel slot: nothing to sum
        grouped = inv[["channel", "sku", "channel_location", "atp", "erp_updated_at"]].reset_index(drop=True)
    grouped["is_fba"] = grouped["channel_location"] == FBA
    grouped["safety"] = np.where(grouped["is_fba"], 0, safety_stock(settings, grouped))
    grouped["base"] = (grouped["atp"] - grouped["safety"]).clip(lower=0)
    grouped = _add_bundles(grouped, settings)
    return grouped[cols]


def _repeats_a_slot(atp: pd.DataFrame, locs: pd.DataFrame, takes: list[np.ndarray]) -> bool:
    """inv.duplicated(["channel", "sku", "erp_location"]).any() for inv = the ERP rows taken per mapped location,
    on int codes (one factorize of the ERP's SKUs instead of hashing every taken row's strings)."""
    sku, _ = pd.factorize(atp["sku"])
    loc, _ = pd.factorize(atp["erp_location"])
    channel, _ = pd.factorize(locs["channel"])
    key = np.concatenate([(channel[i] + 1) * (len(atp) + 1) ** 2 + (loc[t] + 1) * (len(atp) + 1) + sku[t] + 1
                          for i, t in enumerate(takes)] or [np.array([], dtype="int64")])
    return bool(pd.Series(key.astype("int64")).duplicated().any())


def _add_bundles(base: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """A bundle row per (channel, channel_location): min over components of floor(component base / qty)."""
    if not settings["bundles"]:
        return base
    frames = [base]
    for bundle in settings["bundles"]:
        parts = []
        for comp in bundle["components"]:
            c = base[base["sku"] == comp["sku"]][["channel", "channel_location", "base", "erp_updated_at", "is_fba"]].copy()
            c["base"] = c["base"] // int(comp["qty"])
            parts.append(c)
        slots = base[["channel", "channel_location", "is_fba"]].drop_duplicates().reset_index(drop=True)
        rows = slots.copy()
        bases, stamps = [np.full(len(slots), np.inf)], []
        for c in parts:   # a component with no stock at a slot makes the bundle 0 there
            joined = slots.merge(c, on=["channel", "channel_location", "is_fba"], how="left")
            bases.append(joined["base"].fillna(0).to_numpy(dtype=float))
            stamps.append(joined["erp_updated_at"])
        rows["base"] = np.minimum.reduce(bases)
        rows["erp_updated_at"] = pd.concat(stamps, axis=1).max(axis=1) if stamps else pd.NaT
        rows["sku"] = bundle["sku"]
        rows["base"] = rows["base"].replace(np.inf, 0).astype("int64")
        rows["atp"], rows["safety"] = rows["base"], 0
        frames.append(rows)
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else base
    return out.drop_duplicates(["channel", "sku", "channel_location"], keep="last")


def unposted_orders(channel_orders: pd.DataFrame, erp_orders: pd.DataFrame | None, now: datetime,
                    ingest_minutes: int) -> pd.DataFrame:
    """Channel orders (not cancelled) the ERP has not recorded, with age and in_flight (younger than the SLA)."""
    cols = list(channel_orders.columns) + ["age_minutes", "in_flight"]
    if channel_orders.empty:
        return pd.DataFrame(columns=cols)
    known = set(zip(erp_orders["channel"], erp_orders["order_id"])) if erp_orders is not None and len(erp_orders) else set()
    keys = pd.Series(list(zip(channel_orders["channel"], channel_orders["order_id"])), index=channel_orders.index)
    out = channel_orders[~keys.isin(known) & (channel_orders["status"] != "cancelled")].copy()
    out["age_minutes"] = (pd.Timestamp(now) - out["created_at"]).dt.total_seconds() / 60.0
    out["in_flight"] = out["age_minutes"] <= ingest_minutes
    return out


def unposted_quantities(unposted: pd.DataFrame, aliases: pd.DataFrame) -> pd.DataFrame:
    """Per (channel, sku, location_kind): units in unposted orders, split in_flight / overdue, with order ids.

    location_kind is FBA for Amazon AFN orders, else "" (any non-FBA location of the channel)."""
    cols = ["channel", "sku", "location_kind", "in_flight_units", "overdue_units", "order_ids"]
    if unposted.empty:
        return pd.DataFrame(columns=cols)
    lines = unposted[["channel", "order_id", "in_flight", "fulfillment_channel", "lines"]].explode("lines").dropna(subset=["lines"])
    if lines.empty:
        return pd.DataFrame(columns=cols)
    lines["channel_sku"] = lines["lines"].map(lambda l: l.get("sku"))
    lines["qty"] = lines["lines"].map(lambda l: int(l.get("quantity") or 0) - int(l.get("shipped") or 0))
    lines = to_erp_sku(lines.drop(columns="lines"), aliases)
    lines["location_kind"] = np.where(lines["fulfillment_channel"] == "AFN", FBA, "")
    lines["in_flight_units"] = np.where(lines["in_flight"], lines["qty"], 0)
    lines["overdue_units"] = np.where(lines["in_flight"], 0, lines["qty"])
    return (lines.groupby(["channel", "sku", "location_kind"], sort=False)
            .agg(in_flight_units=("in_flight_units", "sum"), overdue_units=("overdue_units", "sum"),
                 order_ids=("order_id", lambda s: sorted(set(s)))).reset_index())


def other_channels_in_flight(frame: pd.DataFrame, unposted_qty: pd.DataFrame) -> np.ndarray:
    """Per row: units (in the row's channel units) of in-flight orders for its SKU on the OTHER channels. The ERP
    has not recorded them yet, so its ATP has not fallen by them, while a channel synced from another channel may
    already show the lower count."""
    if unposted_qty.empty or frame.empty:
        return np.zeros(len(frame), dtype="int64")
    per = unposted_qty.groupby(["channel", "sku"], sort=False)["in_flight_units"].sum()
    total = frame["sku"].map(per.groupby(level="sku").sum()).fillna(0).to_numpy()
    own = per.reindex(pd.MultiIndex.from_arrays([frame["channel"], frame["sku"]])).fillna(0).to_numpy()
    return ((total - own) // frame["units"].to_numpy()).astype("int64")


def apply_unposted(frame: pd.DataFrame, unposted_qty: pd.DataFrame) -> pd.DataFrame:
    """Add in_flight_units/overdue_units/unposted_orders to (channel, sku, channel_location) rows.

    Units of non-FBA orders are charged to the channel location with the largest expected quantity."""
    frame = frame.copy(deep=False)   # new columns only: no copy of the (large) frame's data
    frame["in_flight_units"], frame["overdue_units"], frame["unposted_orders"] = 0, 0, np.nan
    affected = frame["sku"].isin(set(unposted_qty["sku"]))
    if not affected.any():
        return frame
    rest = frame[~affected]
    frame = frame[affected].drop(columns=["in_flight_units", "overdue_units", "unposted_orders"])
    frame["location_kind"] = np.where(frame["channel_location"] == FBA, FBA, "")
    rank = frame.sort_values("expected_raw", ascending=False, kind="stable").groupby(
        ["channel", "sku", "location_kind"], sort=False).cumcount()
    frame["_first"] = rank.reindex(frame.index) == 0
    merged = frame.merge(unposted_qty, on=["channel", "sku", "location_kind"], how="left")
    charged = merged["_first"].to_numpy()
    for c in ("in_flight_units", "overdue_units"):
        merged[c] = np.where(charged, pd.to_numeric(merged[c], errors="coerce").fillna(0), 0).astype("int64")
    merged["unposted_orders"] = merged["order_ids"].where(charged)   # NaN where nothing is charged
    merged = merged.drop(columns=["_first", "order_ids", "location_kind"])
    return pd.concat([rest, merged], ignore_index=True)
