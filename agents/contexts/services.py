"""Versioned shared contexts: the write services and the read selectors.

A context is a named JSON object shared by a project's agents (or owned by one agent). Every write
appends an immutable ``AgentContextVersion`` holding the full data at that version, numbered
``current_version + 1``; nothing is ever overwritten, and a rollback is one more version whose data
equals an older one (``restored_from``). Retention keeps the newest ``AGENT_CONTEXT_HISTORY_LIMIT``
versions of each context plus every pinned one, pruning in the same transaction as the write.

Concurrency: every write locks the context row (``SELECT … FOR UPDATE``) before it reads
``current_version``, so writers of one context queue up and each allocates the next number; the
unique constraint on (context, version) is the backstop. The work per write is a fixed handful of
indexed queries whatever the history length (see ``benchmarks/bench_contexts.py``).

Limits (checked before anything is written): data is a JSON object of at most
``AGENT_CONTEXT_MAX_BYTES`` bytes serialized (compact UTF-8 JSON) → 413 ``payload_too_large``;
no NUL character in any key or string and at most ``MAX_DEPTH`` nested objects/arrays → 400.

Sources of the contracts: JSON Merge Patch is RFC 7396, JSON Patch (the diff format) RFC 6902.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, JSONField, Min, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from projects.models import Project
from syndarix.db import fetch_compiled
from syndarix.exceptions import InvalidInput
from syndarix.jsondoc import check_json_document, json_diff

from ..choices import AgentStatus
from ..exceptions import (
    AgentTerminated,
    AlreadyCurrentVersion,
    ContextExists,
    ContextNotFound,
    ContextNotWritable,
    VersionConflict,
    VersionNotFound,
    VersionPruned,
)
from ..models import AgentContext, AgentContextVersion, AgentInstance

logger = logging.getLogger(__name__)

#: Most levels of nested objects/arrays a context's data may have (the top-level object is 1).
MAX_DEPTH = 64
#: Highest version number a context can reach (the column is a 32-bit integer); larger numbers are
#: refused before any query (SQLite cannot even bind them).
MAX_VERSION = 2**31 - 1
#: ``context_write`` modes: replace the data, or apply an RFC 7396 merge patch to it.
WRITE_MODES = ("replace", "merge")
NAME_MAX_LENGTH = AgentContext._meta.get_field("name").max_length

JsonObject = dict[str, Any]


# --- Validation -----------------------------------------------------------------------------------


def _check_text(value: str, *, field: str, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string.", field=field)
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL characters.", code="nul_character", field=field)
    if max_length is not None and len(value) > max_length:
        raise InvalidInput(f"{field} is longer than {max_length} characters.", field=field)
    return value


def validate_context_data(data: Any, *, field: str = "data") -> int:
    """Check that ``data`` may be stored as a context version.

    Walks the value iteratively (so hostile nesting cannot exhaust the stack), then serializes it.

    Returns the size in bytes of its compact UTF-8 JSON serialization.

    Raises:
        InvalidInput: not a JSON object, a non-string key, a value JSON cannot hold (NaN, a lone
            surrogate, a Python object) — code ``invalid_data``; a NUL character in a key or
            string — ``nul_character``; more than ``MAX_DEPTH`` levels — ``nesting_too_deep`` (400).
        PayloadTooLarge: larger than ``AGENT_CONTEXT_MAX_BYTES`` (413), with ``max_bytes`` and
            ``size_bytes`` in the error.
    """
    if not isinstance(data, dict):
        raise InvalidInput("Context data must be a JSON object.", code="invalid_data", field=field)
    return check_json_document(
        data, field=field, max_depth=MAX_DEPTH, max_bytes=settings.AGENT_CONTEXT_MAX_BYTES, what="Context data"
    )


def json_merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7396 JSON Merge Patch and return the result; neither argument is modified.

    An object patch merges key by key (``null`` deletes the key, objects merge recursively,
    anything else replaces); a non-object patch replaces the target entirely.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


# --- Internals ------------------------------------------------------------------------------------


def history_limit(limit: int | None = None) -> int:
    """Versions kept per context: ``limit`` or ``AGENT_CONTEXT_HISTORY_LIMIT``, never below 1."""
    return max(1, settings.AGENT_CONTEXT_HISTORY_LIMIT if limit is None else limit)


def _author(*, project_id, instance_id, actor) -> dict[str, Any]:
    """The version's author columns for ``actor`` (a user, an ``AgentInstance`` or ``None``)."""
    if isinstance(actor, AgentInstance):
        if actor.project_id != project_id:
            raise ContextNotWritable("The agent belongs to another project.")
        if instance_id is not None and instance_id != actor.pk:
            raise ContextNotWritable("The context belongs to another agent.")
        if actor.status == AgentStatus.TERMINATED:
            raise AgentTerminated("write a context as")
        return {"created_by_agent": actor}
    if actor is not None and getattr(actor, "is_authenticated", False):
        return {"created_by_user": actor}
    return {}


