"""Fixtures of the AI services tests: provider settings, upstream answers, users with the permission."""

from __future__ import annotations

import json
import types
import zlib
from typing import Any

import django_ratelimit.core
import pytest
import responses
from django.contrib.auth.models import Permission

from syndarix.api import ratelimit
from tests.conftest import client_for
from tests.factories import UserFactory

REFINE = "tools.syndarix.api.refine_prompt"

AGENTA_SETTINGS = {
    "AI_SERVICES_PROVIDER": "agenta",
    "AI_SERVICES_API_URL": "https://agenta.test/api/",
    "AI_SERVICES_API_KEY": "ag-secret",
    "AI_SERVICES_ENVIRONMENT_SLUG": "production",
    "AI_SERVICES_REFINE_PROMPT_KEY": "ai-refine",
    "AI_SERVICES_MODEL": "",
}
OPENAI_SETTINGS = {
    "AI_SERVICES_PROVIDER": "openai",
    "AI_SERVICES_API_URL": "http://llm.test/v1",
    "AI_SERVICES_API_KEY": "sk-test",
    "AI_SERVICES_ENVIRONMENT_SLUG": "",
    "AI_SERVICES_REFINE_PROMPT_KEY": "",
    "AI_SERVICES_MODEL": "gpt-test",
}
DISABLED_SETTINGS = {**AGENTA_SETTINGS, "AI_SERVICES_API_URL": "", "AI_SERVICES_API_KEY": "  "}

TEMPLATE = {
    "messages": [
        {"role": "system", "content": "You answer questions about {{country}}."},
        {"role": "user", "content": "{{question}}"},
    ],
    "template_format": "curly",
    "input_keys": ["country", "question"],
}
TEMPLATE_JSON = json.dumps(TEMPLATE)
REFINED = {
    "messages": [
        {"role": "system", "content": "You are an expert on {{ country }}. Answer precisely and cite facts."},
        {"role": "user", "content": "Question: {{question}}"},
    ],
    "summary": "Made the system message precise.",
}


@pytest.fixture
def ratelimit_clock(monkeypatch):
    """``ratelimit_clock(user)`` → a clock whose ``now`` (epoch seconds) every rate limit sees.

    It drives the exact sliding windows of ``syndarix.api.ratelimit.check_sliding_window`` (the tool
    calls) and django-ratelimit's fixed windows (the status endpoint). It starts at the first second
    of one of ``user``'s fixed minute windows (also the first second of a 10-second window), so a
    test crosses a fixed-window edge only where it means to.
    """

    def start(user):
        jitter = zlib.crc32(f"user:{user.pk}".encode()) % 60
        state = types.SimpleNamespace(now=1_800_000_000 - 1_800_000_000 % 60 + jitter + 1)
        monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=lambda: state.now))
        monkeypatch.setattr(ratelimit, "clock", lambda: state.now)
        return state

    return start


def apply(settings, values: dict[str, str]) -> None:
    for name, value in values.items():
        setattr(settings, name, value)


@pytest.fixture
def agenta(settings):
    """Configure the ``agenta`` provider; returns its run URL."""
    apply(settings, AGENTA_SETTINGS)
    return "https://agenta.test/api/services/completion/run"


@pytest.fixture
def openai(settings):
    """Configure the ``openai`` provider; returns its chat completions URL."""
    apply(settings, OPENAI_SETTINGS)
    return "http://llm.test/v1/chat/completions"


@pytest.fixture
def disabled(settings):
    apply(settings, DISABLED_SETTINGS)


@pytest.fixture
def upstream():
    """A ``responses`` mock of the upstream (any unregistered URL fails with ConnectionError)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def agenta_body(output: Any, *, trace_id: str | None = "trace-agenta-1", raw_data: Any = None) -> dict[str, Any]:
    """An Agenta ``/services/completion/run`` answer whose ``data`` is ``output`` as a JSON string."""
    body = {
        "version": "3.0",
        "data": raw_data if raw_data is not None else json.dumps(output),
        "content_type": "application/json",
        "tree_id": "tree-1",
        "span_id": "span-1",
    }
    if trace_id:
        body["trace_id"] = trace_id
    return body


def openai_body(output: Any, *, content: str | None = None, finish_reason: str = "stop") -> dict[str, Any]:
    """A Chat Completions answer whose message content is ``output`` as JSON."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content if content is not None else json.dumps(output)},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
    }


def answer_agenta(upstream, url: str, output: Any = REFINED, **kwargs) -> None:
    upstream.add(responses.POST, url, json=agenta_body(output, **kwargs), status=200)


def grant_tools(user) -> None:
    user.user_permissions.add(Permission.objects.get(content_type__app_label="aiservices", codename="edit_workflows"))


@pytest.fixture
def tool_user(db):
    """A user holding ``aiservices.edit_workflows``."""
    user = UserFactory(username="prompt-editor")
    grant_tools(user)
    return user


@pytest.fixture
def tool_client(tool_user):
    return client_for(tool_user)


def refine_args(**overrides: Any) -> dict[str, Any]:
    return {"prompt_template_json": TEMPLATE_JSON, "guidelines": "Be precise.", **overrides}
