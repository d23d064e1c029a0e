"""The sandbox is a package of its own: it imports nothing of omnirecon but the shared scenario contract, the
contract imports neither, and the product (plugins/, dags/) never imports the sandbox."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_top_modules(folder: Path) -> dict[str, set[str]]:
    out = {}
    for path in folder.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        out[str(path.relative_to(ROOT))] = names
    return out


def offenders(folder: Path, forbidden) -> list[str]:
    return [f"{path}: {name}" for path, names in imported_top_modules(folder).items()
            for name in sorted(names) if forbidden(name.split(".")[0])]


def test_the_sandbox_imports_only_the_contract_of_omnirecon():
    assert offenders(ROOT / "sandbox", lambda top: top == "omnirecon") == []


def test_the_contract_imports_neither_side():
    assert offenders(ROOT / "contract", lambda top: top in ("omnirecon", "omnirecon_sandbox", "airflow")) == []


def test_the_product_never_imports_the_sandbox():
    bad = offenders(ROOT / "plugins", lambda top: top == "omnirecon_sandbox")
    bad += offenders(ROOT / "dags", lambda top: top == "omnirecon_sandbox")
    assert bad == []


def test_the_checker_sees_imports():   # the scan itself works: the sandbox does import the contract
    assert any("omnirecon_contract.scenario" in names for names in imported_top_modules(ROOT / "sandbox").values())


# The product's layers, lowest first: a module imports only from its own package and from lower layers.
LAYERS = [
    {"errors", "timeutil", "validation", "connections"},
    {"config", "model", "sandbox_process"},
    {"ledger", "hooks"},
    {"adapters", "links"},                 # adapters: one object per system account, on hooks and model
    {"snapshot", "checks"},
    {"report"},
    {"remediation", "ui", "live"},
    {"cycle"},                             # plan -> push -> alert, shared by the Airflow tasks and the runner
    {"pipeline", "runner", "demo", "dag_defaults", "airflow_setup", "airflow_plugin", "provider"},
    {"live_demo"},                         # `demo --live`: on demo's clean state and Airflow start-up
    {"cli"},
]
# Kept names that delegate upwards on use (function-level import), for existing callers.
DELEGATIONS = {("plugins/omnirecon/hooks/__init__.py", "omnirecon.adapters")}


def _unit(path: str) -> str:
    parts = Path(path).relative_to("plugins/omnirecon").parts
    return parts[0].removesuffix(".py")


def test_every_omnirecon_module_has_a_layer():
    units = {_unit(p) for p in imported_top_modules(ROOT / "plugins" / "omnirecon")} - {"__init__"}
    assert units - set().union(*LAYERS) == set()


def test_a_module_never_imports_one_above_it():
    rank = {unit: n for n, layer in enumerate(LAYERS) for unit in layer}
    bad = []
    for path, names in imported_top_modules(ROOT / "plugins" / "omnirecon").items():
        own = _unit(path)
        for name in names:
            parts = name.split(".")
            if parts[0] != "omnirecon" or len(parts) < 2 or parts[1] == own or own == "__init__":
                continue
            if (path, ".".join(parts[:2])) in DELEGATIONS:
                continue
            if rank.get(parts[1], -1) >= rank[own]:
                bad.append(f"{path} ({own}) imports {name}")
    assert bad == []


def test_the_layer_check_sees_an_upward_import():
    rank = {unit: n for n, layer in enumerate(LAYERS) for unit in layer}
    assert rank["adapters"] > rank["hooks"] and rank["snapshot"] > rank["adapters"]
    assert "omnirecon.adapters" in imported_top_modules(ROOT / "plugins" / "omnirecon")[
        "plugins/omnirecon/snapshot/__init__.py"]
