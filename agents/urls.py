"""Routes under `/api/v1/` (no trailing slash): agent-types, agent-classes, agents, their runs and
contexts, and a project's event stream.

The router lists the project-level `agents/metrics` route before `agents/{agent_id}` routes, and
`{agent_id}` only matches a UUID, so "metrics" is never read as an agent id.
"""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import views
from .events.views import ProjectEventsView
from .registry.views import AgentClassListView
from .runtime.views import AgentRunViewSet

router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("agent-types", views.AgentTypeViewSet, basename="agent-type")
router.register("projects/<uuid:project_id>/agents", views.AgentViewSet, basename="agent")
router.register("projects/<uuid:project_id>/agents/<uuid:agent_id>/runs", AgentRunViewSet, basename="agent-run")

urlpatterns = [
    path("agent-classes", AgentClassListView.as_view(), name="agent-class-list"),
    path("projects/<uuid:project_id>/events", ProjectEventsView.as_view(), name="project-events"),
    *router.urls,
    path("", include("agents.contexts.urls")),
]
