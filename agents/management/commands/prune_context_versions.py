"""Apply the context retention policy to existing histories (backfills)."""

from __future__ import annotations

import uuid

from django.core.management.base import BaseCommand, CommandError

from agents.contexts.services import context_prune, contexts_with_prunable_versions, history_limit


class Command(BaseCommand):
    help = (
        "Prune old context versions: keep the newest --limit versions of each context (default "
        "AGENT_CONTEXT_HISTORY_LIMIT) plus every pinned version and the current one. Writes already "
        "prune as they go; run this after lowering the limit or unpinning versions."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--limit", type=int, help="Versions to keep per context (default: the setting).")
        parser.add_argument("--context", help="Only this context (id).")
        parser.add_argument("--dry-run", action="store_true", help="Report what would be pruned; change nothing.")

    def handle(self, *args, limit: int | None, context: str | None, dry_run: bool, verbosity: int, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1 (the current version is always kept).")
        keep = history_limit(limit)
        candidates = (
            contexts_with_prunable_versions(keep)
            .select_related("project")
            .order_by("project__name", "name", "pk")
        )
        if context:
            try:
                candidates = candidates.filter(pk=uuid.UUID(context))
            except ValueError as exc:
                raise CommandError(f"Not a context id: {context}") from exc
        total = touched = 0
        for ctx in candidates:
            pruned = context_prune(ctx, limit=keep, dry_run=dry_run)
            if not pruned:
                continue
            total += pruned
            touched += 1
            if verbosity >= 2:
                verb = "would prune" if dry_run else "pruned"
                self.stdout.write(f"{ctx.project} / {ctx} ({ctx.pk}): {verb} {pruned} versions")
        if verbosity >= 1:
            verb = "Would prune" if dry_run else "Pruned"
            self.stdout.write(self.style.SUCCESS(f"{verb} {total} versions from {touched} contexts (keeping {keep})."))
