"""Fleet scale: the issue list's index (project, newest first)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0008_fleet_scale'),
        ('projects', '0002_tokens'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='issue',
            index=models.Index(models.F('project'), models.OrderBy(models.F('created_at'), descending=True), models.OrderBy(models.F('id'), descending=True), name='issue_list_idx'),
        ),
    ]
