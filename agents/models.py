"""Agent types, their committed template revisions, agent instances with their lifecycle guard, and the ledger.

The lifecycle is declared once, here, with django-fsm-2: ``status`` is a protected ``FSMField``
(assigning it on a loaded instance raises ``AttributeError``), it changes only through the
``@transition`` methods below, and ``ConcurrentTransitionMixin`` makes a stale writer's ``save()``
fail with ``ConcurrentTransition`` instead of overwriting a newer state. Services in
``agents.services`` lock the row, call the transition method, save with ``update_fields`` and
write an ``AgentTransition`` row.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from projects.models import TimeStampedModel
from syndarix.exceptions import InvalidInput
from syndarix.jsondoc import check_json_document

from .choices import (
    RUN_FINISHED_STATUSES,
    AgentStatus,
    RunRequestKind,
    RunRequestStatus,
    RunStatus,
    StepKind,
    TerminationReason,
)
from .registry import registry

S = AgentStatus


def _json_path(prefix: str, path) -> str:
    return ".".join([prefix, *(str(p) for p in path)])


#: Most levels of nested objects/arrays in an agent's or agent type's JSON fields (the top level is 1).
JSON_MAX_DEPTH = 64


def check_storable_json(value, *, field: str) -> None:
    """Refuse a JSON field value PostgreSQL's ``jsonb`` cannot store (NUL characters, NaN/Infinity such as
    ``1e400``), or nested deeper than ``JSON_MAX_DEPTH``.

    Raises:
        InvalidInput: 400 on ``field``, code ``nul_character``, ``invalid_data`` or ``nesting_too_deep``
            (``syndarix.jsondoc.check_json_document``).
    """
    check_json_document(value, field=field, max_depth=JSON_MAX_DEPTH, what=field)


#: Slugs with this prefix name the platform's own reserved workflows (the build kit's static
#: catalog); no agent type may take one.
RESERVED_SLUG_PREFIX = "__sx__"


def validate_not_reserved_slug(value: str) -> None:
    """Refuse a slug in the platform's reserved ``__sx__`` namespace (400 through forms and serializers)."""
    if isinstance(value, str) and value.startswith(RESERVED_SLUG_PREFIX):
        raise ValidationError(
            f"Slugs starting with '{RESERVED_SLUG_PREFIX}' are reserved for the platform.", code="reserved_slug"
        )


def validate_registered_handler(value: str) -> None:
    """Refuse a ``handler`` that names no registered agent class; the message lists the registered slugs.

    Raises:
        ValidationError: code ``unknown_handler`` (400 through forms and serializers).
    """
    if value and value not in registry:
        registered = ", ".join(registry.slugs()) or "none"
        raise ValidationError(
            f"No agent class is registered as '{value}'. Registered classes: {registered}.", code="unknown_handler"
        )


