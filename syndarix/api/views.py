"""API-wide views: the `/api/v1/` root, and JSON 404/500 handlers for `/api/` paths (Django's HTML pages
elsewhere)."""

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
    """``GET /api/v1/``: links to the top-level collections, the token login and the docs."""

    permission_classes = [AllowAny]

    @extend_schema(
        tags=["api"],
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
