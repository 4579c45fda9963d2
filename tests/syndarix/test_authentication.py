"""``syndarix.api.authentication``: the API's configured token class, accepted under ``Bearer`` too."""

from __future__ import annotations

import pytest
from django.test import RequestFactory, override_settings
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from syndarix.api.authentication import bearer_authenticate, token_authentication_class
from tests import factories


def request_with(authorization: str | None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return RequestFactory().post("/mcp", headers=headers)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "Token"])
def test_the_api_token_authenticates_under_bearer_and_its_own_keyword(user, scheme):
    request = request_with(f"{scheme} {factories.token_for(user)}")
    assert bearer_authenticate(request) == user
    assert request.headers["Authorization"].startswith(scheme)  # the caller's request is left as it was


@pytest.mark.parametrize("authorization", [None, "", "Basic dXNlcjpwYXNz"])
def test_no_token_is_none(db, authorization):
    assert bearer_authenticate(request_with(authorization)) is None


@pytest.mark.parametrize("authorization", ["Bearer nope", "Bearer", "Bearer a b"])
def test_a_bad_token_fails(db, authorization):
    with pytest.raises(AuthenticationFailed):
        bearer_authenticate(request_with(authorization))


def test_the_class_is_the_configured_token_authentication():
    assert token_authentication_class() is TokenAuthentication


class OtherTokenAuthentication(TokenAuthentication):
    keyword = "Knox"


def test_another_configured_token_class_is_used_with_its_keyword(user, settings):
    classes = [f"{__name__}.OtherTokenAuthentication", "rest_framework.authentication.SessionAuthentication"]
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_AUTHENTICATION_CLASSES": classes}):
        assert token_authentication_class() is OtherTokenAuthentication
        assert bearer_authenticate(request_with(f"Bearer {factories.token_for(user)}")) == user
        assert bearer_authenticate(request_with(f"Token {factories.token_for(user)}")) is None


def test_without_a_token_class_it_is_misconfigured(settings):
    from django.core.exceptions import ImproperlyConfigured

    classes = ["rest_framework.authentication.SessionAuthentication"]
    rest_framework = {**settings.REST_FRAMEWORK, "DEFAULT_AUTHENTICATION_CLASSES": classes}
    with override_settings(REST_FRAMEWORK=rest_framework), pytest.raises(ImproperlyConfigured):
        token_authentication_class()