def _lock(context: AgentContext) -> AgentContext:
    try:
        return AgentContext.objects.select_for_update().get(pk=context.pk)
    except AgentContext.DoesNotExist:
        raise ContextNotFound() from None


def _missing(context: AgentContext, version: int) -> Exception:
    """The error for a version number that has no row: never written, or pruned."""
    if 1 <= version <= context.current_version:
        return VersionPruned(version, current_version=context.current_version)
    return VersionNotFound(version, current_version=context.current_version)


def _get_version(context: AgentContext, version: int) -> AgentContextVersion:
    if not 1 <= version <= MAX_VERSION:
        raise _missing(context, version)
    found = AgentContextVersion.objects.filter(context=context, version=version).first()
    if found is None:
        raise _missing(context, version)
    found.context = context
    return found


def _prunable(context: AgentContext, limit: int) -> QuerySet[AgentContextVersion]:
    """Versions retention removes: unpinned and older than the newest ``limit`` (never the current)."""
    return AgentContextVersion.objects.filter(
        context=context, pinned=False, version__lte=context.current_version - limit
    )


def contexts_with_prunable_versions(limit: int) -> QuerySet[AgentContext]:
    """Contexts holding at least one version ``_prunable`` would remove at this ``limit``."""
    return AgentContext.objects.filter(
        versions__pinned=False, versions__version__lte=F("current_version") - limit
    ).distinct()


def _append(
    context: AgentContext, *, data: JsonObject, author: dict[str, Any], change_description: str,
    restored_from: int | None = None,
) -> AgentContextVersion:
    """Insert version ``current_version + 1`` of the locked ``context``, advance it, apply retention."""
    number = context.current_version + 1
    try:
        version = AgentContextVersion.objects.create(
            context=context, version=number, data=data, change_description=change_description,
            restored_from=restored_from, **author,
        )
    except IntegrityError as exc:  # the unique (context, version) backstop: a writer bypassed the lock
        raise VersionConflict(current_version=number, expected_version=context.current_version) from exc
    context.current_version = number
    context.save(update_fields=["current_version", "updated_at"])
    limit = history_limit()
    if number - limit >= 1:
        _prunable(context, limit).delete()
    return version


# --- Services (writes) ----------------------------------------------------------------------------


