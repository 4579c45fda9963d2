"""API tokens (django-rest-knox): hashed, expiring, one per login, listed and revoked by their owner, revoked by a
password change; `Token` and `Bearer` schemes; the login throttle per IP and per account; the client IP behind
trusted proxies."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.forms import SetPasswordForm
from django.core.management import call_command
from django.test import RequestFactory
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from syndarix.api.clientip import client_ip
from syndarix.api.ratelimit import user_or_ip
from tests import factories

from .conftest import codes

pytestmark = pytest.mark.django_db

LOGIN = "/api/v1/auth/token"
TOKENS = "/api/v1/auth/tokens"
PASSWORD = "pw-Syndarix-1"


def login(user, client=None, **extra) -> str:
    response = (client or APIClient()).post(LOGIN, {"username": user.username, "password": PASSWORD}, format="json",
                                            **extra)
    assert response.status_code == 200, response.content
    return response.json()["token"]


def as_token(token: str, scheme: str = "Token") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {token}")
    return client


# --- Tokens ---


def test_each_login_is_its_own_token_stored_hashed_and_expiring(user, settings):
    first, second = login(user), login(user)
    assert first != second
    rows = AuthToken.objects.filter(user=user)
    assert {row.token_key for row in rows} == {first[:15], second[:15]}
    assert all(first not in row.digest and second not in row.digest for row in rows)  # only digests at rest
    ttl = settings.REST_KNOX["TOKEN_TTL"]
    assert ttl == timedelta(hours=24 * 30)
    assert all(abs(row.expiry - (timezone.now() + ttl)) < timedelta(minutes=1) for row in rows)
    assert as_token(first).get("/api/v1/projects").status_code == 200
    assert as_token(second).get("/api/v1/projects").status_code == 200


def test_an_expired_token_is_401_and_deleted(user):
    token = login(user)
    AuthToken.objects.filter(user=user).update(expiry=timezone.now() - timedelta(seconds=1))
    response = as_token(token).get("/api/v1/projects")
    assert response.status_code == 401 and codes(response) == ["authentication_failed"]
    assert not AuthToken.objects.filter(user=user).exists()


def test_a_login_sweeps_the_users_expired_tokens(user):
    login(user)
    AuthToken.objects.filter(user=user).update(expiry=timezone.now() - timedelta(seconds=1))
    fresh = login(user)
    assert list(AuthToken.objects.filter(user=user).values_list("token_key", flat=True)) == [fresh[:15]]


def test_bearer_is_accepted_like_token(user):
    token = login(user)
    assert as_token(token, "Bearer").get("/api/v1/projects").status_code == 200
    assert as_token(token, "bearer").get("/api/v1/projects").status_code == 200
    response = as_token("not-a-token", "Bearer").get("/api/v1/projects")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("header", ["Token", "Token a b", "Bearer \xe9t\xe9-token"])
def test_malformed_token_headers_are_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/projects")
    assert response.status_code == 401 and codes(response) == ["authentication_failed"]


def test_the_owner_lists_tokens_without_secrets(user):
    first, second = login(user), login(user)
    login(factories.UserFactory())  # someone else's
    response = as_token(second).get(TOKENS)
    assert response.status_code == 200
    data = response.json()["data"]
    assert [row["token_key"] for row in data] == [second[:15], first[:15]]  # newest first
    assert [row["current"] for row in data] == [True, False]
    assert set(data[0]) == {"token_key", "created", "expiry", "current"}
    assert first not in response.content.decode() and second not in response.content.decode()
    assert response["X-RateLimit-Limit"] == "60"


def test_listing_needs_authentication(api_client):
    response = api_client.get(TOKENS)
    assert response.status_code == 401 and codes(response) == ["not_authenticated"]


def test_the_owner_revokes_one_token_and_not_someone_elses(user):
    first, second = login(user), login(user)
    other = login(factories.UserFactory())
    client = as_token(second)
    assert client.delete(f"{TOKENS}/{first[:15]}").status_code == 204
    assert as_token(first).get("/api/v1/projects").status_code == 401
    response = client.delete(f"{TOKENS}/{other[:15]}")
    assert response.status_code == 404 and codes(response) == ["not_found"]
    assert as_token(other).get("/api/v1/projects").status_code == 200
    assert client.delete(f"{TOKENS}/{first[:15]}").status_code == 404  # already gone


def test_logout_revokes_only_this_token(user):
    first, second = login(user), login(user)
    response = as_token(first).post("/api/v1/auth/logout")
    assert response.status_code == 200 and response.json() == {"success": True, "message": "Token revoked."}
    assert as_token(first).get("/api/v1/projects").status_code == 401
    assert as_token(second).get("/api/v1/projects").status_code == 200


def test_logout_needs_a_token(api_client, user):
    assert api_client.post("/api/v1/auth/logout").status_code == 401
    api_client.force_login(user)  # a session has no token to revoke
    assert api_client.post("/api/v1/auth/logout").status_code == 401


def test_logout_all_revokes_every_token_of_the_caller_only(user):
    tokens = [login(user) for _ in range(3)]
    other = login(factories.UserFactory())
    response = as_token(tokens[0]).post("/api/v1/auth/logout-all")
    assert response.status_code == 200 and response.json()["message"] == "3 tokens revoked."
    assert all(as_token(token).get("/api/v1/projects").status_code == 401 for token in tokens)
    assert as_token(other).get("/api/v1/projects").status_code == 200


def test_a_password_change_revokes_every_token(user):
    tokens = [login(user), login(user)]
    other = login(factories.UserFactory())
    form = SetPasswordForm(user, {"new_password1": "An0ther-Passw0rd!", "new_password2": "An0ther-Passw0rd!"})
    assert form.is_valid(), form.errors
    form.save()  # what the admin's password form and `changepassword` do: set_password + save
    assert all(as_token(token).get("/api/v1/projects").status_code == 401 for token in tokens)
    assert as_token(other).get("/api/v1/projects").status_code == 200


def test_saving_a_user_without_a_new_password_keeps_tokens(user):
    token = login(user)
    user.first_name = "Ada"
    user.save()
    user.refresh_from_db()
    assert user.check_password(PASSWORD)  # may rehash the stored password: not a change
    assert as_token(token).get("/api/v1/projects").status_code == 200


def test_the_admin_lists_tokens_without_secrets(superuser, user, client):
    token = login(user)
    client.force_login(superuser)
    page = client.get("/admin/knox/authtoken/").content.decode()
    assert f'<td class="field-token_key">{token[:15]}</td>' in page and user.username in page
    assert token not in page and "field-digest" not in page
    assert client.get("/admin/knox/authtoken/add/").status_code == 403


def test_staff_who_are_not_superusers_see_only_their_own_tokens_in_the_admin(user, client):
    from django.contrib.auth.models import Permission

    staff = factories.UserFactory(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_authtoken", "delete_authtoken"]))
    theirs, own = login(user), login(staff)
    client.force_login(staff)
    page = client.get("/admin/knox/authtoken/").content.decode()
    assert own[:15] in page and theirs[:15] not in page


def test_changepassword_command_revokes_tokens(user, monkeypatch):
    token = login(user)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "An0ther-Passw0rd!")
    call_command("changepassword", user.username, stdout=None)
    assert as_token(token).get("/api/v1/projects").status_code == 401


# --- The login throttle ---


def test_the_login_throttle_holds_per_account_across_ips(user):
    client = APIClient()
    body = {"username": user.username, "password": "wrong"}
    for n in range(5):
        assert client.post(LOGIN, body, format="json", REMOTE_ADDR=f"10.0.0.{n}").status_code == 400
    response = client.post(LOGIN, {**body, "password": PASSWORD}, format="json", REMOTE_ADDR="10.0.1.1")
    assert response.status_code == 429 and codes(response) == ["rate_limited"]
    assert int(response["Retry-After"]) >= 1
    assert (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]) == ("5", "0")
    spelled = client.post(LOGIN, {**body, "username": f" {user.username.upper()} "}, format="json",
                          REMOTE_ADDR="10.0.1.2")
    assert spelled.status_code == 429  # one bucket per account whatever the spelling
    other = factories.UserFactory()
    assert client.post(LOGIN, {"username": other.username, "password": PASSWORD}, format="json",
                       REMOTE_ADDR="10.0.1.3").status_code == 200


def test_a_login_answer_carries_the_tightest_limit(user):
    response = APIClient().post(LOGIN, {"username": user.username, "password": PASSWORD}, format="json")
    assert (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]) == ("5", "4")


# --- The client IP behind trusted proxies ---


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (0, "203.0.113.9", "10.1.1.1"),  # no proxy trusted: the header is ignored
        (1, "203.0.113.9", "203.0.113.9"),
        (1, "198.51.100.66, 203.0.113.9", "203.0.113.9"),  # the client's own entries are not believed
        (2, "198.51.100.66, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        (2, "203.0.113.9", "203.0.113.9"),  # fewer entries than hops: the leftmost
        (1, "not-an-ip", "10.1.1.1"),
        (1, "", "10.1.1.1"),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_ip_counts_trusted_hops_from_the_right(settings, hops, forwarded, expected):
    settings.TRUSTED_PROXY_HOPS = hops
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def test_behind_a_proxy_each_client_has_its_own_login_bucket(settings):
    settings.TRUSTED_PROXY_HOPS = 1
    client = APIClient()
    for n in range(10):
        body = {"username": f"nobody-{n}", "password": "wrong"}
        assert client.post(LOGIN, body, format="json", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 400
    body = {"username": "nobody-x", "password": "wrong"}
    assert client.post(LOGIN, body, format="json", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 429
    # Same proxy (REMOTE_ADDR), another client: a bucket of its own.
    assert client.post(LOGIN, body, format="json", HTTP_X_FORWARDED_FOR="203.0.113.10").status_code == 400


def test_anonymous_rate_limits_key_on_the_client_ip_too(settings):
    settings.TRUSTED_PROXY_HOPS = 1
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert user_or_ip("group", request) == "ip:203.0.113.9"
