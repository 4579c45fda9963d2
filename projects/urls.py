"""Routes under `/api/v1/`: auth/token, workspaces, projects, projects/{project_id}/issues (no trailing slash)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("workspaces", views.WorkspaceViewSet, basename="workspace")
router.register("projects", views.ProjectViewSet, basename="project")
router.register("projects/<uuid:project_id>/issues", views.IssueViewSet, basename="issue")

urlpatterns = [
    path("auth/token", views.AuthTokenView.as_view(), name="auth-token"),
    *router.urls,
]
