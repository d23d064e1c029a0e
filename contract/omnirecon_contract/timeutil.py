"""Time helpers: UTC everywhere, ISO-8601 in and out, scenario offsets (-45m, +2h, -3d)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_OFFSET = re.compile(r"^([+-])(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_ts(value, as_of: datetime | None = None) -> datetime | None:
    """ISO-8601 string, epoch-ms int, offset from ``as_of`` or ``now`` -> aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000.0, tz=timezone.utc)
    text = str(value).strip()
    if text == "now":
        return as_of or utcnow()
    m = _OFFSET.match(text)
    if m:
        sign, num, unit = m.groups()
        delta = timedelta(**{_UNITS[unit]: float(num)})
        base = as_of or utcnow()
        return base + delta if sign == "+" else base - delta
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def iso(dt: datetime | None) -> str | None:
    """UTC ISO-8601 with a Z and second precision (what the APIs send)."""
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_DURATION_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value) -> float:
    """'500ms', '3s', '2m', '1h' or a number of seconds -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value).strip())
    if not m:
        raise ValueError(f"not a duration: {value!r} (500ms, 3s, 2m, 1h or seconds)")
    return float(m.group(1)) * _DURATION_S[m.group(2)]


def offset_seconds(value, as_of: datetime) -> float:
    """A scenario timestamp (offset like +90s, ISO-8601 or 'now') as seconds after `as_of`."""
    return (parse_ts(value, as_of) - as_of).total_seconds()
