"""The schema built by the migrations, the backend choice and its system check."""

from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from observability.analytics import backend, partitions, rollups, sketches
from observability.checks import analytics_backend_check
from observability.models import ApiRequest
from observability.tests.utils import make_request

pytestmark = pytest.mark.django_db


def fetch(query, params=()):
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def test_models_and_migrations_agree():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_request_table_is_time_partitioned_on_this_backend():
    built = backend.of(connection)
    if built == backend.PORTABLE:
        (strategy,) = fetch(
            "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'api_request'::regclass"
        )[0]
        assert strategy == "r"  # range
        assert partitions.DEFAULT_PARTITION in {
            name
            for (name,) in fetch(
                "SELECT inhrelid::regclass::text FROM pg_inherits "
                "WHERE inhparent = 'api_request'::regclass"
            )
        }
    else:
        assert (
            fetch(
                "SELECT count(*) FROM timescaledb_information.hypertables "
                "WHERE hypertable_name = 'api_request'"
            )[0][0]
            == 1
        )


def test_the_key_is_project_event_id_and_time():
    definitions = dict(
        fetch(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'api_request'::regclass"
        )
    )
    assert definitions["api_request_pkey"] == 'PRIMARY KEY (project_id, event_id, "time")'


def test_the_list_query_uses_the_project_time_index(project):
    for _ in range(3):
        make_request(project)
    connection.cursor().execute("SET LOCAL enable_seqscan = off")
    queryset = ApiRequest.objects.filter(project_id=project.pk).order_by("-time", "-event_id")[:100]

    plan = queryset.explain(analyze=True)  # TimescaleDB picks chunk indexes at execution

    # Partitions name their copy of the index <partition>_project_id_time_idx; TimescaleDB
    # chunks keep the parent's name as a suffix.
    index_name = {
        backend.PORTABLE: "_project_id_time_idx",
        backend.TIMESCALE: "api_req_project_time",
    }
    assert index_name[backend.of(connection)] in plan


def test_rows_with_no_daily_partition_land_in_the_default_one(project):
    if backend.of(connection) != backend.PORTABLE:
        pytest.skip("partitions are TimescaleDB chunks on this backend")
    old = make_request(project, time=datetime(2020, 1, 1, 12, tzinfo=UTC))

    (where,) = fetch(
        "SELECT tableoid::regclass::text FROM api_request WHERE event_id = %s", [old.event_id]
    )[0]

    assert where == partitions.DEFAULT_PARTITION


def test_creating_a_partition_moves_its_rows_out_of_the_default_one(project):
    if backend.of(connection) != backend.PORTABLE:
        pytest.skip("partitions are TimescaleDB chunks on this backend")
    day = date(2020, 1, 2)
    inside = [make_request(project, time=datetime(2020, 1, 2, h, tzinfo=UTC)) for h in (0, 12, 23)]
    outside = make_request(project, time=datetime(2020, 1, 3, 0, tzinfo=UTC))

    created = partitions.ensure_daily_partitions(connection, day, day)

    assert created == [day]
    placement = dict(
        fetch(
            "SELECT event_id, tableoid::regclass::text FROM api_request WHERE project_id = %s",
            [project.pk],
        )
    )
    assert {placement[row.event_id] for row in inside} == {partitions.partition_name(day)}
    assert placement[outside.event_id] == partitions.DEFAULT_PARTITION
    assert ApiRequest.objects.filter(project=project).count() == 4
    assert partitions.ensure_daily_partitions(connection, day, day) == []  # idempotent


def test_partitions_exist_ahead_of_today(settings):
    if backend.of(connection) != backend.PORTABLE:
        pytest.skip("TimescaleDB creates chunks on demand")
    today = datetime.now(UTC).date()
    days = partitions.existing_partition_days(connection)
    ahead = {today + timedelta(days=n) for n in range(settings.APM_PARTITIONS_AHEAD_DAYS + 1)}
    assert ahead <= days


def test_system_check_reports_the_backend_and_why(settings):
    (message,) = analytics_backend_check(None, databases=["default"])

    assert message.id == "observability.I002"
    assert backend.of(connection).name in message.msg
    assert f"APM_ANALYTICS_BACKEND={settings.APM_ANALYTICS_BACKEND}" in message.msg


def test_system_check_fails_when_configuration_and_schema_disagree(settings):
    other = backend.TIMESCALE if backend.of(connection) == backend.PORTABLE else backend.PORTABLE
    settings.APM_ANALYTICS_BACKEND = other.name

    (message,) = analytics_backend_check(None, databases=["default"])

    assert message.id == "observability.E003"
    assert message.level >= 40  # an error: `manage.py check --database default` fails


def test_choose_explains_a_timescale_request_the_server_cannot_honour(settings):
    usable, why = backend.timescale_status(connection)
    if usable:
        pytest.skip("this server has TimescaleDB")
    settings.APM_ANALYTICS_BACKEND = "timescale"

    choice = backend.choose(connection)

    assert choice.name is None
    assert why in choice.reason


def test_every_rollup_has_the_columns_the_code_reads_and_writes():
    """The migrations' DDL is frozen; this is where it must still match the live code
    (rollups.MEASURES, the grains, sketch.BUCKETS). The sketch functions are compared
    with sketch.py in test_sketch.py."""
    timescale = backend.of(connection) == backend.TIMESCALE
    for rollup in rollups.ALL:
        found = dict(
            fetch(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                [rollup.table],
            )
        )
        expected = rollup.expected_columns(sketches.of(connection))
        if timescale:
            # A continuous aggregate's sketch is the function's result: sparsevec without
            # the dimension the portable table declares.
            expected[rollups.SKETCH_COLUMN] = "sparsevec"
        assert found == expected, rollup.table
