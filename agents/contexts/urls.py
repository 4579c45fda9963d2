"""Routes of the shared-context API, included under ``/api/v1/`` by ``agents.urls``."""

from django.urls import path

from .views import AgentContextViewSet as V

BASE = "projects/<uuid:project_id>/contexts"
ONE = f"{BASE}/<uuid:context_id>"

urlpatterns = [
    path(BASE, V.as_view({"get": "list", "post": "create"}), name="context-list"),
    path(ONE, V.as_view({"get": "retrieve", "delete": "destroy"}), name="context-detail"),
    path(f"{ONE}/write", V.as_view({"post": "write"}), name="context-write"),
    path(f"{ONE}/rollback", V.as_view({"post": "rollback"}), name="context-rollback"),
    path(f"{ONE}/versions", V.as_view({"get": "versions"}), name="context-versions"),
    path(f"{ONE}/versions/<int:n>", V.as_view({"get": "version"}), name="context-version"),
    path(f"{ONE}/versions/<int:n>/pin", V.as_view({"post": "pin"}), name="context-version-pin"),
    path(f"{ONE}/versions/<int:n>/unpin", V.as_view({"post": "unpin"}), name="context-version-unpin"),
    path(f"{ONE}/diff", V.as_view({"get": "diff"}), name="context-diff"),
]
