"""Base schema: projects, API keys and the request table.

`api_request` is created with hand-written DDL because its shape depends on the
analytics backend (see observability/analytics/backend.py): natively partitioned by
day on the portable backend, a plain table that 0002 turns into a hypertable on
TimescaleDB. Both need a primary key that contains `time`: (event_id, time).

The backend choice is frozen here as it was made when this migration was written
(APM_ANALYTICS_BACKEND and whether the server offers TimescaleDB); the system check
reports the same choice from the live code.
"""

import uuid

import django.contrib.postgres.fields
import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

COLUMNS = """
    event_id uuid NOT NULL DEFAULT gen_random_uuid(),
    time timestamptz NOT NULL,
    project_id bigint NOT NULL,
    service varchar(128) NOT NULL,
    endpoint varchar(512) NOT NULL,
    method varchar(16) NOT NULL,
    status_code smallint NOT NULL,
    latency_ms double precision NOT NULL,
    trace_id varchar(32) NOT NULL DEFAULT '',
    span_id varchar(16) NOT NULL DEFAULT '',
    environment varchar(64) NOT NULL DEFAULT '',
    host varchar(255) NOT NULL DEFAULT '',
    error_message text NOT NULL DEFAULT '',
    request_bytes bigint NULL,
    response_bytes bigint NULL,
    attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
    apdex_t_ms real NOT NULL DEFAULT 300,
    CONSTRAINT api_request_pkey PRIMARY KEY (event_id, time)
"""

INDEXES = [
    "CREATE INDEX api_req_project_time ON api_request (project_id, time DESC)",
]


# Installed, or offered and preloaded.
TIMESCALE_USABLE = """
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
    OR (EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
        AND position('timescaledb' in current_setting('shared_preload_libraries')) > 0)
"""


def builds_portable(connection) -> bool:
    """Portable (True) or TimescaleDB (False), from APM_ANALYTICS_BACKEND and the server."""
    with connection.cursor() as cursor:
        cursor.execute(TIMESCALE_USABLE)
        timescale_usable = cursor.fetchone()[0]
    configured = settings.APM_ANALYTICS_BACKEND
    if configured == "timescale" and not timescale_usable:
        raise RuntimeError(
            "cannot create api_request: APM_ANALYTICS_BACKEND=timescale but the server "
            "does not offer (or preload) the timescaledb extension"
        )
    return configured == "postgres" or (configured == "auto" and not timescale_usable)


def create_request_table(apps, schema_editor):
    portable = builds_portable(schema_editor.connection)
    partition_clause = "PARTITION BY RANGE (time)" if portable else ""
    statements = [
        f"CREATE TABLE api_request ({COLUMNS}) {partition_clause}",
        *INDEXES,
    ]
    if portable:
        statements.append("CREATE TABLE api_request_default PARTITION OF api_request DEFAULT")
    for statement in statements:
        schema_editor.execute(statement)


def drop_request_table(apps, schema_editor):
    schema_editor.execute("DROP TABLE api_request CASCADE")


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Project",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("slug", models.SlugField(max_length=64, unique=True)),
                ("name", models.CharField(max_length=200)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={"db_table": "apm_project", "ordering": ["slug"]},
        ),
        migrations.CreateModel(
            name="ApiKey",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100)),
                ("prefix", models.CharField(editable=False, max_length=12, unique=True)),
                ("key_hash", models.CharField(editable=False, max_length=64)),
                (
                    "scopes",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.CharField(
                            choices=[("ingest", "ingest"), ("read", "read")], max_length=16
                        ),
                        size=None,
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("last_used_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("last_write_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="api_keys",
                        to="observability.project",
                    ),
                ),
            ],
            options={"db_table": "apm_api_key", "ordering": ["project", "name"]},
        ),
        migrations.CreateModel(
            name="Endpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("service", models.CharField(max_length=128)),
                ("endpoint", models.CharField(max_length=512)),
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
                "db_table": "apm_endpoint",
                "ordering": ["service", "endpoint"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("project", "service", "endpoint"), name="apm_endpoint_uniq"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="IngestBucket",
            fields=[
                (
                    "key",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="observability.apikey",
                    ),
                ),
                ("tokens", models.FloatField()),
                ("updated_at", models.DateTimeField()),
            ],
            options={"db_table": "apm_ingest_bucket"},
        ),
        migrations.CreateModel(
            name="ServiceSettings",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("service", models.CharField(max_length=128)),
                (
                    "apdex_t_ms",
                    models.FloatField(
                        default=300.0,
                        validators=[
                            django.core.validators.MinValueValidator(1),
                            django.core.validators.MaxValueValidator(600000),
                        ],
                        verbose_name="Apdex T (ms)",
                    ),
                ),
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
                "db_table": "apm_service_settings",
                "verbose_name_plural": "service settings",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("project", "service"), name="apm_service_settings_uniq"
                    )
                ],
            },
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create_request_table, drop_request_table)],
            state_operations=[
                migrations.CreateModel(
                    name="ApiRequest",
                    fields=[
                        (
                            "pk",
                            models.CompositePrimaryKey(
                                "event_id",
                                "time",
                                blank=True,
                                editable=False,
                                primary_key=True,
                                serialize=False,
                            ),
                        ),
                        ("event_id", models.UUIDField(default=uuid.uuid4)),
                        ("time", models.DateTimeField()),
                        ("service", models.CharField(max_length=128)),
                        ("endpoint", models.CharField(max_length=512)),
                        ("method", models.CharField(max_length=16)),
                        (
                            "status_code",
                            models.SmallIntegerField(
                                validators=[
                                    django.core.validators.MinValueValidator(100),
                                    django.core.validators.MaxValueValidator(599),
                                ]
                            ),
                        ),
                        (
                            "latency_ms",
                            models.FloatField(
                                validators=[django.core.validators.MinValueValidator(0)]
                            ),
                        ),
                        ("trace_id", models.CharField(blank=True, default="", max_length=32)),
                        ("span_id", models.CharField(blank=True, default="", max_length=16)),
                        ("environment", models.CharField(blank=True, default="", max_length=64)),
                        ("host", models.CharField(blank=True, default="", max_length=255)),
                        ("error_message", models.TextField(blank=True, default="")),
                        ("request_bytes", models.BigIntegerField(blank=True, null=True)),
                        ("response_bytes", models.BigIntegerField(blank=True, null=True)),
                        ("attributes", models.JSONField(blank=True, default=dict)),
                        ("apdex_t_ms", models.FloatField(default=300.0)),
                        (
                            "project",
                            models.ForeignKey(
                                db_constraint=False,
                                on_delete=django.db.models.deletion.DO_NOTHING,
                                related_name="+",
                                to="observability.project",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "api_request",
                        "indexes": [
                            models.Index(fields=["project", "-time"], name="api_req_project_time"),
                        ],
                    },
                ),
            ],
        ),
    ]
