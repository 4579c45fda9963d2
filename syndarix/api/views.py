"""API-wide views: the `/api/v1/` root, JSON 404/500 handlers for `/api/` paths (Django's HTML pages
elsewhere), and the mixin of views that validate an action's own input."""

from __future__ import annotations

from django.http import JsonResponse
from django.views import defaults
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from .exceptions import error_body


class ValidatedInputMixin:
    """For views whose actions read a body with a serializer of their own (not the response's)."""

    def validated_input(self, serializer_class, data=None) -> dict:
        """``serializer_class(data=request.data or data)`` validated (400 through the exception handler)."""
        serializer = serializer_class(
            data=self.request.data if data is None else data, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def not_found(request, exception=None):
    """``handler404``: the error envelope for API paths, Django's page for the rest."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body([{"code": "not_found", "message": "Not found.", "field": None}]), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    """``handler500``: the error envelope for API paths, Django's page for the rest."""
    if request.path.startswith("/api/"):
        body = error_body([{"code": "server_error", "message": "Internal server error.", "field": None}])
        return JsonResponse(body, status=500)
    return defaults.server_error(request)


class ApiRootView(APIView):
    """Links to the top-level collections, the token login and the docs; project-scoped routes hang off
    projects/{project_id}/."""

    permission_classes = [AllowAny]

    @extend_schema(
        tags=["root"],
        operation_id="api_root",
        summary="API root",
        description="Links to the top-level collections; project-scoped routes hang off `projects/{project_id}/`.",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="Name → absolute URL.")},
    )
    def get(self, request):
        names = {
            "workspaces": "workspace-list",
            "projects": "project-list",
            "agent-types": "agent-type-list",
            "auth-token": "auth-token",
            "schema": "schema",
            "docs": "swagger-ui",
        }
        return Response({key: reverse(name, request=request) for key, name in names.items()})
