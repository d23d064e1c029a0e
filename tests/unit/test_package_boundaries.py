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
