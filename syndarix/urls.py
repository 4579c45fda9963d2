"""Root URL configuration: the health probes, the Prometheus metrics, admin, the v1 API, the OpenAPI schema and its
docs, the MCP server, the favicon."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from syndarix.api.views import ApiRootView, not_found
from syndarix.health import healthz, readyz
from syndarix.metrics import metrics_view
from syndarix.views import favicon

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api-auth/", include("rest_framework.urls")),
    path("api/v1/", ApiRootView.as_view(), name="api-root"),
    path("api/v1/", include("projects.urls")),
    path("api/v1/", include("agents.urls")),
    path("api/v1/", include("aiservices.urls")),
    path("api/v1/", include("buildkit.urls")),
    path("mcp", include("aiservices.mcp.urls")),
    # Any other /api/ path: the JSON 404 envelope, also with DEBUG on (whose handler404 is an HTML page).
    re_path(r"^api/", csrf_exempt(not_found), name="api-not-found"),
]

handler404 = "syndarix.api.views.not_found"
handler500 = "syndarix.api.views.server_error"