def context_create(
    *,
    project: Project,
    name: str,
    instance: AgentInstance | None = None,
    data: JsonObject | None = None,
    actor=None,
    change_description: str = "",
) -> AgentContext:
    """Create a context in ``project`` with version 1 holding ``data`` (``{}`` when omitted).

    Args:
        instance: the owning agent (of the same project), or ``None`` for a context shared by every
            agent of the project.
        actor: the user or ``AgentInstance`` recorded as version 1's author (``None``: the system).

    Returns the new ``AgentContext`` (``current_version == 1``).

    Raises:
        InvalidInput: blank/overlong name, an agent of another project, bad data (400).
        PayloadTooLarge: data over ``AGENT_CONTEXT_MAX_BYTES`` (413).
        ContextExists: the name is taken for this project and agent (409).
    """
    name = _check_text(name, field="name", max_length=NAME_MAX_LENGTH).strip()
    if not name:
        raise InvalidInput("A context needs a name.", field="name")
    if instance is not None and instance.project_id != project.pk:
        raise InvalidInput("The agent does not belong to this project.", field="instance_id")
    data = {} if data is None else data
    validate_context_data(data)
    change_description = _check_text(change_description, field="change_description")
    author = _author(project_id=project.pk, instance_id=instance.pk if instance else None, actor=actor)
    with transaction.atomic():
        try:
            with transaction.atomic():
                context = AgentContext.objects.create(project=project, instance=instance, name=name)
        except IntegrityError:
            raise ContextExists(name) from None
        _append(context, data=data, author=author, change_description=change_description or "Created.")
    return context


def context_get_or_create(
    *, project: Project, name: str, instance: AgentInstance | None = None, actor=None
) -> tuple[AgentContext, bool]:
    """The context named ``name`` of ``project`` (and ``instance``), created empty when missing (seed 003's
    ``get_or_create_context``).

    Race-safe: two callers creating the same name at once get the same context (the loser of the
    unique constraint re-reads the winner's row).

    Args:
        instance: the owning agent, or ``None`` for the project's shared context of that name.
        actor: the author of version 1 when it is created (a user, an ``AgentInstance`` or ``None``).

    Returns ``(context, created)``.

    Raises: as ``context_create`` (400 for a blank or overlong name, 403/409 for an agent writing
    outside its project or terminated), never ``ContextExists``.
    """
    lookup = {"project": project, "name": name.strip() if isinstance(name, str) else name, "instance": instance}
    found = AgentContext.objects.filter(**lookup).first()
    if found is not None:
        return found, False
    try:
        return context_create(project=project, name=name, instance=instance, actor=actor), True
    except ContextExists:
        return AgentContext.objects.get(**lookup), False


def context_write(
    context: AgentContext,
    data: JsonObject,
    *,
    actor=None,
    change_description: str = "",
    expected_version: int | None = None,
    mode: str = "replace",
) -> AgentContextVersion:
    """Append a version to ``context``: ``data`` replaces the data, or merges into it.

    Args:
        data: the new JSON object (``mode="replace"``) or an RFC 7396 merge patch object
            (``mode="merge"``: ``null`` deletes a key, nested objects merge).
        actor: a user, or an ``AgentInstance`` writing for itself (it must belong to the context's
            project, own the context when it is an agent's own, and not be terminated).
        expected_version: optimistic concurrency check: refuse unless the context is still at this
            version.

    Returns the new ``AgentContextVersion``; its ``context`` is the refreshed context.

    Raises:
        InvalidInput: unknown mode or bad data, including a merge result that breaks a limit (400).
        PayloadTooLarge: data (or the merged result) over ``AGENT_CONTEXT_MAX_BYTES`` (413).
        VersionConflict: ``expected_version`` is stale (409, with ``current_version``).
        ContextNotWritable: an agent writing another agent's or project's context (403).
        AgentTerminated: a terminated agent writing (409).
        ContextNotFound: the context was deleted (404).
    """
    if mode not in WRITE_MODES:
        raise InvalidInput(f"mode must be one of {', '.join(WRITE_MODES)}.", field="mode")
    validate_context_data(data)
    change_description = _check_text(change_description, field="change_description")
    author = _author(project_id=context.project_id, instance_id=context.instance_id, actor=actor)
    with transaction.atomic():
        locked = _lock(context)
        if expected_version is not None and expected_version != locked.current_version:
            raise VersionConflict(current_version=locked.current_version, expected_version=expected_version)
        if mode == "merge":
            current = _get_version(locked, locked.current_version).data if locked.current_version else {}
            data = json_merge_patch(current, data)
            validate_context_data(data)
        return _append(locked, data=data, author=author, change_description=change_description)


