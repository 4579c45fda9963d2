"""Middleware of the API plumbing."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from .exceptions import domain_error_body
from .outages import log_outage, lost_dependency


class DependencyOutageMiddleware:
    """Answer a lost database or cache raised by any view with 503 instead of a 500 page.

    API paths (``/api/``) get the error envelope (the API's exception handler already answers its own views
    this way; this covers views outside DRF), other paths a short plain-text page. Both carry ``Retry-After``.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        outage = lost_dependency(exception)
        if outage is None:
            return None
        log_outage(outage, exception, request)
        if request.path.startswith("/api/"):
            response = JsonResponse(domain_error_body(outage), status=503)
        else:
            response = HttpResponse(f"503 Service Unavailable: {outage.message}\n", status=503,
                                    content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(outage.retry_after)
        return response
