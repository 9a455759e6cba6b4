"""The layering of docs/architecture.md, enforced on the source (no framework needed).

* The core (``lsr/_core/``) imports nothing of lsr but itself, ``lsr._compat`` and
  ``lsr._typing`` (the annotations' aliases, which import nothing), and no framework: it
  is array-API code only.
* Every other module uses the core through its public names only (``lsr._core.__all__``):
  no ``from lsr._core._loss import ...``, no ``_core._private``. A feature that seems to
  need the core's internals is a missing entry point of the core.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LSR = Path(__file__).resolve().parent.parent / "lsr"
CORE = LSR / "_core"
FRAMEWORKS = {"jax", "jaxlib", "torch", "tensorflow", "keras", "numpy", "cupy"}


def _modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _core_exports() -> set[str]:
    tree = ast.parse((CORE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    raise AssertionError("lsr/_core/__init__.py defines no __all__")


def core_violations(source: str) -> list[str]:
    """Uses of the core's private parts in ``source`` (a module outside the core)."""
    exports = _core_exports()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("lsr._core."):
                found.append(f"line {node.lineno}: from {node.module} import ...")
            elif node.module == "lsr._core":
                found += [
                    f"line {node.lineno}: from lsr._core import {alias.name}"
                    for alias in node.names
                    if alias.name not in exports
                ]
        elif isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name.startswith("lsr._core.")
            ]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "_core"
            and node.attr not in exports
        ):
            found.append(f"line {node.lineno}: _core.{node.attr}")
    return found


@pytest.mark.parametrize(
    "path",
    [p for p in _modules(LSR) if CORE not in p.parents],
    ids=lambda p: str(p.relative_to(LSR)),
)
def test_modules_outside_the_core_use_only_its_public_names(path):
    assert core_violations(path.read_text()) == []


def test_the_check_can_fail():
    source = (
        "from lsr import _core\n"
        "from lsr._core._loss import combine\n"
        "from lsr._core import Spec, _ops\n"
        "x = _core._targets\n"
        "y = _core.smooth_ce\n"
    )
    assert len(core_violations(source)) == 3


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("path", _modules(CORE), ids=lambda p: p.name)
def test_the_core_imports_no_framework_and_no_other_layer(path):
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in FRAMEWORKS, f"{path.name} imports {name}"
        if top == "lsr":
            assert name.startswith("lsr._core") or name in ("lsr._compat", "lsr._typing"), (
                f"{path.name} imports {name}"
            )


@pytest.mark.parametrize(
    "path",
    [p for p in _modules(LSR) if p.name != "_compat.py"],
    ids=lambda p: str(p.relative_to(LSR)),
)
def test_only_the_backend_registry_imports_array_api_compat(path):
    """Namespaces come from ``lsr._compat`` (the registry), never from array-api-compat
    directly, so every per-library fact stays in one place."""
    assert not {name for name in _imports(path) if name.split(".")[0] == "array_api_compat"}
