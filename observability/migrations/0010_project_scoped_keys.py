"""Idempotency within a project: the keys become (project_id, event_id, time).

Before, (event_id, time) was global: one project's event with the same id and time as
another project's was counted a duplicate and dropped. The primary keys of the request
table and of the search table that mirrors it now lead with the project.

Existing data migrates as it is (every old key stays unique under the new one). The
index is rebuilt, under an exclusive lock on the table for as long as that takes (about
a minute per 10 million rows on a small server): plan a short ingest pause on a large
installation. On TimescaleDB compressed chunks stay compressed: it checks a new primary
key against their data and enforces it there (verified on 2.29.2; the code that does it
is in 2.19.0). Should a TimescaleDB refuse, the migration stops and says how to go on.
"""

from django.db import NotSupportedError, migrations, models

from observability.migrations._frozen import run_all

SCOPED_KEYS = [
    "ALTER TABLE api_request DROP CONSTRAINT api_request_pkey",
    "ALTER TABLE api_request ADD CONSTRAINT api_request_pkey "
    "PRIMARY KEY (project_id, event_id, time)",
    "ALTER TABLE apm_request_document DROP CONSTRAINT apm_request_document_pkey",
    "ALTER TABLE apm_request_document ADD CONSTRAINT apm_request_document_pkey "
    "PRIMARY KEY (project_id, event_id, time)",
]
GLOBAL_KEYS = [
    "ALTER TABLE api_request DROP CONSTRAINT api_request_pkey",
    "ALTER TABLE api_request ADD CONSTRAINT api_request_pkey PRIMARY KEY (event_id, time)",
    "ALTER TABLE apm_request_document DROP CONSTRAINT apm_request_document_pkey",
    "ALTER TABLE apm_request_document ADD CONSTRAINT apm_request_document_pkey "
    "PRIMARY KEY (event_id, time)",
]
DECOMPRESS = (
    "This TimescaleDB cannot change the primary key of compressed chunks: decompress them "
    "(SELECT decompress_chunk(c, true) FROM show_chunks('api_request') c), migrate, and let "
    "the compression policy compress them again."
)


def scope_keys(apps, schema_editor):
    try:
        run_all(schema_editor, SCOPED_KEYS)
    except NotSupportedError as exc:  # a TimescaleDB refusing, on compressed chunks
        raise RuntimeError(f"{exc} {DECOMPRESS}") from exc


def unscope_keys(apps, schema_editor):
    run_all(schema_editor, GLOBAL_KEYS)


class Migration(migrations.Migration):
    dependencies = [("observability", "0009_sketch_quantile")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(scope_keys, unscope_keys)],
            state_operations=[
                migrations.AlterField(
                    model_name="apirequest",
                    name="pk",
                    field=models.CompositePrimaryKey(
                        "project_id",
                        "event_id",
                        "time",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                migrations.AlterField(
                    model_name="requestdocument",
                    name="pk",
                    field=models.CompositePrimaryKey(
                        "project_id",
                        "event_id",
                        "time",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
            ],
        ),
    ]
