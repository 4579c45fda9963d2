"""The webhook API: ``/api/v1/workspaces/{workspace_id}/webhook-endpoints`` and each endpoint's deliveries.

For workspace admins (and superusers) only: a workspace the caller cannot see is 404, one where the caller is
an operator, a viewer or only a project owner is 403. Thin: each action validates its input, calls one function
of ``agents.webhooks.services`` and serializes the result.
"""

from __future__ import annotations

from functools import cached_property

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response

from projects.choices import WorkspaceRole
from projects.models import Workspace
from projects.selectors import workspace_queryset
from syndarix.api.idempotency import idempotency_key
from syndarix.api.ratelimit import RateLimitMixin
from syndarix.api.schema import error_responses
from syndarix.api.views import ValidatedInputMixin

from . import services
from .filtersets import WebhookDeliveryFilterSet, WebhookEndpointFilterSet
from .models import WebhookDelivery, WebhookEndpoint
from .serializers import (
    WebhookDeliverySerializer,
    WebhookEndpointInputSerializer,
    WebhookEndpointSecretSerializer,
    WebhookEndpointSerializer,
)

_ERROR_TEXT = {
    400: "Invalid input: `invalid_url`, `private_target` (the host resolves to a loopback, private, link-local or "
         "metadata address), `unresolvable_host`, `unknown_event_type`, `empty_event_types`, per-field errors.",
    403: "The caller can see the workspace but is not one of its admins.",
    404: "The workspace, endpoint or delivery does not exist or is not visible to the caller.",
}


def _errors(*codes: int, **texts: str) -> dict[int, OpenApiResponse]:
    return error_responses(*codes, defaults=_ERROR_TEXT, **texts)


class IsWorkspaceAdmin(BasePermission):
    """Superusers and the URL workspace's admins; anyone else who can see it gets 403 (who cannot, 404 first)."""

    message = "Only the workspace's admins manage its webhooks."

    def has_permission(self, request, view) -> bool:
        workspace = view.workspace
        return request.user.is_superuser or workspace.role == WorkspaceRole.ADMIN


class WorkspaceScopedMixin:
    """For views nested under ``/workspaces/{workspace_id}/``: ``self.workspace`` is the URL's workspace with the
    caller's ``role`` when the caller can see it (``projects.selectors.workspace_queryset``), else ``Http404``."""

    @cached_property
    def workspace(self) -> Workspace:
        workspace = workspace_queryset(self.request.user).filter(pk=self.kwargs["workspace_id"]).first()
        if workspace is None:
            raise Http404("No Workspace matches the given query.")
        return workspace


