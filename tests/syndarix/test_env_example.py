"""`.env.example` is a working `.env`: `cp .env.example .env` must start the project."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import environ
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / ".env.example"


@pytest.fixture
def example_values(monkeypatch) -> dict[str, str]:
    """The variables ``environ.Env.read_env`` (what settings.py calls) takes from ``.env.example``."""
    parsed: dict[str, str] = {}
    monkeypatch.setattr(environ.Env, "ENVIRON", parsed)
    environ.Env.read_env(EXAMPLE, overwrite=True)
    return parsed


def test_no_value_carries_a_comment(example_values):
    assert example_values, "nothing parsed"
    assert {name: value for name, value in example_values.items() if "#" in value} == {}


def test_every_setting_read_from_the_environment_is_listed():
    settings_source = (ROOT / "syndarix" / "settings.py").read_text()
    read = set(re.findall(r"env(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]+)\"", settings_source))
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), flags=re.MULTILINE))
    assert {"DJANGO_SECURE_SSL_REDIRECT", "DJANGO_SECURE_HSTS_SECONDS", "DATABASE_URL"} <= read
    assert read - listed == set()


def test_settings_built_from_the_example_pass_the_checks(example_values, tmp_path):
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **example_values}
    environment["DJANGO_SETTINGS_MODULE"] = "syndarix.settings"
    check = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=environment, capture_output=True, text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    script = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'debug': s.DEBUG, 'secret': bool(s.SECRET_KEY), 'engine': s.DATABASES['default']['ENGINE'],"
        " 'limit': s.AGENT_MAX_CONCURRENCY, 'hooks': s.AGENT_HOOK_TIMEOUT_SECONDS, 'hosts': s.ALLOWED_HOSTS}))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout.strip().splitlines()[-1]) == {
        "debug": True,
        "secret": True,
        "engine": "django.db.backends.sqlite3",
        "limit": 50,
        "hooks": 10.0,
        "hosts": ["127.0.0.1", "localhost", "testserver"],
    }
