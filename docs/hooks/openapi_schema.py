"""MkDocs hook: writes the API's OpenAPI schema to `docs/api/openapi.yaml` before each build.

The schema comes from `manage.py spectacular` (drf-spectacular, the same generator as `/api/schema/`), run in a
subprocess with no `.env` (`DJANGO_ENV_FILE=`), so the reference page (`docs/api/reference.md`, rendered by the
`neoteroi.mkdocsoad` plugin) always shows the code being built, offline. The file is git-ignored and rewritten
only when the schema changed, so `mkdocs serve` does not rebuild in a loop.

Raises:
    mkdocs.exceptions.PluginError: the schema could not be generated (the command's stderr is included).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "docs" / "api" / "openapi.yaml"


def on_pre_build(config) -> None:
    """Generate the schema (YAML) with `manage.py spectacular` into `SCHEMA`, if it changed."""
    environment = {**os.environ, "DJANGO_ENV_FILE": "", "DJANGO_SETTINGS_MODULE": "syndarix.settings"}
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--format", "openapi"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0:
        raise PluginError(f"manage.py spectacular failed:\n{result.stderr}")
    if not SCHEMA.exists() or SCHEMA.read_text() != result.stdout:
        SCHEMA.write_text(result.stdout)