def context_rollback(
    context: AgentContext, target_version: int, *, actor=None, change_description: str | None = None
) -> AgentContextVersion:
    """Append a version whose data equals version ``target_version``'s; nothing is lost.

    The new version records ``restored_from=target_version``; ``change_description`` defaults to
    "Rolled back to version N.".

    Returns the new ``AgentContextVersion``.

    Raises:
        AlreadyCurrentVersion: ``target_version`` is the current version (409).
        VersionNotFound / VersionPruned: no such version, or retention removed it (404).
        PayloadTooLarge: the target's data exceeds a since-lowered ``AGENT_CONTEXT_MAX_BYTES`` (413).
        ContextNotWritable / AgentTerminated / ContextNotFound: as ``context_write``.
    """
    if change_description is None:
        change_description = f"Rolled back to version {target_version}."
    change_description = _check_text(change_description, field="change_description")
    author = _author(project_id=context.project_id, instance_id=context.instance_id, actor=actor)
    with transaction.atomic():
        locked = _lock(context)
        if target_version == locked.current_version:
            raise AlreadyCurrentVersion(target_version)
        target = _get_version(locked, target_version)
        validate_context_data(target.data)
        return _append(
            locked, data=target.data, author=author, change_description=change_description,
            restored_from=target.version,
        )


def _set_pinned(context: AgentContext, version: int, pinned: bool) -> AgentContextVersion:
    with transaction.atomic():
        locked = _lock(context)  # the same lock retention takes: a pin cannot race a prune
        row = _get_version(locked, version)
        if row.pinned != pinned:
            row.pinned = pinned
            row.save(update_fields=["pinned"])
    return row


def context_pin(context: AgentContext, version: int, *, actor=None) -> AgentContextVersion:
    """Pin ``version`` so retention never removes it; pinning a pinned version is a no-op.

    Returns the version. Raises ``VersionNotFound`` / ``VersionPruned`` (404), ``ContextNotFound``.
    """
    return _set_pinned(context, version, True)


def context_unpin(context: AgentContext, version: int, *, actor=None) -> AgentContextVersion:
    """Unpin ``version``; if it is older than the retention window, the next write prunes it.

    Returns the version. Raises ``VersionNotFound`` / ``VersionPruned`` (404), ``ContextNotFound``.
    """
    return _set_pinned(context, version, False)


def context_delete(context: AgentContext, *, actor=None) -> None:
    """Delete ``context`` and all its versions. Raises ``ContextNotFound`` (404) if already gone."""
    with transaction.atomic():
        locked = _lock(context)
        logger.info("Context %s (%s) deleted by %s at version %s", locked.name, locked.pk, actor,
                    locked.current_version)
        locked.delete()


def context_prune(context: AgentContext, *, limit: int | None = None, dry_run: bool = False) -> int:
    """Apply retention to one context: keep the newest ``limit`` versions, the pinned ones, the current.

    Writes prune as they go; this is for backfills (a lowered ``AGENT_CONTEXT_HISTORY_LIMIT``,
    unpinned versions).

    Args:
        limit: versions to keep (default ``AGENT_CONTEXT_HISTORY_LIMIT``; at least 1).
        dry_run: count what would be removed, remove nothing.

    Returns the number of versions removed (or that would be).
    """
    limit = history_limit(limit)
    with transaction.atomic():
        locked = _lock(context)
        doomed = _prunable(locked, limit)
        if dry_run:
            return doomed.count()
        deleted, _ = doomed.delete()
    return deleted


# --- Selectors (reads) ----------------------------------------------------------------------------


