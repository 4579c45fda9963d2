"""The Django admin site: staff operate agents here (a thin UI over the services).

The index page adds a per-project summary of agents by status, with total tokens and cost, read by
``agents.selectors.project_agent_summary`` in one grouped query.
"""

from __future__ import annotations

from django.contrib import admin

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
