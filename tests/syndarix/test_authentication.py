"""``syndarix.api.authentication.authenticate_token``: the API's tokens on a plain Django request (the MCP server)."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from rest_framework.exceptions import AuthenticationFailed

from syndarix.api.authentication import authenticate_token
from tests import factories


def request_with(authorization: str | None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return RequestFactory().post("/mcp", headers=headers)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "Token", "token"])
def test_the_api_token_authenticates_under_bearer_and_token(user, scheme):
    request = request_with(f"{scheme} {factories.token_for(user)}")
    assert authenticate_token(request) == user


@pytest.mark.parametrize("authorization", [None, "", "Basic dXNlcjpwYXNz"])
def test_no_token_is_none(db, authorization):
    assert authenticate_token(request_with(authorization)) is None


@pytest.mark.parametrize("authorization", ["Bearer nope", "Bearer", "Bearer a b", "Token nope"])
def test_a_bad_token_fails(db, authorization):
    with pytest.raises(AuthenticationFailed):
        authenticate_token(request_with(authorization))


def test_a_revoked_token_fails(user):
    token = factories.token_for(user)
    from knox.models import AuthToken

    AuthToken.objects.filter(user=user).delete()
    with pytest.raises(AuthenticationFailed):
        authenticate_token(request_with(f"Bearer {token}"))
