"""Retailer settings (the scenario `settings` keys) and runtime options, validated on load."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from omnirecon.errors import ConfigError
from omnirecon.validation import validate

DEFAULT_SETTINGS: dict = {
    "source_of_truth": "erp",
    "tolerance_units": 0,
    "locations": [],
    "channels": {},
    "safety_stock_overrides": [],
    "sku_aliases": [],
    "bundles": [],
    "order_slas": {"ingest_minutes": 30, "ship_confirm_minutes": 240},
    "freshness_minutes": 15,
    "low_stock_days": 2,
    "approval_threshold_units": 50,
    "max_correction_fraction": 0.2,
}

DEFAULT_RUNTIME: dict = {
    "mode": "apply",                     # apply | dry-run
    "snapshot_schedule": "*/15 * * * *",
    "reconcile_schedule": "5,20,35,50 * * * *",
    "report_time": "07:00",
    "report_timezone": "UTC",
    "report_recipients": [],
    "alert_recipients": [],
    "alert_reminder_hours": 24,
    "approval_timeout_minutes": 240,
    "approval_timeout_default": "reject",   # reject | approve
    "max_quarantine_fraction": 0.05,        # a snapshot above this is unusable
    "airflow_base_url": "http://localhost:8080",
    "reconcile_shard_skus": 100000,         # SKUs per reconcile shard (memory per task grows with it)
    "reconcile_max_shards": 64,             # at most this many mapped shard tasks per run
}


def project_home() -> Path:
    return Path(os.environ.get("OMNIRECON_HOME") or Path(__file__).resolve().parents[2])


def default_settings_path() -> Path:
    return Path(os.environ.get("OMNIRECON_SETTINGS") or project_home() / "include" / "config" / "retailer.yaml")


def default_runtime_path() -> Path:
    return Path(os.environ.get("OMNIRECON_RUNTIME") or project_home() / "include" / "config" / "runtime.yaml")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass(frozen=True)
class Settings:
    """Validated retailer settings with the lookups the pipeline needs."""
    raw: dict
    runtime: dict = field(default_factory=lambda: dict(DEFAULT_RUNTIME))

    def __getitem__(self, key):
        return self.raw[key]

    def get(self, key, default=None):
        return self.raw.get(key, default)

    @property
    def channels(self) -> list[str]:
        return [c for c in ("shopify", "amazon", "walmart") if c in self.raw["channels"]]

    def safety_stock(self, sku: str, channel: str) -> int:
        for o in self.raw["safety_stock_overrides"]:
            if o["sku"] == sku and o["channel"] == channel:
                return int(o["units"])
        return int(self.raw["channels"].get(channel, {}).get("safety_stock", 0))

    def alias(self, sku: str, channel: str) -> tuple[str, int]:
        """(channel SKU, ERP units per channel unit) for an ERP SKU."""
        for a in self.raw["sku_aliases"]:
            if a["sku"] == sku and a["channel"] == channel:
                return a["channel_sku"], int(a.get("units_per_channel_unit", 1))
        return sku, 1

    def erp_sku_for(self, channel_sku: str, channel: str) -> str:
        for a in self.raw["sku_aliases"]:
            if a["channel_sku"] == channel_sku and a["channel"] == channel:
                return a["sku"]
        return channel_sku

    def bundle(self, sku: str) -> list[dict] | None:
        for b in self.raw["bundles"]:
            if b["sku"] == sku:
                return b["components"]
        return None

    def mapped_locations(self, channel: str) -> list[dict]:
        """Settings location entries exposed on a channel."""
        key = {"shopify": "shopify", "amazon": "amazon", "walmart": "walmart_ship_node"}[channel]
        return [l for l in self.raw["locations"] if l.get(key)]

    @property
    def mode(self) -> str:
        return self.runtime["mode"]


def settings_from_dict(raw: dict | None, runtime: dict | None = None, source: str = "settings") -> Settings:
    validate(raw or {}, "settings.schema.json", prefix=source)
    merged = _merge(DEFAULT_SETTINGS, raw or {})
    rt = _merge(DEFAULT_RUNTIME, runtime or {})
    _validate_runtime(rt)
    return Settings(raw=merged, runtime=rt)


def _validate_runtime(rt: dict) -> None:
    unknown = sorted(set(rt) - set(DEFAULT_RUNTIME))
    if unknown:
        raise ConfigError(f"runtime.{unknown[0]}: unknown key (known: {', '.join(DEFAULT_RUNTIME)})")
    if rt["mode"] not in ("apply", "dry-run"):
        raise ConfigError(f"runtime.mode: must be one of apply, dry-run (got {rt['mode']!r})")
    if rt["approval_timeout_default"] not in ("reject", "approve"):
        raise ConfigError("runtime.approval_timeout_default: must be reject or approve")
    if not (0 <= float(rt["max_quarantine_fraction"]) <= 1):
        raise ConfigError("runtime.max_quarantine_fraction: must be between 0 and 1")
    for key, top in (("reconcile_shard_skus", 10**9), ("reconcile_max_shards", 1024)):
        if not isinstance(rt[key], int) or isinstance(rt[key], bool) or not 1 <= rt[key] <= top:
            raise ConfigError(f"runtime.{key}: must be an integer between 1 and {top}")


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: must be a mapping")
    return doc


def load_settings(path: str | Path | None = None, runtime_path: str | Path | None = None) -> Settings:
    """Load include/config/retailer.yaml (+ runtime.yaml). Env: OMNIRECON_SETTINGS, OMNIRECON_RUNTIME, OMNIRECON_MODE."""
    spath = Path(path) if path else default_settings_path()
    rpath = Path(runtime_path) if runtime_path else default_runtime_path()
    raw = _read_yaml(spath)
    runtime = _read_yaml(rpath) if rpath.exists() else {}
    if os.environ.get("OMNIRECON_MODE"):
        runtime["mode"] = os.environ["OMNIRECON_MODE"]
    try:
        return settings_from_dict(raw, runtime, source="settings")
    except ConfigError as e:
        raise ConfigError(f"{spath}: {e}") from None
