"""How many of a worker process's runs execute Python at once (``AGENT_WORKER_ACTIVE_RUNS``).

A worker process holds hundreds of runs on threads, but one interpreter runs one thread at a time (the GIL). When
hundreds of them want it together, each waits behind all the others: the worker's consumer thread, which takes
new runs in from the broker, gets it only every few hundred switches, so a burst of runs is taken in at a few dozen
per second, and every step of every run waits in the same crowd. Runs therefore take a slot (``active``) for as
long as they execute, and give it back for as long as they wait on their LLM (``waiting``, used by
``ctx.llm``): at most ``AGENT_WORKER_ACTIVE_RUNS`` of them compete for the interpreter and the process's
database pool, and the rest wait their turn on a semaphore, which costs nothing.

The bound is soft: a run that has waited ``AGENT_WORKER_ACTIVE_RUNS_WAIT_SECONDS`` for a slot goes on without
one. Agent code that blocks on something other than ``ctx.llm`` while it holds a slot (a long sleep, an HTTP call
of its own) can therefore delay the process's other runs by at most that much at a time, never stall them; such
code should wrap the wait in ``ctx.waiting()``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings


class ActiveRuns:
    """The slots of one process (``slots``). A thread is inside ``active`` while it executes a run; it holds a slot
    unless it waited too long for one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._size: int | None = None
        self._semaphore: threading.Semaphore | None = None
        self._local = threading.local()

    def _current(self) -> threading.Semaphore | None:
        """The semaphore for ``AGENT_WORKER_ACTIVE_RUNS`` (``None``: 0, no bound); made again when the setting
        changes (a slot is always given back to the semaphore it was taken from)."""
        size = settings.AGENT_WORKER_ACTIVE_RUNS
        if size != self._size:
            with self._lock:
                if size != self._size:
                    self._semaphore = threading.Semaphore(size) if size > 0 else None
                    self._size = size
        return self._semaphore

    def _take(self) -> None:
        semaphore, self._local.held = self._current(), None
        if semaphore is not None and semaphore.acquire(timeout=settings.AGENT_WORKER_ACTIVE_RUNS_WAIT_SECONDS):
            self._local.held = semaphore

    def _give_back(self) -> None:
        semaphore, self._local.held = getattr(self._local, "held", None), None
        if semaphore is not None:
            semaphore.release()

    @contextmanager
    def active(self) -> Iterator[None]:
        """Hold a slot while the block runs (a run's execution, in the executor). Nested: the outer one holds it."""
        if getattr(self._local, "inside", False):
            yield
            return
        self._take()
        self._local.inside = True
        try:
            yield
        finally:
            self._local.inside = False
            self._give_back()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Give this thread's slot back while the block waits (an LLM call), and take one again after it. Outside
        ``active`` (a web request, the MCP server, a test) it does nothing."""
        if not getattr(self._local, "inside", False):
            yield
            return
        self._give_back()
        try:
            yield
        finally:
            self._take()

    @property
    def held(self) -> bool:
        """Whether this thread holds a slot now."""
        return getattr(self._local, "held", None) is not None


#: This process's slots.
slots = ActiveRuns()
