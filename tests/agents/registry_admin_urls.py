"""A throwaway admin site with an AgentType admin that includes AgentTypeRegistryAdminMixin."""

from django.contrib import admin
from django.urls import path

from agents.models import AgentType
from agents.registry.admin import AgentTypeRegistryAdminMixin

site = admin.AdminSite(name="registry_test_admin")


class ThrowawayAgentTypeAdmin(AgentTypeRegistryAdminMixin, admin.ModelAdmin):
    list_display = ("name", "slug", "handler", "is_active")
    list_filter = ("is_active",)
    search_fields = ("name", "slug")


site.register(AgentType, ThrowawayAgentTypeAdmin)

urlpatterns = [path("admin/", site.urls)]
