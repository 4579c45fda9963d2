"""The Django admin site: staff operate agents here (a thin UI over the services).

The index page adds a per-project summary of agents by status, with total tokens and cost, read by
``agents.selectors.project_agent_summary`` in one grouped query. ``ReadOnlyAdminMixin`` is the one
definition of a view-only admin (ledgers, version histories, call logs).
"""

from __future__ import annotations

from django.contrib import admin


class ReadOnlyAdminMixin:
    """View-only rows in the admin, for a ``ModelAdmin`` or an inline (put it first in the bases).

    For append-only or service-owned records: staff with the view permission see them; nobody adds,
    changes or deletes them here (their services do, or nothing does). An inline shows its rows
    read-only, without an add row or delete boxes.
    """

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


#: Most projects the index summary lists; the Projects page lists the rest.
INDEX_SUMMARY_LIMIT = 50


class SyndarixAdminSite(admin.AdminSite):
    site_header = "Syndarix administration"
    site_title = "Syndarix admin"
    index_title = "Agent operations"
    index_template = "admin/syndarix_index.html"

    def index(self, request, extra_context=None):
        """The admin index with ``project_summary`` (rows), ``project_summary_totals`` and
        ``project_summary_truncated`` in the context, for staff who may view agents."""
        context = {}
        if request.user.has_perm("agents.view_agentinstance"):
            from agents.selectors import project_agent_summary

            rows = list(project_agent_summary()[: INDEX_SUMMARY_LIMIT + 1])
            truncated = len(rows) > INDEX_SUMMARY_LIMIT
            rows = rows[:INDEX_SUMMARY_LIMIT]
            keys = (
                "idle_instances", "active_instances", "waiting_instances", "paused_instances",
                "terminated_instances", "total_instances", "total_tasks_completed", "total_tokens_used",
                "total_cost_incurred",
            )
            context = {
                "project_summary": rows,
                "project_summary_truncated": truncated,
                "project_summary_totals": {key: sum(getattr(row, key) for row in rows) for key in keys},
            }
        return super().index(request, extra_context={**context, **(extra_context or {})})
