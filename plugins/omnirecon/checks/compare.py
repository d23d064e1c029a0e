"""Comparison frames, one per check: compact, keyed rows that the GX suites validate."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from omnirecon.adapters import with_role
from omnirecon.checks import expected as ex
from omnirecon.checks.load import LedgerView
from omnirecon.checks.scope import EVERYTHING, Scope
from omnirecon.config import Settings
from omnirecon.model.canonical import ORDER_PHASE, ORDER_RANK

SELLABLE_TYPES = ("InvtPart", "Assembly")
REQUIRED_KINDS = ("inventory", "orders")      # listings are optional evidence
NEVER = 1e9                                    # age of a snapshot that does not exist
LOW_STOCK_WINDOW_DAYS = 14


@dataclass
class Comparison:
    frames: dict = field(default_factory=dict)   # check name -> DataFrame validated by GX
    inventory: pd.DataFrame | None = None        # the full drift frame (for diagnosis across channels)
    base: pd.DataFrame | None = None             # ERP expected base per (channel, sku, channel_location)
    unusable: list = field(default_factory=list)
    channels: list = field(default_factory=list)
    skus_checked: int = 0
    follow_lag: pd.DataFrame | None = None       # per channel (max lag, lagging SKUs): a shard's part of freshness


def joint_codes(left: pd.DataFrame, right: pd.DataFrame, cols: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One int64 key per row for the given columns, comparable across both frames (fast joins on ~1M rows)."""
    kl, kr = np.zeros(len(left), dtype="int64"), np.zeros(len(right), dtype="int64")
    for c in cols:
        codes, uniques = pd.factorize(pd.concat([left[c], right[c]], ignore_index=True))
        n = len(uniques) + 1
        kl, kr = kl * n + codes[:len(left)] + 1, kr * n + codes[len(left):] + 1
    return kl, kr


class SkuCodes:
    """One int code per SKU for all the frames of a reconcile, from one hash of each SKU string: the joins and
    membership tests on ~1M rows then run on ints instead of hashing the strings again each time."""

    def __init__(self, *series: pd.Series):
        parts = [s for s in series if s is not None]
        codes, uniques = pd.factorize(pd.concat(parts, ignore_index=True) if parts else pd.Series([], dtype=object))
        self.names = pd.Index(uniques)
        self.parts, at = [], 0
        for s in parts:
            self.parts.append(codes[at:at + len(s)])
            at += len(s)

    def of(self, values) -> np.ndarray:
        """Codes of other values (-1: a SKU none of the frames holds)."""
        return self.names.get_indexer(pd.Index(list(values) if isinstance(values, (set, frozenset)) else values))

    def table(self, *members: np.ndarray) -> np.ndarray:
        """A lookup by code: table[codes] says which rows hold one of the member SKUs (code -1: never)."""
        out = np.zeros(len(self.names) + 1, dtype=bool)
        for m in members:
            out[m[m >= 0]] = True
        out[-1] = False
        return out

    def position(self, codes: np.ndarray) -> np.ndarray:
        """A lookup by code: the row of a frame unique on SKU whose codes are given (-1: none)."""
        out = np.full(len(self.names) + 1, -1, dtype="int64")
        ok = codes >= 0
        out[codes[ok]] = np.flatnonzero(ok)
        out[-1] = -1
        return out


