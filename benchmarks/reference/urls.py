"""The plain-DRF reference: a project's agents as a ``ModelSerializer`` with every field on a ``ListAPIView`` and a
``RetrieveAPIView`` — what a Django developer writes in ten minutes. No tenancy check: any valid token reads any
project's agents.

- ``GET /reference/projects/<project_id>/agents`` — newest first, cursor-paginated (20 a page).
- ``GET /reference/projects/<project_id>/agents/<agent_id>``
"""

from django.urls import path
from rest_framework import generics, pagination, serializers

from agents.models import AgentInstance


class AgentSerializer(serializers.ModelSerializer):
    class Meta:
        model = AgentInstance
        fields = "__all__"


class NewestFirst(pagination.CursorPagination):
    ordering = "-created_at"


class AgentList(generics.ListAPIView):
    serializer_class = AgentSerializer
    pagination_class = NewestFirst

    def get_queryset(self):
        return AgentInstance.objects.filter(project_id=self.kwargs["project_id"])


class AgentDetail(generics.RetrieveAPIView):
    serializer_class = AgentSerializer
    lookup_url_kwarg = "agent_id"

    def get_queryset(self):
        return AgentInstance.objects.filter(project_id=self.kwargs["project_id"])


urlpatterns = [
    path("reference/projects/<uuid:project_id>/agents", AgentList.as_view()),
    path("reference/projects/<uuid:project_id>/agents/<uuid:agent_id>", AgentDetail.as_view()),
]
