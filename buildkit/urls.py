"""Build kit routes (agent templates, revisions, inspect, playground), mounted under ``/api/v1/``.

Explicit paths below ``agent-types/<id>/`` so they never meet the agent-types router's own routes.
"""

from django.urls import path

from . import views

urlpatterns = [
    path(
        "agent-types/<uuid:agent_type_id>/revisions",
        views.RevisionListCreateView.as_view(),
        name="agent-type-revisions",
    ),
    path(
        "agent-types/<uuid:agent_type_id>/revisions/<str:version>",
        views.RevisionDetailView.as_view(),
        name="agent-type-revision-detail",
    ),
    path(
        "agent-types/<uuid:agent_type_id>/revisions/<str:from_version>/diff/<str:to_version>",
        views.RevisionDiffView.as_view(),
        name="agent-type-revision-diff",
    ),
    path("agent-types/<uuid:agent_type_id>/inspect", views.InspectView.as_view(), name="agent-type-inspect"),
    path(
        "agent-types/<uuid:agent_type_id>/playground/runs",
        views.PlaygroundRunView.as_view(),
        name="agent-type-playground-runs",
    ),
    path("agent-templates/resolve", views.ResolveView.as_view(), name="agent-templates-resolve"),
    path("platform-ops", views.PlatformOpListView.as_view(), name="platform-ops"),
    path("capabilities/find", views.FindCapabilitiesView.as_view(), name="capabilities-find"),
]