def context_read(context: AgentContext, version: int | None = None) -> AgentContextVersion:
    """The current version of ``context`` (``version=None``) or version ``version``, with its data.

    Raises:
        VersionPruned: the version existed but retention removed it (404 ``version_pruned``).
        VersionNotFound: the context never had that version (404).
    """
    if version is None:
        row = AgentContextVersion.objects.filter(context=context).order_by("-version").first()
        if row is None:
            raise VersionNotFound(0, current_version=context.current_version)
        row.context = context
        return row
    return _get_version(context, version)


def context_current(project: Project, *, name: str | None = None, context_id=None) -> AgentContextVersion | None:
    """The current version of the project's shared context named ``name`` (or with id ``context_id``), with its
    ``context`` loaded, in one query; ``None`` when there is no such context or it has no version (then
    ``context_read`` tells which)."""
    def build() -> QuerySet[AgentContextVersion]:
        found = AgentContextVersion.objects.select_related("context").filter(context__project=project)
        found = found.filter(context_id=context_id) if context_id is not None else found.filter(
            context__instance__isnull=True, context__name=name)
        return found.order_by("-version")[:1]

    by_id = context_id is not None
    params = [project.pk, context_id if by_id else name]
    rows = fetch_compiled(("contexts.current", by_id), build, params)  # the SQL compiled once per process
    return rows[0] if rows else None


def context_diff(context: AgentContext, from_version: int, to_version: int) -> list[dict[str, Any]]:
    """The RFC 6902 JSON Patch that turns version ``from_version``'s data into ``to_version``'s.

    Returns a list of operations (``[]`` when the data is equal), e.g.
    ``[{"op": "replace", "path": "/goal", "value": "ship"}]``. The cost is bounded whatever the data
    (``syndarix.jsondoc.json_diff``): a long changed stretch of an array is one ``replace`` of the array,
    and a patch of more than ``DIFF_MAX_OPERATIONS`` operations one ``replace`` of the whole data.

    Raises ``VersionNotFound`` / ``VersionPruned`` (404) for either version.
    """
    for number in (from_version, to_version):
        if not 1 <= number <= MAX_VERSION:
            raise _missing(context, number)
    rows = {
        row.version: row.data
        for row in AgentContextVersion.objects.filter(context=context, version__in={from_version, to_version})
    }
    for number in (from_version, to_version):
        if number not in rows:
            raise _missing(context, number)
    return json_diff(rows[from_version], rows[to_version])


def _per_context(aggregate, **filters) -> Subquery:
    """A correlated subquery computing ``aggregate`` over one context's versions."""
    return Subquery(
        AgentContextVersion.objects.filter(context=OuterRef("pk"), **filters)
        .order_by()
        .values("context")
        .annotate(value=aggregate)
        .values("value")
    )


def context_queryset(*, with_data: bool = False) -> QuerySet[AgentContext]:
    """Contexts with everything their representation needs, in one query for any page size.

    Annotations: ``versions_count`` (retained versions), ``pinned_count``, ``oldest_version``
    (the oldest retained number) and, with ``with_data``, ``current_data`` (the current version's
    data). Joins ``project`` and ``instance``.
    """
    queryset = AgentContext.objects.select_related("project", "instance").annotate(
        versions_count=Coalesce(_per_context(Count("pk")), Value(0)),
        pinned_count=Coalesce(_per_context(Count("pk"), pinned=True), Value(0)),
        oldest_version=_per_context(Min("version")),
    )
    if with_data:
        current = AgentContextVersion.objects.filter(context=OuterRef("pk"), version=OuterRef("current_version"))
        queryset = queryset.annotate(current_data=Subquery(current.values("data")[:1], output_field=JSONField()))
    return queryset


def context_versions(context: AgentContext, *, include_data: bool = False) -> QuerySet[AgentContextVersion]:
    """Retained versions of ``context``, newest first, with their authors joined.

    Without ``include_data`` the (possibly large) ``data`` column is not loaded.
    """
    queryset = (
        AgentContextVersion.objects.filter(context=context)
        .select_related("created_by_user", "created_by_agent")
        .order_by("-version")
    )
    return queryset if include_data else queryset.defer("data")
