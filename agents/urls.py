"""Agent API routes (under ``/api/v1/``)."""

from django.urls import path

from .registry_views import AgentClassListView

urlpatterns = [
    path("agent-classes", AgentClassListView.as_view(), name="agent-class-list"),
]
