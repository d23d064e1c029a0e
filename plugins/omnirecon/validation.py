"""JSON-Schema validation of omnirecon's own files (settings, runtime), on the contract's validator."""
from __future__ import annotations

from omnirecon_contract.validation import format_path, load_schema as _load_schema, validate as _validate

SCHEMAS = "omnirecon.schemas"


def load_schema(name: str) -> dict:
    return _load_schema(name, SCHEMAS)


def validate(instance, schema_name: str, prefix: str = "") -> None:
    """Raise ConfigError listing every violation, each as `path: what is wrong`."""
    _validate(instance, schema_name, prefix, package=SCHEMAS)


__all__ = ["format_path", "load_schema", "validate"]
