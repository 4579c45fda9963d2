"""The SSRF rule: private, loopback, link-local, shared and metadata targets are refused when saved (400) and when
connecting (DNS rebinding), unless ``WEBHOOK_ALLOW_PRIVATE_TARGETS``."""

from __future__ import annotations

import socket

import pytest

from agents.webhooks import services, targets
from agents.webhooks.choices import DeliveryStatus
from agents.webhooks.dispatch import Step, dispatch_step
from agents.webhooks.models import WebhookDelivery
from syndarix.exceptions import InvalidInput

from .conftest import emit_events


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.1", "private"),
        ("172.16.5.4", "private"), ("169.254.169.254", "link-local (cloud metadata)"), ("fe80::1", "link-local"),
        ("fd00:ec2::254", "private"), ("100.100.100.200", "not globally routable"), ("0.0.0.0", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"), ("224.0.0.1", "multicast"), ("240.0.0.1", "private"),
    ],
)
def test_non_public_addresses_are_refused(address, reason):
    assert targets.refused_reason(address).startswith(reason)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert targets.refused_reason(address) is None


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/hook", "http://localhost/hook", "https://10.0.0.5/", "http://169.254.169.254/latest/",
     "http://[::1]/", "http://[::ffff:7f00:1]/", "http://100.100.100.200/"],
)
def test_private_targets_are_refused_at_save(settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(InvalidInput) as refused:
        targets.validate_target_url(url)
    assert refused.value.code == "private_target" and refused.value.field == "url"


@pytest.mark.parametrize("url", ["ftp://example.com/", "http://user:pw@93.184.215.14/", "http:///nohost", "nope"])
def test_malformed_targets_are_refused(settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(InvalidInput) as refused:
        targets.validate_target_url(url)
    assert refused.value.code == "invalid_url"


def test_an_unresolvable_host_is_refused(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(InvalidInput) as refused:
        targets.validate_target_url("https://no-such-host.invalid/hook")
    assert refused.value.code == "unresolvable_host"


def test_a_public_ip_literal_is_accepted_and_the_setting_allows_private_ones(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    assert targets.validate_target_url("https://93.184.215.14/hook")
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    assert targets.validate_target_url("http://127.0.0.1:9/hook")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_nudge")
def test_a_name_that_rebinds_to_loopback_is_refused_when_connecting(project, receiver, settings, monkeypatch):
    """Saved while it resolved to a public address; at delivery it resolves to 127.0.0.1, where the receiver listens:
    the connection is refused before a byte is sent, and the delivery is retried."""
    real = socket.getaddrinfo
    answers = {"rebind.example": "93.184.215.14"}

    def fake_getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    url = receiver.url.replace("127.0.0.1", "rebind.example")
    endpoint, _ = services.webhook_endpoint_create(workspace=project.workspace, url=url)  # public when saved
    receiver.secret = endpoint.secret
    answers["rebind.example"] = "127.0.0.1"  # rebinding
    emit_events(project, 1)
    assert dispatch_step(endpoint.pk) == Step.RETRY
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.status == DeliveryStatus.PENDING and "loopback" in delivery.last_error
    assert receiver.received == []
    # Allowed again, the same name connects to the checked address, with the name in the Host header.
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    WebhookDelivery.objects.update(next_attempt_at=None)
    assert dispatch_step(endpoint.pk) == Step.SUCCEEDED
    assert receiver.succeeded()[0].headers["host"] == f"rebind.example:{receiver.port}"
