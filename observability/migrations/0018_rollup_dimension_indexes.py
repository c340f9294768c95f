"""Indexes of the service and endpoint rollups by their dimensions.

The rollups had (project_id, bucket) only: a query of one service or one endpoint read
every service's or endpoint's rows of its window and filtered them (on 30 days of
200 endpoints, 430,000 hourly rows for the ~2,000 of one endpoint). The UI's Service and
Endpoint pages, and the API with `service`/`endpoint` filters, read one service's or one
endpoint's rows in a bucket range.

Plain SQL that both backends run: on TimescaleDB the rollups are continuous aggregates,
and an index of a continuous aggregate is created on its materialised hypertable.
"""

from django.db import migrations

INDEXES = {
    "apm_rollup_endpoint_hourly_dims": (
        "apm_rollup_endpoint_hourly", "project_id, service, endpoint, method, bucket"),
    "apm_rollup_endpoint_daily_dims": (
        "apm_rollup_endpoint_daily", "project_id, service, endpoint, method, bucket"),
    "apm_rollup_service_hourly_dims": ("apm_rollup_service_hourly", "project_id, service, bucket"),
    "apm_rollup_service_daily_dims": ("apm_rollup_service_daily", "project_id, service, bucket"),
}  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [("observability", "0017_memberships")]

    operations = [
        migrations.RunSQL(
            f'CREATE INDEX "{name}" ON "{table}" ({columns})',
            f'DROP INDEX IF EXISTS "{name}"',
        )
        for name, (table, columns) in INDEXES.items()
    ]
