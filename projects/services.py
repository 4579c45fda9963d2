"""Write operations on workspaces and projects.

Creating and editing workspaces and projects goes through here so that a slug taken by a concurrent
request is a 400 ``unique`` like any other taken slug (``syndarix.db.save_unique``); deleting is
guarded because it cascades to agents and their ledger. Issues are created and changed through
``issue_create`` / ``issue_update`` (the API and the agents' platform tools call them). API tokens
(django-rest-knox) are created, revoked and throttled here too (``auth_*``).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.db import transaction
from django.utils import timezone
from knox.models import AuthToken

from syndarix.api.ratelimit import RateUsage, check_sliding_window
from syndarix.db import save_unique, update_unique
from syndarix.exceptions import DomainError, InvalidInput, NotFound

from .choices import IssueStatus
from .models import Issue, Project, Workspace

WORKSPACE_SLUG_TAKEN = "workspace with this slug already exists."
PROJECT_SLUG_TAKEN = "This workspace already has a project with this slug."

#: Fields ``workspace_update`` / ``project_update`` change; anything else in ``data`` is ignored.
WORKSPACE_FIELDS = ("name", "slug", "max_concurrent_agents")
PROJECT_FIELDS = ("name", "slug", "description")


def workspace_create(*, name: str, slug: str, max_concurrent_agents: int | None = None) -> Workspace:
    """Create a workspace (tenant).

    Args:
        max_concurrent_agents: the most live agents at once; ``None`` = ``AGENT_MAX_CONCURRENCY``.

    Returns the new ``Workspace``.

    Raises:
        InvalidInput: the slug is taken, also by a concurrent create (400 ``unique`` on ``slug``).
    """
    return save_unique(
        lambda: Workspace.objects.create(name=name, slug=slug, max_concurrent_agents=max_concurrent_agents),
        taken=lambda: Workspace.objects.filter(slug=slug).exists(),
        field="slug",
        message=WORKSPACE_SLUG_TAKEN,
    )


def workspace_update(workspace: Workspace, *, data: dict[str, Any]) -> Workspace:
    """Change ``WORKSPACE_FIELDS`` of ``workspace`` from ``data`` (saved with ``update_fields``).

    Returns ``workspace``, saved. Raises ``InvalidInput`` (400 ``unique`` on ``slug``) when the new slug
    is taken, also by a concurrent write.
    """
    return update_unique(
        workspace,
        data,
        WORKSPACE_FIELDS,
        taken=lambda: Workspace.objects.filter(slug=workspace.slug).exclude(pk=workspace.pk).exists(),
        field="slug",
        message=WORKSPACE_SLUG_TAKEN,
    )


def project_create(*, workspace: Workspace, owner, name: str, slug: str, description: str = "") -> Project:
    """Create a project in ``workspace`` owned by ``owner`` (a user).

    Returns the new ``Project``.

    Raises:
        InvalidInput: the workspace already has a project with ``slug``, also one a concurrent create
            just made (400 ``unique`` on ``slug``).
    """
    return save_unique(
        lambda: Project.objects.create(workspace=workspace, owner=owner, name=name, slug=slug, description=description),
        taken=lambda: Project.objects.filter(workspace=workspace, slug=slug).exists(),
        field="slug",
        message=PROJECT_SLUG_TAKEN,
    )


def project_update(project: Project, *, data: dict[str, Any]) -> Project:
    """Change ``PROJECT_FIELDS`` of ``project`` from ``data``; the workspace and owner never change here.

    Returns ``project``, saved with ``update_fields``. Raises ``InvalidInput`` (400 ``unique`` on
    ``slug``) when the new slug is taken in the workspace, also by a concurrent write.
    """
    return update_unique(
        project,
        data,
        PROJECT_FIELDS,
        taken=lambda: Project.objects.filter(workspace_id=project.workspace_id, slug=project.slug)
        .exclude(pk=project.pk)
        .exists(),
        field="slug",
        message=PROJECT_SLUG_TAKEN,
    )


def workspace_delete(*, workspace: Workspace) -> None:
    """Delete an empty workspace (its memberships go with it).

    Raises:
        DomainError: ``workspace_not_empty`` (409) while the workspace still holds projects; delete
            (or move) them first, so no agent is ever removed as a side effect.
        NotFound: the workspace is already gone (404; a concurrent delete won).
    """
    with transaction.atomic():
        locked = Workspace.objects.select_for_update().filter(pk=workspace.pk).first()
        if locked is None:
            raise NotFound("Workspace not found.")
        projects = locked.projects.count()
        if projects:
            raise DomainError(
                f"Workspace '{locked.name}' still has {projects} project(s); delete them first.",
                code="workspace_not_empty",
                projects=projects,
            )
        locked.delete()


def project_delete(*, project: Project) -> None:
    """Delete a project with its issues, its terminated agents and their ledger.

    Lock order is workspace → project, as in the agent services, so a concurrent spawn into this
    project either finishes first (and is counted) or sees the project gone.

    Raises:
        DomainError: ``project_has_live_agents`` (409) while any agent of the project is not
            terminated; terminate them first.
        NotFound: the project is already gone (404; a concurrent delete won).
    """
    with transaction.atomic():
        Workspace.objects.select_for_update().filter(pk=project.workspace_id).first()
        locked = Project.objects.select_for_update().filter(pk=project.pk).first()
        if locked is None:
            raise NotFound("Project not found.")
        live = locked.agents.live().count()
        if live:
            raise DomainError(
                f"Project '{locked.name}' still has {live} live agent(s); terminate them first.",
                code="project_has_live_agents",
                live_agents=live,
            )
        locked.delete()


#: ``Issue`` fields ``issue_create`` / ``issue_update`` write.
ISSUE_FIELDS = ("title", "body", "status", "assigned_agent")


def issue_create(*, project: Project, title: str, body: str = "", status: str = IssueStatus.OPEN,
                 assigned_agent=None) -> Issue:
    """Create an issue in ``project``, validated by the model (``full_clean``: title length, status choice,
    an assignee of the same project).

    Returns the new ``Issue``. Raises ``django.core.exceptions.ValidationError`` keyed by field (400).
    """
    issue = Issue(project=project, title=title, body=body, status=status, assigned_agent=assigned_agent)
    issue.full_clean()
    issue.save(force_insert=True)
    return issue


def issue_update(issue: Issue, *, data: dict[str, Any]) -> Issue:
    """Change the ``ISSUE_FIELDS`` present in ``data`` (``assigned_agent`` an agent of the issue's project, or
    ``None``), validate with ``full_clean`` and save them with ``update_fields``.

    Returns ``issue``, saved. Raises ``django.core.exceptions.ValidationError`` keyed by field (400).
    """
    fields = [name for name in ISSUE_FIELDS if name in data]
    for name in fields:
        setattr(issue, name, data[name])
    if fields:
        issue.full_clean()
        issue.save(update_fields=[*fields, "updated_at"])
    return issue


# --- API tokens (django-rest-knox) ---

#: Token logins per client IP: at most 10 in any 60 seconds (sliding window, shared by every worker).
LOGIN_LIMITS_PER_IP = ((10, 60),)
#: Token logins per account (the username asked for, whatever the outcome and the IP): at most 5 in any
#: 60 seconds and 30 in any hour, so guessing one account's password from many addresses is as slow.
LOGIN_LIMITS_PER_ACCOUNT = ((5, 60), (30, 3600))


def auth_login_check_rate(*, ip: str, username: str) -> RateUsage | None:
    """Charge one token login against the per-IP, then the per-account limits.

    The account is keyed by ``username`` stripped and case-folded (one bucket per account whatever its
    spelling). A login refused per IP charges nothing to the account.

    Returns the usage of every window (for ``X-RateLimit-*``), or ``None`` when rate limiting is off or
    the cache is lost and ``RATELIMIT_FAIL_OPEN`` is set.

    Raises:
        syndarix.api.ratelimit.RateLimited: a limit is full (429, ``Retry-After`` in seconds).
        syndarix.exceptions.DependencyUnavailable: the cache is lost and ``RATELIMIT_FAIL_OPEN`` is false (503).
    """
    by_ip = check_sliding_window(f"auth.login:ip:{ip}", LOGIN_LIMITS_PER_IP)
    by_account = check_sliding_window(f"auth.login:account:{username.strip().casefold()}", LOGIN_LIMITS_PER_ACCOUNT)
    if by_ip is None or by_account is None:
        return by_ip or by_account
    return by_ip + by_account


def auth_login(*, request, username: str, password: str) -> tuple[AuthToken, str]:
    """Check ``username`` and ``password`` (Django's ``authenticate``) and create a new API token.

    Returns what ``auth_token_create`` returns.

    Raises:
        InvalidInput: unknown user, wrong password or inactive user, all alike (400 ``invalid_credentials``).
    """
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_active:
        raise InvalidInput("Unable to log in with these credentials.", code="invalid_credentials")
    return auth_token_create(user=user)


def auth_token_create(*, user) -> tuple[AuthToken, str]:
    """Create a new API token for ``user`` (one per login or device; earlier tokens stay valid).

    It expires ``AUTH_TOKEN_TTL_HOURS`` from now (never, when that is 0). Only its SHA-512 digest and its
    first 15 characters (``token_key``, the public identifier) are stored.

    The user's expired tokens are deleted on the way (requests only ever delete the token they carry).

    Returns ``(token row, the token itself)``: the token can be shown this once and never again.
    """
    AuthToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
    return AuthToken.objects.create(user=user)


def auth_token_revoke(*, user, token_key: str) -> None:
    """Revoke ``user``'s token whose identifier is ``token_key`` (the next request with it is 401).

    Raises:
        NotFound: ``user`` has no such token (404; another user's token reads the same).
    """
    deleted, _ = AuthToken.objects.filter(user=user, token_key=token_key).delete()
    if not deleted:
        raise NotFound("No such token.")


def auth_tokens_revoke_all(*, user) -> int:
    """Revoke every API token of ``user`` (logout everywhere; also done on a password change).

    Returns the number of tokens revoked.
    """
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted
