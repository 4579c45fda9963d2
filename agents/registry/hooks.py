"""Run agent-class lifecycle hooks after a lifecycle change has committed.

The services send ``agent_spawned`` / ``agent_transitioned`` from ``transaction.on_commit``
(``agents/signals.py``); the receivers here, connected in ``AgentsConfig.ready()``, run the hook of
the instance's class (``AgentType.handler`` → ``agents.registry.registry``):

==============================================  ============
lifecycle change                                hook
==============================================  ============
spawn (the agent is born IDLE)                  initialize
any → WORKING                                   activate
WORKING or WAITING → PAUSED or IDLE             deactivate
any → TERMINATED                                shutdown
anything else (→ WAITING, IDLE → PAUSED, ...)   none
==============================================  ============

Types without a handler have no hooks. The receivers send the hooks to a Celery worker
(``agents.runtime.tasks.run_hooks`` → ``run_pending_hooks``), so a slow hook never delays the request that
made the change; one agent's hooks run one at a time, in ledger order. There a hook runs outside
any transaction and holds no row lock, in a thread with a budget of ``AGENT_HOOK_TIMEOUT_SECONDS``
(``async def`` hooks run on their own event loop there and are cancelled when the budget runs out;
a plain method cannot be interrupted, so its late result is discarded). When the hook returns in time, its change to the
memory (the difference between the memory it started from and the one it built) is applied to the
memory as it is then with ``agents.services.agent_save_memory(..., base=...)``, so a PATCH that
landed while the hook ran is kept; a change that collides with that PATCH is not saved and is
recorded as a hook error (``memory_conflict``). A hook that raises or overruns never undoes the
lifecycle change: ``agents.services.agent_record_hook_error`` writes the message to
``last_error`` and a note to the ledger, and the caller (API, admin, command) carries on.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.db.models import F

from syndarix.exceptions import InvalidInput

from .. import services
from ..choices import AgentStatus
from ..exceptions import MemoryConflict
from ..models import AgentInstance, AgentTransition
from .base import AgentRegistry, UnknownAgentClass
from .base import registry as default_registry

logger = logging.getLogger(__name__)

S = AgentStatus

OK = "ok"
FAILED = "failed"
TIMED_OUT = "timed_out"


def hooks_for(source: str | None, target: str) -> tuple[str, ...]:
    """The hooks a lifecycle change runs, in order (``source`` is ``None`` for a spawn)."""
    if source is None:
        return ("initialize",)
    if target == S.WORKING:
        return ("activate",)
    if target in (S.PAUSED, S.IDLE) and source in (S.WORKING, S.WAITING):
        return ("deactivate",)
    if target == S.TERMINATED:
        return ("shutdown",)
    return ()


@dataclasses.dataclass(frozen=True)
class HookOutcome:
    """What running one hook came to.

    Attributes:
        hook: the hook name.
        handler: the class slug.
        status: ``"ok"``, ``"failed"`` (it raised, or its class is not registered) or
            ``"timed_out"`` (it overran ``AGENT_HOOK_TIMEOUT_SECONDS``).
        message: the error text recorded on the agent (empty when ``ok``).
        seconds: wall-clock time spent waiting for the hook.
        memory_saved: whether the hook changed ``short_term_memory`` and it was saved.
    """

    hook: str
    handler: str
    status: str
    message: str = ""
    seconds: float = 0.0
    memory_saved: bool = False


class _BudgetExceeded(Exception):
    """An ``async`` hook was cancelled at the end of its time budget."""


async def _bounded(awaitable, budget: float | None):
    try:
        async with asyncio.timeout(budget) as scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise _BudgetExceeded() from None
        raise


def _call_within_budget(func: Callable[[], Any], budget: float | None, name: str) -> tuple[str, BaseException | None]:
    """Call ``func`` (sync, or returning an awaitable) in a daemon thread; wait at most ``budget`` s.

    Returns ``(OK | FAILED | TIMED_OUT, exception or None)``. The worker closes the database
    connections it opened.
    """
    box: dict[str, BaseException] = {}

    def work() -> None:
        try:
            if inspect.iscoroutinefunction(func):
                asyncio.run(_bounded(func(), budget))
            else:
                result = func()
                if inspect.isawaitable(result):
                    asyncio.run(_bounded(result, budget))
        except BaseException as exc:  # noqa: BLE001 - whatever the hook raises is recorded, never re-raised
            box["error"] = exc
        finally:
            connections.close_all()

    worker = threading.Thread(target=work, name=f"agent-hook-{name}", daemon=True)
    worker.start()
    worker.join(budget)
    if worker.is_alive():
        return TIMED_OUT, None
    error = box.get("error")
    if isinstance(error, _BudgetExceeded):
        return TIMED_OUT, None
    return (FAILED, error) if error is not None else (OK, None)


def _budget() -> float | None:
    seconds = float(settings.AGENT_HOOK_TIMEOUT_SECONDS)
    return seconds if seconds > 0 else None


def run_hook(
    agent: AgentInstance,
    hook: str,
    *,
    transition: AgentTransition | None = None,
    registry: AgentRegistry | None = None,
) -> HookOutcome | None:
    """Run ``hook`` of ``agent``'s class and record its outcome on the agent.

    Returns ``None`` when the agent's type has no handler, else a ``HookOutcome``. Never raises
    for the hook's sake: failures and overruns are recorded with ``agent_record_hook_error``.
    """
    registry = default_registry if registry is None else registry
    handler = agent.agent_type.handler
    if not handler:
        return None
    try:
        cls = registry.get(handler)
    except UnknownAgentClass:
        message = f"agent class '{handler}' is not registered (AGENT_REGISTRY_MODULES)"
        services.agent_record_hook_error(agent, hook=hook, message=message)
        logger.error("Agent %s: %s hook failed: %s", agent.pk, hook, message)
        return HookOutcome(hook=hook, handler=handler, status=FAILED, message=message)

    fresh = AgentInstance.objects.select_related("agent_type", "project__workspace").get(pk=agent.pk)
    before = copy.deepcopy(fresh.short_term_memory)
    instance = cls(fresh, transition=transition)
    budget = _budget()
    started = time.monotonic()
    status, error = _call_within_budget(getattr(instance, hook), budget, f"{handler}.{hook}")
    seconds = round(time.monotonic() - started, 3)

    if status == OK:
        if fresh.short_term_memory == before:
            return HookOutcome(hook=hook, handler=handler, status=OK, seconds=seconds)
        try:
            services.agent_save_memory(fresh, short_term_memory=fresh.short_term_memory, base=before)
        except (InvalidInput, MemoryConflict) as exc:
            status, error = FAILED, exc
        else:
            return HookOutcome(hook=hook, handler=handler, status=OK, seconds=seconds, memory_saved=True)

    if status == TIMED_OUT:
        message = f"exceeded its time budget of {budget:g} s (AGENT_HOOK_TIMEOUT_SECONDS)"
    else:
        detail = getattr(error, "message", None) or str(error)
        message = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
    services.agent_record_hook_error(fresh, hook=hook, message=message)
    log = logger.warning if status == TIMED_OUT else logger.error
    log("Agent %s (%s): %s hook %s: %s", agent.pk, handler, hook, status, message, exc_info=error)
    return HookOutcome(hook=hook, handler=handler, status=status, message=message, seconds=seconds)


def run_hooks(
    agent: AgentInstance, hooks: Iterable[str], *, transition: AgentTransition | None = None
) -> list[HookOutcome]:
    """Run ``hooks`` in order; an error while recording an outcome is logged, never raised."""
    outcomes = []
    for hook in hooks:
        try:
            outcome = run_hook(agent, hook, transition=transition)
        except Exception:
            logger.exception("Agent %s: could not run or record its %s hook.", agent.pk, hook)
            continue
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


# --- On a worker, in ledger order ---------------------------------------------------------------------


def pending_transitions(agent: AgentInstance):
    """The agent's lifecycle changes whose hooks have not run yet (after ``hooks_ran_until``), oldest first;
    ledger notes (``from_status == to_status``) are not lifecycle changes."""
    rows = agent.transitions.exclude(from_status=F("to_status")).order_by("created_at", "id")
    return rows if agent.hooks_ran_until is None else rows.filter(created_at__gt=agent.hooks_ran_until)


def _lock_key(agent_id) -> str:
    return f"agents:hooks:{agent_id}"


def run_pending_hooks(agent_id) -> list[HookOutcome]:
    """Run the hooks of every lifecycle change of the agent not handled yet, one change at a time, in ledger order.

    Hooks of one agent never run at the same time or out of order, whatever the number of workers: the
    ledger is the queue (``hooks_ran_until`` the position in it), and whoever holds the agent's lock in the
    shared cache drains it (``cache.add``, leased for the hooks' time budget). A worker that finds the lock
    taken leaves the work to the holder, which looks again after letting go, so no change is missed.
    Returns the outcomes of the hooks this call ran.
    """
    outcomes: list[HookOutcome] = []
    lease = int(max(_budget() or 0, 10)) * 2 + 30
    while True:
        if not cache.add(_lock_key(agent_id), "1", timeout=lease):
            return outcomes
        try:
            while True:
                agent = AgentInstance.objects.select_related("agent_type").filter(pk=agent_id).first()
                transition = pending_transitions(agent).first() if agent is not None else None
                if transition is None:
                    break
                hooks = hooks_for(transition.from_status or None, transition.to_status)
                outcomes += run_hooks(agent, hooks, transition=transition if transition.from_status else None)
                AgentInstance.objects.filter(pk=agent_id).update(hooks_ran_until=transition.created_at)
                cache.touch(_lock_key(agent_id), lease)
        finally:
            cache.delete(_lock_key(agent_id))
        agent = AgentInstance.objects.filter(pk=agent_id).first()
        if agent is None or not pending_transitions(agent).exists():
            return outcomes


def enqueue_hooks(agent: AgentInstance) -> None:
    """Send the agent's pending hooks to a worker (``agents.runtime.tasks.run_hooks``), for a type with an agent class.

    A broker that cannot be reached is logged, never raised: the lifecycle change has committed already,
    and the next change (or the reaper) sends the hooks again.
    """
    if not agent.agent_type.handler:
        return
    from ..runtime.tasks import run_hooks as task

    try:
        task.delay(str(agent.pk))
    except Exception:
        logger.exception("Agent %s: could not send its hooks to a worker.", agent.pk)


def on_agent_spawned(sender, *, agent: AgentInstance, **kwargs) -> None:
    """``agent_spawned`` receiver: the ``initialize`` hook, on a worker."""
    enqueue_hooks(agent)


def on_agent_transitioned(sender, *, agent: AgentInstance, source: str, target: str, **kwargs) -> None:
    """``agent_transitioned`` receiver: the hooks of ``hooks_for(source, target)``, on a worker."""
    if hooks_for(source, target):
        enqueue_hooks(agent)
