"""Cardinality caps on services and environments as on endpoints: one table of admitted
values per (project, dimension, scope), and a count of what overflowed.

The endpoints admitted so far (apm_endpoint) move into it; services and environments
are admitted as events arrive.
"""

import django.db.models.deletion
from django.db import migrations, models

DIMENSION_CHOICES = [
    ("service", "Service"),
    ("environment", "Environment"),
    ("endpoint", "Endpoint"),
]

COPY_ENDPOINTS = """
INSERT INTO apm_dimension_value (project_id, dimension, scope, value, first_seen)
SELECT project_id, 'endpoint', service, endpoint, first_seen FROM apm_endpoint
"""
COPY_ENDPOINTS_BACK = """
INSERT INTO apm_endpoint (project_id, service, endpoint, first_seen)
SELECT project_id, scope, value, first_seen FROM apm_dimension_value WHERE dimension = 'endpoint'
"""


class Migration(migrations.Migration):
    dependencies = [("observability", "0010_project_scoped_keys")]

    operations = [
        migrations.CreateModel(
            name="DimensionValue",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("dimension", models.CharField(choices=DIMENSION_CHOICES, max_length=16)),
                ("scope", models.CharField(blank=True, default="", max_length=128)),
                ("value", models.CharField(max_length=512)),
                ("first_seen", models.DateTimeField(auto_now_add=True)),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="observability.project",
                    ),
                ),
            ],
            options={
                "db_table": "apm_dimension_value",
                "ordering": ["dimension", "scope", "value"],
            },
        ),
        migrations.AddConstraint(
            model_name="dimensionvalue",
            constraint=models.UniqueConstraint(
                fields=("project", "dimension", "scope", "value"), name="apm_dimension_value_uniq"
            ),
        ),
        migrations.CreateModel(
            name="Overflow",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("dimension", models.CharField(choices=DIMENSION_CHOICES, max_length=16)),
                ("scope", models.CharField(blank=True, default="", max_length=128)),
                ("events", models.BigIntegerField(default=0)),
                ("last_at", models.DateTimeField()),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="observability.project",
                    ),
                ),
            ],
            options={"db_table": "apm_overflow"},
        ),
        migrations.AddConstraint(
            model_name="overflow",
            constraint=models.UniqueConstraint(
                fields=("project", "dimension", "scope"), name="apm_overflow_uniq"
            ),
        ),
        migrations.RunSQL(COPY_ENDPOINTS, COPY_ENDPOINTS_BACK),
        migrations.DeleteModel(name="Endpoint"),
    ]
