"""API-wide views: JSON 404/500 handlers for `/api/` paths (Django's HTML pages elsewhere)."""

from __future__ import annotations

from django.http import JsonResponse
from django.views import defaults

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
