"""AI services routes (`/api/v1/ai/services/...`)."""

from django.urls import path

from . import views

app_name = "aiservices"

urlpatterns = [
    path("ai/services/status", views.StatusView.as_view(), name="status"),
    path("ai/services/tools/call", views.ToolCallView.as_view(), name="tools-call"),
]
