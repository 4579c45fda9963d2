"""Routes under `/api/v1/`: agent-types, agent-classes and projects/{project_id}/agents (no trailing slash).

The router lists the project-level `agents/metrics` route before `agents/{agent_id}` routes, and
`{agent_id}` only matches a UUID, so "metrics" is never read as an agent id.
"""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views
from .registry_views import AgentClassListView

router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("agent-types", views.AgentTypeViewSet, basename="agent-type")
router.register("projects/<uuid:project_id>/agents", views.AgentViewSet, basename="agent")

urlpatterns = [
    path("agent-classes", AgentClassListView.as_view(), name="agent-class-list"),
    *router.urls,
]
