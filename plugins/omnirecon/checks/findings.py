"""Failed GX rows -> findings (the findings.csv columns + fingerprint + evidence), and their persistence."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime

import numpy as np
import pandas as pd

from omnirecon.adapters import get_adapter
from omnirecon.checks import diagnosis as dg
from omnirecon.checks import expected as ex
from omnirecon.checks.compare import Comparison, of_skus
from omnirecon.checks.load import LedgerView, inventory_refs
from omnirecon.checks.suites import Failure
from omnirecon.config import Settings
from omnirecon.ledger import finding_store
from omnirecon.ledger import queries
from omnirecon.timeutil import iso

SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
COLUMNS = ["run_id", "check", "severity", "channel", "sku", "location", "order_id", "expected", "observed", "delta",
           "diagnosis", "action", "detail"]
API_ERRORS_PER_SYSTEM = 5


def fingerprint(check: str, channel: str, sku, location, order_id) -> str:
    key = "|".join(str(v or "") for v in (check, channel, sku, location, order_id))
    return hashlib.sha256(key.encode()).hexdigest()


def silence_fingerprint(system: str) -> str:
    """The freshness finding of a platform whose change notifications stopped: owned by the live path (it alone
    raises and resolves it), never by a reconcile run's freshness check."""
    return fingerprint("freshness", system, None, None, "notifications")


def _iso(v) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
        return None
    try:
        return iso(pd.Timestamp(v).to_pydatetime())
    except (ValueError, TypeError):
        return None


def _iso_list(series: pd.Series) -> list:
    """_iso of every value, formatting each distinct timestamp once (snapshot rows share few timestamps)."""
    codes, uniques = pd.factorize(series)
    table = np.array([_iso(v) for v in uniques] + [None], dtype=object)
    return table[codes].tolist()   # code -1 (missing) picks the trailing None


