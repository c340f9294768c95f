"""The read path: read-after-write per project (not per key), the admin scope (needed to
delete), and rate buckets for reads beside ingest (the ingest buckets' state is not
kept: it refills within a second)."""

import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("observability", "0012_idempotency_keys"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="apikey",
            name="last_write_at",
        ),
        migrations.AddField(
            model_name="project",
            name="last_write_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="apikey",
            name="scopes",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(
                    choices=[("ingest", "ingest"), ("read", "read"), ("admin", "admin")],
                    max_length=16,
                ),
                size=None,
            ),
        ),
        migrations.CreateModel(
            name="RateBucket",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "key_id",
                        "kind",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[("ingest", "ingest"), ("read", "read")], max_length=16
                    ),
                ),
                ("tokens", models.FloatField()),
                ("updated_at", models.DateTimeField()),
                (
                    "key",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="observability.apikey",
                    ),
                ),
            ],
            options={
                "db_table": "apm_rate_bucket",
            },
        ),
        migrations.DeleteModel(
            name="IngestBucket",
        ),
    ]
