"""Usage per project and day (``UsageDay``): the LLM steps' tokens and cost and the runs ended per outcome on the
days they happened, and what the counters held beyond them (usage posted through the API) on the day of the
migration; the project counters keep only the agents by status. The dated rows go to shard 0 (a project's totals are
the sums over its shards). And an index of the pending requests to people, oldest first."""

import datetime
import uuid
from decimal import Decimal

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

USAGE = ("tasks_completed", "tokens_used", "cost_incurred", "unpriced_tokens")
RUNS = {"succeeded": "runs_succeeded", "failed": "runs_failed", "cancelled": "runs_cancelled"}


def fill_usage_days(apps, schema_editor):
    """Date what can be dated (steps by their time, runs by ``finished_at``), then put the rest of each counter's
    totals on today, so the sums over the days equal the totals the counters held."""
    counter_model = apps.get_model("agents", "AgentCounter")
    day_model = apps.get_model("agents", "UsageDay")
    step_model = apps.get_model("agents", "AgentRunStep")
    run_model = apps.get_model("agents", "AgentRun")
    days: dict[tuple, dict] = {}

    def row(project_id, is_playground, day) -> dict:
        return days.setdefault((project_id, is_playground, day), {})

    steps = (
        step_model.objects.filter(Q(prompt_tokens__gt=0) | Q(completion_tokens__gt=0) | Q(cost__gt=0))
        .annotate(day=TruncDate("created_at", tzinfo=datetime.UTC)).order_by()
        .values("run__agent__project_id", "run__agent__is_playground", "day")
        .annotate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), cost=Sum("cost"))
    )
    for step in steps:
        values = row(step["run__agent__project_id"], step["run__agent__is_playground"], step["day"])
        values.update(prompt_tokens=step["prompt"], completion_tokens=step["completion"], cost_incurred=step["cost"],
                      tokens_used=step["prompt"] + step["completion"])
    runs = (
        run_model.objects.filter(status__in=list(RUNS), finished_at__isnull=False)
        .annotate(day=TruncDate("finished_at", tzinfo=datetime.UTC)).order_by()
        .values("agent__project_id", "agent__is_playground", "day", "status").annotate(n=Count("pk"))
    )
    for run in runs:
        values = row(run["agent__project_id"], run["agent__is_playground"], run["day"])
        values[RUNS[run["status"]]] = run["n"]
        if run["status"] == "succeeded":
            values["tasks_completed"] = run["n"]
    today = timezone.now().astimezone(datetime.UTC).date()
    totals = counter_model.objects.order_by().values("project_id", "is_playground").annotate(
        **{column: Sum(column) for column in USAGE})
    for counter in totals:
        key = (counter["project_id"], counter["is_playground"])
        for column in USAGE:
            dated = sum((values.get(column, 0) for k, values in days.items() if k[:2] == key), 0)
            rest = counter[column] - dated
            if rest:
                values = row(*key, today)
                values[column] = values.get(column, 0) + rest
    day_model.objects.bulk_create(
        [day_model(id=uuid.uuid4(), project_id=k[0], is_playground=k[1], day=k[2], **values)
         for k, values in days.items() if any(values.values())],
        batch_size=1000,
    )


def total_usage_days(apps, schema_editor):
    """Backwards: the counters' usage totals are the sums over the days (in each project's shard 0 row)."""
    counter_model = apps.get_model("agents", "AgentCounter")
    day_model = apps.get_model("agents", "UsageDay")
    sums = day_model.objects.order_by().values("project_id", "is_playground").annotate(
        **{column: Sum(column) for column in USAGE})
    for total in sums:
        counter_model.objects.update_or_create(
            project_id=total.pop("project_id"), is_playground=total.pop("is_playground"), shard=0, defaults=total)


def create_totals_index(apps, schema_editor):
    """PostgreSQL: the project totals (sums over a project's days) read from the index alone (an index-only scan of
    ``INCLUDE`` columns); other databases do without it."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS usage_day_totals_idx ON agents_usageday (project_id, is_playground) "
            "INCLUDE (tasks_completed, tokens_used, cost_incurred, unpriced_tokens)"
        )


def drop_totals_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS usage_day_totals_idx")


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0011_unpriced_tokens'),
        ('projects', '0003_fleet_scale'),
    ]

    operations = [
        migrations.CreateModel(
            name='UsageDay',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('is_playground', models.BooleanField(default=False)),
                ('day', models.DateField(help_text='UTC.')),
                ('shard', models.PositiveSmallIntegerField(default=0)),
                ('tasks_completed', models.BigIntegerField(default=0)),
                ('tokens_used', models.BigIntegerField(default=0, help_text='Tokens.')),
                ('prompt_tokens', models.BigIntegerField(
                    default=0, help_text="Input tokens of the runtime's LLM calls.")),
                ('completion_tokens', models.BigIntegerField(
                    default=0, help_text="Output tokens of the runtime's LLM calls.")),
                ('unpriced_tokens', models.BigIntegerField(
                    default=0, help_text='Tokens of models without a price (metered at 0).')),
                ('cost_incurred', models.DecimalField(
                    decimal_places=6, default=Decimal('0'), help_text='USD.', max_digits=24)),
                ('runs_succeeded', models.BigIntegerField(default=0)),
                ('runs_failed', models.BigIntegerField(default=0)),
                ('runs_cancelled', models.BigIntegerField(default=0)),
                ('project', models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE, related_name='usage_days', to='projects.project')),
            ],
            options={
                'indexes': [models.Index(fields=['day'], name='usage_day_idx')],
                'constraints': [
                    models.UniqueConstraint(fields=('project', 'is_playground', 'day', 'shard'), name='unique_usage_day'),
                ],
            },
        ),
        migrations.RunPython(fill_usage_days, total_usage_days),
        migrations.RunPython(create_totals_index, drop_totals_index),
        migrations.AddIndex(
            model_name='agentrunrequest',
            index=models.Index(condition=models.Q(('status', 'pending')), fields=['requested_at'], name='run_request_pending_idx'),
        ),
        migrations.RemoveField(
            model_name='agentcounter',
            name='cost_incurred',
        ),
        migrations.RemoveField(
            model_name='agentcounter',
            name='tasks_completed',
        ),
        migrations.RemoveField(
            model_name='agentcounter',
            name='tokens_used',
        ),
        migrations.RemoveField(
            model_name='agentcounter',
            name='unpriced_tokens',
        ),
    ]
