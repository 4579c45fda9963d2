"""Routes of the webhook API, included under ``/api/v1/`` by ``agents.urls``."""

from rest_framework.routers import SimpleRouter

from .views import WebhookDeliveryViewSet, WebhookEndpointViewSet

BASE = "workspaces/<uuid:workspace_id>/webhook-endpoints"

router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register(BASE, WebhookEndpointViewSet, basename="webhook-endpoint")
router.register(f"{BASE}/<uuid:endpoint_id>/deliveries", WebhookDeliveryViewSet, basename="webhook-delivery")

urlpatterns = router.urls
