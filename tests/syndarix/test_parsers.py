"""The API-wide JSON parser: hostile bodies are a 400, never a 500."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "url",
    ["/api/v1/projects", "/api/v1/agent-templates/resolve", "/api/v1/ai/services/tools/call"],
)
def test_deeply_nested_body_is_a_400_parse_error(superuser, url):
    from tests.conftest import client_for

    response = client_for(superuser).generic("POST", url, DEEP, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "parse_error"


def test_nan_is_refused(owner_client, project):
    body = '{"agent_type_id": "00000000-0000-0000-0000-000000000000", "name": "a", "config": {"x": NaN}}'
    url = f"/api/v1/projects/{project.pk}/agents"
    response = owner_client.generic("POST", url, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "parse_error"
