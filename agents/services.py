"""Write operations on agents: one function per business action.

Every path that changes an agent — API, admin, management commands, registry hooks — calls these.
Each lifecycle change locks the row (``select_for_update``) inside ``transaction.atomic()``,
checks the model's transition table, saves with ``update_fields``, appends one ``AgentTransition``
row and sends its signal only after commit. Lock order is workspace → project → agent.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from decimal import Decimal
from functools import partial
from typing import Any

import jsonpatch
import jsonpointer
from django.conf import settings
from django.db import models, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from projects.models import Project, Workspace
from syndarix.db import save_unique, update_unique
from syndarix.exceptions import InvalidInput

from . import counters, events
from .choices import AgentStatus, TerminationReason
from .exceptions import (
    AgentsDisabled,
    AgentTerminated,
    AlreadyTerminated,
    ConcurrencyLimitExceeded,
    InvalidTransition,
    MemoryConflict,
    UsageLimitExceeded,
)
from .models import AgentInstance, AgentTransition, AgentType, AgentTypeRevision, check_storable_json
from .selectors import agent_queryset
from .signals import agent_spawned, agent_transitioned

#: Fields ``agent_update`` may change (``status`` goes through the guard separately).
UPDATABLE_FIELDS = (
    "name", "current_task", "short_term_memory", "long_term_memory_ref", "session_id", "config", "max_tokens",
    "max_cost_usd",
)


def _user(actor):
    """The ledger's ``actor``: a saved, authenticated user, else ``None`` (the system)."""
    return actor if actor is not None and getattr(actor, "is_authenticated", False) else None


def agent_lock(agent_id, *, project: Project | None = None) -> AgentInstance:
    """Lock the agent's row (``SELECT ... FOR UPDATE OF`` the agent only) and read it with everything its API
    representation needs (``agents.selectors.agent_queryset``): a write that reads its agent once. Call it inside
    ``transaction.atomic()`` and pass the result to a service with ``locked=True``.

    Args:
        project: when given, the agent must belong to it.

    Raises:
        AgentInstance.DoesNotExist: no such agent (in ``project``).
    """
    # With ``project``, the agent gets the caller's copy of it (resolved with the caller's role), not a second one.
    return agent_queryset(project).select_for_update(of=("self",)).get(pk=agent_id)


def _locked(agent: AgentInstance, locked: bool) -> AgentInstance:
    """``agent`` when the caller already holds its lock (``agent_lock``), else the row locked and re-read."""
    return agent if locked else AgentInstance.objects.select_for_update().get(pk=agent.pk)


def ensure_agents_enabled() -> None:
    """Raise ``AgentsDisabled`` (503) when ``AGENTS_ENABLED`` is false."""
    if not settings.AGENTS_ENABLED:
        raise AgentsDisabled()


