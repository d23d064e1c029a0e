"""JSON-Schema validation with messages that name the path of the bad field."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import jsonschema

from omnirecon_contract.errors import ConfigError


@lru_cache(maxsize=None)
def load_schema(name: str, package: str = "omnirecon_contract.schemas") -> dict:
    return json.loads(resources.files(package).joinpath(name).read_text())


def format_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def _describe(err: jsonschema.ValidationError) -> str:
    v, kw = err.validator, err.validator_value
    if v == "minimum":
        return f"must be {'an integer' if err.schema.get('type') == 'integer' else 'a number'} >= {kw}"
    if v == "exclusiveMinimum":
        return f"must be {'an integer' if err.schema.get('type') == 'integer' else 'a number'} > {kw}"
    if v == "maximum":
        return f"must be <= {kw}"
    if v == "type":
        extra = ""
        if kw == "integer" and "minimum" in err.schema:
            extra = f" >= {err.schema['minimum']}"
        return f"must be {'an' if kw[0] in 'aeiou' else 'a'} {kw}{extra} (got {json.dumps(err.instance, default=str)})"
    if v == "enum":
        return f"must be one of {', '.join(map(str, kw))} (got {json.dumps(err.instance, default=str)})"
    if v == "const":
        return f"must be {json.dumps(kw)}"
    if v == "required":
        return err.message.replace("is a required property", "is required")
    if v == "additionalProperties":
        extras = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        extras = [e for e in extras if not e.startswith("x_")]
        return f"unknown key(s) {', '.join(extras)} (prefix custom keys with x_)"
    if v == "pattern":
        return f"must match {kw} (got {json.dumps(err.instance)})"
    if v == "anyOf" and err.schema.get("anyOf") and "$ref" not in str(err.schema):
        return f"is not a valid timestamp (ISO-8601, 'now' or an offset like -45m) (got {json.dumps(err.instance, default=str)})"
    return err.message


def validate(instance, schema_name: str, prefix: str = "", package: str = "omnirecon_contract.schemas") -> None:
    """Raise ConfigError listing every violation, each as `path: what is wrong`."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_name, package))
    errors = sorted(validator.iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if not errors:
        return
    lines = []
    for err in errors:
        path = format_path(err.absolute_path)
        if prefix:
            path = prefix if path == "(root)" else f"{prefix}.{path}"
        lines.append(f"{path}: {_describe(err)}")
    lines = list(dict.fromkeys(lines))
    raise ConfigError(lines[0] if len(lines) == 1 else f"{lines[0]} (and {len(lines) - 1} more: " + "; ".join(lines[1:6]) + ")")
