"""Time helpers: UTC everywhere, ISO-8601 in and out, scenario offsets (the contract's, re-exported)."""
from omnirecon_contract.timeutil import epoch_ms, iso, parse_ts, utcnow

__all__ = ["epoch_ms", "iso", "parse_ts", "utcnow"]
