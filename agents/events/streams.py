"""Server-Sent Events over the outbox: the one generator behind every live view (the API's streams, the admin's
live pages, ``run_agent --wait``).

``event_stream`` is an async generator of SSE frames (bytes). It reads events from the outbox
(``agents.events.events_after``), so it resumes after ``Last-Event-ID`` with no gap and no duplicate; Redis pub/sub
(``agents.events.publish``) only wakes it up. One subscriber per process and event loop (``Hub``) listens to every
event channel and wakes the streams concerned, so 500 open streams cost one Redis connection, not 500. Without
``REDIS_URL`` (``make run``) a stream reads the outbox every ``EVENTS_POLL_SECONDS``.

Under WSGI (``runserver``) ``sync_stream`` runs the same generator in a private event loop, a thread per stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from .models import LLM_DELTA, RUN_TERMINAL_EVENTS, Event
from .outbox import events_after, head
from .publish import project_channel, run_channel

logger = logging.getLogger(__name__)

#: With Redis, how often a stream reads the outbox anyway (seconds): a wake-up lost while Redis reconnected.
REDIS_FALLBACK_POLL_SECONDS = 15.0
#: After a wake-up whose event has not settled yet (an older transaction still runs), read again this soon (seconds).
SETTLE_RETRY_SECONDS = 0.02
#: Events read per query.
BATCH = 200

_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="events")


async def _db(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``func`` (database work) in the events' thread pool; the thread's connection goes back afterwards."""

    def call() -> Any:
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return await asyncio.get_running_loop().run_in_executor(_executor, call)


def frame(event: Event) -> bytes:
    """One stored event as an SSE frame: ``id:``, ``event:`` (its type), ``data:`` (``Event.as_dict()``, JSON)."""
    return f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps(event.as_dict())}\n\n".encode()


def data_frame(type: str, data: dict[str, Any]) -> bytes:
    """An SSE frame without an id (``run.state``, ``llm.delta``: not stored, not replayed)."""
    return f"event: {type}\ndata: {json.dumps(data)}\n\n".encode()


COMMENT = b": keep-alive\n\n"


