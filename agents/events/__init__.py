"""Events: every change a person or another system follows, written in the transaction of the change (a
transactional outbox), read back in delivery order, published to live consumers after commit.

Public interface: ``Event``, ``EventType``, ``emit``, ``events_after``, ``head``, ``events_prune``; the SSE stream
generator is ``agents.events.streams.event_stream``. See ``docs/events.md``.
"""

from .models import LLM_DELTA, RUN_TERMINAL_EVENTS, Event, EventType
from .outbox import (
    emit,
    events_after,
    events_prune,
    head,
    published,
    request_event,
    run_changed,
    transition_event,
)

__all__ = ["LLM_DELTA", "RUN_TERMINAL_EVENTS", "Event", "EventType", "emit", "events_after", "events_prune", "head",
           "published", "request_event", "run_changed", "transition_event"]
