"""Error groups: the groups, their hourly counts and endpoints, and each failed request's
group (a nullable column of api_request, with a partial index of failed requests only)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("observability", "0015_search_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="ErrorGroup",
            fields=[
                (
                    "project",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="observability.project",
                    ),
                ),
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("fingerprint", models.CharField(max_length=64)),
                ("version", models.PositiveSmallIntegerField()),
                ("kind", models.CharField(max_length=16)),
                ("service", models.CharField(max_length=128)),
                ("endpoint", models.CharField(blank=True, default="", max_length=512)),
                ("title", models.TextField()),
                ("exception_type", models.CharField(blank=True, default="", max_length=255)),
                ("stacktrace", models.TextField(blank=True, default="")),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("open", "Open"),
                            ("resolved", "Resolved"),
                            ("ignored", "Ignored"),
                        ],
                        default="open",
                        max_length=16,
                    ),
                ),
                ("first_seen", models.DateTimeField()),
                ("last_seen", models.DateTimeField()),
                ("count", models.BigIntegerField(default=0)),
                ("resolved_at", models.DateTimeField(blank=True, null=True)),
                ("reopened_at", models.DateTimeField(blank=True, null=True)),
                ("times_reopened", models.PositiveIntegerField(default=0)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "db_table": "apm_error_group",
            },
        ),
        migrations.CreateModel(
            name="ErrorGroupEndpoint",
            fields=[
                (
                    "group",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="observability.errorgroup",
                    ),
                ),
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "group_id",
                        "endpoint",
                        "method",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("endpoint", models.CharField(max_length=512)),
                ("method", models.CharField(max_length=16)),
                ("count", models.BigIntegerField()),
                ("last_seen", models.DateTimeField()),
            ],
            options={
                "db_table": "apm_error_group_endpoint",
            },
        ),
        migrations.CreateModel(
            name="ErrorGroupHour",
            fields=[
                (
                    "group",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="observability.errorgroup",
                    ),
                ),
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "group_id",
                        "bucket",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("bucket", models.DateTimeField()),
                ("count", models.BigIntegerField()),
            ],
            options={
                "db_table": "apm_error_group_hour",
            },
        ),
        migrations.AddField(
            model_name="apirequest",
            name="error_group_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="apirequest",
            index=models.Index(
                condition=models.Q(("error_group_id__isnull", False)),
                fields=["project", "error_group_id", "-time"],
                name="api_req_error_group",
            ),
        ),
        migrations.AddIndex(
            model_name="errorgroup",
            index=models.Index(fields=["project", "-last_seen"], name="apm_error_group_last_seen"),
        ),
        migrations.AddConstraint(
            model_name="errorgroup",
            constraint=models.UniqueConstraint(
                fields=("project", "fingerprint"), name="apm_error_group_fingerprint"
            ),
        ),
    ]
