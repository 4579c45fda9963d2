"""Write operations on workspaces and projects whose rules go beyond a plain save.

Creating and editing workspaces, projects and issues is plain validated model data (the API's
serializers save it); deleting is guarded here because it cascades to agents and their ledger.
"""

from __future__ import annotations

from django.db import transaction

from syndarix.exceptions import DomainError

from .models import Project, Workspace


def workspace_delete(*, workspace: Workspace) -> None:
    """Delete an empty workspace.

    Raises:
        DomainError: ``workspace_not_empty`` (409) while the workspace still holds projects; delete
            (or move) them first, so no agent is ever removed as a side effect.
    """
    with transaction.atomic():
        locked = Workspace.objects.select_for_update().get(pk=workspace.pk)
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
    """
    with transaction.atomic():
        Workspace.objects.select_for_update().get(pk=project.workspace_id)
        locked = Project.objects.select_for_update().get(pk=project.pk)
        live = locked.agents.live().count()
        if live:
            raise DomainError(
                f"Project '{locked.name}' still has {live} live agent(s); terminate them first.",
                code="project_has_live_agents",
                live_agents=live,
            )
        locked.delete()