def _plain(v):
    """JSON fallback for numpy/pandas scalars."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (pd.Timestamp, datetime)):
        return _iso(v)
    return None if pd.isna(v) else str(v)


def _plain_tree(v):
    """json.loads(json.dumps(v, default=_plain)) without the text: a fresh copy of plain JSON values (the evidence
    is JSON-safe as built). Built-in containers and scalars are copied as they are; anything else (numpy and
    pandas values, dict subclasses, non-str keys) takes the JSON round trip as before."""
    t = type(v)
    if t is str or t is int or t is float or t is bool or v is None:
        return v
    if t is dict:
        out = {}
        for k, x in v.items():
            if type(k) is not str:
                return json.loads(json.dumps(v, default=_plain))
            out[k] = _plain_tree(x)
        return out
    if t is list or t is tuple:
        return [_plain_tree(x) for x in v]
    return json.loads(json.dumps(v, default=_plain))


def _str(v) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return str(v)


class FindingBuilder:
    """Turns GX failures into finding dicts, with shared evidence (connector status, API errors)."""

    def __init__(self, view: LedgerView, settings: Settings, cmp: Comparison, run_id: str, ledger, buckets=None):
        self.view, self.settings, self.cmp, self.run_id, self.ledger = view, settings, cmp, run_id, ledger
        self.buckets = buckets       # a shard's SKU buckets: only its own open states are read
        self.connectors = self._connectors()
        self.api_errors = self._api_errors()
        self._shared: dict = {}
        locs = ex.location_map(settings, settings.channels)
        self.erp_location_of = locs.groupby(["channel", "channel_location"])["erp_location"].agg("+".join).to_dict()
        erp_stale = (not view.usable("erp", "inventory")) or self.connectors.get("erp", {}).get("inventory", {}).get(
            "age_minutes", 1e9) > settings["freshness_minutes"]
        self.erp_stale = erp_stale

    # -- shared evidence ---------------------------------------------------------------------
    def _connectors(self) -> dict:
        out: dict = {}
        now = pd.Timestamp(self.view.now)
        for (system, kind), att in self.view.attempts.items():
            latest = self.view.latest.get((system, kind))
            age = round((now - pd.Timestamp(latest.fetched_at)).total_seconds() / 60, 1) if latest and latest.fetched_at else None
            out.setdefault(system, {})[kind] = {"last_attempt": att.status, "last_complete_snapshot": latest.id if latest else None,
                                                "fetched_at": _iso(latest.fetched_at) if latest else None,
                                                "age_minutes": age, "error": att.error if att.status != "complete" else None}
        return out

    def _api_errors(self) -> dict:
        ev = self.view.api_events
        out: dict = {}
        for system, grp in ev.groupby("system") if len(ev) else []:
            out[system] = [{"at": _iso(r.at), "operation": r.operation, "status_code": None if pd.isna(r.status_code) else int(r.status_code),
                            "outcome": r.outcome, "message": r.message} for r in grp.head(API_ERRORS_PER_SYSTEM).itertuples()]
        return out

    def _shared_evidence(self, channel: str) -> dict:
        """Connector status and API errors of the ERP and a channel: plain JSON, built once per channel and
        shared (read-only) by that channel's findings."""
        if channel not in self._shared:
            systems = [s for s in dict.fromkeys(["erp", channel]) if s]
            self._shared[channel] = json.loads(json.dumps({
                "connectors": {s: self.connectors.get(s, {}) for s in systems},
                "api_errors": {s: self.api_errors[s] for s in systems if s in self.api_errors}}, default=_plain))
        return self._shared[channel]

    def _evidence(self, systems: dict, channel: str, first_diverged_at=None, **extra) -> dict:
        own = {"systems": systems, "first_diverged_at": first_diverged_at}
        own.update({k: v for k, v in extra.items() if v is not None})
        own = _plain_tree(own)
        return {"systems": own.pop("systems"), "first_diverged_at": own.pop("first_diverged_at"),
                **self._shared_evidence(channel), **own}

    def _finding(self, check, severity, channel, diagnosis, action, detail, evidence, sku=None, location=None,
                 order_id=None, expected=None, observed=None, delta=None) -> dict:
        return {"run_id": self.run_id, "check": check, "severity": severity, "channel": channel, "sku": sku or "",
                "location": location or "", "order_id": order_id or "", "expected": _str(expected),
                "observed": _str(observed), "delta": None if delta is None else int(delta), "diagnosis": diagnosis,
                "action": action, "detail": detail, "evidence": evidence,
                "fingerprint": fingerprint(check, channel, sku, location, order_id)}

    # -- per check ---------------------------------------------------------------------------
    def build(self, failures: dict[str, list[Failure]]) -> list[dict]:
        out: list[dict] = []
        for name, fails in failures.items():
            if fails:
                out.extend(getattr(self, f"_{name}")(self.cmp.frames[name], fails))
        return out

    def _rules_by_row(self, fails: list[Failure]) -> dict[int, set]:
        rules: dict[int, set] = {}
        for f in fails:
            for r in f.rows:
                rules.setdefault(r, set()).add(f.rule)
        return rules

    def _inventory_drift(self, frame: pd.DataFrame, fails: list[Failure]) -> list[dict]:
        rules = self._rules_by_row(fails)
        rows = frame.iloc[sorted(rules)]
        rows = dg.diagnose_drift(self.view, self.settings, frame, rows)
        tol, limit = int(self.settings["tolerance_units"]), int(self.settings["approval_threshold_units"])
        # the write-back ref: this row's, or another row of the same channel SKU (a location with no level yet)
        same_sku = frame.loc[frame["channel_sku"].isin(rows["channel_sku"].unique()) & frame["row_id"].notna(),
                             ["channel", "channel_sku", "row_id"]].drop_duplicates(["channel", "channel_sku"])
        ref_row = rows["row_id"].fillna(rows[["channel", "channel_sku"]].merge(
            same_sku, on=["channel", "channel_sku"], how="left")["row_id"].set_axis(rows.index))
        refs = inventory_refs(self.ledger, ref_row.dropna().astype("int64").unique().tolist())
        others = frame.loc[of_skus(frame, rows), ["sku", "channel", "channel_location", "observed", "updated_at"]]
        other_vals: dict = {}
        for sku, ch, loc, obs, at in zip(others["sku"], others["channel"], others["channel_location"],
                                         others["observed"].tolist(), _iso_list(others["updated_at"])):
            other_vals.setdefault(sku, {}).setdefault(ch, {})[loc] = {"value": obs, "updated_at": at}
        states = self._first_seen()
        rows["erp_updated_iso"], rows["updated_iso"] = _iso_list(rows["erp_updated_at"]), _iso_list(rows["updated_at"])
        out = []
        for r, ref_id in zip(rows.itertuples(index=False), ref_row.to_numpy()):
            rs = rules[r.row]
            drift = bool(rs & {"oversell", "undersell"})
            location = self.erp_location_of.get((r.channel, r.channel_location), r.channel_location)
            if r.diagnosis == "in_flight":
                severity = "info"   # orders on their way to the ERP explain the whole gap
            elif drift:
                severity = "critical" if r.delta > tol else "warning"
            elif "sells_past_zero" in rs:
                severity = "critical"
            else:
                severity = "info"
            diagnosis = "L1_storefront_feed" if "sells_past_zero" in rs else r.diagnosis
            pushable = (drift and not r.is_fba and diagnosis != "in_flight" and "sells_past_zero" not in rs
                        and (pd.isna(r.state) or r.state == "active") and not self.erp_stale
                        and self.view.usable(r.channel, "inventory") and not pd.isna(ref_id))
            action = ("push" if abs(int(r.delta)) <= limit else "approval") if pushable else (
                "alert" if (drift and diagnosis != "in_flight") or "sells_past_zero" in rs else "none")
            fp = fingerprint("inventory_drift", r.channel, r.sku, location, None)
            diverged = min(filter(None, [states.get(fp), max(filter(None, [r.erp_updated_iso, r.updated_iso]), default=None)]),
                           default=None)
            systems = {"erp": {"value": int(r.expected_raw), "atp": int(r.atp), "safety_stock": int(r.safety),
                               "units_per_channel_unit": int(r.units), "updated_at": r.erp_updated_iso}}
            systems.update({ch: locs for ch, locs in other_vals.get(r.sku, {}).items()})
            push = None
            if action in ("push", "approval"):
                push = {"channel_sku": r.channel_sku, "channel_location": r.channel_location, "ref": refs.get(int(ref_id), {}),
                        "snapshot_id": int(r.snapshot_id), "from_qty": int(r.observed), "to_qty": int(r.expected)}
            unposted = r.unposted_orders if isinstance(r.unposted_orders, list) else None
            evidence = self._evidence(systems, r.channel, diverged, push=push, unposted_orders=unposted,
                                      in_flight_units=int(r.in_flight_units) or None, overdue_units=int(r.overdue_units) or None,
                                      other_channels_in_flight_units=int(r.other_in_flight_units)
                                      if diagnosis == "in_flight" and drift else None,
                                      previous_erp_values=r.previous_erp_values or None, other_erp_location=r.other_location,
                                      listing={"state": r.state, "inventory_policy": r.inventory_policy, "tracked": r.tracked}
                                      if not pd.isna(r.state) else None)
            detail = self._drift_detail(r, location, diagnosis, drift, rs)
            out.append(self._finding("inventory_drift", severity, r.channel, diagnosis, action, detail, evidence,
                                     sku=r.sku, location=location, expected=int(r.expected), observed=int(r.observed),
                                     delta=int(r.delta)))
        return out

    def _drift_detail(self, r, location, diagnosis, drift, rules) -> str:
        where = f"{r.channel} {r.channel_sku} at {r.channel_location}"
        erp = f"the ERP implies {int(r.expected)} (ATP {int(r.atp)} at {location}, safety stock {int(r.safety)}"
        erp += f", last ERP change {_iso(r.erp_updated_at)})" if not pd.isna(r.erp_updated_at) else ")"
        if not drift and "sells_past_zero" in rules:
            why = "inventory policy CONTINUE" if r.inventory_policy == "CONTINUE" else "inventory not tracked"
            return f"{where} keeps selling with the ERP at {int(r.expected)} units ({why})."
        if diagnosis == "in_flight" and drift:
            return (f"{where} shows {int(r.observed)} vs {int(r.expected)} from the ERP; the gap is within "
                    f"{int(r.other_in_flight_units)} unit(s) in other channels' orders not yet in the ERP "
                    "(within the ingest SLA).")
        if diagnosis == "in_flight":
            return (f"{where} shows {int(r.observed)} vs {int(r.expected_raw)} from the ERP; the gap equals "
                    f"{int(r.in_flight_units)} unit(s) in orders not yet in the ERP (within the ingest SLA).")
        reason = {
            "location_mapping": f"it matches ERP location {r.other_location}, which is not mapped to it",
            "L1_storefront_feed": "the storefront feed is wrong while the ERP is right",
            "L2_marketplace_listing": "this marketplace alone differs",
            "L3_connector": "the channel has not followed the ERP's last change (stale or previous value)",
            "L4_erp_config": "the ERP changed but nothing downstream followed (trigger/threshold)",
        }.get(diagnosis, "no pattern explains it")
        return f"{where} shows {int(r.observed)} but {erp}; delta {int(r.delta):+d}: {reason}."

    def _first_seen(self) -> dict:
        with self.ledger.session() as s:
            rows = queries.first_seen_of_open(s, self.buckets)
        return {fp: _iso(at) for fp, at in rows.items()}

    def _mapping(self, frame: pd.DataFrame, fails: list[Failure]) -> list[dict]:
        out, seen = [], set()
        for f in fails:
            rows = frame.iloc[f.rows]
            if f.rule == "unmapped_location":
                rows = rows[rows["observed"].fillna(0) > 0]
                for (channel, loc), grp in rows.groupby(["channel", "channel_location"]):
                    skus = sorted(grp["sku"].unique())
                    detail = (f"{channel} location {loc} holds {int(grp['observed'].sum())} unit(s) of {len(skus)} SKU(s) "
                              f"but is not mapped to any ERP location in settings.locations.")
                    out.append(self._finding("mapping", "warning", channel, "location_mapping", "alert", detail,
                                             self._evidence({channel: {"location": loc, "skus": skus[:50]}}, channel),
                                             location=loc))
                continue
            for r in rows.itertuples(index=False):
                loc = r.channel_location if f.rule == "duplicate" else ""
                key = (f.rule, r.channel, r.sku, loc)
                if key in seen:
                    continue
                seen.add(key)
                if f.rule == "unknown_sku":
                    diag, detail = "sku_mapping", f"{r.channel} lists SKU {r.channel_sku}, which has no ERP item and no alias."
                elif f.rule == "item_not_inventory":
                    what = "inactive" if r.is_inactive is True else f"a {r.item_type} (not an inventory item)"
                    diag, detail = "L4_erp_config", f"{r.channel} lists {r.channel_sku} but the ERP item {r.sku} is {what}."
                elif f.rule == "missing_on_channel":
                    diag, detail = "sku_mapping", (f"ERP SKU {r.sku} has {int(r.expected_units)} sellable unit(s) for {r.channel} "
                                                   f"but {r.channel} has no listing or inventory for {r.channel_sku}.")
                else:
                    diag, detail = "sku_mapping", f"{r.channel} shows {r.channel_sku} more than once at {r.channel_location}."
                systems = {r.channel: {"channel_sku": r.channel_sku, "location": r.channel_location,
                                       "value": None if pd.isna(r.observed) else int(r.observed), "updated_at": _iso(r.updated_at)},
                           "erp": {"item_type": _str(r.item_type), "is_inactive": None if pd.isna(r.is_inactive) else bool(r.is_inactive)}}
                out.append(self._finding("mapping", "warning", r.channel, diag, "alert", detail,
                                         self._evidence(systems, r.channel, rule=f.rule), sku=r.sku, location=loc))
        return out

    def _listing_state(self, frame: pd.DataFrame, fails: list[Failure]) -> list[dict]:
        out = []
        for f in fails:
            for r in frame.iloc[f.rows].itertuples(index=False):
                diag = get_adapter(r.channel).listing_diagnosis
                issues = r.issues if isinstance(r.issues, list) else []
                detail = (f"{r.channel} listing {r.channel_sku} is {r.state} while the ERP has {int(r.erp_expected)} "
                          f"unit(s) to sell there" + (f" (issue {issues[0].get('code')}: {issues[0].get('message')})" if issues else "") + ".")
                out.append(self._finding("listing_state", "warning", r.channel, diag, "alert", detail,
                                         self._evidence({r.channel: {"state": r.state, "issues": issues},
                                                         "erp": {"value": int(r.erp_expected)}}, r.channel),
                                         sku=r.sku, expected="active", observed=r.state))
        return out

    def _low_stock(self, frame: pd.DataFrame, fails: list[Failure]) -> list[dict]:
        out, days = [], float(self.settings["low_stock_days"])
        for f in fails:
            for r in frame.iloc[f.rows].itertuples(index=False):
                need = int(np.ceil(days * r.daily_units))
                detail = (f"ERP SKU {r.sku} has {int(r.erp_available)} available, below {days:g} day(s) of sales "
                          f"({r.daily_units:.2f} units/day over the last 14 days = {need}).")
                out.append(self._finding("low_stock", "warning", "erp", "unknown", "alert", detail,
                                         self._evidence({"erp": {"value": int(r.erp_available), "daily_units": round(float(r.daily_units), 3)}}, "erp"),
                                         sku=r.sku, expected=need, observed=int(r.erp_available)))
        return out

    def _order_missing(self, frame: pd.DataFrame, fails: list[Failure]) -> list[dict]:
        out, sla = [], self.settings["order_slas"]["ingest_minutes"]
        for f in fails:
            for r in frame.iloc[f.rows].itertuples(index=False):
                detail = (f"{r.channel} order {r.order_id} ({r.status}, created {_iso(r.created_at)}) is not in the ERP "
                          f"after {int(r.unposted_age_minutes)} min (ingest SLA {sla} min).")
                lines = [{"sku": l.get("sku"), "quantity": l.get("quantity")} for l in (r.lines or [])]
                out.append(self._finding("order_missing", "critical", r.channel, "L3_connector", "alert", detail,
                                         self._evidence({r.channel: {"value": r.status, "updated_at": _iso(r.updated_at)},
                                                         "erp": {"value": None}}, r.channel, _iso(r.created_at) , lines=lines),
                                         order_id=r.order_id, observed=r.status))
        return out

    def _order_status_mismatch(self, frame: pd.DataFrame, fails: list[Failure]) -> list[dict]:
        out = []
        for f in fails:
            for r in frame.iloc[f.rows].itertuples(index=False):
                detail = (f"{r.channel} order {r.order_id} is {r.channel_status} on {r.channel} but {r.erp_status} in the ERP "
                          f"({r.erp_ref}); neither side changed for over {self.settings['freshness_minutes']} min.")
                diverged = _iso(max([t for t in (r.channel_updated_at, r.erp_updated_at) if not pd.isna(t)], default=None))
                out.append(self._finding("order_status_mismatch", "warning", r.channel, "L3_connector", "alert", detail,
                                         self._evidence({r.channel: {"value": r.channel_status, "updated_at": _iso(r.channel_updated_at)},
                                                         "erp": {"value": r.erp_status, "updated_at": _iso(r.erp_updated_at),
                                                                 "fulfilled_at": _iso(r.erp_fulfilled_at)}}, r.channel, diverged),
                                         order_id=r.order_id, expected=r.erp_status, observed=r.channel_status))
        return out

    def _order_sequence(self, frame: pd.DataFrame, fails: list[Failure]) -> list[dict]:
        rules = self._rules_by_row(fails)
        sev = {f.rule: f.severity for f in fails}
        out = []
        for r in frame.iloc[sorted(rules)].itertuples(index=False):
            rs = sorted(rules[r.row], key=lambda x: SEVERITY_RANK[sev[x]])
            severity = sev[rs[0]]
            texts = {
                "shipped_without_erp_fulfilment": f"{r.channel} shows order {r.order_id} shipped but the ERP has no fulfilment "
                                                  f"(ERP status {r.erp_status})",
                "cancelled_vs_shipped": f"order {r.order_id} is {r.channel_status} on {r.channel} but {r.erp_status} in the ERP",
                "went_backwards": f"{r.system} moved order {r.order_id} back from {r.previous_status} to {r.channel_status}",
            }
            detail = "; ".join(texts[x] for x in rs) + "."
            systems = {r.system: {"value": r.channel_status, "previous": _str(r.previous_status)}}
            if not pd.isna(r.erp_status) if "erp_status" in frame.columns else False:
                systems["erp"] = {"value": r.erp_status, "fulfilled_at": _iso(r.erp_fulfilled_at)}
            expected = r.erp_status if r.system != "erp" and not pd.isna(r.erp_status) else _str(r.previous_status)
            out.append(self._finding("order_sequence", severity, r.system, "L3_connector", "alert", detail,
                                     self._evidence(systems, r.system, rules=rs), order_id=r.order_id,
                                     expected=expected, observed=r.channel_status))
        return out

    def _freshness(self, frame: pd.DataFrame, fails: list[Failure]) -> list[dict]:
        by_system: dict[str, list] = {}
        for f in fails:
            for r in frame.iloc[f.rows].itertuples(index=False):
                by_system.setdefault(r.system, []).append((f, r))
        out, fm = [], self.settings["freshness_minutes"]
        for system, items in by_system.items():
            severity = min((f.severity for f, _ in items), key=SEVERITY_RANK.get)
            parts = []
            for f, r in items:
                if f.rule == "snapshot_failed":
                    parts.append(f"the last {r.kind} snapshot {r.attempt_status}" + (f" ({r.attempt_error})" if r.attempt_error else ""))
                elif f.rule == "stale_snapshot":
                    parts.append(f"the last complete {r.kind} snapshot is " +
                                 ("missing" if r.age_minutes >= 1e9 else f"{int(r.age_minutes)} min old") + f" (limit {fm} min)")
                else:
                    parts.append(f"{int(r.lagging_skus)} SKU(s) have not followed an ERP change for up to "
                                 f"{int(r.follow_lag_minutes)} min (limit {fm} min)")
            detail = f"{system}: " + "; ".join(parts) + "."
            out.append(self._finding("freshness", severity, system, "L3_connector", "alert", detail,
                                     self._evidence({}, system, rules=sorted({f.rule for f, _ in items}))))
        return out


# --- persistence + lifecycle: the ledger's finding store owns the writes -------------------------
persist = finding_store.persist_findings
