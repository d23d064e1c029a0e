"""Jinja2 environment over include/templates, autoescaping every HTML template."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from omnirecon.config import project_home


def templates_dir() -> Path:
    return project_home() / "include" / "templates"


@lru_cache(maxsize=4)
def _env(path: str) -> Environment:
    env = Environment(loader=FileSystemLoader(path), undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True, autoescape=select_autoescape(["html", "html.j2", "htm"],
                                                                        default_for_string=True))
    env.filters["num"] = lambda v: "" if v is None else f"{v:,}" if isinstance(v, int) else str(v)
    env.filters["money"] = lambda v: f"${v:,.0f}"
    env.filters["compact"] = lambda v: json.dumps(v, default=str, ensure_ascii=False, sort_keys=True) \
        if isinstance(v, (dict, list)) else str(v)
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{v:.1f}%"
    return env


def render(name: str, **context) -> str:
    return _env(str(templates_dir())).get_template(name).render(**context)