class Hub:
    """One Redis pub/sub subscriber (``PSUBSCRIBE <prefix>:*``) per event loop, fanning messages out to the
    streams' queues by channel (or to every listener of ``ANY``). A lost connection is retried every second;
    meanwhile streams poll."""

    #: The channel name a listener of every channel registers under.
    ANY = "*"
    _hubs: dict[int, Hub] = {}

    def __init__(self) -> None:
        self.listeners: dict[str, set[asyncio.Queue]] = {}
        self.task: asyncio.Task | None = None
        self.connected = False

    @classmethod
    def get(cls) -> Hub | None:
        """This event loop's hub (``None`` without ``REDIS_URL``)."""
        if not settings.REDIS_URL:
            return None
        loop = asyncio.get_running_loop()
        hub = cls._hubs.get(id(loop))
        if hub is None or hub.task is None or hub.task.get_loop() is not loop or hub.task.done():
            hub = cls._hubs[id(loop)] = cls()
            hub.task = loop.create_task(hub._run())
        return hub

    def add(self, channels: Iterable[str], queue: asyncio.Queue) -> None:
        for channel in channels:
            self.listeners.setdefault(channel, set()).add(queue)

    def remove(self, channels: Iterable[str], queue: asyncio.Queue) -> None:
        for channel in channels:
            listeners = self.listeners.get(channel)
            if listeners is not None:
                listeners.discard(queue)
                if not listeners:
                    del self.listeners[channel]

    def _deliver(self, channel: str, data: bytes) -> None:
        for queue in (*self.listeners.get(channel, ()), *self.listeners.get(self.ANY, ())):
            if not queue.full():  # a full queue's stream is behind already: it reads the outbox anyway
                queue.put_nowait(data)

    async def _run(self) -> None:
        import redis.asyncio as aioredis

        while True:
            client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.psubscribe(f"{settings.EVENTS_CHANNEL_PREFIX}:*")
                    self.connected = True
                    for listeners in list(self.listeners.values()):  # anything published while not connected
                        for queue in listeners:
                            if not queue.full():
                                queue.put_nowait(b"{}")
                    async for message in pubsub.listen():
                        if message.get("type") == "pmessage":
                            self._deliver(message["channel"].decode(), message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis lost: streams poll until it is back
                logger.warning("Event subscriber lost Redis (streams poll meanwhile): %s", exc)
            finally:
                self.connected = False
                await client.aclose()
            await asyncio.sleep(1.0)


#: How long a plain-iterator stream (``sync_stream``) waits for its pub/sub subscriber to close.
SUBSCRIBER_CLOSE_SECONDS = 1.0

#: How long a stream waits for an announced event to settle before it stops looking for it in particular.
ANNOUNCED_TTL_SECONDS = 5.0


async def event_stream(
    *,
    last_event_id: int | None = None,
    workspace_id=None,
    project_id=None,
    run_id=None,
    types: Iterable[str] | None = None,
    initial: Callable[[], list[bytes]] | None = None,
    finished: Callable[[], bool] | None = None,
    deltas: bool = False,
    keepalive: float | None = None,
    cursor: tuple[int, int] | None = None,
) -> AsyncIterator[bytes]:
    """The SSE frames of the events matching the filters, live, for as long as the client listens.

    Without ``last_event_id`` the stream starts at the present (the settled head, ``agents.events.head``) after the
    frames ``initial()`` returns (read after the head was taken, so nothing between them is lost; a run's stream
    sends its ``run.state`` there); with it, it continues after that event from the outbox (no gap, no duplicate).

    Args:
        last_event_id: the client's ``Last-Event-ID`` (0 replays every event kept).
        workspace_id, project_id, run_id, types: the filters of ``events_after``; wake-ups come from the project's
            channel (and the run's, for ``llm.delta``), or every channel without a project.
        initial: a callable (run in a thread: it may query) returning frames to send first.
        finished: a callable (run in a thread) telling whether nothing more can happen (a finished run): the stream
            then ends once it has caught up; a run's stream also ends right after a terminal event of ``run_id``.
        deltas: also send the run's ``llm.delta`` frames (published, never stored; needs ``run_id`` and Redis).
        keepalive: seconds between comment lines while idle (``EVENTS_KEEPALIVE_SECONDS``).
        cursor: start after this ``(xid, id)`` (``agents.events.head()`` taken earlier) instead of the present.

    Yields ``bytes``: SSE frames and ``: keep-alive`` comments.
    """
    keepalive = settings.EVENTS_KEEPALIVE_SECONDS if keepalive is None else keepalive
    types = set(types) if types is not None else None
    run_key = str(run_id) if run_id is not None else None
    project_key = str(project_id) if project_id is not None else None
    hub = Hub.get()
    queue: asyncio.Queue = asyncio.Queue(maxsize=256)
    channels = [project_channel(project_id)] if project_id is not None else [Hub.ANY]
    if deltas and run_id is not None:
        channels.append(run_channel(run_id))
    if hub is not None:
        hub.add(channels, queue)

    def concerns(body: dict[str, Any]) -> bool:
        """A wake-up for an event this stream delivers."""
        return (body.get("id") is not None and (run_key is None or body.get("run_id") == run_key)
                and (project_key is None or body.get("project_id") == project_key)
                and (workspace_id is None or body.get("workspace_id") in (None, str(workspace_id)))
                and (types is None or body.get("type") in types))

    try:
        if last_event_id is not None:
            after_id, cursor = last_event_id, None
        else:
            after_id, cursor = None, cursor or await _db(head)
        done = await _db(finished) if finished is not None else False
        if initial is not None:
            for chunk in await _db(initial):
                yield chunk
        filters = {"workspace_id": workspace_id, "project_id": project_id, "run_id": run_id,
                   "types": list(types) if types is not None else None}
        last_write = time.monotonic()
        announced: dict[int, float] = {}  # event id → until when to look for it
        while True:
            while True:  # catch up with the outbox
                batch = await _db(events_after, after_id, cursor=cursor, limit=BATCH, **filters)
                for event in batch:
                    cursor, after_id = event.cursor, None
                    announced.pop(event.id, None)
                    yield frame(event)
                    if run_key is not None and event.type in RUN_TERMINAL_EVENTS and str(event.run_id) == run_key:
                        return
                if batch:
                    last_write = time.monotonic()
                if len(batch) < BATCH:
                    break
            if done:
                return
            now = time.monotonic()
            announced = {event_id: until for event_id, until in announced.items() if until > now}
            if announced:
                timeout = SETTLE_RETRY_SECONDS  # woken for an event that has not settled yet
            elif hub is None or not hub.connected:
                timeout = settings.EVENTS_POLL_SECONDS
            else:
                timeout = REDIS_FALLBACK_POLL_SECONDS
            idle_left = keepalive - (now - last_write)
            if idle_left <= 0:
                yield COMMENT
                last_write = time.monotonic()
                continue
            try:
                messages = [await asyncio.wait_for(queue.get(), timeout=min(timeout, idle_left))]
            except TimeoutError:
                continue
            while not queue.empty():  # one read of the outbox serves every wake-up queued
                messages.append(queue.get_nowait())
            for message in messages:
                try:
                    body = json.loads(message)
                except ValueError:
                    continue
                if body.get("type") == LLM_DELTA:
                    if deltas and body.get("data", {}).get("run_id") == run_key:
                        yield data_frame(LLM_DELTA, body["data"])
                        last_write = time.monotonic()
                elif concerns(body):
                    announced[int(body["id"])] = time.monotonic() + ANNOUNCED_TTL_SECONDS
    finally:
        if hub is not None:
            hub.remove(channels, queue)


def sync_stream(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """``stream`` as a plain iterator (WSGI, ``runserver``, a management command): its own event loop, in this
    thread."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(stream.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(stream.aclose())
        pending = asyncio.all_tasks(loop)  # this loop's pub/sub subscriber
        for task in pending:
            task.cancel()
        if pending:  # bounded: a subscriber cancelled while its Redis connection closes may never get to finish
            loop.run_until_complete(asyncio.wait(pending, timeout=SUBSCRIBER_CLOSE_SECONDS))
        loop.close()