def of_skus(frame: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """frame["sku"].isin(rows["sku"]) for frames cut from one comparison (on their SKU codes when both have them)."""
    if "_sku" in frame and "_sku" in rows:
        return np.isin(frame["_sku"].to_numpy(), rows["_sku"].unique())
    return frame["sku"].isin(rows["sku"].unique()).to_numpy()


def add_by_key(left: pd.DataFrame, left_k, right: pd.DataFrame, right_k, cols: list[str]) -> pd.DataFrame:
    """Add right's cols to left (in place) where the int64 keys match: a left join on a right side that has
    one row per key (missing: NaN/NaT), without a merge's copies."""
    at = pd.Index(right_k).get_indexer(left_k)
    for c in cols:
        left[c] = right[c].set_axis(pd.RangeIndex(len(right)), copy=False).reindex(at).array   # keeps tz dtypes
    return left


def join_on_keys(left: pd.DataFrame, right: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """left.merge(right, on=keys, how="left") for a right side unique on keys (how the drift join runs)."""
    kl, kr = joint_codes(left, right, keys)
    return add_by_key(left.copy(deep=False), kl, right, kr, [c for c in right.columns if c not in keys])


def _filter(frame: pd.DataFrame, scope: Scope, col: str = "sku") -> pd.DataFrame:
    """The rows of SKUs in scope (the shard's and the glob's); everything for an unrestricted scope."""
    return frame if scope.everything or frame is None else frame[scope.sku_mask(frame[col])]


def _item_info(view: LedgerView, settings: Settings) -> pd.DataFrame:
    items = view.frame("erp", "listings")
    if items is None:
        return pd.DataFrame(columns=["sku", "item_type", "is_inactive"])
    return items[["sku", "item_type", "is_inactive"]].drop_duplicates("sku")


def build(view: LedgerView, settings: Settings, channels: list[str], scope: Scope = EVERYTHING,
          follow_lag_parts: list[pd.DataFrame] | None = None) -> Comparison:
    """The comparison frames of the checks in scope. A `global` scope takes the shards' follow-lag parts."""
    rx = scope.rx
    cmp = Comparison(channels=channels)
    systems = ["erp"] + channels
    cmp.unusable = [s for s in systems if any(not view.usable(s, k) for k in REQUIRED_KINDS)]
    if "freshness" in scope.checks:
        cmp.frames["freshness"] = _freshness(view, settings, systems)
    if scope.part == "global":
        cmp.frames["freshness"] = _with_follow_lag(cmp.frames["freshness"], merge_follow_lag(follow_lag_parts or []),
                                                   settings)
    if scope.part != "global":
        _build_sku_checks(cmp, view, settings, channels, scope)
    order_channels = [c for c in channels if view.usable(c, "orders")]
    erp_orders = view.frame("erp", "orders") if "erp" not in cmp.unusable else None
    if "order_missing" in scope.checks and erp_orders is not None and order_channels:
        chan_orders = _channel_orders(view, order_channels, ex.alias_frame(settings), rx)
        erp_o = _orders_for_skus(erp_orders, rx)
        cmp.frames["order_missing"] = _order_missing(chan_orders, erp_o, settings, view.now)
        matched = _matched_orders(chan_orders, erp_o)
        cmp.frames["order_sequence"] = _order_sequence(matched, view, ["erp"] + order_channels, rx)
        cmp.frames["order_status_mismatch"] = _order_status(matched, cmp.frames["order_sequence"], settings, view.now)
    return cmp


def _build_sku_checks(cmp: Comparison, view: LedgerView, settings: Settings, channels: list[str], scope: Scope):
    """inventory_drift, mapping, listing_state and low_stock for the SKUs in scope (+ this scope's follow lag)."""
    erp_ok = "erp" not in cmp.unusable
    erp_all = view.frame("erp", "inventory") if erp_ok else None   # the scope's SKUs + its bundles' components
    erp_inv = _filter(erp_all, scope)
    erp_orders = view.frame("erp", "orders") if erp_ok else None
    inv_channels = [c for c in channels if view.usable(c, "inventory")]
    aliases = ex.alias_frame(settings)
    items = _item_info(view, settings)
    bundles = {b["sku"] for b in settings["bundles"]}

    if erp_inv is not None:
        cmp.base = _filter(ex.expected_base(erp_all, settings, inv_channels), scope)
        observed = _observed(view, inv_channels, aliases, scope)
        listings = _listings(view, inv_channels, aliases, scope)
        codes = SkuCodes(erp_all["sku"], items["sku"], observed["sku"], listings["sku"], pd.Series(sorted(bundles), dtype=object))
        erp_c, item_c, obs_c, lst_c, bundle_c = codes.parts
        base_c = codes.of(cmp.base["sku"])
        observed["_sku"], listings = obs_c, listings.assign(_sku=lst_c)
        observed["erp_known"] = codes.table(erp_c, item_c, bundle_c)[obs_c]
        locs = ex.location_map(settings, channels)
        ch_codes, ch_names = pd.factorize(observed["channel"])
        mapped = np.zeros(len(observed), dtype=bool)
        for ch, grp in locs.groupby("channel"):
            if ch not in ch_names:
                continue
            on_ch = np.flatnonzero(ch_codes == ch_names.get_loc(ch))
            mapped[on_ch] = observed["channel_location"].take(on_ch).isin(set(grp["channel_location"])).to_numpy()
        observed["location_mapped"] = mapped
        at = codes.position(item_c)[obs_c]   # items are unique per SKU; -1: no ERP item
        for c in ("item_type", "is_inactive"):
            observed[c] = pd.Series(items[c].to_numpy(dtype=object), dtype=object).reindex(at).to_numpy()
        # per item, then per observed row (-1, no item: the appended True)
        type_ok = np.append((items["item_type"].isna() | items["item_type"].isin(SELLABLE_TYPES)).to_numpy(dtype=bool), True)
        active = np.append((items["is_inactive"] != True).to_numpy(dtype=bool), True)  # noqa: E712
        observed["item_sellable"] = (type_ok[at] | codes.table(bundle_c)[obs_c]) & active[at]
        cmp.base = cmp.base.assign(_sku=base_c)
        observed["_k"], cmp.base["_k"] = joint_codes(observed, cmp.base, ["channel", "_sku", "channel_location"])
        observed["unique_key"] = ~observed["_k"].duplicated(keep=False)
        unposted = _unposted(view, settings, channels, erp_orders)
        cmp.inventory = _drift(observed, cmp.base, listings, unposted, aliases, settings)
        cmp.frames["inventory_drift"] = cmp.inventory
        cmp.follow_lag = follow_lag(cmp.inventory, view.now, settings["tolerance_units"])
        if "freshness" in cmp.frames:
            cmp.frames["freshness"] = _with_follow_lag(cmp.frames["freshness"], cmp.follow_lag, settings)
        not_sellable = ~(items["item_type"].isna() | items["item_type"].isin(SELLABLE_TYPES)) | (items["is_inactive"] == True)  # noqa: E712
        sellable_base = ~codes.table(item_c[not_sellable.to_numpy(dtype=bool)], bundle_c)[base_c]
        cmp.frames["mapping"] = _mapping(observed, cmp.base[sellable_base], listings, settings, codes)
        cmp.base = cmp.base.drop(columns=["_k", "_sku"])
        cmp.frames["listing_state"] = _listing_state(cmp.inventory, listings)
        cmp.frames["low_stock"] = _low_stock(erp_inv, erp_orders, settings, view.now, scope)
        cmp.skus_checked = int(codes.table(erp_c).sum() if erp_inv is erp_all else erp_inv["sku"].nunique())


# --- inventory -------------------------------------------------------------------------------
def _observed(view, channels, aliases, scope) -> pd.DataFrame:
    parts = []
    for ch in channels:
        f = view.frame(ch, "inventory")
        p = pd.DataFrame({"channel": ch, "channel_sku": f["sku"], "channel_location": f["location"].astype(str),
                          "observed": f["available"].fillna(0).astype("int64"), "updated_at": f["updated_at"],
                          "row_id": f["id"], "snapshot_id": view.latest[(ch, "inventory")].id})
        parts.append(p)
    cols = ["channel", "channel_sku", "channel_location", "observed", "updated_at", "row_id", "snapshot_id"]
    obs = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    return _filter(ex.to_erp_sku(obs, aliases), scope)


def _listings(view, channels, aliases, scope) -> pd.DataFrame:
    parts = []
    for ch in channels:
        f = view.frame(ch, "listings")
        if f is None or f.empty:
            continue
        p = f[["sku", "state", "inventory_policy", "tracked", "issues"]].rename(columns={"sku": "channel_sku"})
        p.insert(0, "channel", ch)
        parts.append(p)
    if not parts:
        return pd.DataFrame(columns=["channel", "channel_sku", "sku", "units", "state", "inventory_policy", "tracked", "issues"])
    lst = ex.to_erp_sku(pd.concat(parts, ignore_index=True), aliases)
    return _filter(lst.drop_duplicates(["channel", "channel_sku"]), scope)


def _unposted(view, settings, channels, erp_orders) -> pd.DataFrame:
    if erp_orders is None:
        return pd.DataFrame()
    parts = [view.frame(c, "orders") for c in channels if view.usable(c, "orders")]
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return pd.DataFrame()
    orders = pd.concat(parts, ignore_index=True)
    return ex.unposted_orders(orders, erp_orders, view.now, settings["order_slas"]["ingest_minutes"])


def _drift(observed, base, listings, unposted, aliases, settings) -> pd.DataFrame:
    cols = ["channel", "channel_sku", "channel_location", "observed", "updated_at", "row_id", "snapshot_id", "sku", "units", "_k",
            "_sku"]
    eligible = observed.loc[(observed["erp_known"] & observed["location_mapped"] & observed["item_sellable"]
                             & observed["unique_key"]).to_numpy(), cols]
    frame = add_by_key(eligible.set_axis(pd.RangeIndex(len(eligible)), copy=False), eligible["_k"], base, base["_k"],
                       ["atp", "safety", "base", "erp_updated_at", "is_fba"])   # base: one row per key
    # stock the ERP has at a mapped location the channel carries the SKU for, but shows nowhere there
    missing = base[(base["base"] > 0).to_numpy() & ~np.isin(base["_k"].to_numpy(), eligible["_k"].to_numpy())]
    present = eligible[np.isin(eligible["_sku"].to_numpy(), missing["_sku"].unique())][["channel", "sku"]].drop_duplicates()
    missing = missing.merge(present, on=["channel", "sku"])
    if len(missing):
        missing = ex.default_channel_sku(settings, missing)
        missing["observed"], missing["updated_at"], missing["row_id"] = 0, pd.NaT, np.nan
        snap = eligible.drop_duplicates("channel").set_index("channel")["snapshot_id"]
        missing["snapshot_id"] = missing["channel"].map(snap)
        frame = pd.concat([frame, missing[frame.columns.intersection(missing.columns)]], ignore_index=True)
    frame["base"] = frame["base"].fillna(0).astype("int64")
    frame["atp"] = frame["atp"].fillna(0).astype("int64")
    frame["safety"] = frame["safety"].fillna(0).astype("int64")
    frame["is_fba"] = frame["channel_location"] == ex.FBA
    frame["expected_raw"] = frame["base"] // frame["units"]
    qty = ex.unposted_quantities(unposted, aliases) if len(unposted) else ex.unposted_quantities(pd.DataFrame(), aliases)
    frame["other_in_flight_units"] = ex.other_channels_in_flight(frame, qty)
    frame = ex.apply_unposted(frame, qty)
    frame["expected"] = (frame["expected_raw"] - frame["in_flight_units"] - frame["overdue_units"]).clip(lower=0)
    frame["delta"] = frame["observed"] - frame["expected"]
    # before the in-flight allowance (overdue orders are order_missing findings, not inventory ones)
    frame["raw_delta"] = frame["observed"] - (frame["expected_raw"] - frame["overdue_units"]).clip(lower=0)
    lst = listings[["channel", "channel_sku", "state", "inventory_policy", "tracked"]]
    plain = (lst["state"] == "active") & (lst["inventory_policy"].isna() | (lst["inventory_policy"] == "DENY")) \
        & (lst["tracked"].isna() | (lst["tracked"] == True))  # noqa: E712
    special = lst[~plain]   # plain listings (active, DENY, tracked) leave the listing columns empty
    for c in ("state", "inventory_policy", "tracked"):
        frame[c] = pd.Series(None, index=frame.index, dtype=object)
    touched = frame["channel_sku"].isin(set(special["channel_sku"])) if len(special) else None
    if touched is not None and touched.any():
        part = frame.loc[touched, ["channel", "channel_sku"]].reset_index().merge(special, on=["channel", "channel_sku"])
        frame.loc[part["index"].to_numpy(), ["state", "inventory_policy", "tracked"]] = \
            part[["state", "inventory_policy", "tracked"]].to_numpy()
    frame["sells_past_zero"] = frame["channel"].isin(with_role("storefront")) & (
        ((frame["inventory_policy"] == "CONTINUE") & (frame["expected"] == 0)) | (frame["tracked"] == False))  # noqa: E712
    frame["location"] = frame["channel_location"]
    frame["row"] = np.arange(len(frame))
    return frame


def _mapping(observed, base, listings, settings, codes: SkuCodes) -> pd.DataFrame:
    obs = observed[["channel", "sku", "channel_sku", "channel_location", "observed", "erp_known", "location_mapped",
                    "item_sellable", "item_type", "is_inactive", "row_id", "updated_at"]].copy(deep=False)
    obs["listed_on_channel"] = True
    # sellable ERP SKUs a channel shows nowhere (neither inventory nor listing)
    pos = np.flatnonzero((base["base"] > 0).to_numpy())
    ch_c, ch_names = pd.factorize(base["channel"].take(pos))
    width = len(codes.names) + 1   # groupby(["channel", "sku"], sort=False) on one int key per pair
    per = pd.Series(base["base"].take(pos).to_numpy()).groupby(
        ch_c.astype("int64") * width + base["_sku"].to_numpy(dtype="int64")[pos], sort=False).sum()
    key = per.index.to_numpy(dtype="int64")
    sellable = pd.DataFrame({"channel": ch_names.take(key // width).to_numpy(dtype=object),
                             "sku": codes.names.take(key % width).to_numpy(dtype=object),
                             "_sku": key % width, "base": per.to_numpy()})
    def pairs(frame):   # the same int key for the (channel, sku) pairs a channel shows (-1: a channel none sells)
        return ch_names.get_indexer(frame["channel"]).astype("int64") * width + frame["_sku"].to_numpy(dtype="int64")
    seen = np.concatenate([pairs(observed), pairs(listings)])
    absent = sellable[~pd.Series(key).isin(seen).to_numpy()].drop(columns="_sku")
    absent = ex.default_channel_sku(settings, absent).rename(columns={"base": "expected_units"})
    absent["listed_on_channel"], absent["erp_known"], absent["location_mapped"], absent["item_sellable"] = False, True, True, True
    absent["channel_location"] = ""
    frame = pd.concat([obs, absent.drop(columns=["units"])], ignore_index=True)
    frame["location"] = frame["channel_location"]
    frame["row"] = np.arange(len(frame))
    return frame


def _listing_state(drift, listings) -> pd.DataFrame:
    drift = drift[of_skus(drift, listings)]   # the listed SKUs' rows: the only sums the inner merge keeps
    stock = drift.groupby(["channel", "sku"], sort=False)["expected"].sum().rename("erp_expected").reset_index()
    frame = listings.merge(stock, on=["channel", "sku"])
    frame = frame[frame["erp_expected"] > 0][["channel", "sku", "channel_sku", "state", "erp_expected", "issues"]].copy()
    frame["row"] = np.arange(len(frame))
    return frame


def _low_stock(erp_inv, erp_orders, settings, now, scope) -> pd.DataFrame:
    selling = {l["erp"] for l in settings["locations"]}
    atp = ex.erp_atp(erp_inv)
    if selling:
        atp = atp[atp["erp_location"].isin(selling)]
    available = atp.groupby("sku", sort=False)["atp"].sum().rename("erp_available")
    since = pd.Timestamp(now) - pd.Timedelta(days=LOW_STOCK_WINDOW_DAYS)
    cols = ["sku", "erp_available", "daily_units", "cover_days", "row"]
    if erp_orders is None or erp_orders.empty:
        return pd.DataFrame(columns=cols)
    recent = erp_orders[(erp_orders["created_at"] >= since) & (erp_orders["status"] != "cancelled")]
    lines = recent[["lines"]].explode("lines").dropna()
    if lines.empty:
        return pd.DataFrame(columns=cols)
    sold = pd.DataFrame({"sku": lines["lines"].map(lambda l: l.get("sku")),
                         "qty": lines["lines"].map(lambda l: int(l.get("quantity") or 0))})
    daily = (sold.groupby("sku")["qty"].sum() / LOW_STOCK_WINDOW_DAYS).rename("daily_units")
    frame = pd.concat([available, daily], axis=1, join="inner").reset_index().rename(columns={"index": "sku"})
    frame = _filter(frame[frame["daily_units"] > 0], scope).copy()
    frame["cover_days"] = frame["erp_available"] / frame["daily_units"]
    frame["row"] = np.arange(len(frame))
    return frame[cols]


# --- orders ----------------------------------------------------------------------------------
def _orders_for_skus(orders: pd.DataFrame, rx) -> pd.DataFrame:
    if rx is None or orders is None:
        return orders
    keep = orders["lines"].map(lambda ls: any(rx.match(str(l.get("sku"))) for l in ls))
    return orders[keep]


def _channel_orders(view, channels, aliases, rx) -> pd.DataFrame:
    parts = []
    for ch in channels:
        f = view.frame(ch, "orders")
        if f is not None and len(f):
            f = f.copy()
            f["system"] = ch
            parts.append(f)
    if not parts:
        return pd.DataFrame(columns=["system", "order_id", "channel", "status", "created_at", "updated_at",
                                     "fulfilled_at", "fulfillment_channel", "erp_ref", "lines"])
    orders = pd.concat(parts, ignore_index=True)
    if rx is not None:   # channel SKUs -> ERP SKUs before matching
        amap = {(a["channel"], a["channel_sku"]): a["sku"] for a in aliases.to_dict("records")}
        keep = [any(rx.match(str(amap.get((c, l.get("sku")), l.get("sku")))) for l in ls)
                for c, ls in zip(orders["channel"], orders["lines"])]
        orders = orders[keep]
    return orders


def _order_missing(chan_orders, erp_orders, settings, now) -> pd.DataFrame:
    ingest = settings["order_slas"]["ingest_minutes"]
    unposted = ex.unposted_orders(chan_orders, erp_orders, now, ingest)
    frame = chan_orders[["channel", "order_id", "status", "created_at", "updated_at", "lines"]].copy()
    frame = frame.merge(unposted[["channel", "order_id", "age_minutes"]], on=["channel", "order_id"], how="left")
    frame = frame.rename(columns={"age_minutes": "unposted_age_minutes"})
    frame["row"] = np.arange(len(frame))
    return frame


def _matched_orders(chan_orders, erp_orders) -> pd.DataFrame:
    erp = erp_orders[["channel", "order_id", "status", "updated_at", "fulfilled_at", "erp_ref"]].rename(
        columns={"status": "erp_status", "updated_at": "erp_updated_at", "fulfilled_at": "erp_fulfilled_at"})
    ch = chan_orders[["channel", "order_id", "status", "updated_at", "fulfillment_channel"]].rename(
        columns={"status": "channel_status", "updated_at": "channel_updated_at"})
    matched = ch.merge(erp.drop_duplicates(["channel", "order_id"]), on=["channel", "order_id"])
    matched["channel_phase"] = matched["channel_status"].map(ORDER_PHASE)
    matched["erp_phase"] = matched["erp_status"].map(ORDER_PHASE)
    return matched


def _order_sequence(matched, view, systems, rx) -> pd.DataFrame:
    m = matched.copy()
    m["system"] = m["channel"]
    m["shipped_without_erp_fulfilment"] = (m["channel"].isin(["amazon", "walmart"]) & (m["channel_phase"] == "shipped")
                                           & m["erp_phase"].isin(["open", "partial"]) & m["erp_fulfilled_at"].isna()
                                           & (m["fulfillment_channel"] != "AFN"))
    phases = m["channel_phase"] + "/" + m["erp_phase"]
    m["cancelled_vs_shipped"] = phases.isin(["cancelled/shipped", "shipped/cancelled"])
    m["went_backwards"] = False
    m["previous_status"] = None
    back = _went_backwards(view, systems, rx)
    frame = pd.concat([m, back], ignore_index=True) if len(back) else m
    for c in ("shipped_without_erp_fulfilment", "cancelled_vs_shipped", "went_backwards"):
        frame[c] = frame[c].astype("boolean").fillna(False).astype(bool)
    frame["row"] = np.arange(len(frame))
    return frame


def _went_backwards(view, systems, rx) -> pd.DataFrame:
    """Orders whose status moved back along the lifecycle between a system's last two snapshots."""
    parts = []
    for system in systems:
        hist = view.history.get((system, "orders")) or []
        cur = view.frame(system, "orders")
        if not hist or cur is None or cur.empty:
            continue
        prev = hist[0][1][["channel", "order_id", "status"]].rename(columns={"status": "previous_status"})
        j = _orders_for_skus(cur, rx)[["channel", "order_id", "status", "updated_at"]].merge(prev, on=["channel", "order_id"])
        now_rank, prev_rank = j["status"].map(ORDER_RANK), j["previous_status"].map(ORDER_RANK)
        moved_back = (now_rank < prev_rank) & (j["previous_status"] != "cancelled") & (j["status"] != "cancelled")
        back = j[moved_back].copy()
        if len(back):
            back["system"] = system
            back["channel_status"] = back["status"]
            back["went_backwards"] = True
            parts.append(back.drop(columns=["status"]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _order_status(matched, sequence, settings, now) -> pd.DataFrame:
    flagged = sequence[sequence["shipped_without_erp_fulfilment"] | sequence["cancelled_vs_shipped"]]
    keys = set(zip(flagged["channel"], flagged["order_id"]))
    pair = pd.Series(list(zip(matched["channel"], matched["order_id"])), index=matched.index, dtype=object)
    settled_before = pd.Timestamp(now) - pd.Timedelta(minutes=settings["freshness_minutes"])
    last_change = matched[["channel_updated_at", "erp_updated_at"]].max(axis=1)
    frame = matched[~pair.isin(keys) & (last_change.isna() | (last_change <= settled_before))].copy()
    frame["row"] = np.arange(len(frame))
    return frame


# --- freshness -------------------------------------------------------------------------------
def _freshness(view: LedgerView, settings: Settings, systems: list[str]) -> pd.DataFrame:
    rows = []
    now = pd.Timestamp(view.now)
    for system in systems:
        for kind in ("inventory", "listings", "orders"):
            att = view.attempts.get((system, kind))
            if att is None and kind not in REQUIRED_KINDS:
                continue
            latest = view.latest.get((system, kind))
            age = (now - pd.Timestamp(latest.fetched_at)).total_seconds() / 60 if latest and latest.fetched_at else NEVER
            rows.append({"system": system, "channel": system, "kind": kind, "age_minutes": age,
                         "attempt_complete": att is not None and att.status == "complete",
                         "attempt_status": att.status if att else "missing",
                         "attempt_error": att.error if att else "no snapshot taken",
                         "snapshot_id": latest.id if latest else None})
    frame = pd.DataFrame(rows, columns=["system", "channel", "kind", "age_minutes", "attempt_complete",
                                        "attempt_status", "attempt_error", "snapshot_id"])
    frame["row"] = np.arange(len(frame))
    return frame


def merge_follow_lag(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The shards' follow lags as one (their SKUs are disjoint: lagging SKUs add up, the worst lag wins)."""
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return pd.DataFrame(columns=["channel", "follow_lag_minutes", "lagging_skus"])
    return (pd.concat(parts, ignore_index=True).groupby("channel", sort=True)
            .agg(follow_lag_minutes=("follow_lag_minutes", "max"), lagging_skus=("lagging_skus", "sum")).reset_index())


def _with_follow_lag(fresh: pd.DataFrame, lag: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    if lag.empty:
        return fresh.assign(follow_lag_minutes=np.nan, lagging_skus=0)
    rows = lag.assign(system=lag["channel"], kind="follow", age_minutes=np.nan, attempt_complete=True,
                      attempt_status="complete", attempt_error=None, snapshot_id=None)
    frame = pd.concat([fresh.drop(columns="row"), rows], ignore_index=True)
    frame["row"] = np.arange(len(frame))
    return frame


def follow_lag(drift: pd.DataFrame, now, tolerance: int = 0) -> pd.DataFrame:
    """Per channel: rows still differing after an ERP change the channel never followed, with the lag in minutes."""
    others = drift["other_in_flight_units"] if "other_in_flight_units" in drift else 0
    in_flight = (drift["delta"] < 0) & (-drift["delta"] <= others)   # other channels' orders explain the gap
    lagging = drift[(drift["delta"].abs() > tolerance) & ~in_flight & drift["erp_updated_at"].notna()
                    & (drift["updated_at"].isna() | (drift["updated_at"] < drift["erp_updated_at"]))]
    if lagging.empty:   # (also a shard with no SKUs, whose empty columns carry no datetime dtype)
        return pd.DataFrame(columns=["channel", "follow_lag_minutes", "lagging_skus"])
    lag = (pd.Timestamp(now) - lagging["erp_updated_at"]).dt.total_seconds() / 60
    out = lagging.assign(lag_minutes=lag).groupby("channel").agg(
        follow_lag_minutes=("lag_minutes", "max"), lagging_skus=("sku", "nunique")).reset_index()
    return out
