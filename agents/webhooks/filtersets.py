"""Query-string filters of the webhook lists."""

from __future__ import annotations

import django_filters

from syndarix.api.filters import StrictBooleanFilter

from .choices import DeliveryStatus
from .models import WebhookDelivery, WebhookEndpoint


class WebhookEndpointFilterSet(django_filters.FilterSet):
    """``?is_active=true|false``."""

    is_active = StrictBooleanFilter(field_name="is_active", help_text="Only active (true) or inactive (false) ones.")

    class Meta:
        model = WebhookEndpoint
        fields = ["is_active"]


class WebhookDeliveryFilterSet(django_filters.FilterSet):
    """``?status=``: repeatable (``?status=pending&status=failed``); ``?event_type=``."""

    status = django_filters.MultipleChoiceFilter(choices=DeliveryStatus.choices, distinct=False)
    event_type = django_filters.CharFilter(field_name="event__type", help_text="Only deliveries of this event type.")

    class Meta:
        model = WebhookDelivery
        fields: list[str] = []
