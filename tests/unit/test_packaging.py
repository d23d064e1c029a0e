"""pyproject.toml declares every distribution the product's code imports (plugins/omnirecon, dags/)."""
from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWN = {"omnirecon", "omnirecon_contract", "omnirecon_sandbox", "tests"}
# get_connection_form_widgets: only Airflow's legacy FAB UI calls it, and only where FAB is installed
LEGACY_FAB_UI = {"flask_appbuilder", "flask_babel", "wtforms"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_norm(re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0]) for d in project["dependencies"]}


def _imports() -> dict[str, set[str]]:
    """{module as imported (airflow.providers.X kept whole): files importing it}."""
    out: dict[str, set[str]] = {}
    files = [*(ROOT / "plugins" / "omnirecon").rglob("*.py"), *(ROOT / "dags").glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                parts = name.split(".")
                key = ".".join(parts[:3]) if parts[:2] == ["airflow", "providers"] else parts[0]
                out.setdefault(key, set()).add(str(path.relative_to(ROOT)))
    return out


def test_every_imported_distribution_is_declared():
    declared, dists = _declared(), md.packages_distributions()
    missing = []
    for module, files in sorted(_imports().items()):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in OWN or top in LEGACY_FAB_UI or top == "__future__":
            continue
        if module.startswith("airflow.providers."):
            wanted = {_norm("apache-airflow-providers-" + module.split(".")[2])}
        else:
            wanted = {_norm(d) for d in dists.get(top, [])} or {f"<no installed distribution for {top}>"}
        if not wanted & declared:
            missing.append(f"{module} ({', '.join(sorted(wanted))}) imported by {', '.join(sorted(files))}")
    assert not missing, "pyproject.toml does not declare:\n" + "\n".join(missing)


def test_drivers_named_in_urls_and_connections_are_declared():
    """Loaded by name, never imported: the ledger's postgresql+psycopg2 URLs, and `postgres` connections."""
    code = "\n".join(p.read_text() for p in (ROOT / "plugins" / "omnirecon").rglob("*.py"))
    declared = _declared()
    assert "postgresql+psycopg2" in code and "psycopg2-binary" in declared
    assert '"postgres"' in code and "apache-airflow-providers-postgres" in declared