def agent_spawn(
    *,
    project: Project,
    agent_type: AgentType,
    name: str,
    actor=None,
    config: dict[str, Any] | None = None,
    current_task: str = "",
    is_playground: bool = False,
    request_id: str | None = None,
    agent_type_revision: AgentTypeRevision | None = None,
    template: dict[str, Any] | None = None,
    actor_agent: AgentInstance | None = None,
    run=None,
) -> AgentInstance:
    """Create an IDLE agent of ``agent_type`` in ``project`` and record the spawn in the ledger.

    Args:
        config: instance configuration, validated against ``agent_type.config_schema``.
        request_id: an ``Idempotency-Key``; repeating it in the same project returns the agent the
            first request spawned instead of spawning another.
        agent_type_revision: the committed template revision the agent comes from; default: the
            type's latest revision, or none when the type has no revision.
        template: the effective ``parameters.agent`` document to record as the agent's
            ``effective_template``; default: that revision's template. It is stored exactly as given:
            this service runs the config it receives and never adds to it.
        actor_agent, run: the agent (and its ``AgentRun``) spawning through a platform tool, for the ledger.

    Returns the new (or, on replay, the original) ``AgentInstance``.

    Raises:
        AgentsDisabled: ``AGENTS_ENABLED`` is false (503).
        InvalidInput: the agent type is inactive (400, field ``agent_type_id``); the revision
            belongs to another agent type or ``template`` is not a JSON object (400); ``config`` or
            ``template`` cannot be stored (a NUL character, NaN/Infinity, deeper than 64 levels: 400,
            see ``agents.models.check_storable_json``).
        django.core.exceptions.ValidationError: ``config`` breaks the schema (400, per field path).
        ConcurrencyLimitExceeded: the workspace already holds its limit of live agents (409).
    """
    ensure_agents_enabled()
    config = {} if config is None else config
    check_storable_json(config, field="config")
    if agent_type_revision is None:
        agent_type_revision = agent_type.revisions.order_by("-version").first()
    elif agent_type_revision.agent_type_id != agent_type.pk:
        raise InvalidInput("The revision belongs to another agent type.", field="agent_type_revision")
    if template is None and agent_type_revision is not None:
        template = agent_type_revision.template
    if template is not None and not isinstance(template, dict):
        raise InvalidInput("The template must be a JSON object.", field="template")
    if template is not None:
        check_storable_json(template, field="template")
    with transaction.atomic():
        # Lock the workspace, then count: concurrent spawns into one workspace serialize here.
        workspace = Workspace.objects.select_for_update().get(pk=project.workspace_id)
        if request_id:
            replay = (
                AgentTransition.objects.filter(agent__project=project, from_status="", request_id=request_id)
                .select_related("agent")
                .first()
            )
            if replay:
                return replay.agent
        if not agent_type.is_active:
            raise InvalidInput(
                f"Agent type '{agent_type.name}' is inactive and cannot be used.", field="agent_type_id"
            )
        agent_type.validate_config(config)
        live = counters.workspace_live(workspace)  # O(1): the counter moves with every spawn and termination
        limit = workspace.agent_limit
        if live >= limit:
            raise ConcurrencyLimitExceeded(limit=limit, current=live)
        agent = AgentInstance(
            project=project,
            agent_type=agent_type,
            agent_type_revision=agent_type_revision,
            effective_template=template,
            name=name,
            config=config,
            current_task=current_task,
            is_playground=is_playground,
            last_activity_at=timezone.now(),
        )
        agent.save(force_insert=True)
        spawned = AgentTransition.objects.create(
            agent=agent, from_status="", to_status=AgentStatus.IDLE, actor=_user(actor), reason="spawned",
            request_id=request_id, actor_agent=actor_agent, run=run,
        )
        events.transition_event(spawned, project_id=agent.project_id)
        counters.agent_spawned(agent, workspace_id=workspace.pk)
        transaction.on_commit(partial(agent_spawned.send, sender=AgentInstance, agent=agent, actor=_user(actor)))
    return agent


