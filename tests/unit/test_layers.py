"""Imports go one way between Parley's packages, as each package's ``__init__`` says ("May import: …")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "agents", "turn", "signaling", "server", "bench")


def declared(package: str) -> set[str]:
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text())) or ""
    match = re.search(r"^May import: (.+?)\.$", doc, re.MULTILINE)
    assert match, f"{package}/__init__.py does not say what it may import ('May import: …')"
    text = match.group(1).strip()
    return set() if text.startswith("nothing") else {name.strip() for name in text.split(",")}


def parley_imports(path: Path) -> list[tuple[int, str]]:
    """Every ``parley.<package>`` a module imports, at any depth (functions, TYPE_CHECKING blocks)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        for name in names:
            parts = name.split(".")
            if parts[0] == "parley" and len(parts) > 1 and parts[1] in PACKAGES:
                found.append((node.lineno, parts[1]))
    return found


def test_the_declared_layers_have_no_cycle():
    allowed = {p: declared(p) for p in PACKAGES}
    assert all(deps <= set(PACKAGES) for deps in allowed.values()), allowed
    done: set[str] = set()
    while len(done) < len(PACKAGES):  # peel off packages whose dependencies are all placed
        ready = {p for p in PACKAGES if p not in done and allowed[p] <= done}
        assert ready, f"the declared imports go round in a loop among {set(PACKAGES) - done}"
        done |= ready


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_it_declares(package: str):
    allowed = declared(package) | {package}
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports parley.{target}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, target in parley_imports(path)
        if target not in allowed
    ]
    assert not wrong, f"{package} may import only {sorted(allowed)}:\n" + "\n".join(wrong)


def test_the_checker_sees_a_lazy_import(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from parley.server.room import Room\n    return Room\n")
    assert parley_imports(module) == [(2, "server")]
