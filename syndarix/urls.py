"""Root URL configuration: admin, the v1 API, the OpenAPI schema and its docs, and ``/healthz``."""

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from syndarix.api.views import ApiRootView


def healthz(request):
    """``GET /healthz``: ``{"status": "ok"}`` while the process serves requests; it does no I/O (no database), so it
    is also the bare-Django ceiling of the fleet benchmark."""
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api-auth/", include("rest_framework.urls")),
    path("api/v1/", ApiRootView.as_view(), name="api-root"),
    path("api/v1/", include("projects.urls")),
    path("api/v1/", include("agents.urls")),
    path("api/v1/", include("aiservices.urls")),
    path("api/v1/", include("buildkit.urls")),
]

handler404 = "syndarix.api.views.not_found"
handler500 = "syndarix.api.views.server_error"