def agent_transition(
    agent: AgentInstance,
    target: str,
    *,
    actor=None,
    reason: str = "",
    request_id: str | None = None,
    termination_reason: str = TerminationReason.USER,
    only_from: frozenset[str] | None = None,
    run=None,
    actor_agent: AgentInstance | None = None,
    locked: bool = False,
) -> AgentInstance:
    """Move ``agent`` to the ``target`` status through the lifecycle guard.

    Locks the row, returns early when ``request_id`` was already used for this agent (idempotent
    replay) or when ``target`` is the current status (a no-op), otherwise applies the model's
    transition, saves with ``update_fields``, writes one ``AgentTransition`` and sends
    ``agent_transitioned`` after commit.

    Args:
        target: a status wire value (``"paused"``, ...).
        termination_reason: stored when ``target`` is ``terminated`` (a ``TerminationReason``).
        only_from: restrict the sources this call accepts (``agent_resume`` uses ``{paused}``).
        run: the ``AgentRun`` that makes or causes the change (the runtime, or a tool the run called).
        actor_agent: the agent acting through a platform tool (``actor`` is then ``None``).
        locked: ``agent`` was read with ``agent_lock`` in the caller's transaction (no second read, no savepoint:
            an error raised here must end that transaction).

    Returns the fresh, locked-and-saved instance (use it instead of ``agent``).

    Raises:
        AgentsDisabled: (503).
        InvalidInput: ``target`` is not a status (400).
        AlreadyTerminated: ``target`` is terminated and the agent already is (409).
        InvalidTransition: the table has no edge from the current status to ``target`` (409).
    """
    ensure_agents_enabled()
    if target not in AgentStatus.values:
        raise InvalidInput(f"'{target}' is not a valid status.", field="status")
    if termination_reason not in TerminationReason.values:
        raise InvalidInput(f"'{termination_reason}' is not a termination reason.", field="reason")
    # A caller holding the lock is in its own transaction, and nothing below is written before the last refusal:
    # no savepoint (two round trips fewer while the project's counter row, shared by all its agents, is locked).
    with transaction.atomic(savepoint=not locked):
        locked = _locked(agent, locked)
        if request_id and locked.transitions.filter(request_id=request_id).exists():
            return locked
        source = locked.status
        if source == target:
            if target == AgentStatus.TERMINATED:
                raise AlreadyTerminated()
            return locked
        method = locked.transition_method(target)
        if method is None:
            raise InvalidTransition(source, target, locked.allowed_transitions)
        if only_from is not None and source not in only_from:
            sources = " or ".join(f"'{s}'" for s in sorted(only_from))
            raise InvalidTransition(
                source, target, locked.allowed_transitions,
                message=f"Only an agent in {sources} can do this; the agent is '{source}'.",
            )
        spec = method._django_fsm.get_transition(source)
        method(reason=termination_reason) if target == AgentStatus.TERMINATED else method()
        locked.last_activity_at = timezone.now()
        locked.save(update_fields=["status", "last_activity_at", "updated_at", *spec.custom["fields"]])
        ledger = AgentTransition.objects.create(
            agent=locked, from_status=source, to_status=target, actor=_user(actor), reason=reason,
            request_id=request_id, run=run, actor_agent=actor_agent,
        )
        events.transition_event(ledger, project_id=locked.project_id)
        counters.agent_moved(locked, source=source, target=target)
        transaction.on_commit(
            partial(
                agent_transitioned.send, sender=AgentInstance, agent=locked, source=source, target=target,
                transition=ledger, actor=_user(actor),
            )
        )
    return locked


def agent_pause(
    agent: AgentInstance, *, actor=None, reason: str = "", request_id: str | None = None, **context: Any
) -> AgentInstance:
    """Pause ``agent`` (IDLE/WORKING/WAITING → PAUSED); its running run stops at the next step boundary.

    ``context``: ``run`` / ``actor_agent`` for the ledger. Raises as ``agent_transition``.
    """
    return agent_transition(agent, AgentStatus.PAUSED, actor=actor, reason=reason, request_id=request_id, **context)


def agent_resume(
    agent: AgentInstance, *, actor=None, reason: str = "", request_id: str | None = None, **context: Any
) -> AgentInstance:
    """Resume ``agent`` (PAUSED → IDLE); an already-idle agent is a no-op. A paused run continues from its
    checkpoint. ``context``: ``run`` / ``actor_agent`` for the ledger. Raises as ``agent_transition``."""
    return agent_transition(
        agent, AgentStatus.IDLE, actor=actor, reason=reason, request_id=request_id,
        only_from=frozenset({AgentStatus.PAUSED}), **context,
    )


def agent_terminate(
    agent: AgentInstance,
    *,
    actor=None,
    reason: str = "",
    termination_reason: str = TerminationReason.USER,
    request_id: str | None = None,
    **context: Any,
) -> AgentInstance:
    """Terminate ``agent`` for good; ``reason`` is free text for the ledger. Its runs that have not
    finished are cancelled. ``context``: ``run`` / ``actor_agent`` for the ledger.

    Raises ``AlreadyTerminated`` (409) when it already is, otherwise as ``agent_transition``.
    """
    return agent_transition(
        agent, AgentStatus.TERMINATED, actor=actor, reason=reason, request_id=request_id,
        termination_reason=termination_reason, **context,
    )


