"""The layering of the apps (docs/development.md), held by walking every import of every module: plumbing
(``syndarix``) imports no app, tenancy (``projects``) imports no other app, ``agents`` never imports ``buildkit``,
``aiservices`` never imports ``agents`` or ``buildkit``. Migrations are history and are not walked."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
APPS = {"projects", "agents", "aiservices", "buildkit"}
FORBIDDEN = {
    "syndarix": APPS,
    "projects": APPS - {"projects"},
    "agents": {"buildkit"},
    "aiservices": {"agents", "buildkit"},
}


def imports_of(package: str) -> list[tuple[str, str]]:
    """``(module path, imported top-level package)`` for every import in ``package`` (relative imports stay in it)."""
    found = []
    for path in (ROOT / package).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), alias.name.split(".")[0]) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_the_layering_holds(package):
    offenders = [(module, imported) for module, imported in imports_of(package) if imported in FORBIDDEN[package]]
    assert offenders == []


def test_the_walk_sees_imports():
    assert ("agents/runtime/context.py", "aiservices") in imports_of("agents")
    assert ("buildkit/tools.py", "agents") in imports_of("buildkit")


#: Inside the runtime, imports go one way: the Celery tasks → the executor → the loop and the run context → the
#: services → the runners and the trace. A module never imports one to its left.
RUNTIME_ORDER = ["tasks", "executor", "loop", "context", "services", "runners", "trace"]


def runtime_imports(module: str) -> set[str]:
    """The runtime modules (``RUNTIME_ORDER``) ``agents/runtime/<module>.py`` imports, at module level or inside a
    function."""
    tree = ast.parse((ROOT / "agents" / "runtime" / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("agents.runtime."):
                found.add(node.module.split(".")[2])
    return found & set(RUNTIME_ORDER)


@pytest.mark.parametrize("module", RUNTIME_ORDER)
def test_the_runtime_imports_in_one_direction(module):
    earlier = set(RUNTIME_ORDER[:RUNTIME_ORDER.index(module)])
    assert runtime_imports(module) & earlier == set()


def test_the_runtime_walk_sees_imports():
    assert "services" in runtime_imports("executor") and "runners" in runtime_imports("services")
