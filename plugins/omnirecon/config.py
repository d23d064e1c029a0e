"""Retailer settings (the scenario `settings` keys) and runtime options, validated on load."""
from __future__ import annotations

import copy
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from omnirecon.errors import ConfigError, parse_error
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
    "propagation_sla_seconds": 60,
    "integration_fight_rounds": 3,
    "low_stock_days": 2,
    "approval_threshold_units": 50,
    "max_correction_fraction": 0.2,
}

_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+$")
_SLACK_CHANNEL = re.compile(r"^(#[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{8,})$")


@dataclass(frozen=True)
class RuntimeOptions:
    """include/config/runtime.yaml, typed. Build with from_mapping (validates every field, naming it)."""
    mode: str = "apply"                         # apply | dry-run
    snapshot_schedule: str = "*/15 * * * *"     # cron (5 fields) or a preset such as @hourly
    reconcile_schedule: str = "5,20,35,50 * * * *"
    report_time: str = "07:00"                  # HH:MM in report_timezone
    report_timezone: str = "UTC"                # IANA zone, e.g. Europe/London
    report_recipients: tuple[str, ...] = ()
    alert_recipients: tuple[str, ...] = ()
    approval_recipients: tuple[str, ...] = ()   # told of each approval request (empty: alert_recipients)
    slack_channel: str = "#omnirecon-alerts"    # alerts and approval requests, when `slack_default` exists
    alert_reminder_hours: float = 24
    approval_timeout_minutes: int = 240
    approval_timeout_default: str = "reject"    # reject | approve
    max_quarantine_fraction: float = 0.05       # a snapshot above this is unusable
    airflow_base_url: str = "http://localhost:8080"
    reconcile_shard_skus: int = 100000          # SKUs per reconcile shard (memory per task grows with it)
    reconcile_max_shards: int = 64              # at most this many mapped shard tasks per run
    gx_results_days: float = 30                 # days archived GX results and their Data Docs pages are kept (0: all)

    @classmethod
    def from_mapping(cls, doc: dict | None, source: str = "runtime") -> "RuntimeOptions":
        doc = dict(doc or {})
        names = [f.name for f in fields(cls)]
        errors = [f"{source}.{k}: unknown key (known: {', '.join(names)})" for k in sorted(set(doc) - set(names))]
        values = {}
        for name in names:
            if name not in doc:
                continue
            try:
                values[name] = _RUNTIME_CHECKS[name](doc[name])
            except ValueError as e:
                errors.append(f"{source}.{name}: {e} (got {doc[name]!r})")
        if errors:
            more = f" (and {len(errors) - 1} more: {'; '.join(errors[1:6])})" if len(errors) > 1 else ""
            raise ConfigError(errors[0] + more)
        return cls(**values)

    def replace(self, **changes) -> "RuntimeOptions":
        return RuntimeOptions.from_mapping({**self.to_dict(), **changes})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    # read-only mapping access, for callers written against the plain dict
    def __getitem__(self, key: str):
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default=None):
        return getattr(self, key) if key in self.keys() else default

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]

    @property
    def approvers(self) -> tuple[str, ...]:
        return self.approval_recipients or self.alert_recipients


def _one_of(*allowed):
    def check(v):
        if v not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return v
    return check


def _schedule(v):
    from croniter import croniter
    if not isinstance(v, str) or not (v.startswith("@") or len(v.split()) == 5) or not croniter.is_valid(v):
        raise ValueError("must be a cron expression (5 fields) or a preset such as @hourly")
    return v


def _hh_mm(v):
    if not isinstance(v, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
        raise ValueError("must be HH:MM (00:00 to 23:59)")
    return v


def _timezone(v):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError("must be an IANA time zone such as UTC or Europe/London") from None
    return v


def _emails(v):
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and _EMAIL.match(x) for x in v):
        raise ValueError("must be a list of e-mail addresses")
    return tuple(v)


def _number(low: float, high: float | None = None, *, integer: bool = False, low_open: bool = False):
    def check(v):
        kind = "an integer" if integer else "a number"
        ok_type = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok_type:
            raise ValueError(f"must be {kind}")
        if (v <= low if low_open else v < low) or (high is not None and v > high):
            bounds = f"> {low}" if low_open else f">= {low}"
            raise ValueError(f"must be {kind} {bounds}" + (f" and <= {high}" if high is not None else ""))
        return v
    return check


def _slack_channel(v):
    if not isinstance(v, str) or not _SLACK_CHANNEL.match(v):
        raise ValueError("must be a channel name such as #ops-alerts or a channel ID such as C0123456789")
    return v


