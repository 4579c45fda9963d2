"""Fleet scale: the agent counters (filled from the agents), the list indexes, and on PostgreSQL a trigram index for
the agent list's ``q`` (``pg_trgm``; other databases do without it)."""

import django.db.models.deletion
import uuid
from decimal import Decimal
from django.conf import settings
from django.db import migrations, models
from django.db.models import Count, DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce

STATUSES = ("idle", "working", "waiting", "paused", "terminated")


def fill_counters(apps, schema_editor):
    """Count the agents that exist: one ``AgentCounter`` per (project, is_playground), one live count per workspace."""
    agent_model = apps.get_model("agents", "AgentInstance")
    counter_model = apps.get_model("agents", "AgentCounter")
    workspace_counter_model = apps.get_model("agents", "WorkspaceAgentCounter")
    rows = (
        agent_model.objects.order_by()
        .values("project_id", "is_playground")
        .annotate(
            **{status: Count("pk", filter=Q(status=status)) for status in STATUSES},
            tasks_completed=Coalesce(Sum("tasks_completed"), 0),
            tokens_used=Coalesce(Sum("tokens_used"), 0),
            cost_incurred=Coalesce(
                Sum("cost_incurred"), Value(Decimal("0")), output_field=DecimalField(max_digits=24, decimal_places=6)
            ),
        )
    )
    counter_model.objects.bulk_create([counter_model(id=uuid.uuid4(), **row) for row in rows], batch_size=1000)
    live = (
        agent_model.objects.exclude(status="terminated").order_by().values("project__workspace_id")
        .annotate(live=Count("pk"))
    )
    workspace_counter_model.objects.bulk_create(
        [workspace_counter_model(workspace_id=row["project__workspace_id"], live=row["live"]) for row in live],
        batch_size=1000,
    )


def create_trigram_index(apps, schema_editor):
    """PostgreSQL: ``q`` (``UPPER(name) LIKE UPPER('%...%')``, Django's ``icontains``) on a GIN trigram index."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS agent_name_trgm_idx ON agents_agentinstance USING gin (UPPER(name) gin_trgm_ops)"
        )


def drop_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS agent_name_trgm_idx")


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0007_wide_usage_counters'),
        ('projects', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AgentCounter',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('is_playground', models.BooleanField(default=False)),
                ('idle', models.BigIntegerField(default=0)),
                ('working', models.BigIntegerField(default=0)),
                ('waiting', models.BigIntegerField(default=0)),
                ('paused', models.BigIntegerField(default=0)),
                ('terminated', models.BigIntegerField(default=0)),
                ('tasks_completed', models.BigIntegerField(default=0)),
                ('tokens_used', models.BigIntegerField(default=0, help_text='Tokens.')),
                ('cost_incurred', models.DecimalField(decimal_places=6, default=Decimal('0'), help_text='USD.', max_digits=24)),
            ],
        ),
        migrations.CreateModel(
            name='WorkspaceAgentCounter',
            fields=[
                ('workspace', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='agent_counter', serialize=False, to='projects.workspace')),
                ('live', models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AddIndex(
            model_name='agentinstance',
            index=models.Index(models.F('project'), models.F('is_playground'), models.OrderBy(models.F('created_at'), descending=True), models.OrderBy(models.F('id'), descending=True), name='agent_list_idx'),
        ),
        migrations.AddIndex(
            model_name='agentinstance',
            index=models.Index(models.F('project'), models.F('is_playground'), models.F('status'), models.OrderBy(models.F('created_at'), descending=True), models.OrderBy(models.F('id'), descending=True), name='agent_list_status_idx'),
        ),
        migrations.AddIndex(
            model_name='agenttransition',
            index=models.Index(models.F('agent'), models.OrderBy(models.F('created_at'), descending=True), models.OrderBy(models.F('id'), descending=True), name='ledger_list_idx'),
        ),
        migrations.AddField(
            model_name='agentcounter',
            name='project',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='agent_counters', to='projects.project'),
        ),
        migrations.AddConstraint(
            model_name='agentcounter',
            constraint=models.UniqueConstraint(fields=('project', 'is_playground'), name='unique_agent_counter'),
        ),
        migrations.RunPython(fill_counters, migrations.RunPython.noop),
        migrations.RunPython(create_trigram_index, drop_trigram_index),
    ]
