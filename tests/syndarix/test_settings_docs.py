"""The settings table of the manual (`docs/configuration.md`) and `syndarix/settings.py` agree: every variable the
settings read from the environment has a row, every row names a variable something reads, and each literal default
in the settings is the one the table states."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "syndarix" / "settings.py"
TABLE = ROOT / "docs" / "configuration.md"
APPS = ("syndarix", "projects", "agents", "aiservices", "buildkit")
NO_DEFAULT = object()


def settings_reads() -> dict[str, object]:
    """Variable name -> literal default (``NO_DEFAULT`` when the default is an expression or falls back with ``or``)
    for each ``env.<cast>("NAME", default=...)`` and ``os.environ.get("NAME", ...)`` call in settings.py."""
    tree = ast.parse(SETTINGS.read_text())
    fallen_back = {id(value) for node in ast.walk(tree) if isinstance(node, ast.BoolOp) for value in node.values}
    reads: dict[str, object] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
            continue
        function = ast.unparse(node.func)
        if not (function.startswith("env.") or function == "os.environ.get"):
            continue
        name = node.args[0].value
        if not (isinstance(name, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", name)):
            continue
        default = next((keyword.value for keyword in node.keywords if keyword.arg == "default"), None)
        try:
            literal = ast.literal_eval(default) if default is not None and id(node) not in fallen_back else NO_DEFAULT
        except ValueError:
            literal = NO_DEFAULT
        reads[name] = literal
    return reads


def table_rows() -> dict[str, str]:
    """Variable name -> the default cell of its row (in an ``A / B`` row, the cell's part for that name, or the whole
    cell when it states one default for both)."""
    rows: dict[str, str] = {}
    for line in TABLE.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        defaults = cells[1].split(" / ") if len(names) > 1 else [cells[1]]
        if len(defaults) == 1:
            defaults *= len(names)
        assert len(defaults) == len(names), line
        rows.update(zip(names, defaults, strict=True))
    return rows


def stated(value: object) -> str:
    """How the table writes a literal default: `true`, `50`, `a,b`, or "empty"."""
    if value in ("", []):
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list):
        value = ",".join(value)
    return f"`{value}`"


def test_every_variable_the_settings_read_has_a_row():
    reads = settings_reads()
    assert {"DJANGO_DEBUG", "DATABASE_URL", "DJANGO_ENV_FILE", "AGENT_LLM_MODEL"} <= reads.keys()
    assert set(reads) - set(table_rows()) == set()


def test_every_row_names_a_variable_that_is_read():
    sources = "\n".join(path.read_text() for app in APPS for path in (ROOT / app).rglob("*.py"))
    unread = {name for name in set(table_rows()) - set(settings_reads()) if f'"{name}"' not in sources}
    assert unread == set()


def test_literal_defaults_match_the_table():
    rows = table_rows()
    checked = {name: value for name, value in settings_reads().items() if value is not NO_DEFAULT}
    assert len(checked) > 30
    wrong = {
        name: (stated(value), rows.get(name))
        for name, value in checked.items()
        if not rows.get(name, "").startswith(stated(value))
    }
    assert wrong == {}