@extend_schema_view(
    list=extend_schema(
        summary="List webhook endpoints",
        description="The workspace's webhook endpoints (without their secrets). Workspace admins only.",
        responses={200: WebhookEndpointSerializer(many=True), **_errors(403)},
    ),
    retrieve=extend_schema(
        summary="Get a webhook endpoint",
        description="Without its secret. Workspace admins only.",
        responses={200: WebhookEndpointSerializer, **_errors(403)},
    ),
    destroy=extend_schema(
        summary="Delete a webhook endpoint",
        description="With its deliveries; nothing more is posted to it.",
        responses={204: OpenApiResponse(description="Deleted."), **_errors(403)},
    ),
)
@extend_schema(tags=["webhooks"])
class WebhookEndpointViewSet(
    RateLimitMixin, WorkspaceScopedMixin, ValidatedInputMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin, viewsets.GenericViewSet,
):
    """Webhook endpoints of one workspace (Standard Webhooks deliveries of its events)."""

    serializer_class = WebhookEndpointSerializer
    filterset_class = WebhookEndpointFilterSet
    permission_classes = [IsAuthenticated, IsWorkspaceAdmin]
    lookup_url_kwarg = "endpoint_id"
    lookup_value_converter = "uuid"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    rate_limits = {
        "list": "60/m", "retrieve": "60/m", "create": "20/m", "partial_update": "30/m", "destroy": "10/m",
        "rotate_secret": "10/m",
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookEndpoint.objects.none()
        return WebhookEndpoint.objects.filter(workspace=self.workspace).order_by("created_at", "id")

    def get_serializer_class(self):
        if getattr(self.request, "method", "GET") in ("POST", "PATCH"):
            return WebhookEndpointInputSerializer
        return WebhookEndpointSerializer

    @extend_schema(
        summary="Create a webhook endpoint",
        description=(
            "Events of the workspace whose type is in `event_types` are posted to `url` as Standard Webhooks, "
            "starting with the events after this moment. The answer holds the signing `secret`, shown only here "
            "(and by rotate-secret). `Idempotency-Key`: repeating it returns the endpoint the first request made, "
            "secret included."
        ),
        request=WebhookEndpointInputSerializer,
        responses={201: WebhookEndpointSecretSerializer, **_errors(400, 403)},
    )
    def create(self, request, *args, **kwargs):
        data = self.validated_input(WebhookEndpointInputSerializer)
        endpoint, _ = services.webhook_endpoint_create(
            workspace=self.workspace, url=data["url"], event_types=data.get("event_types"),
            description=data["description"], is_active=data["is_active"], request_id=idempotency_key(request),
        )
        return Response(WebhookEndpointSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Update a webhook endpoint",
        description=(
            "Change `url`, `description`, `event_types` or `is_active`. Setting `is_active` to true enables an "
            "endpoint that was disabled after failures: delivery resumes after the last event it was sent."
        ),
        request=WebhookEndpointInputSerializer(partial=True),
        responses={200: WebhookEndpointSerializer, **_errors(400, 403)},
    )
    def partial_update(self, request, *args, **kwargs):
        endpoint = self.get_object()
        serializer = WebhookEndpointInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        endpoint = services.webhook_endpoint_update(endpoint, data=serializer.validated_data)
        return Response(WebhookEndpointSerializer(endpoint).data)

    def perform_destroy(self, instance):
        services.webhook_endpoint_delete(instance)

    @extend_schema(
        summary="Rotate a webhook endpoint's secret",
        description=(
            "A new signing secret, shown only in this answer; the old one stops signing at once. "
            "`Idempotency-Key`: repeating the key of the last rotation returns its secret without rotating again."
        ),
        request=None,
        responses={200: WebhookEndpointSecretSerializer, **_errors(400, 403)},
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, *args, **kwargs):
        endpoint = services.webhook_endpoint_rotate_secret(self.get_object(), request_id=idempotency_key(request))
        return Response(WebhookEndpointSecretSerializer(endpoint).data)


@extend_schema_view(
    list=extend_schema(
        summary="List an endpoint's deliveries",
        description="Newest first; `?status=pending|succeeded|failed` (repeatable), `?event_type=`.",
        responses={200: WebhookDeliverySerializer(many=True), **_errors(403)},
    ),
    retrieve=extend_schema(
        summary="Get a delivery", responses={200: WebhookDeliverySerializer, **_errors(403)},
    ),
)
@extend_schema(tags=["webhooks"])
class WebhookDeliveryViewSet(
    RateLimitMixin, WorkspaceScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The deliveries of one webhook endpoint, and redelivery of one."""

    serializer_class = WebhookDeliverySerializer
    filterset_class = WebhookDeliveryFilterSet
    permission_classes = [IsAuthenticated, IsWorkspaceAdmin]
    lookup_url_kwarg = "delivery_id"
    lookup_value_converter = "int"
    rate_limits = {"list": "60/m", "retrieve": "60/m", "redeliver": "30/m"}

    @cached_property
    def endpoint(self) -> WebhookEndpoint:
        return get_object_or_404(WebhookEndpoint, workspace=self.workspace, pk=self.kwargs["endpoint_id"])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookDelivery.objects.none()
        return WebhookDelivery.objects.filter(endpoint=self.endpoint).select_related("event").order_by("-id")

    @extend_schema(
        summary="Redeliver an event",
        description=(
            "Queue the delivery's event again to its endpoint, as a new delivery behind the pending ones, with the "
            "same `webhook-id`. 409 `delivery_pending` while the event is still pending there. "
            "`Idempotency-Key`: repeating it returns the delivery it queued."
        ),
        request=None,
        responses={
            202: WebhookDeliverySerializer,
            **_errors(400, 403, 409, e409="`delivery_pending`: the event is still pending to this endpoint."),
        },
    )
    @action(detail=True, methods=["post"])
    def redeliver(self, request, *args, **kwargs):
        delivery = services.webhook_delivery_redeliver(self.get_object(), request_id=idempotency_key(request))
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