class AgentType(TimeStampedModel):
    """The definition (template) of an agent: what it can do and how its instances are configured.

    ``config_schema`` is a JSON Schema (draft 2020-12) that every instance's ``config`` must
    satisfy; ``handler`` optionally names a registered Python agent class by its slug.
    """

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True, validators=[validate_not_reserved_slug])
    description = models.TextField(blank=True)
    capabilities = models.JSONField(default=list, blank=True, help_text="List of capability names (strings).")
    config_schema = models.JSONField(default=dict, blank=True, help_text="JSON Schema for instance config.")
    handler = models.CharField(max_length=100, blank=True, help_text="Slug of a registered agent class.")
    is_active = models.BooleanField(default=True, db_index=True)
    max_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Default token budget of its agents (tokens; empty: no budget)."
    )
    max_cost_usd = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True,
        help_text="Default cost budget of its agents (USD; empty: no budget).",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            # The backstop for the slug validator: reserved slugs never reach the table.
            models.CheckConstraint(
                condition=~models.Q(slug__startswith=RESERVED_SLUG_PREFIX),
                name="agenttype_slug_not_reserved",
                violation_error_message=f"Slugs starting with '{RESERVED_SLUG_PREFIX}' are reserved for the platform.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        # ``clean()`` checks a handler only when it is new: a type whose class has gone missing stays editable.
        instance._stored_handler = instance.__dict__.get("handler")
        return instance

    def clean(self) -> None:
        """Check ``capabilities`` (a list of strings) and ``config_schema`` (a valid JSON Schema), both
        storable JSON (``check_storable_json``), and a new or changed ``handler`` (a registered class,
        ``validate_registered_handler``).

        Raises ``ValidationError`` keyed by field; the admin form and the API serializer both call this.
        """
        errors: dict[str, list[ValidationError]] = {}
        if self.handler != getattr(self, "_stored_handler", None):
            try:
                validate_registered_handler(self.handler)
            except ValidationError as exc:
                errors["handler"] = exc.error_list
        for field in ("capabilities", "config_schema"):
            try:
                check_storable_json(getattr(self, field), field=field)
            except InvalidInput as exc:
                errors[field] = [ValidationError(exc.message, code=exc.code)]
        if not isinstance(self.capabilities, list) or not all(isinstance(c, str) for c in self.capabilities):
            errors.setdefault("capabilities", [ValidationError("Must be a list of strings.")])
        if "config_schema" not in errors:
            if not isinstance(self.config_schema, dict):
                errors["config_schema"] = [ValidationError("Must be a JSON object (a JSON Schema).")]
            else:
                try:
                    Draft202012Validator.check_schema(self.config_schema)
                except SchemaError as exc:
                    errors["config_schema"] = [ValidationError(f"Not a valid JSON Schema: {exc.message}")]
        if errors:
            raise ValidationError(errors)

    def validate_config(self, config) -> None:
        """Validate an instance ``config`` against ``config_schema``.

        Raises:
            ValidationError: keyed by field path (``config``, ``config.retries``, ...), one message
                per violation, so the API can report each problem where it is.
        """
        if not isinstance(config, dict):
            raise ValidationError({"config": ["Must be a JSON object."]})
        validator = Draft202012Validator(self.config_schema or {})
        errors: dict[str, list[str]] = {}
        for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
            errors.setdefault(_json_path("config", error.absolute_path), []).append(error.message)
        if errors:
            raise ValidationError(errors)


class AgentInstanceQuerySet(models.QuerySet):
    def update(self, **kwargs):
        """Refuse bulk status changes: status moves only through the lifecycle guard."""
        if "status" in kwargs:
            raise TypeError("AgentInstance.status cannot be bulk-updated; use agents.services.agent_transition().")
        return super().update(**kwargs)

    def live(self) -> AgentInstanceQuerySet:
        """Agents that are not terminated (they count against the concurrency limit)."""
        return self.exclude(status=S.TERMINATED)


class AgentInstance(ConcurrentTransitionMixin, TimeStampedModel):
    """A running (or stopped) agent in a project.

    Lifecycle::

        IDLE     -> WORKING, PAUSED, TERMINATED
        WORKING  -> IDLE, WAITING, PAUSED, TERMINATED
        WAITING  -> IDLE, WORKING, PAUSED, TERMINATED
        PAUSED   -> IDLE (resume), TERMINATED
        TERMINATED -> nothing

    ``agent_type_revision`` is the committed template revision it came from and
    ``effective_template`` the ``parameters.agent`` document it was spawned with (for a playground
    agent, the draft with whatever the caller applied to it).

    Usage counters: ``tasks_completed`` (count) and ``tokens_used`` (tokens), 64-bit, and ``cost_incurred``
    (USD, 14 integer digits); they change only through ``agents.services.usage_increment`` (atomic ``F()``
    increments that refuse to pass a column's range).
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="agents")
    agent_type = models.ForeignKey(AgentType, on_delete=models.PROTECT, related_name="instances")
    # PROTECT, like ``agent_type``: a revision is immutable history, and an agent's record of what
    # it was spawned from must never vanish or silently turn into "unknown".
    agent_type_revision = models.ForeignKey(
        "AgentTypeRevision", null=True, blank=True, on_delete=models.PROTECT, related_name="instances",
        help_text="The committed template revision the agent was spawned from (empty: the type had none).",
    )
    effective_template = models.JSONField(
        null=True, blank=True, help_text="The template (parameters.agent) the agent was spawned with, as it ran.",
    )
    name = models.CharField(max_length=200)
    status = FSMField(default=S.IDLE, choices=S.choices, protected=True, db_index=True)
    current_task = models.TextField(blank=True)
    short_term_memory = models.JSONField(default=dict, blank=True)
    long_term_memory_ref = models.CharField(max_length=500, blank=True)
    session_id = models.CharField(max_length=200, blank=True)
    config = models.JSONField(default=dict, blank=True)
    is_playground = models.BooleanField(default=False, db_index=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)
    termination_reason = models.CharField(max_length=20, choices=TerminationReason.choices, blank=True)
    tasks_completed = models.PositiveBigIntegerField(default=0)
    tokens_used = models.PositiveBigIntegerField(default=0)
    cost_incurred = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"))
    max_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Token budget (tokens; empty: the agent type's default)."
    )
    hooks_ran_until = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="The ledger row (its time) up to which the agent class's hooks have run.",
    )
    max_cost_usd = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True,
        help_text="Cost budget (USD; empty: the agent type's default).",
    )

    objects = AgentInstanceQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["project", "status"], name="agent_project_status_idx"),
            # The list's filters and default order (newest first), so a page is an index range at any fleet size;
            # ``q`` is a trigram index on PostgreSQL (migration 0006, ``agent_name_trgm_idx``).
            models.Index(
                "project", "is_playground", models.F("created_at").desc(), models.F("id").desc(),
                name="agent_list_idx",
            ),
            models.Index(
                "project", "is_playground", "status", models.F("created_at").desc(), models.F("id").desc(),
                name="agent_list_status_idx",
            ),
        ]

    def __str__(self) -> str:
        """``Browser engineer (3f2a9c1b)``: the name and the first 8 hex digits of the id, because two agents of a
        project may share a name (every admin message, title, choice and log entry shows this)."""
        return f"{self.name} ({str(self.pk)[:8]})"

    @property
    def state_fields(self) -> tuple:
        """The fields ``ConcurrentTransitionMixin`` guards: ``status``. Named here because django-fsm finds them by
        filtering every field of the model, for each row it builds (a cost every list of agents pays)."""
        return (self._meta.get_field("status"),)

    def save(self, *args, **kwargs) -> None:
        """Save, refusing to create an agent in any state but IDLE (agents are born idle)."""
        if self._state.adding and self.status != S.IDLE:
            raise ValueError("New agents start IDLE; move them with the lifecycle transitions.")
        super().save(*args, **kwargs)

    # --- Transitions. Each one only touches this row's fields; the service saves them. ---

    @transition(field=status, source=[S.IDLE, S.WAITING], target=S.WORKING, custom={"fields": ()})
    def start_work(self) -> None:
        """Begin (or continue) working on ``current_task``."""

    @transition(field=status, source=S.WORKING, target=S.WAITING, custom={"fields": ()})
    def wait(self) -> None:
        """Block on something outside the agent (a tool, a human, another agent)."""

    @transition(field=status, source=[S.WORKING, S.WAITING], target=S.IDLE, custom={"fields": ()})
    def finish(self) -> None:
        """Return to IDLE after working or waiting."""

    @transition(field=status, source=[S.IDLE, S.WORKING, S.WAITING], target=S.PAUSED, custom={"fields": ()})
    def pause(self) -> None:
        """Stop temporarily; only ``resume`` or ``terminate`` leave PAUSED."""

    @transition(field=status, source=S.PAUSED, target=S.IDLE, custom={"fields": ()})
    def resume(self) -> None:
        """Leave PAUSED for IDLE."""

    @transition(
        field=status,
        source=[S.IDLE, S.WORKING, S.WAITING, S.PAUSED],
        target=S.TERMINATED,
        custom={"fields": ("terminated_at", "termination_reason", "session_id", "current_task")},
    )
    def terminate(self, reason: str = TerminationReason.USER) -> None:
        """Stop for good: stamp ``terminated_at``, record the reason, clear session and task."""
        self.terminated_at = timezone.now()
        self.termination_reason = reason
        self.session_id = ""
        self.current_task = ""

    @property
    def is_terminated(self) -> bool:
        """True once the agent is terminated (for good)."""
        return self.status == S.TERMINATED

    # --- Budgets. ---

    @property
    def budget(self) -> tuple[int | None, Decimal | None]:
        """``(max_tokens, max_cost_usd)`` in force: the agent's own values, else its type's (``None``: no limit)."""
        max_tokens = self.max_tokens if self.max_tokens is not None else self.agent_type.max_tokens
        max_cost = self.max_cost_usd if self.max_cost_usd is not None else self.agent_type.max_cost_usd
        return max_tokens, max_cost

    def budget_exceeded(self) -> str:
        """Why the agent is at or over its budget (``"tokens: 1200 of 1000"``), or ``""`` when it is within it.

        Compares the lifetime counters ``tokens_used`` and ``cost_incurred`` (runs plus manual usage posts)
        with ``budget``.
        """
        return budget_message(self.tokens_used, self.cost_incurred, *self.budget)

    # --- Reading the table. ---

    @property
    def allowed_transitions(self) -> list[str]:
        """Status values reachable from the current status, in lifecycle order."""
        return list(TRANSITIONS[self.status])

    def transition_method(self, target: str):
        """Return the bound transition method that moves to ``target`` from the current status.

        Returns ``None`` when the table has no such edge.
        """
        for t in self.get_available_status_transitions():
            if t.target == target:
                return getattr(self, t.name)
        return None


def budget_message(tokens_used: int, cost_incurred: Decimal, max_tokens: int | None, max_cost: Decimal | None) -> str:
    """Why usage of ``tokens_used`` tokens and ``cost_incurred`` USD is at or over the budget ``max_tokens`` /
    ``max_cost`` (``None``: no limit), or ``""`` (``AgentInstance.budget_exceeded``, and the runtime's step record,
    which reads the counters back from its own ``UPDATE``)."""
    if max_tokens is not None and tokens_used >= max_tokens:
        return f"tokens: {tokens_used} used of a budget of {max_tokens}"
    if max_cost is not None and cost_incurred >= max_cost:
        return f"cost: {cost_incurred} USD used of a budget of {max_cost} USD"
    return ""


def _build_table() -> dict[str, list[str]]:
    order = list(S.values)
    table: dict[str, set[str]] = {value: set() for value in order}
    for t in AgentInstance._meta.get_field("status").get_all_transitions(AgentInstance):
        table[t.source].add(t.target)
    return {source: [v for v in order if v in targets] for source, targets in table.items()}


class AgentTransition(models.Model):
    """Append-only audit ledger: one row per lifecycle change (and one for the spawn).

    ``from_status`` is blank for the spawn row; ``actor`` is ``None`` for the system;
    ``request_id`` is the client's ``Idempotency-Key`` (unique per agent when present). A change made
    by the runtime or by an agent's tool call names the ``run`` (and the acting agent, ``actor_agent``).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(AgentInstance, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=20, choices=S.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=S.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)
    request_id = models.CharField(max_length=200, null=True, blank=True)
    run = models.ForeignKey(
        "AgentRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The run that made or caused the change (the runtime, or a tool the run called).",
    )
    actor_agent = models.ForeignKey(
        AgentInstance, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The agent that made the change through a platform tool (its run is ``run``).",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        # The ledger list's order (newest first), so a page of a long ledger is an index range.
        indexes = [models.Index("agent", models.F("created_at").desc(), models.F("id").desc(), name="ledger_list_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "request_id"],
                condition=models.Q(request_id__isnull=False),
                name="unique_agent_request_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.agent_id}: {self.from_status or '∅'} → {self.to_status}"

    def save(self, *args, **kwargs) -> None:
        """Insert only: ledger rows are immutable."""
        if not self._state.adding:
            raise ValueError("AgentTransition rows are append-only.")
        super().save(*args, **kwargs)


class AgentCounter(models.Model):
    """The agents of one project (playground agents in a row of their own), counted by status: what the project
    metrics and the list totals read instead of counting the agents. Their usage is in ``UsageDay``.

    Up to ``agents.counters.COUNTER_SHARDS`` rows per ``(project, is_playground)`` that has ever had an agent, one
    per ``shard`` its agents fall in (an agent always updates the row of its own shard, so the agents of one project
    do not all queue for one row); the counts are the sums over the shards. The columns move in the same
    transaction as the change that moves them (``agents.counters``: spawn, every transition); the
    ``recompute_agent_counters`` command rebuilds them from the agents. Counts are 64-bit.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="agent_counters")
    is_playground = models.BooleanField(default=False)
    shard = models.PositiveSmallIntegerField(default=0)
    idle = models.BigIntegerField(default=0)
    working = models.BigIntegerField(default=0)
    waiting = models.BigIntegerField(default=0)
    paused = models.BigIntegerField(default=0)
    terminated = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "is_playground", "shard"], name="unique_agent_counter_shard"),
        ]

    def __str__(self) -> str:
        return f"agents of {self.project_id}{' (playground)' if self.is_playground else ''}, shard {self.shard}"


class UsageDay(models.Model):
    """The usage of one project's agents on one day (UTC; playground agents in a row of their own): what the
    project totals, the admin's charts and the ``/metrics`` series read.

    Up to ``agents.counters.COUNTER_SHARDS`` rows per ``(project, is_playground, day)`` with usage, one per
    ``shard`` of the agents that used it (as ``AgentCounter``: a fleet's steps do not all queue for one row). Each
    LLM step, usage post and finished run adds to today's row of its agent's shard with one upsert
    (``agents.counters``), so a project's totals are the sum of its rows, exactly. ``tokens_used`` counts every
    token (LLM steps and usage posted through the API); ``prompt_tokens`` and ``completion_tokens`` only those of
    the runtime's LLM calls, whose split is known; ``unpriced_tokens`` those of models without a price (metered at 0
    USD, so in no ``cost_incurred``). ``cost_incurred`` is USD. ``runs_succeeded`` / ``runs_failed`` /
    ``runs_cancelled`` count the runs that ended that day. The ``recompute_agent_counters`` command rebuilds the
    rows from the steps, runs and agents.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="usage_days")
    is_playground = models.BooleanField(default=False)
    day = models.DateField(help_text="UTC.")
    shard = models.PositiveSmallIntegerField(default=0)
    tasks_completed = models.BigIntegerField(default=0)
    tokens_used = models.BigIntegerField(default=0, help_text="Tokens.")
    prompt_tokens = models.BigIntegerField(default=0, help_text="Input tokens of the runtime's LLM calls.")
    completion_tokens = models.BigIntegerField(default=0, help_text="Output tokens of the runtime's LLM calls.")
    unpriced_tokens = models.BigIntegerField(default=0, help_text="Tokens of models without a price (metered at 0).")
    cost_incurred = models.DecimalField(max_digits=24, decimal_places=6, default=Decimal("0"), help_text="USD.")
    runs_succeeded = models.BigIntegerField(default=0)
    runs_failed = models.BigIntegerField(default=0)
    runs_cancelled = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "is_playground", "day", "shard"], name="unique_usage_day"),
        ]
        # The fleet's charts read the last 30 days of every project the user sees.
        indexes = [models.Index(fields=["day"], name="usage_day_idx")]

    def __str__(self) -> str:
        playground = " (playground)" if self.is_playground else ""
        return f"usage of {self.project_id} on {self.day}{playground}, shard {self.shard}"


