"""Serializers of the webhook API: endpoints (the secret only in the answers to create and rotate) and
deliveries."""

from __future__ import annotations

from rest_framework import serializers

from .choices import DEFAULT_EVENT_TYPES, EVENT_TYPES
from .models import WebhookDelivery, WebhookEndpoint

_ENDPOINT_FIELDS = [
    "id", "workspace_id", "url", "description", "event_types", "is_active", "consecutive_failures", "disabled_at",
    "disabled_reason", "last_event_id", "created_at", "updated_at",
]


class WebhookEndpointSerializer(serializers.ModelSerializer):
    """An endpoint as read: no secret (it is shown once, by create and rotate-secret)."""

    workspace_id = serializers.UUIDField(read_only=True)
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES), read_only=True)
    last_event_id = serializers.IntegerField(
        read_only=True, help_text="The last outbox event dispatched to this endpoint (0: none yet)."
    )

    class Meta:
        model = WebhookEndpoint
        fields = _ENDPOINT_FIELDS
        read_only_fields = _ENDPOINT_FIELDS


class WebhookEndpointSecretSerializer(WebhookEndpointSerializer):
    """An endpoint with its signing secret (``whsec_`` + base64), in the answers to create and rotate-secret only."""

    secret = serializers.CharField(
        read_only=True,
        help_text="The signing secret (Standard Webhooks: `whsec_` + base64 of the key). Shown only in this answer.",
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*_ENDPOINT_FIELDS, "secret"]
        read_only_fields = fields


class WebhookEndpointInputSerializer(serializers.Serializer):
    """Create (``url`` required) or update (every field optional) an endpoint. The SSRF rule and the event types'
    rules are checked by the services (``agents.webhooks.services``)."""

    url = serializers.URLField(max_length=2000, help_text="http(s) URL the events are posted to (a public address).")
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, allow_empty=False, max_length=len(EVENT_TYPES),
        help_text=f"Event types to receive: any of {', '.join(EVENT_TYPES)}. "
                  f"Default: all but run.step ({', '.join(DEFAULT_EVENT_TYPES)}).",
    )
    is_active = serializers.BooleanField(required=False, default=True)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    """One event posted to one endpoint: the outcome of its latest attempt and when the next is due."""

    endpoint_id = serializers.UUIDField(read_only=True)
    event_id = serializers.IntegerField(read_only=True, help_text="The outbox event (also the `webhook-id` header).")
    event_type = serializers.CharField(
        source="event.type", read_only=True, allow_null=True, default=None,
        help_text="The event's type (null once the event is no longer kept: EVENTS_RETENTION_DAYS).",
    )

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "endpoint_id", "event_id", "event_type", "status", "is_redelivery", "attempts",
            "response_status_code", "duration_ms", "last_error", "created_at", "first_attempt_at", "last_attempt_at",
            "next_attempt_at", "delivered_at",
        ]
        read_only_fields = fields
