"""Shopify search syntax (`query:` argument): `field:value`, `field:>=value`, quotes, AND / OR, `-` negation."""
from __future__ import annotations

import re

from omnirecon_contract.timeutil import parse_ts

_TERM = re.compile(r"""\s*(?P<neg>-|NOT\s+)?(?P<field>[a-z_]+):(?P<op><=|>=|<|>|=)?(?P<value>'[^']*'|"[^"]*"|[^\s()]+)\s*""")


def parse(query: str | None) -> list[list[tuple]]:
    """-> OR-list of AND-lists of (negated, field, op, value). Empty query: match all."""
    if not query or not query.strip():
        return []
    groups, current = [], []
    pos, text = 0, query.strip()
    while pos < len(text):
        rest = text[pos:]
        conj = re.match(r"\s*(AND|OR)\s+", rest)
        if conj:
            if conj.group(1) == "OR":
                groups.append(current)
                current = []
            pos += conj.end()
            continue
        term = _TERM.match(rest)
        if not term:
            word = re.match(r"\s*(\S+)\s*", rest)
            current.append((False, "default", "=", word.group(1)))
            pos += word.end()
            continue
        value = term.group("value")
        if value[:1] in "'\"":
            value = value[1:-1]
        current.append((bool(term.group("neg")), term.group("field"), term.group("op") or "=", value))
        pos += term.end()
    groups.append(current)
    return [g for g in groups if g]


def _compare(actual, op: str, wanted: str) -> bool:
    if actual is None:
        return False
    if isinstance(actual, bool):
        return str(actual).lower() == wanted.lower()
    if isinstance(actual, (int, float)):
        try:
            w = float(wanted)
        except ValueError:
            return False
    elif _looks_like_time(actual):
        try:
            actual, w = parse_ts(actual), parse_ts(wanted)
        except ValueError:
            return False
    else:
        a, w = str(actual).lower(), wanted.lower()
        if op == "=":
            return a.startswith(w[:-1]) if w.endswith("*") else a == w
        actual = a
    return {"=": actual == w, ">": actual > w, ">=": actual >= w, "<": actual < w, "<=": actual <= w}[op]


def _looks_like_time(v) -> bool:
    return isinstance(v, str) and len(v) >= 10 and v[4:5] == "-" and v[7:8] == "-"


def matcher(query: str | None, fields: dict):
    """`fields`: search field name -> fn(record) -> value. Unknown fields are ignored, as Shopify does."""
    groups = parse(query)
    if not groups:
        return None

    def match(record) -> bool:
        for group in groups:
            ok = True
            for neg, field, op, value in group:
                fn = fields.get(field)
                if fn is None:
                    continue
                if _compare(fn(record), op, value) == neg:
                    ok = False
                    break
            if ok:
                return True
        return False

    return match
