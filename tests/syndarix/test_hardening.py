"""Production settings that keep outages short and headers honest: database and Redis timeouts, HSTS preload only
with a year of max-age, the health probes in-process, and a lost dependency outside the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis.exceptions
from django.conf import settings
from django.db import OperationalError, connection
from django.test import RequestFactory

from syndarix.api.middleware import DependencyOutageMiddleware
from tests.live import ROOT, SilentServer


def settings_in(env: dict[str, str], expression: str) -> subprocess.CompletedProcess:
    """Evaluate ``expression`` against the settings module loaded with ``env`` (production defaults)."""
    base = {
        **os.environ, "DJANGO_ENV_FILE": "", "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "k" * 50,
        "AGENT_LLM_API_URL": "http://127.0.0.1:9/v1", "DJANGO_SETTINGS_MODULE": "syndarix.settings",
    }
    code = f"import django; django.setup(); from django.conf import settings; print({expression})"
    return subprocess.run([sys.executable, "-c", code], env={**base, **env}, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "3600 False ['security.W021']"),  # the default: no preload with an hour of max-age
        ({"DJANGO_SECURE_HSTS_SECONDS": "31536000"}, "31536000 True []"),
        ({"DJANGO_SECURE_HSTS_SECONDS": "31536000", "DJANGO_SECURE_HSTS_PRELOAD": "false"},
         "31536000 False ['security.W021']"),
        ({"DJANGO_SECURE_HSTS_SECONDS": "31536000", "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "false"},
         "31536000 False ['security.W021']"),
    ],
)
def test_hsts_preload_only_with_a_year_of_max_age(env, expected):
    result = settings_in(env, "settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_PRELOAD, "
                              "settings.SILENCED_SYSTEM_CHECKS")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_asking_for_preload_with_a_short_max_age_is_refused():
    result = settings_in({"DJANGO_SECURE_HSTS_PRELOAD": "true"}, "1")
    assert result.returncode != 0 and "DJANGO_SECURE_HSTS_PRELOAD=true needs" in result.stderr


def test_database_and_redis_timeouts_come_from_the_settings():
    assert settings.DATABASES["default"]["OPTIONS"]["connect_timeout"] == settings.DATABASE_CONNECT_TIMEOUT == 2
    assert settings.CACHES["default"]["OPTIONS"] == {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}


def test_statements_are_bound_on_the_server_and_prepared_unless_turned_off():
    options = "settings.DATABASES['default']['OPTIONS']"
    expression = f"{options}.get('server_side_binding'), {options}.get('prepare_threshold')"
    postgresql = {"DATABASE_URL": "postgres://syndarix@127.0.0.1:5432/syndarix"}
    assert settings_in(postgresql, expression).stdout.strip() == "True 5"
    assert settings_in({**postgresql, "DATABASE_PREPARE_THRESHOLD": "0"}, expression).stdout.strip() == "True 0"
    off = settings_in({**postgresql, "DATABASE_PREPARED_STATEMENTS": "false"}, expression)
    assert off.stdout.strip() == "None None"  # Django's defaults: client-side binding, nothing prepared
    refused = settings_in({**postgresql, "DATABASE_PREPARE_THRESHOLD": "-1"}, "1")
    assert refused.returncode != 0 and "DATABASE_PREPARE_THRESHOLD must be" in refused.stderr


@pytest.mark.django_db
def test_postgresql_cancels_statements_past_the_statement_timeout():
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("20s",)
        cursor.execute("SET LOCAL statement_timeout = 50")
        with pytest.raises(OperationalError):
            cursor.execute("SELECT pg_sleep(1)")


def test_healthz_does_no_io(client):
    response = client.get("/healthz")  # no django_db mark: a query would raise
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert "no-cache" in response["Cache-Control"]
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_readyz_reports_each_dependency(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok", "broker": "ok"}}


@pytest.mark.parametrize(
    ("error", "dependency"),
    [(OperationalError("connection refused"), "database"), (redis.exceptions.TimeoutError("silent"), "cache")],
)
def test_a_lost_dependency_outside_the_api_is_a_short_503(error, dependency):
    middleware = DependencyOutageMiddleware(lambda request: None)
    page = middleware.process_exception(RequestFactory().get("/admin/"), error)
    assert page.status_code == 503 and page["Retry-After"] == "5"
    assert page["Content-Type"].startswith("text/plain") and dependency.encode() in page.content
    api = middleware.process_exception(RequestFactory().get("/api/v1/projects"), error)
    assert api.status_code == 503
    assert [(e["code"], e["dependency"]) for e in json.loads(api.content)["errors"]] == [
        ("service_unavailable", dependency)
    ]
    assert middleware.process_exception(RequestFactory().get("/admin/"), ValueError("bug")) is None


def test_queuing_a_task_on_a_silent_broker_fails_within_its_timeout():
    """kombu's Redis transport waits for ever by default; a request that queues a run must not."""
    code = (
        "import time, django; django.setup()\n"
        "from agents.runtime.tasks import run_hooks\n"
        "started = time.monotonic()\n"
        "try:\n    run_hooks.delay('x')\nexcept Exception as exc:\n    print(type(exc).__name__)\n"
        "print(round(time.monotonic() - started, 2))\n"
    )
    with SilentServer() as broker:
        env = {**os.environ, "DJANGO_ENV_FILE": "", "DJANGO_SETTINGS_MODULE": "syndarix.settings",
               "CELERY_BROKER_URL": f"redis://127.0.0.1:{broker.port}/0"}
        result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
    error, seconds = result.stdout.split()
    assert error == "OperationalError", result.stderr
    assert float(seconds) < settings.CELERY_BROKER_SOCKET_TIMEOUT + 1.5