def _http_url(v):
    if not isinstance(v, str) or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", v):
        raise ValueError("must be an http(s) URL")
    return v


_RUNTIME_CHECKS = {
    "mode": _one_of("apply", "dry-run"),
    "snapshot_schedule": _schedule,
    "reconcile_schedule": _schedule,
    "report_time": _hh_mm,
    "report_timezone": _timezone,
    "report_recipients": _emails,
    "alert_recipients": _emails,
    "approval_recipients": _emails,
    "slack_channel": _slack_channel,
    "alert_reminder_hours": _number(0, low_open=True),
    "approval_timeout_minutes": _number(0, integer=True, low_open=True),
    "approval_timeout_default": _one_of("reject", "approve"),
    "max_quarantine_fraction": _number(0, 1),
    "airflow_base_url": _http_url,
    "reconcile_shard_skus": _number(1, 10**9, integer=True),
    "reconcile_max_shards": _number(1, 1024, integer=True),
    "gx_results_days": _number(0),
}
DEFAULT_RUNTIME: dict = RuntimeOptions().to_dict()


def project_home() -> Path:
    return Path(os.environ.get("OMNIRECON_HOME") or Path(__file__).resolve().parents[2])


def reports_dir() -> Path:
    """Where the daily report DAG writes `<date>/report.html` (OMNIRECON_REPORTS_DIR overrides)."""
    return Path(os.environ.get("OMNIRECON_REPORTS_DIR") or project_home() / "data" / "reports")


def report_out_dir(requested: str | None, day: str) -> Path:
    """The folder a report run writes to: `<reports>/<day>`, or a trigger form's `out_dir`, which must stay inside
    the reports folder (relative to it, or absolute within it)."""
    base = reports_dir().resolve()
    if not requested:
        return base / day
    path = Path(requested)
    target = (path if path.is_absolute() else base / path).resolve()
    if not target.is_relative_to(base):
        raise ConfigError(f"params.out_dir: must stay inside the reports folder {base} (got {requested!r})")
    return target


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
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    def __post_init__(self):
        if not isinstance(self.runtime, RuntimeOptions):   # a plain dict (e.g. {**settings.runtime, "mode": m})
            object.__setattr__(self, "runtime", RuntimeOptions.from_mapping(self.runtime))

    def __getitem__(self, key):
        return self.raw[key]

    def get(self, key, default=None):
        return self.raw.get(key, default)

    @property
    def channels(self) -> list[str]:
        return list(self.raw["channels"])

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

    def mapped_locations(self, location_key: str) -> list[dict]:
        """Settings location entries exposed on a channel, by the key that names the channel's location (its
        adapter's `location_key`: shopify, amazon, walmart_ship_node)."""
        return [l for l in self.raw["locations"] if l.get(location_key)]

    @property
    def mode(self) -> str:
        return self.runtime["mode"]


def settings_from_dict(raw: dict | None, runtime: dict | RuntimeOptions | None = None,
                       source: str = "settings") -> Settings:
    validate(raw or {}, "settings.schema.json", prefix=source)
    merged = _merge(DEFAULT_SETTINGS, raw or {})
    rt = runtime if isinstance(runtime, RuntimeOptions) else RuntimeOptions.from_mapping(runtime)
    return Settings(raw=merged, runtime=rt)


def load_runtime(path: str | Path | None = None) -> RuntimeOptions:
    """include/config/runtime.yaml (or OMNIRECON_RUNTIME), validated; a missing file means the defaults.
    OMNIRECON_MODE overrides `mode`."""
    rpath = Path(path) if path else default_runtime_path()
    doc = _read_yaml(rpath) if rpath.exists() else {}
    if os.environ.get("OMNIRECON_MODE"):
        doc["mode"] = os.environ["OMNIRECON_MODE"]
    try:
        return RuntimeOptions.from_mapping(doc)
    except ConfigError as e:
        raise ConfigError(f"{rpath}: {e}") from None


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise parse_error(path, e) from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: must be a mapping")
    return doc


def load_settings(path: str | Path | None = None, runtime_path: str | Path | None = None) -> Settings:
    """Load include/config/retailer.yaml (+ runtime.yaml). Env: OMNIRECON_SETTINGS, OMNIRECON_RUNTIME, OMNIRECON_MODE."""
    spath = Path(path) if path else default_settings_path()
    raw = _read_yaml(spath)
    runtime = load_runtime(runtime_path)
    try:
        return settings_from_dict(raw, runtime, source="settings")
    except ConfigError as e:
        raise ConfigError(f"{spath}: {e}") from None
