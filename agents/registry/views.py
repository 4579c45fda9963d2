"""``GET /api/v1/agent-classes``: the registered agent classes."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.permissions import IsAuthenticated

from syndarix.api.exceptions import error_body
from syndarix.api.ratelimit import RateLimitMixin
from syndarix.api.schema import ErrorEnvelopeSerializer

from .selectors import agent_class_list
from .serializers import AgentClassSerializer


def _error(code: str, message: str) -> dict:
    return error_body([{"code": code, "message": message, "field": None}])


@extend_schema(
    tags=["agent classes"],
    summary="List registered agent classes",
    description=(
        "The Python agent classes this deployment knows (built-ins and AGENT_REGISTRY_MODULES), sorted by slug, "
        "each with the id of the agent type `sync_agent_types` keeps for it (null before the first sync). "
        "Readable by any authenticated user, also when AGENTS_ENABLED is false."
    ),
    responses={
        200: AgentClassSerializer(many=True),
        401: OpenApiResponse(
            response=ErrorEnvelopeSerializer,
            description="Not authenticated (`not_authenticated`).",
            examples=[
                OpenApiExample(
                    "not_authenticated",
                    value=_error("not_authenticated", "Authentication credentials were not provided."),
                    response_only=True,
                    status_codes=["401"],
                )
            ],
        ),
        429: OpenApiResponse(
            response=ErrorEnvelopeSerializer,
            description="Rate limited (`rate_limited`); `Retry-After` gives the seconds to wait.",
            examples=[
                OpenApiExample(
                    "rate_limited",
                    value=_error("rate_limited", "Too many requests; retry in 42 s."),
                    response_only=True,
                    status_codes=["429"],
                )
            ],
        ),
    },
)
class AgentClassListView(RateLimitMixin, generics.ListAPIView):
    """Registered agent classes, paginated (``?page=``, ``?limit=``)."""

    cursor_pagination = False  # the list is built in Python: ``?page=`` only

    serializer_class = AgentClassSerializer
    permission_classes = [IsAuthenticated]
    filter_backends: list = []  # a list of classes, not a queryset: nothing to filter
    rate_limits = {"get": "120/m"}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no database needed
            return []
        return agent_class_list()
