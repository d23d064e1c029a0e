"""Where did the event die? The four-layer decision tree (shared/domain.md) for inventory drift, vectorised.

Order of the rules (first match wins):
  in_flight         the difference is covered by channel orders the ERP has not recorded yet (within SLA)
  location_mapping  the channel shows what another (unmapped) ERP location holds
  L1 (policy)       Shopify sells past zero (inventory policy CONTINUE) or does not track the item
  L2                one marketplace alone differs (or its listing is not buyable)
  L4                the ERP went to zero and nothing followed (quantity-threshold trigger), or the storefront is
                    right while every marketplace shows zero
  L3                the channel still shows the ERP's previous value, or has not followed an ERP change for
                    longer than freshness_minutes
  L1                the storefront alone is wrong while the ERP is right
  unknown
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from omnirecon.adapters import with_role
from omnirecon.checks import expected as ex
from omnirecon.checks.compare import of_skus
from omnirecon.checks.load import LedgerView
from omnirecon.config import Settings


def previous_erp_expected(view: LedgerView, settings: Settings, rows: pd.DataFrame) -> pd.Series:
    """Per failing row: the list of channel quantities the ERP's earlier snapshots implied (newest first)."""
    out = pd.Series([[] for _ in range(len(rows))], index=rows.index, dtype=object)
    keys = ["channel", "sku", "channel_location"]
    for _info, prev in view.history.get(("erp", "inventory"), []):
        prev = prev[prev["sku"].isin(rows["sku"].unique())]
        base = ex.expected_base(prev, settings, list(rows["channel"].unique()))
        j = rows[keys + ["units"]].merge(base[keys + ["base"]], on=keys, how="left")
        vals = (j["base"] // j["units"]).to_numpy()
        for pos, v in enumerate(vals):
            if not np.isnan(v):
                out.iat[pos] = out.iat[pos] + [int(v)]
    return out


def other_location_match(view: LedgerView, settings: Settings, rows: pd.DataFrame) -> pd.Series:
    """The ERP location (not mapped to that channel location) whose quantity the channel shows, else None."""
    erp = view.frame("erp", "inventory")
    result = pd.Series([None] * len(rows), index=rows.index, dtype=object)
    if erp is None or rows.empty:
        return result
    atp = ex.erp_atp(erp[erp["sku"].isin(rows["sku"].unique())])[["sku", "erp_location", "atp"]]
    locs = ex.location_map(settings, list(rows["channel"].unique()))
    cand = rows[["channel", "sku", "channel_location", "observed", "safety", "units", "expected", "expected_raw"]] \
        .reset_index().merge(atp, on="sku")
    mapped = cand.merge(locs, on=["channel", "erp_location", "channel_location"], how="left", indicator=True)
    cand = cand[(mapped["_merge"] == "left_only").to_numpy()]
    shown = ((cand["atp"] - cand["safety"]).clip(lower=0) // cand["units"])
    hit = cand[(cand["observed"] != 0) & (cand["observed"] != cand["expected_raw"])
               & ((cand["observed"] == shown) | (cand["observed"] == cand["atp"]))]
    first = hit.drop_duplicates("index").set_index("index")["erp_location"]
    result.loc[first.index] = first
    return result


def diagnose_drift(view: LedgerView, settings: Settings, drift: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Add diagnosis + the facts behind it to failing drift rows (a subset of the full drift frame)."""
    rows = rows.copy()
    if rows.empty:
        return rows.assign(diagnosis=pd.Series(dtype=object))
    tol = int(settings["tolerance_units"])
    now = pd.Timestamp(view.now)
    fresh = pd.Timedelta(minutes=settings["freshness_minutes"])

    storefronts, marketplaces = with_role("storefront"), with_role("marketplace")
    same_skus = drift[of_skus(drift, rows)]
    differs = same_skus["delta"].abs() > tol
    per_sku = pd.DataFrame({
        "n_present": same_skus.groupby("sku")["channel"].nunique(),
        "n_differing": same_skus[differs].groupby("sku")["channel"].nunique(),
        "storefront_differs": same_skus[differs & same_skus["channel"].isin(storefronts)].groupby("sku").size() > 0,
        "storefront_present": same_skus[same_skus["channel"].isin(storefronts)].groupby("sku").size() > 0,
        "n_marketplaces": same_skus[same_skus["channel"].isin(marketplaces)].groupby("sku")["channel"].nunique(),
        "n_marketplaces_zero": same_skus[same_skus["channel"].isin(marketplaces) & (same_skus["observed"] == 0)
                                         & differs].groupby("sku")["channel"].nunique(),
    })
    for col in ("n_differing", "n_marketplaces", "n_marketplaces_zero"):
        per_sku[col] = per_sku[col].fillna(0).astype("int64")
    for col in ("storefront_differs", "storefront_present"):
        per_sku[col] = per_sku[col].astype("boolean").fillna(False).astype(bool)
    rows = rows.join(per_sku, on="sku")
    rows["previous_erp_values"] = previous_erp_expected(view, settings, rows)
    rows["shows_previous"] = [int(o) in p and int(o) != int(e) for o, p, e in
                              zip(rows["observed"], rows["previous_erp_values"], rows["expected_raw"])]
    rows["not_followed"] = (rows["erp_updated_at"].notna()
                            & (rows["updated_at"].isna() | (rows["updated_at"] < rows["erp_updated_at"]))
                            & ((now - rows["erp_updated_at"]) > fresh))
    rows["other_location"] = other_location_match(view, settings, rows)

    drifting = rows["delta"].abs() > tol
    # the gap is orders not yet in the ERP: this channel's own (already allowed for), or another channel's that this
    # channel already shows (synced from that channel) while the ERP's ATP has not fallen by them yet
    others = rows["other_in_flight_units"] if "other_in_flight_units" in rows else 0
    in_flight = (~drifting & (rows["raw_delta"].abs() > tol)) | (drifting & (rows["delta"] < 0) & (-rows["delta"] <= others))
    is_storefront = rows["channel"].isin(storefronts)
    policy = is_storefront & ((rows["inventory_policy"] == "CONTINUE") | (rows["tracked"] == False))  # noqa: E712
    listing_bad = rows["channel"].isin(marketplaces) & rows["state"].notna() & ~rows["state"].isin(["active"])
    lone_marketplace = rows["channel"].isin(marketplaces) & (rows["n_differing"] == 1) & (rows["n_present"] >= 2)
    all_differ = rows["n_differing"] >= rows["n_present"]
    threshold = (rows["expected_raw"] == 0) & (rows["observed"] > 0) & all_differ & (rows["shows_previous"] | rows["not_followed"])
    storefront_right = (rows["storefront_present"] & ~rows["storefront_differs"] & (rows["n_marketplaces"] >= 2)
                        & (rows["n_marketplaces_zero"] == rows["n_marketplaces"]) & (rows["observed"] == 0)
                        & (rows["expected"] > 0))
    rows["diagnosis"] = np.select(
        [in_flight, rows["other_location"].notna(), policy, lone_marketplace | listing_bad, threshold | storefront_right,
         rows["shows_previous"] | rows["not_followed"], is_storefront],
        ["in_flight", "location_mapping", "L1_storefront_feed", "L2_marketplace_listing", "L4_erp_config",
         "L3_connector", "L1_storefront_feed"], default="unknown")
    return rows
