"""`POST /api/v1/auth/token`: username + password → a new token; and the API root. Token lifecycle: test_tokens.py."""

from __future__ import annotations

import pytest
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests import factories

from .conftest import fields

pytestmark = pytest.mark.django_db

URL = "/api/v1/auth/token"


def test_credentials_give_a_token_that_authenticates(api_client, user):
    response = api_client.post(URL, {"username": user.username, "password": "pw-Syndarix-1"}, format="json")
    assert response.status_code == 200
    body = response.json()
    token = body["token"]
    stored = AuthToken.objects.get(user=user)
    assert body == {"token": token, "token_key": token[:15], "expiry": body["expiry"]}
    assert stored.token_key == token[:15] and token not in stored.digest  # hashed at rest
    again = api_client.post(URL, {"username": user.username, "password": "pw-Syndarix-1"}, format="json")
    assert again.json()["token"] != token  # one token per login
    assert AuthToken.objects.filter(user=user).count() == 2
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/projects").status_code == 200


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"username": "USER", "password": "wrong"}, {None: "invalid_credentials"}),
        ({"username": "nobody", "password": "pw-Syndarix-1"}, {None: "invalid_credentials"}),
        ({"username": "USER"}, {"password": "required"}),
        ({}, {"username": "required", "password": "required"}),
    ],
)
def test_bad_credentials_are_400(api_client, user, body, expected):
    body = {k: user.username if v == "USER" else v for k, v in body.items()}
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert fields(response) == expected
    assert not AuthToken.objects.exists()


def test_an_inactive_user_gets_no_token(api_client):
    user = factories.UserFactory(is_active=False)
    response = api_client.post(URL, {"username": user.username, "password": "pw-Syndarix-1"}, format="json")
    assert response.status_code == 400


def test_a_stale_token_header_does_not_block_login(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token revoked")
    response = client.post(URL, {"username": user.username, "password": "pw-Syndarix-1"}, format="json")
    assert response.status_code == 200


def test_the_api_root_links_the_collections(api_client):
    response = api_client.get("/api/v1/")
    assert response.status_code == 200
    assert response.json()["agent-types"] == "http://testserver/api/v1/agent-types"
    assert set(response.json()) == {"workspaces", "projects", "agent-types", "auth-token", "schema", "docs"}
