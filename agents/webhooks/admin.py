"""Admin for webhook endpoints and their deliveries: a thin UI over ``agents.webhooks.services``.

- Endpoints: created and changed through the services (the SSRF rule and the event types are checked there); the
  signing secret is shown once, in a message, after the endpoint is created or its secret rotated. Actions:
  rotate the secret, enable (after the endpoint was disabled for failures). The change page lists the newest
  deliveries with their status code, duration, attempts and next attempt.
- Deliveries: a read-only list (filter by status, endpoint) with the action "Redeliver".

Only superusers and the workspace's admins see them (as in the API).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from projects.admin import WorkspaceScopedAdminMixin
from projects.choices import WorkspaceRole
from syndarix.admin_site import LatestRowsFormSet, ReadOnlyAdminMixin, ServiceSaveAdminMixin, precise_time
from syndarix.exceptions import DomainError

from . import services
from .choices import DEFAULT_EVENT_TYPES, EVENT_TYPES
from .models import WebhookDelivery, WebhookEndpoint

ADMIN_ONLY = frozenset({WorkspaceRole.ADMIN})


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https", help_text="http(s) URL the events are posted to.",
                         widget=forms.URLInput(attrs={"class": "vURLField", "size": 80}))
    event_types = forms.MultipleChoiceField(
        choices=[(t, t) for t in EVENT_TYPES], initial=list(DEFAULT_EVENT_TYPES),
        widget=forms.CheckboxSelectMultiple, help_text="The event types posted to this endpoint.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["workspace", "url", "description", "event_types", "is_active"]


class DeliveryFormSet(LatestRowsFormSet):
    limit = 50


class WebhookDeliveryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = WebhookDelivery
    formset = DeliveryFormSet
    fields = ["delivery", "event_type", "status", "response_status_code", "duration_ms", "attempts", "next_attempt",
              "last_error"]
    readonly_fields = fields
    ordering = ("-id",)
    extra = 0
    verbose_name_plural = "Latest deliveries (50; all of them in Webhook deliveries)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("event")

    @admin.display(description="Delivery")
    def delivery(self, obj: WebhookDelivery) -> str:
        url = reverse("admin:agents_webhookdelivery_change", args=[obj.pk])
        return format_html('<a href="{}">#{}</a> {}', url, obj.pk, precise_time(obj.created_at))

    @admin.display(description="Event")
    def event_type(self, obj: WebhookDelivery) -> str:
        return f"{obj.event.type if obj.event else 'pruned'} ({obj.event_id})"

    @admin.display(description="Next attempt")
    def next_attempt(self, obj: WebhookDelivery) -> str:
        return precise_time(obj.next_attempt_at)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(WorkspaceScopedAdminMixin, ServiceSaveAdminMixin, admin.ModelAdmin):
    form = WebhookEndpointForm
    write_roles = ADMIN_ONLY
    list_display = ["url", "workspace", "is_active", "types", "consecutive_failures", "disabled_reason",
                    "deliveries_link"]
    list_filter = ["is_active"]
    list_select_related = ["workspace"]
    search_fields = ["url", "description"]
    readonly_fields = ["last_event_id", "consecutive_failures", "disabled_at", "disabled_reason", "created_at",
                       "updated_at"]
    inlines = [WebhookDeliveryInline]
    actions = ["rotate_secret", "enable"]

    def get_queryset(self, request):
        return self.scope(request, super(WorkspaceScopedAdminMixin, self).get_queryset(request), write=True)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # a new endpoint has no deliveries

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "workspace"] if obj else self.readonly_fields

    @admin.display(description="Event types")
    def types(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.event_types)

    @admin.display(description="Deliveries")
    def deliveries_link(self, obj: WebhookEndpoint) -> str:
        url = reverse("admin:agents_webhookdelivery_changelist") + f"?endpoint__id__exact={obj.pk}"
        return format_html('<a href="{}">deliveries</a>', url)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            saved = services.webhook_endpoint_update(obj, data={k: data[k] for k in form.changed_data if k in data})
            self.adopt(obj, saved)
            return
        saved, _ = services.webhook_endpoint_create(
            workspace=data["workspace"], url=data["url"], event_types=data["event_types"],
            description=data.get("description", ""), is_active=data["is_active"],
        )
        self.adopt(obj, saved)
        self._show_secret(request, saved, "created")

    def delete_model(self, request, obj):
        services.webhook_endpoint_delete(obj)

    @staticmethod
    def _show_secret(request, endpoint: WebhookEndpoint, what: str) -> None:
        messages.warning(
            request,
            format_html("Endpoint {} {}. Its signing secret, shown only now: <code>{}</code>", endpoint.url, what,
                        endpoint.secret),
        )

    @admin.action(description="Rotate the signing secret of the selected endpoints")
    def rotate_secret(self, request, queryset):
        for endpoint in queryset:
            self._show_secret(request, services.webhook_endpoint_rotate_secret(endpoint), "has a new secret")

    @admin.action(description="Enable the selected endpoints")
    def enable(self, request, queryset):
        count = 0
        for endpoint in queryset:
            services.webhook_endpoint_enable(endpoint)
            count += 1
        self.message_user(request, f"{count} endpoint{'s' if count != 1 else ''} enabled.", messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(WorkspaceScopedAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    workspace_path = "endpoint__workspace"
    write_roles = ADMIN_ONLY
    list_display = ["id", "endpoint", "event_link", "status", "code", "duration", "attempts", "next_attempt",
                    "delivered", "is_redelivery"]
    list_filter = ["status", "is_redelivery", "endpoint"]
    list_select_related = ["endpoint", "event"]
    readonly_fields = ["endpoint", "event", "status", "is_redelivery", "attempts", "response_status_code",
                       "duration_ms", "last_error", "created_at", "first_attempt_at", "last_attempt_at",
                       "next_attempt_at", "delivered_at"]
    actions = ["redeliver"]

    def get_queryset(self, request):
        return self.scope(request, super(WorkspaceScopedAdminMixin, self).get_queryset(request), write=True)

    def has_view_permission(self, request, obj=None) -> bool:
        return super().has_view_permission(request, obj) or request.user.has_perm("agents.view_webhookendpoint")

    @admin.display(description="Event", ordering="event_id")
    def event_link(self, obj: WebhookDelivery) -> str:
        return f"{obj.event.type if obj.event else 'pruned'} ({obj.event_id})"

    @admin.display(description="Next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj: WebhookDelivery) -> str:
        return precise_time(obj.next_attempt_at)

    @admin.display(description="Status code", ordering="response_status_code")
    def code(self, obj: WebhookDelivery):
        return obj.response_status_code

    @admin.display(description="Duration (ms)", ordering="duration_ms")
    def duration(self, obj: WebhookDelivery):
        return obj.duration_ms

    @admin.display(description="Delivered", ordering="delivered_at")
    def delivered(self, obj: WebhookDelivery) -> str:
        return precise_time(obj.delivered_at)

    def get_actions(self, request):
        # ReadOnlyAdminMixin has no change permission, which hides actions; redelivery is a write by the services.
        actions = admin.ModelAdmin.get_actions(self, request)
        return actions if self.writes_anywhere(request) else {}

    @admin.action(description="Redeliver the selected deliveries' events")
    def redeliver(self, request, queryset):
        done = 0
        for delivery in queryset.select_related("endpoint"):
            try:
                services.webhook_delivery_redeliver(delivery)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"Delivery #{delivery.pk}: {exc.message}", messages.ERROR)
        if done:
            self.message_user(request, f"{done} deliver{'ies' if done != 1 else 'y'} queued again.", messages.SUCCESS)
