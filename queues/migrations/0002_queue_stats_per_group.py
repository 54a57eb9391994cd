"""queue_stats holds a row per queue, (action, group), rather than per action.

The old table's primary key was the action; the new one has its own id and
(action, group) unique. Rows are copied as the ``default`` group (every
row was that queue), so nothing is lost and the flusher carries on.
"""

import django.db.models.deletion
from django.db import migrations, models

# The columns both tables have (a migration keeps its own copy: the model's may change).
COPIED = [
    "queue_length",
    "active_count",
    "max_concurrent",
    "oldest_enqueued_at",
    "total_enqueued",
    "total_completed",
    "total_terminal",
    "last_updated",
]

def copy_rows(apps, schema_editor):
    old = apps.get_model("queues", "QueueStats")
    new = apps.get_model("queues", "QueueStatsPerGroup")
    new.objects.bulk_create(
        (new(action_id=row.action_id, group="default", **{f: getattr(row, f) for f in COPIED}) for row in old.objects.all()),
        batch_size=1000,
    )


def copy_back(apps, schema_editor):
    new = apps.get_model("queues", "QueueStatsPerGroup")
    old = apps.get_model("queues", "QueueStats")
    old.objects.bulk_create(
        (old(action_id=row.action_id, **{f: getattr(row, f) for f in COPIED}) for row in new.objects.filter(group="default")),
        batch_size=1000,
    )


class Migration(migrations.Migration):

    dependencies = [
        ("executions", "0006_limit_bounds"),
        ("queues", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="QueueStatsPerGroup",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("group", models.CharField(default="default", max_length=200)),
                ("queue_length", models.PositiveIntegerField(default=0)),
                ("active_count", models.PositiveIntegerField(default=0)),
                ("max_concurrent", models.PositiveIntegerField(blank=True, null=True)),
                ("oldest_enqueued_at", models.DateTimeField(blank=True, null=True)),
                ("total_enqueued", models.PositiveBigIntegerField(default=0)),
                ("total_completed", models.PositiveBigIntegerField(default=0)),
                ("total_terminal", models.PositiveBigIntegerField(default=0)),
                ("last_updated", models.DateTimeField(db_index=True)),
                (
                    "action",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="executions.action"
                    ),
                ),
            ],
            options={
                "verbose_name": "queue statistics",
                "verbose_name_plural": "queue statistics",
                "ordering": ["-queue_length", "-active_count"],
            },
        ),
        migrations.RunPython(copy_rows, copy_back),
        migrations.DeleteModel(name="QueueStats"),
        migrations.RenameModel(old_name="QueueStatsPerGroup", new_name="QueueStats"),
        migrations.AlterField(
            model_name="queuestats",
            name="action",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="queue_stats", to="executions.action"
            ),
        ),
        migrations.AddConstraint(
            model_name="queuestats",
            constraint=models.UniqueConstraint(fields=("action", "group"), name="queue_stats_one_row_per_queue"),
        ),
    ]