def agent_update(
    agent: AgentInstance, *, actor=None, data: dict[str, Any], request_id: str | None = None, locked: bool = False
) -> AgentInstance:
    """Change an agent's editable fields and, when ``data["status"]`` is given, its status.

    Only ``UPDATABLE_FIELDS`` are written (anything else in ``data`` is ignored); ``config`` is
    validated against the type's schema; ``status`` goes through ``agent_transition``. All of it
    happens in one transaction with the row locked: a refused transition leaves the fields unchanged too.

    Idempotency: ``request_id`` (the ``Idempotency-Key``) is checked first, under the lock: when a
    ledger row of this agent already carries it, nothing is written and the agent is returned as it
    is now. A status change stores the key on its ledger row; an update that writes no status change
    (fields only, or a status equal to the current one) stores it on a ledger note — an
    ``AgentTransition`` with ``from_status == to_status ==`` the current status and reason
    ``"updated"`` — so repeating the request never applies the fields again.

    Args:
        data: field name → new value (``UPDATABLE_FIELDS``), plus an optional target ``status``.
        request_id: an ``Idempotency-Key`` (unique per agent in the ledger).
        locked: ``agent`` was read with ``agent_lock`` in the caller's transaction (no second read, no savepoint:
            an error raised here must end that transaction).

    Returns the fresh instance (use it instead of ``agent``).

    Raises:
        InvalidInput: ``short_term_memory`` is not a JSON object, or ``config`` / ``short_term_memory``
            cannot be stored (a NUL character, NaN/Infinity, deeper than 64 levels) (400).
        django.core.exceptions.ValidationError: ``config`` breaks the schema (400).
        AgentTerminated: fields sent for a terminated agent (409).
        Anything ``agent_transition`` raises.
    """
    fields = {name: data[name] for name in UPDATABLE_FIELDS if name in data}
    if "short_term_memory" in fields and not isinstance(fields["short_term_memory"], dict):
        raise InvalidInput("short_term_memory must be a JSON object.", field="short_term_memory")
    for name in ("config", "short_term_memory"):
        if name in fields:
            check_storable_json(fields[name], field=name)
    if "config" in fields:
        agent.agent_type.validate_config(fields["config"])
    target = data.get("status")
    with transaction.atomic(savepoint=not locked):  # the caller's transaction holds the lock
        locked = _locked(agent, locked)
        if request_id and locked.transitions.filter(request_id=request_id).exists():
            return locked
        if fields:
            if locked.status == AgentStatus.TERMINATED:
                raise AgentTerminated("update")
            for name, value in fields.items():
                setattr(locked, name, value)
            locked.save(update_fields=[*fields, "updated_at"])
        if target is not None:
            source = locked.status
            locked = agent_transition(
                locked, target, actor=actor, reason="updated", request_id=request_id, locked=True
            )
            if locked.status != source:
                return locked  # its ledger row carries request_id
        if request_id and (fields or target is not None):
            AgentTransition.objects.create(
                agent=locked, from_status=locked.status, to_status=locked.status, actor=_user(actor),
                reason="updated", request_id=request_id,
            )
    return locked


def _column_max(name: str) -> int | Decimal:
    """The largest value ``AgentInstance.<name>`` holds: 2^63 - 1 for a big integer, 10^(digits) - 10^-places for
    a decimal."""
    column = AgentInstance._meta.get_field(name)
    if isinstance(column, models.DecimalField):
        return Decimal(10) ** (column.max_digits - column.decimal_places) - Decimal(10) ** -column.decimal_places
    return 2**63 - 1


#: The usage counters of an agent: request field → (column, largest value the column holds).
USAGE_COUNTERS = {
    "tokens": ("tokens_used", _column_max("tokens_used")),
    "cost": ("cost_incurred", _column_max("cost_incurred")),
    "tasks_completed": ("tasks_completed", _column_max("tasks_completed")),
}


