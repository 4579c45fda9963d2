"""The MCP endpoint, mounted at ``/mcp`` by the root URL configuration."""

from django.urls import path

from .views import MCPView

app_name = "mcp"

urlpatterns = [path("", MCPView.as_view(), name="endpoint")]