class WorkspaceAgentCounter(models.Model):
    """The live (not terminated) agents of one workspace, playground agents included: what the spawn reads, under
    the workspace lock, to hold ``Workspace.agent_limit``. Maintained and rebuilt with ``AgentCounter``."""

    workspace = models.OneToOneField(
        "projects.Workspace", primary_key=True, on_delete=models.CASCADE, related_name="agent_counter"
    )
    live = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"live agents of {self.workspace_id}: {self.live}"


#: Status → the statuses reachable from it, in lifecycle order (read from the ``@transition`` methods).
TRANSITIONS: dict[str, list[str]] = _build_table()


# --- Versioned shared contexts -------------------------------------------------------------------


class AgentContext(TimeStampedModel):
    """A named JSON document shared by a project's agents, with an append-only version history.

    ``instance`` is ``None`` for a context shared by every agent of the project, or one agent of the
    same project for that agent's own context; ``name`` is unique per (project, instance).
    ``current_version`` is the number of the newest ``AgentContextVersion`` (its data is the
    context's current data). It only changes through ``agents.contexts.services`` (``context_write``,
    ``context_rollback``), which lock this row to allocate the next number.
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="contexts")
    instance = models.ForeignKey(
        AgentInstance,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="contexts",
        verbose_name="agent",
        help_text="Empty: shared by every agent of the project.",
    )
    name = models.CharField(max_length=200)
    current_version = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"],
                condition=models.Q(instance__isnull=True),
                name="unique_shared_context_name",
                violation_error_message="The project already has a shared context with this name.",
            ),
            models.UniqueConstraint(
                fields=["project", "instance", "name"],
                condition=models.Q(instance__isnull=False),
                name="unique_instance_context_name",
                violation_error_message="The agent already has a context with this name.",
            ),
        ]

    def __str__(self) -> str:
        return self.name if self.instance_id is None else f"{self.name} ({self.instance})"

    def clean(self) -> None:
        if self.instance_id and self.project_id and self.instance.project_id != self.project_id:
            raise ValidationError({"instance": ["The agent must belong to the context's project."]})


class AgentContextVersionQuerySet(models.QuerySet):
    def update(self, **kwargs):
        """Refuse bulk changes to versions: only ``pinned`` may change after a version is written."""
        if set(kwargs) - {"pinned"}:
            raise TypeError("Context versions are immutable; only 'pinned' can be changed.")
        return super().update(**kwargs)


class AgentContextVersion(models.Model):
    """One immutable snapshot of a context's data.

    ``version`` runs 1, 2, … per context without gaps (unique per context). ``data`` is the full
    JSON object at that version (not a delta), so any retained version reads in one row.
    ``restored_from`` is the version number a rollback copied, else ``None``. Exactly one of
    ``created_by_user`` / ``created_by_agent`` names the writer (both ``None``: the system, or a
    deleted writer). Nothing but ``pinned`` changes after the insert; retention deletes old
    unpinned versions (``agents.contexts.services.context_prune``).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    context = models.ForeignKey(AgentContext, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    data = models.JSONField(default=dict)
    change_description = models.TextField(blank=True)
    created_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_agent = models.ForeignKey(
        AgentInstance, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    restored_from = models.PositiveIntegerField(null=True, blank=True)
    pinned = models.BooleanField(default=False, help_text="Pinned versions are never pruned.")
    created_at = models.DateTimeField(default=timezone.now)

    objects = AgentContextVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["context", "version"], name="unique_context_version"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="context_version_gte_1"),
            models.CheckConstraint(
                condition=models.Q(created_by_user__isnull=True) | models.Q(created_by_agent__isnull=True),
                name="context_version_one_author",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.context.name} v{self.version}"

    def save(self, *args, **kwargs) -> None:
        """Insert; afterwards only ``save(update_fields=["pinned"])`` is allowed."""
        if not self._state.adding and set(kwargs.get("update_fields") or ()) != {"pinned"}:
            raise ValueError("Context versions are immutable; only 'pinned' can be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        """Refused: versions go only through retention (``context_prune``) or with their context."""
        raise ValueError("Context versions are deleted only by retention or with their context.")

    @property
    def created_by(self):
        """The writer: a user, an ``AgentInstance``, or ``None`` for the system."""
        return self.created_by_user or self.created_by_agent


class AgentTypeRevisionQuerySet(models.QuerySet):
    def update(self, **kwargs):
        """Refuse bulk updates: revisions are immutable."""
        raise TypeError("AgentTypeRevision rows are immutable.")


class AgentTypeRevision(models.Model):
    """An immutable committed version of an agent type's template.

    ``template`` is the ``parameters.agent`` document exactly as it was committed; ``version`` counts
    1, 2, ... per agent type with no gaps (allocated under a lock on the agent type row by
    ``agents.services.agent_type_commit_revision``; the unique constraint is the backstop).
    ``author`` is ``None`` when the user was deleted or the system committed.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent_type = models.ForeignKey(AgentType, on_delete=models.CASCADE, related_name="revisions")
    version = models.PositiveIntegerField()
    template = models.JSONField()
    message = models.TextField(blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = AgentTypeRevisionQuerySet.as_manager()

    class Meta:
        ordering = ["agent_type", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["agent_type", "version"], name="unique_agent_type_revision_version"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="agent_type_revision_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_type.name} v{self.version}"

    def save(self, *args, **kwargs) -> None:
        """Insert only: a committed revision never changes."""
        if not self._state.adding:
            raise ValueError("AgentTypeRevision rows are immutable.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        """Refuse deleting one revision (they go only with their agent type)."""
        raise ValueError("AgentTypeRevision rows are immutable; they are deleted only with their agent type.")


# --- The runtime: runs, their steps, and what they ask people ------------------------------------


class AgentRun(models.Model):
    """One piece of work for one agent, executed on a Celery worker (``agents.runtime``).

    A run has an ``instruction`` and/or an ``issue`` of the agent's project. Status moves
    ``queued → running → succeeded | failed | cancelled``, with ``running ⇄ waiting`` (a person is asked
    something, ``AgentRunRequest``) and ``running/waiting → paused`` (the agent was paused or went over
    budget) on the way; only ``agents.runtime.services`` changes it, with the agent row locked first.
    At most one run per agent is ``running``, ``waiting`` or ``paused``; the others queue behind it.

    ``checkpoint`` is the state the agent class saved (``RunContext.save_checkpoint``) to continue
    from after a pause, a wait or a lost worker (the agent loop saves its first messages once and derives the rest
    from its steps' ``message``). While the LLM upstream is unavailable (connection errors, timeouts, 429, 5xx) a
    ``running`` run holds no worker: ``retry_at`` is when it tries again, ``retry_since`` when the outage began for
    it, ``retry_count`` its failed attempts and ``retry_error`` the last error; a successful LLM call clears them,
    and past ``AGENT_LLM_OUTAGE_SECONDS`` the run fails with ``upstream_unavailable``. Usage: ``tokens_used``
    (tokens), ``cost`` (USD), both the sum of the run's steps. ``error_code``/``error_message`` say why it failed
    or stopped (``budget_exceeded`` on a paused run). ``request_id`` is the ``Idempotency-Key`` that created it
    (unique per agent); ``task_id`` the Celery task last sent for it; ``worker`` the worker that ran it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(AgentInstance, on_delete=models.CASCADE, related_name="runs")
    issue = models.ForeignKey(
        "projects.Issue", null=True, blank=True, on_delete=models.SET_NULL, related_name="agent_runs"
    )
    instruction = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    result = models.JSONField(null=True, blank=True, help_text="What the agent class returned.")
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    checkpoint = models.JSONField(null=True, blank=True, help_text="State to continue from.")
    steps_completed = models.PositiveIntegerField(default=0)
    tokens_used = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=20, decimal_places=6, default=Decimal("0"))
    unpriced_tokens = models.PositiveBigIntegerField(
        default=0, help_text="Tokens of calls whose model has no price (aiservices.ModelPrice): metered at 0 USD."
    )
    attempts = models.PositiveIntegerField(default=0)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    request_id = models.CharField(max_length=200, null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="While the LLM upstream is unavailable: when the run tries again.",
    )
    retry_since = models.DateTimeField(
        null=True, blank=True, help_text="When the current upstream outage began for this run (its first failure).",
    )
    retry_count = models.PositiveIntegerField(default=0, help_text="Failed LLM attempts in the current outage.")
    retry_error = models.TextField(blank=True, help_text="The last upstream error of the current outage.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["agent", "status", "created_at"], name="run_agent_status_idx"),
            # The reaper's look for runs waiting out an outage whose message never came back.
            models.Index(fields=["retry_at"], condition=models.Q(retry_at__isnull=False), name="run_retry_at_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "request_id"], condition=models.Q(request_id__isnull=False),
                name="unique_run_request_id",
            ),
            models.UniqueConstraint(
                fields=["agent"], condition=models.Q(status__in=["running", "waiting", "paused"]),
                name="one_active_run_per_agent",
            ),
        ]

    def __str__(self) -> str:
        return f"run {str(self.pk)[:8]} of {self.agent_id}"

    @property
    def is_finished(self) -> bool:
        """True for ``succeeded``, ``failed`` and ``cancelled``."""
        return self.status in RUN_FINISHED_STATUSES

    @property
    def error(self) -> dict[str, str] | None:
        """``{"code", "message"}``, or ``None`` when the run has no error."""
        return {"code": self.error_code, "message": self.error_message} if self.error_code else None


class AgentRunStep(models.Model):
    """One recorded step of a run: its trace, what an operator reads when an agent misbehaves.

    ``index`` counts 0, 1, ... per run. ``input`` / ``output`` are JSON, capped in size
    (``agents.runtime.trace.cap``). Usage of an ``llm_call``: ``prompt_tokens`` and ``completion_tokens``
    (from the upstream's ``usage``), ``cost`` (USD, from the price table); ``duration_ms`` is wall time.
    ``error`` is ``{"code", "message"}`` when the step failed, else ``None`` (an LLM call the upstream failed and
    the run retries adds ``attempt`` and ``retry_at``). ``message`` is the conversation message the step added
    (the model's assistant message, a tool result), exactly as the model is shown it again when the run continues.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=StepKind.choices)
    name = models.CharField(max_length=200, blank=True, help_text="The model called, or the tool.")
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.JSONField(null=True, blank=True)
    message = models.JSONField(
        null=True, blank=True,
        help_text="The conversation message the step added (the agent loop's checkpoint is derived from these).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="unique_run_step_index")]

    def __str__(self) -> str:
        return f"step {self.index} ({self.kind})"


class AgentRunRequest(models.Model):
    """Something a run asks a person, while the run and its agent are ``waiting``.

    ``kind``: ``approval`` (a tool call whose template permission is ``ask``: ``tool_name``,
    ``arguments``), ``input`` (the ``request_input`` client tool, an MCP elicitation: ``message`` and
    ``requested_schema``) or ``connection`` (``request_connection``). A person answers once:
    ``approved``/``denied`` (approvals), ``answered``/``declined`` (input and connections, ``response``
    holding the content); terminating the agent or cancelling the run makes a pending request ``cancelled``.
    ``executed_at`` and ``result`` record the approved tool call's execution (it happens once).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, related_name="requests")
    kind = models.CharField(max_length=20, choices=RunRequestKind.choices)
    status = models.CharField(
        max_length=20, choices=RunRequestStatus.choices, default=RunRequestStatus.PENDING, db_index=True
    )
    tool_name = models.CharField(max_length=200)
    tool_call_id = models.CharField(max_length=200, blank=True)
    arguments = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    requested_schema = models.JSONField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(max_length=200, null=True, blank=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    requested_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["requested_at"]
        # "Waiting for you" (oldest pending first, of the workspaces a user sees) walks this and stops at a page.
        indexes = [models.Index(fields=["requested_at"], condition=models.Q(status="pending"),
                                name="run_request_pending_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.tool_name} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == RunRequestStatus.PENDING


from .events.models import Event  # noqa: E402, F401 - the outbox's model belongs to this app