def usage_increment(
    agent_id, *, tokens: int = 0, cost: Decimal = Decimal("0"), tasks_completed: int = 0, live_only: bool = False,
    **fields: Any,
) -> None:
    """Add usage to agent ``agent_id``'s counters in one ``UPDATE … SET x = x + n WHERE x <= limit - n``.

    The bounds are checked by the same statement that increments, so concurrent increments can never
    take a counter past its column's range (``USAGE_COUNTERS``); a refused increment changes nothing.

    Args:
        tokens, tasks_completed: whole numbers ≥ 0; ``cost``: USD, a finite Decimal ≥ 0 (checked by the caller).
        live_only: refuse a terminated agent (``AgentTerminated``).
        fields: more columns to set in the same statement (``last_heartbeat_at=now``).

    Raises:
        InvalidInput: one increment alone is larger than its column holds (400, ``max_value``).
        UsageLimitExceeded: a counter would pass its limit (409), naming the field, the counter, the limit and
            its current value.
        AgentTerminated: ``live_only`` and the agent is terminated (409).
    """
    increments = {"tokens": tokens, "cost": cost, "tasks_completed": tasks_completed}
    queryset = AgentInstance.objects.filter(pk=agent_id)
    if live_only:
        queryset = queryset.live()
    bounds, updates = {}, dict(fields)
    for field, value in increments.items():
        column, limit = USAGE_COUNTERS[field]
        if not value:
            continue
        if value > limit:
            raise InvalidInput(f"{field} must be at most {limit}.", code="max_value", field=field)
        bounds[f"{column}__lte"] = limit - value
        updates[column] = F(column) + value
    if not updates or queryset.filter(**bounds).update(**updates):
        return
    usage_refused(agent_id, increments, live_only=live_only)


def usage_refused(agent_id, increments: dict[str, Any], *, live_only: bool = False) -> None:
    """Raise why a bounded increment of ``increments`` (``{"tokens", "cost", "tasks_completed"}``) changed nothing
    (``usage_increment``, and the runtime's one-statement step record).

    Raises:
        UsageLimitExceeded: a counter would pass its limit.
        AgentTerminated: the agent is gone, or ``live_only`` and it is terminated.
    """
    current = AgentInstance.objects.filter(pk=agent_id).values("status", *(c for c, _ in USAGE_COUNTERS.values()))
    row = current.first()
    if row is None or (live_only and row["status"] == AgentStatus.TERMINATED):
        raise AgentTerminated("record usage on")
    for field, value in increments.items():
        column, limit = USAGE_COUNTERS[field]
        if value and row[column] > limit - value:
            raise UsageLimitExceeded(field=field, counter=column, limit=limit, current=row[column])
    raise AgentTerminated("record usage on")  # not reached: counters only grow, and agents are never deleted


