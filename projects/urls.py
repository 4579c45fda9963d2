"""Routes under `/api/v1/` (no trailing slash): auth/token, auth/tokens, auth/logout, auth/logout-all,
workspaces, projects, projects/{project_id}/issues."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("auth/tokens", views.AuthTokenViewSet, basename="auth-tokens")
router.register("workspaces", views.WorkspaceViewSet, basename="workspace")
router.register("projects", views.ProjectViewSet, basename="project")
router.register("projects/<uuid:project_id>/issues", views.IssueViewSet, basename="issue")

urlpatterns = [
    path("auth/token", views.AuthTokenView.as_view(), name="auth-token"),
    path("auth/logout", views.LogoutView.as_view(), name="auth-logout"),
    path("auth/logout-all", views.LogoutAllView.as_view(), name="auth-logout-all"),
    *router.urls,
]
