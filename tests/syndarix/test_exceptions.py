"""The one exception handler, through real endpoints."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from agents.models import AgentContext

pytestmark = pytest.mark.django_db


def _three_mib_body() -> str:
    return json.dumps({"name": "huge", "data": {"blob": "a" * (3 * 1024 * 1024)}})


def test_a_body_over_data_upload_max_memory_size_is_413_in_the_envelope(owner_client, project):
    assert len(_three_mib_body()) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = owner_client.post(
        f"/api/v1/projects/{project.pk}/contexts", _three_mib_body(), content_type="application/json"
    )
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "success": False,
        "errors": [
            {
                "code": "payload_too_large",
                "message": (
                    f"The request body exceeds the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes "
                    "(DATA_UPLOAD_MAX_MEMORY_SIZE)."
                ),
                "field": None,
                "max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            }
        ],
    }
    assert not AgentContext.objects.exists()


def test_the_browsable_api_renders_the_413_too(owner_client, project):
    response = owner_client.post(
        f"/api/v1/projects/{project.pk}/contexts", _three_mib_body(), content_type="application/json",
        HTTP_ACCEPT="text/html",
    )
    assert response.status_code == 413
    assert b"payload_too_large" in response.content