def agent_record_usage(
    agent: AgentInstance,
    *,
    tokens: int = 0,
    cost: Decimal | int | str = Decimal("0"),
    tasks_completed: int = 0,
    locked: bool = False,
) -> AgentInstance:
    """Add usage to an agent's counters, and to its project's totals (``agents.counters``), in one transaction
    with the agent row locked (the API's ``usage`` endpoint, ``seed_demo``).

    The increment is one bounded ``UPDATE`` (``usage_increment``): concurrent posts all count, and none can take
    a counter past its column's range.

    Args:
        tokens: tokens consumed (≥ 0).
        cost: cost in USD (≥ 0; Decimal or a decimal string).
        tasks_completed: tasks finished (≥ 0).
        locked: ``agent`` was read with ``agent_lock`` in the caller's transaction (no second read, no savepoint:
            an error raised here must end that transaction).

    Returns the agent, locked and saved (use it instead of ``agent``).

    Raises:
        InvalidInput: a negative, non-numeric or non-finite increment, or non-integer counts (400).
        UsageLimitExceeded: a total would pass its column's range (409); nothing is recorded.
        AgentTerminated: the agent is terminated (409); nothing is recorded.
    """
    try:
        cost = Decimal(str(cost))
    except ArithmeticError as exc:
        raise InvalidInput("cost must be a decimal number of USD.", field="cost") from exc
    if not cost.is_finite():
        raise InvalidInput("cost must be a finite decimal number of USD.", field="cost")
    for field, value in (("tokens", tokens), ("tasks_completed", tasks_completed)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{field} must be a whole number.", field=field)
    for field, value in (("tokens", tokens), ("cost", cost), ("tasks_completed", tasks_completed)):
        if value < 0:
            raise InvalidInput(f"{field} must be zero or more.", field=field)
    with transaction.atomic(savepoint=not locked):  # the caller's transaction holds the lock
        locked = _locked(agent, locked)
        if locked.is_terminated:
            raise AgentTerminated("record usage on")
        now = timezone.now()
        usage_increment(
            locked.pk, tokens=tokens, cost=cost, tasks_completed=tasks_completed, last_activity_at=now, updated_at=now
        )
        # The row is locked: the instance can follow the increment and stay current.
        locked.tokens_used += tokens
        locked.cost_incurred += cost
        locked.tasks_completed += tasks_completed
        locked.last_activity_at = locked.updated_at = now
        counters.usage_added(locked, tokens=tokens, cost=cost, tasks_completed=tasks_completed)
    return locked


# --- Agent-class registry: hook bookkeeping and syncing agent types. ---


def agent_save_memory(
    agent: AgentInstance, *, short_term_memory: dict[str, Any], base: dict[str, Any] | None = None
) -> AgentInstance:
    """Save ``short_term_memory`` (the lifecycle hooks' working state) on ``agent``.

    Locks the row and saves only ``short_term_memory`` and ``updated_at`` (never ``status``), so it
    works whatever the agent's status is now, terminated included (``shutdown`` flushes memory).

    Args:
        short_term_memory: a JSON object (dict of JSON-serializable values).
        base: the memory the caller started from (a hook: the memory it was given). With it, only
            the caller's own change is applied: the RFC 6902 JSON Patch from ``base`` to
            ``short_term_memory`` is applied, under the row lock, to the memory as it is now, so keys
            someone else wrote meanwhile (a PATCH while the hook ran) are kept. Without it the whole
            memory is replaced.

    Returns the saved instance.

    Raises:
        InvalidInput: ``short_term_memory`` is not a JSON object, or not storable JSON (a value JSON
            cannot hold, a NUL character, NaN/Infinity, deeper than 64 levels) (400).
        MemoryConflict: with ``base``, a concurrent write changed or removed a value the change
            also changes, or added a key it adds with another value (409); nothing is saved.
    """
    if not isinstance(short_term_memory, dict):
        raise InvalidInput("short_term_memory must be a JSON object.", field="short_term_memory")
    check_storable_json(short_term_memory, field="short_term_memory")
    with transaction.atomic():
        locked = AgentInstance.objects.select_for_update().get(pk=agent.pk)
        if base is None:
            locked.short_term_memory = short_term_memory
        else:
            locked.short_term_memory = rebase_json_change(locked.short_term_memory, base=base, target=short_term_memory)
        locked.save(update_fields=["short_term_memory", "updated_at"])
    return locked


def rebase_json_change(current: Any, *, base: Any, target: Any) -> Any:
    """Apply the change from ``base`` to ``target`` onto ``current`` (a three-way merge of JSON documents).

    The change is ``jsonpatch.make_patch(base, target)``; each operation must still make sense on
    ``current``: a replaced, removed, moved or copied value must be what it was in ``base``, and an
    object member the change adds must be absent (or already hold the added value). Array inserts
    apply at their index. None of the arguments is modified.

    Returns the merged document.

    Raises:
        MemoryConflict: an operation collides with what changed between ``base`` and ``current``.
    """
    doc, shadow = copy.deepcopy(current), copy.deepcopy(base)
    for operation in jsonpatch.make_patch(base, target).patch:
        kind = operation["op"]
        guarded = operation["from"] if kind in ("move", "copy") else operation["path"]
        try:
            was = jsonpointer.resolve_pointer(shadow, guarded) if kind != "add" else None
            if kind != "add" and jsonpointer.resolve_pointer(doc, guarded) != was:
                raise MemoryConflict(guarded)
            if kind in ("add", "move", "copy"):
                pointer = jsonpointer.JsonPointer(operation["path"])
                parent, key = pointer.to_last(doc)
                if isinstance(parent, dict) and key in parent:
                    incoming = operation["value"] if kind == "add" else jsonpointer.resolve_pointer(doc, guarded)
                    if parent[key] != incoming:
                        raise MemoryConflict(operation["path"])
            doc = jsonpatch.apply_patch(doc, [operation], in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise MemoryConflict(guarded) from exc
        shadow = jsonpatch.apply_patch(shadow, [operation], in_place=True)
    return doc


def agent_record_hook_error(agent: AgentInstance, *, hook: str, message: str) -> AgentTransition:
    """Record that the lifecycle hook ``hook`` failed, without touching the agent's status.

    Writes ``"<hook> hook failed: <message>"`` to ``last_error`` and appends it to the ledger as a
    note: an ``AgentTransition`` with ``from_status == to_status ==`` the current status, no actor
    and the text as ``reason``.

    Args:
        hook: ``initialize``, ``activate``, ``deactivate`` or ``shutdown``.
        message: what went wrong (an exception's type and text, or the time budget overrun).

    Returns the ledger note.
    """
    text = f"{hook} hook failed: {message}"
    with transaction.atomic():
        locked = AgentInstance.objects.select_for_update().get(pk=agent.pk)
        locked.last_error = text
        locked.save(update_fields=["last_error", "updated_at"])
        return AgentTransition.objects.create(
            agent=locked, from_status=locked.status, to_status=locked.status, actor=None, reason=text
        )


@dataclasses.dataclass
class AgentTypeSyncReport:
    """What ``agent_types_sync`` did (or, on a dry run, would do): agent type slugs per outcome."""

    created: list[str] = dataclasses.field(default_factory=list)
    updated: list[str] = dataclasses.field(default_factory=list)
    unchanged: list[str] = dataclasses.field(default_factory=list)
    deactivated: list[str] = dataclasses.field(default_factory=list)
    #: Types given their class's ``template`` as their first revision.
    templates_committed: list[str] = dataclasses.field(default_factory=list)
    dry_run: bool = False

    def counts(self) -> dict[str, int]:
        """``{"created", "updated", "unchanged", "deactivated"}`` → number of agent types."""
        return {key: len(getattr(self, key)) for key in ("created", "updated", "unchanged", "deactivated")}

    def summary(self) -> str:
        """One line: ``"3 created, 0 updated, 0 unchanged, 0 deactivated"``."""
        return ", ".join(f"{count} {key}" for key, count in self.counts().items())


#: ``AgentType`` fields ``agent_types_sync`` copies from a class definition.
SYNCED_FIELDS = ("name", "description", "capabilities", "config_schema", "handler")


def agent_types_sync(registry, *, dry_run: bool = False, deactivate_missing: bool = False) -> AgentTypeSyncReport:
    """Create or update one ``AgentType`` per class in ``registry`` (an ``AgentRegistry``).

    The type whose ``slug`` equals the class slug gets the class's ``name``, ``description``,
    ``capabilities`` and ``config_schema``, and ``handler = slug``; a missing one is created
    active. ``is_active`` of existing types is left alone. With ``deactivate_missing``, active types
    whose ``handler`` names a class that is not registered are deactivated (types without a
    handler are never touched). A class that ships a ``template`` (the built-ins do) gets it committed
    as its type's first revision when the type has none (``templates_committed``); later revisions
    are the type's own. Rows are locked in primary-key order; with ``dry_run`` nothing is written
    and the report says what would change.

    Returns an ``AgentTypeSyncReport``; running it twice in a row reports everything unchanged.
    """
    report = AgentTypeSyncReport(dry_run=dry_run)
    definitions = {d["slug"]: json.loads(json.dumps(d)) for d in registry.definitions()}
    templates = {cls.slug: getattr(cls, "template", None) for cls in registry.classes()}
    with transaction.atomic():
        existing = {
            row.slug: row
            for row in AgentType.objects.select_for_update()
            .filter(slug__in=definitions)
            .annotate(has_revision=Exists(AgentTypeRevision.objects.filter(agent_type=OuterRef("pk"))))
            .order_by("pk")
        }
        for slug, definition in definitions.items():
            wanted = {name: definition[name] for name in SYNCED_FIELDS if name != "handler"}
            wanted["handler"] = slug
            row = existing.get(slug)
            template = templates.get(slug)
            if template and (row is None or not row.has_revision):
                report.templates_committed.append(slug)
            if row is None:
                report.created.append(slug)
                if not dry_run:
                    row = AgentType.objects.create(slug=slug, is_active=True, **wanted)
                    if template:
                        agent_type_commit_revision(row, template=template, message=f"Template of agent class '{slug}'")
                continue
            if template and not row.has_revision and not dry_run:
                agent_type_commit_revision(row, template=template, message=f"Template of agent class '{slug}'")
            changed = [name for name, value in wanted.items() if getattr(row, name) != value]
            if not changed:
                report.unchanged.append(slug)
                continue
            report.updated.append(slug)
            if not dry_run:
                for name in changed:
                    setattr(row, name, wanted[name])
                row.save(update_fields=[*changed, "updated_at"])
        if deactivate_missing:
            orphans = (
                AgentType.objects.select_for_update()
                .filter(is_active=True)
                .exclude(handler="")
                .exclude(handler__in=definitions)
                .order_by("pk")
            )
            for row in orphans:
                report.deactivated.append(row.slug)
                if not dry_run:
                    row.is_active = False
                    row.save(update_fields=["is_active", "updated_at"])
    return report


AGENT_TYPE_SLUG_TAKEN = "agent type with this slug already exists."
#: ``AgentType`` fields ``agent_type_create`` / ``agent_type_update`` write.
AGENT_TYPE_FIELDS = (
    "name", "slug", "description", "capabilities", "config_schema", "handler", "is_active", "max_tokens",
    "max_cost_usd",
)


def agent_type_create(**fields: Any) -> AgentType:
    """Create an agent type from ``fields`` (keywords among ``AGENT_TYPE_FIELDS``, already validated:
    ``AgentType.clean``).

    Returns the new ``AgentType``.

    Raises:
        InvalidInput: the slug is taken, also by a concurrent create (400 ``unique`` on ``slug``).
        TypeError: a keyword that is not in ``AGENT_TYPE_FIELDS``.
    """
    unknown = set(fields) - set(AGENT_TYPE_FIELDS)
    if unknown:
        raise TypeError(f"agent_type_create() got unexpected fields: {sorted(unknown)}")
    return save_unique(
        lambda: AgentType.objects.create(**fields),
        taken=lambda: AgentType.objects.filter(slug=fields.get("slug")).exists(),
        field="slug",
        message=AGENT_TYPE_SLUG_TAKEN,
    )


def agent_type_update(agent_type: AgentType, *, data: dict[str, Any]) -> AgentType:
    """Change the ``AGENT_TYPE_FIELDS`` present in ``data`` (already validated) and save them with ``update_fields``.

    Returns ``agent_type``, saved. Raises ``InvalidInput`` (400 ``unique`` on ``slug``) when the new slug
    is taken, also by a concurrent write.
    """
    return update_unique(
        agent_type,
        data,
        AGENT_TYPE_FIELDS,
        taken=lambda: AgentType.objects.filter(slug=agent_type.slug).exclude(pk=agent_type.pk).exists(),
        field="slug",
        message=AGENT_TYPE_SLUG_TAKEN,
    )


def agent_type_commit_revision(
    agent_type: AgentType, *, template: dict[str, Any], message: str = "", author=None
) -> AgentTypeRevision:
    """Commit ``template`` as the next immutable revision of ``agent_type``.

    The version is the type's highest version + 1 (1 for the first commit), allocated while the
    agent type row is locked, so concurrent commits to one type queue and get consecutive versions
    (the unique constraint on (agent_type, version) is the backstop). The template is stored
    exactly as given; validating it against the template schema is the caller's job
    (``buildkit.services.template_commit`` does it before calling this).

    Args:
        template: the ``parameters.agent`` document (a JSON object).
        message: the commit message (free text).
        author: the committing user; ``None`` (or an anonymous user) records the system.

    Returns the new ``AgentTypeRevision``.

    Raises:
        InvalidInput: ``template`` is not a JSON object (400, field ``template``).
    """
    if not isinstance(template, dict):
        raise InvalidInput("The template must be a JSON object.", field="template")
    with transaction.atomic():
        locked = AgentType.objects.select_for_update().get(pk=agent_type.pk)
        latest = locked.revisions.order_by("-version").values_list("version", flat=True).first()
        return AgentTypeRevision.objects.create(
            agent_type=locked, version=(latest or 0) + 1, template=template, message=message or "",
            author=_user(author),
        )
