"""What the code imports is what pyproject.toml declares: a base install runs the inference side and the config checks.

The base dependencies are what ``pip install visiontrain`` gets (predict, serve, stream, drift; the command line
and its config checks run for every command). Every third-party module those import when they load must come
from a base dependency named in pyproject.toml, not from a package that happens to pull it in today.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "visiontrain"
# Loaded by a base install: the command line, the checks of every command, and the torch-free layers
BASE_SIDE = ["visiontrain.cli", "visiontrain.config.checks", "visiontrain.core", "visiontrain.deploy",
             "visiontrain.monitoring", "visiontrain.inference"]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _base_dependencies() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_normalise(re.match(r"[A-Za-z0-9_.\-]+", requirement).group()) for requirement in project["dependencies"]}


def _source(module: str) -> Path | None:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.is_file()), None)


def _modules_under(root: str) -> list[str]:
    """``root`` and, for a package, every module in it."""
    path = _source(root)
    if path is None or path.name != "__init__.py":
        return [root]
    return [".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
            for p in sorted(path.parent.rglob("*.py"))]


def _load_time_imports(path: Path) -> set[str]:
    """Modules named by the imports that run when ``path`` loads: not those inside functions or TYPE_CHECKING."""
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)  # a submodule, or no module
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])
            elif isinstance(node, (ast.ClassDef, ast.With)):
                visit(node.body)

    visit(ast.parse(path.read_text()).body)
    return found


def _third_party_imports(roots: list[str]) -> dict[str, str]:
    """Top-level third-party module -> the first visiontrain module found importing it, following our imports."""
    seen: set[str] = set()
    third_party: dict[str, str] = {}
    pending = [module for root in roots for module in _modules_under(root)]
    while pending:
        module = pending.pop()
        parts = module.split(".")
        for parent in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):  # packages load their __init__
            path = _source(parent)
            if path is None or parent in seen:
                continue
            seen.add(parent)
            for imported in _load_time_imports(path):
                top = imported.split(".")[0]
                if top == "visiontrain":
                    pending.append(imported)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third_party.setdefault(top, parent)
    return third_party


def test_the_base_install_declares_what_the_inference_side_and_the_config_checks_import():
    base = _base_dependencies()
    distributions = importlib.metadata.packages_distributions()
    undeclared = {top: importer for top, importer in _third_party_imports(BASE_SIDE).items()
                  if not {_normalise(d) for d in distributions.get(top, [top])} & base}
    assert undeclared == {}, ("imported when a base install loads, but not a base dependency in pyproject.toml "
                              f"(module: first importer): {undeclared}")


def test_the_walk_sees_imports_of_modules_a_command_reaches():
    imports = _third_party_imports(["visiontrain.inference.onnx_model"])
    assert imports["onnxruntime"] == "visiontrain.inference.onnx_model" and "numpy" in imports
    assert "torch" not in imports
