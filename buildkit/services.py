"""Build-kit actions: commit a template, resolve embeds, inspect an agent type, run the playground.

These orchestrate the pure parts (``schema``, ``embed``, ``overlay``) and call the agents app's
services to write (``agent_type_commit_revision``, ``agent_spawn``). The dependency points one way:
this app imports ``agents``; ``agents`` never imports this app and never sees the overlay, it only
receives the template to record.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from agents.choices import AgentStatus
from agents.models import AgentInstance, AgentRun, AgentType, AgentTypeRevision
from agents.runtime.services import run_create
from agents.services import agent_spawn, agent_type_commit_revision, ensure_agents_enabled
from projects.models import Project
from syndarix.exceptions import DomainError, InvalidInput

from .embed import MAX_DEPTH, MAX_EMBEDS, POLICY_EXCEPTION, Resolution, resolve_embeds, resolve_reference
from .models import PlaygroundRun, TemplateSource
from .overlay import apply_overlay, build_overlay
from .schema import check_document, validate_template
from .selectors import agent_type_latest_revision, spawned_with_key

logger = logging.getLogger(__name__)


def template_commit(
    *, agent_type: AgentType, template: dict[str, Any], message: str = "", author=None
) -> AgentTypeRevision:
    """Validate ``template`` and commit it, exactly as given, as ``agent_type``'s next revision.

    The build kit is never applied here: whatever the playground ran, the revision holds only
    the submitted template.

    Args:
        template: a ``parameters.agent`` document (``schemas/agent_template.schema.json``).
        message: the commit message.
        author: the committing user.

    Returns the new ``AgentTypeRevision`` (version = previous highest + 1).

    Raises:
        django.core.exceptions.ValidationError: the template is invalid (400, per path ``template.…``).
        PayloadTooLarge: the template exceeds ``schema.TEMPLATE_MAX_BYTES`` (413).
    """
    validate_template(template)
    return agent_type_commit_revision(agent_type, template=template, message=message, author=author)


def template_resolve(
    *,
    template: dict[str, Any] | None = None,
    reference: dict[str, Any] | None = None,
    max_depth: int = MAX_DEPTH,
    max_embeds: int = MAX_EMBEDS,
    error_policy: str = POLICY_EXCEPTION,
) -> Resolution:
    """Resolve the embeds of ``template``, or of the document ``reference`` names.

    Args:
        template: any JSON object (a draft need not be a complete template).
        reference: ``{"slug", "version"?}`` of an agent type or a static catalog entry; a
            top-level fetch may name ``__sx__build_kit``.
        max_depth, max_embeds, error_policy: as ``embed.resolve_embeds``.

    Returns an ``embed.Resolution``.

    Raises:
        InvalidInput: both or neither of ``template`` / ``reference`` (400); either one nested too
            deep, holding a NUL character, NaN/Infinity or anything else JSON cannot hold
            (``schema.check_document``: ``nesting_too_deep``, ``nul_character``, ``invalid_data``, 400).
        PayloadTooLarge: ``template`` over ``schema.TEMPLATE_MAX_BYTES`` (413).
        EmbedError: as ``embed.resolve_embeds`` / ``embed.resolve_reference`` (400).
    """
    if (template is None) == (reference is None):
        raise InvalidInput("Send exactly one of 'template' and 'reference'.", field="template")
    options = {"max_depth": max_depth, "max_embeds": max_embeds, "error_policy": error_policy}
    if template is not None:
        check_document(template, field="template")
        return resolve_embeds(template, **options)
    check_document(reference, field="reference", what="The reference")
    return resolve_reference(reference["slug"], reference.get("version"), **options)


@dataclass
class Inspection:
    """What ``GET /agent-types/{id}/inspect`` answers: the type, its latest revision, and the kit.

    ``overlay`` is ``None`` when building it failed (the failure is logged).
    """

    agent_type: AgentType
    revision: AgentTypeRevision | None
    overlay: dict[str, Any] | None


def agent_type_inspect(*, agent_type: AgentType) -> Inspection:
    """Read ``agent_type`` with its latest template and the playground build-kit overlay.

    Building the overlay never fails the read: on any error the inspection is returned without it
    and the error is logged (logger ``buildkit.services``).
    """
    return Inspection(
        agent_type=agent_type, revision=agent_type_latest_revision(agent_type), overlay=playground_overlay()
    )


def playground_overlay() -> dict[str, Any] | None:
    """The build-kit overlay to show, or ``None`` when building it failed (logged, logger ``buildkit.services``)."""
    try:
        return build_overlay()
    except Exception:
        logger.exception("Building the playground build-kit overlay failed; answering without it.")
        return None


class IdempotencyKeyReused(DomainError):
    """The ``Idempotency-Key`` of a playground run was already used in the project by another request
    (a plain spawn, or a run of another agent type) (409)."""

    code = "idempotency_key_reused"


def _replayed(run: PlaygroundRun | None, agent: AgentInstance, *, agent_type: AgentType) -> PlaygroundRun:
    """``run`` marked as a replay, or ``IdempotencyKeyReused`` when ``agent`` was not spawned by a
    playground run of ``agent_type``."""
    if run is None or agent.agent_type_id != agent_type.pk:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used in this project by another request; use a new key.",
            field="Idempotency-Key",
        )
    run.replayed = True
    return run


def playground_template(
    *, draft: dict[str, Any], build_kit: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]], Resolution]:
    """The effective template of a playground run of ``draft``, which is left unchanged.

    With the kit on, the overlay is applied to a copy of the draft (``overlay.apply_overlay``);
    then every embed is resolved.

    Returns ``(effective, overrides, resolution)``.

    Raises:
        EmbedError: an embed cannot be resolved (400, with its path).
        django.core.exceptions.ValidationError: the result is not a valid template (400, paths
            under ``effective_template``).
    """
    if build_kit:
        merged, overrides = apply_overlay(draft, build_overlay())
    else:
        merged, overrides = copy.deepcopy(draft), []
    resolution = resolve_embeds(merged, base_path="template")
    validate_template(resolution.value, field="effective_template", check_identities=False)
    return resolution.value, overrides, resolution


def playground_run(
    *,
    agent_type: AgentType,
    project: Project,
    actor=None,
    template: dict[str, Any] | None = None,
    build_kit: bool = True,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> PlaygroundRun:
    """Spawn a playground agent of ``agent_type`` in ``project`` running a draft template.

    The caller checks that ``actor`` may write to ``project``. The draft is ``template``, or the
    latest revision's template when it is ``None``; with ``build_kit`` the overlay is applied to a
    throwaway copy (the draft and the revisions are never changed), the embeds are resolved, and
    the agent is spawned through ``agents.services.agent_spawn(is_playground=True,
    template=<effective>)``, recorded against the latest revision (the draft's base). A
    ``PlaygroundRun`` row, written in the same transaction, keeps what the run answers.

    Idempotency: when ``request_id`` (an ``Idempotency-Key``) was already used by a playground run of
    ``agent_type`` in ``project``, nothing is validated or spawned and that run comes back, with
    ``replayed`` true: the same agent (as it is now), its recorded effective template, overrides,
    ``build_kit``, ``template_source``, revision and references. Runs racing with one key spawn
    once and all answer alike (the spawn locks the workspace; the row is written before it unlocks).

    Returns the ``PlaygroundRun`` (``agent``, ``effective``, ``overrides``, ``build_kit``,
    ``template_source``, ``revision``, ``references_used``, ``replayed``).

    Raises:
        InvalidInput: no template sent and the type has no revision (400, field ``template``); a
            draft or ``config`` that is not storable JSON (``schema.check_document``: too deep, a NUL
            character, NaN/Infinity; 400 at ``template`` / ``config``).
        PayloadTooLarge: the draft or ``config`` over ``schema.TEMPLATE_MAX_BYTES`` (413).
        django.core.exceptions.ValidationError: an invalid draft (400, per path).
        EmbedError: an embed cannot be resolved (400).
        IdempotencyKeyReused: ``request_id`` was used in ``project`` by a plain spawn or a run of another
            agent type (409).
        Anything ``agent_spawn`` raises (inactive type 400, agents disabled 503, concurrency 409, ...).
    """
    if request_id:
        ensure_agents_enabled()  # as agent_spawn: a switched-off service answers 503, replay or not
        agent = spawned_with_key(project=project, request_id=request_id)
        if agent is not None:
            return _replayed(getattr(agent, "playground_run", None), agent, agent_type=agent_type)
    if config is not None:
        check_document(config, field="config", what="The config")
    revision = agent_type_latest_revision(agent_type)
    if template is None:
        if revision is None:
            raise InvalidInput(
                f"Agent type '{agent_type.slug}' has no committed revision; send a draft template.", field="template"
            )
        draft, source = revision.template, TemplateSource.REVISION
    else:
        validate_template(template)
        draft, source = template, TemplateSource.DRAFT
    effective, overrides, resolution = playground_template(draft=draft, build_kit=build_kit)
    with transaction.atomic():
        agent = agent_spawn(
            project=project,
            agent_type=agent_type,
            name=name or f"{agent_type.slug}-playground",
            actor=actor,
            config=config,
            is_playground=True,
            request_id=request_id,
            agent_type_revision=revision,
            template=effective,
        )
        if request_id:
            # agent_spawn hands back the first agent when a request with this key won a race with this one
            earlier = PlaygroundRun.objects.filter(agent=agent).select_related("agent__agent_type_revision").first()
            if earlier is not None or not agent.is_playground or agent.effective_template != effective:
                return _replayed(earlier, agent, agent_type=agent_type)
        return PlaygroundRun.objects.create(
            agent=agent, build_kit=build_kit, template_source=source, overrides=overrides,
            references_used=resolution.references_used,
        )


#: Most earlier playground agents of a type in a project ``playground_start_run`` compares a draft with.
REUSE_CANDIDATES = 50


@dataclass
class PlaygroundStart:
    """What ``playground_start_run`` did: the playground run (its agent, effective template and overrides), the
    queued ``AgentRun``, and whether the agent was an earlier one of the same draft (``reused``)."""

    playground: PlaygroundRun
    run: AgentRun
    reused: bool


def playground_start_run(
    *,
    agent_type: AgentType,
    project: Project,
    instruction: str,
    actor=None,
    template: dict[str, Any] | None = None,
    build_kit: bool = True,
    name: str | None = None,
    config: dict[str, Any] | None = None,
) -> PlaygroundStart:
    """Run a draft in the playground: queue a run with ``instruction`` on the playground agent of this draft.

    The agent is the newest playground agent of ``agent_type`` in ``project`` that is not terminated and was
    spawned with the same name, config, build-kit switch and effective template (so clicking "Run" again on an
    unchanged draft reuses it; a run queued while an earlier one is unfinished starts after it); else one is spawned
    through ``playground_run``. The caller checks that ``actor`` may write to ``project``.

    Returns a ``PlaygroundStart``.

    Raises: what ``playground_run`` raises for the draft and the spawn, and what ``run_create`` raises for the run
    (``InvalidInput`` for a blank or overlong instruction, 400; ``AgentsDisabled``, 503).
    """
    draft = template
    if draft is None:
        revision = agent_type_latest_revision(agent_type)
        draft = revision.template if revision is not None else None
    if draft is not None:
        validate_template(draft)
        effective, _, _ = playground_template(draft=draft, build_kit=build_kit)
        config = config or {}
        name = name or f"{agent_type.slug}-playground"
        candidates = (
            AgentInstance.objects.filter(project=project, agent_type=agent_type, is_playground=True, name=name,
                                         playground_run__build_kit=build_kit)
            .exclude(status=AgentStatus.TERMINATED)
            .select_related("playground_run", "agent_type_revision")
            .order_by("-created_at")[:REUSE_CANDIDATES]
        )
        for agent in candidates:
            if agent.effective_template == effective and agent.config == config:
                run, _ = run_create(agent=agent, instruction=instruction, actor=actor)
                return PlaygroundStart(playground=agent.playground_run, run=run, reused=True)
    with transaction.atomic():
        playground = playground_run(
            agent_type=agent_type, project=project, actor=actor, template=template, build_kit=build_kit, name=name,
            config=config,
        )
        run, _ = run_create(agent=playground.agent, instruction=instruction, actor=actor)
    return PlaygroundStart(playground=playground, run=run, reused=False)
