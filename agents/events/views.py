"""The API's event streams (``text/event-stream``): a run's (``…/runs/{run_id}/events``, an action of
``agents.runtime.views.AgentRunViewSet``) and a project's (``/api/v1/projects/{project_id}/events``).

Authentication, tenancy (404 for what the caller cannot see), roles (anyone who can see the project reads) and rate
limits are the API's, checked by a DRF view before the stream starts; the stream itself is
``agents.events.streams.event_stream``: asynchronous under ASGI (an open stream holds no worker thread), run in a
private event loop under WSGI (``runserver``).
"""

from __future__ import annotations

from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer

from projects.permissions import CanWriteProject, ProjectScopedMixin
from syndarix.api.ratelimit import RateLimitMixin
from syndarix.api.schema import error_responses
from syndarix.exceptions import InvalidInput

from .streams import event_stream, sync_stream

#: Most a ``Last-Event-ID`` can be (event ids are 64-bit).
MAX_EVENT_ID = 2**63 - 1


class EventStreamRenderer(BaseRenderer):
    """Accepts ``Accept: text/event-stream`` (what ``EventSource`` sends); the stream itself is a
    ``StreamingHttpResponse``, so this only renders the JSON error envelope of a refused request."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return JSONRenderer().render(data)


#: The renderers of a stream view: JSON for its errors, and ``text/event-stream`` accepted.
STREAM_RENDERERS = [JSONRenderer, EventStreamRenderer]


class JSONErrorsMixin:
    """A refused stream request (401, 404, 429 …) answers in the JSON error envelope, ``application/json``, even to
    ``Accept: text/event-stream``."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(getattr(response, "accepted_renderer", None), EventStreamRenderer):
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = JSONRenderer.media_type
        return response

LAST_EVENT_ID_HEADER = OpenApiParameter(
    "Last-Event-ID", OpenApiTypes.STR, OpenApiParameter.HEADER,
    description="Resume after this event (its `id:`): every later event, once, in order. `0` replays every event "
                "kept (`EVENTS_RETENTION_DAYS`).",
)
LAST_EVENT_ID_QUERY = OpenApiParameter(
    "last_event_id", OpenApiTypes.INT, OpenApiParameter.QUERY,
    description="As the `Last-Event-ID` header (for clients that cannot set headers); the header wins.",
)
STREAM_RESPONSE = {
    (200, "text/event-stream"): OpenApiResponse(
        OpenApiTypes.STR,
        description="Server-Sent Events: each event as `id:`, `event:` (its type) and `data:` (the event as JSON: "
                    "`id`, `type`, `created_at`, `workspace_id`, `project_id`, `data`); a `: keep-alive` comment "
                    "every `EVENTS_KEEPALIVE_SECONDS` while idle. See the manual's *Events and live streams*.",
    ),
}


def last_event_id(request) -> int | None:
    """The client's ``Last-Event-ID`` header, else ``?last_event_id=``, as an integer (``None``: neither).

    Raises ``InvalidInput`` (400, field ``last_event_id``) for anything but a non-negative integer."""
    value = request.headers.get("Last-Event-ID") or request.query_params.get("last_event_id")
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number <= MAX_EVENT_ID:
        raise InvalidInput("Last-Event-ID must be an event id (a non-negative integer).", field="last_event_id")
    return number


def stream_response(request, stream) -> StreamingHttpResponse:
    """``stream`` (an async iterator of SSE frames) as the response: served asynchronously under ASGI, through
    ``sync_stream`` under WSGI; not cached, not buffered by proxies (``X-Accel-Buffering: no``)."""
    django_request = getattr(request, "_request", request)
    content = stream if isinstance(django_request, ASGIRequest) else sync_stream(stream)
    response = StreamingHttpResponse(content, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


class ProjectEventsView(JSONErrorsMixin, RateLimitMixin, ProjectScopedMixin, GenericAPIView):
    """``GET /api/v1/projects/{project_id}/events``: the project's events, live."""

    permission_classes = [IsAuthenticated, CanWriteProject]
    renderer_classes = STREAM_RENDERERS
    pagination_class = None
    filter_backends: list = []
    rate_limits = {"get": "60/m"}

    @extend_schema(
        tags=["events"],
        operation_id="stream_project_events",
        summary="Stream a project's events (SSE)",
        description=(
            "`text/event-stream` of the project's events as they commit: runs, steps, requests to people, agent "
            "transitions. Without `Last-Event-ID` it starts now; with it, it resumes after that event with no gap and "
            "no duplicate. `types` (repeatable) keeps only those event types. Anyone who can see the project reads."
        ),
        parameters=[LAST_EVENT_ID_HEADER, LAST_EVENT_ID_QUERY,
                    OpenApiParameter("types", OpenApiTypes.STR, many=True, description="Only these event types.")],
        responses={**STREAM_RESPONSE, **error_responses(400, 401, 404, 429)},
    )
    def get(self, request, *args, **kwargs):
        from .models import EventType

        after = last_event_id(request)
        types = request.query_params.getlist("types") or None
        unknown = sorted(set(types or ()) - set(EventType.values))
        if unknown:
            raise InvalidInput(f"Unknown event type(s): {', '.join(unknown)}.", field="types")
        return stream_response(request, event_stream(last_event_id=after, project_id=self.project.pk, types=types))
