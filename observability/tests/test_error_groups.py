"""Error groups through ingest and the API: what groups together, a group's life, scopes."""

import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from observability.error_groups import store
from observability.error_groups.fingerprint import Failure
from observability.ingest.events import Row
from observability.models import ApiKey, ApiRequest, ErrorGroup, ErrorGroupDelta
from observability.tests.test_fingerprint import python_trace
from observability.tests.test_otlp import tracer_provider
from observability.tests.utils import client_with, make_key
from observability.tests.utils import event_payload as event

pytestmark = pytest.mark.django_db
GROUPS = "/api/v1/error-groups/"


def failed(**fields) -> dict:
    return event(**({"status_code": 500} | fields))


def minutes_ago(minutes: float) -> str:
    return (timezone.now() - timedelta(minutes=minutes)).isoformat()


def groups_of(project) -> list[ErrorGroup]:
    return list(ErrorGroup.objects.filter(project=project).order_by("id"))


def test_a_thousand_errors_differing_in_ids_numbers_and_times_are_one_group(ingest, project):
    rng = random.Random(7)
    messages = [
        f"order {uuid.UUID(int=rng.getrandbits(128)).hex[: rng.randint(6, 12)]} not found "
        f"for user {rng.randint(1, 10**9)} at {datetime.now(UTC) - timedelta(seconds=n)} "
        f"after {rng.randint(1, 9999)} ms (request {uuid.UUID(int=rng.getrandbits(128))})"
        for n in range(1000)
    ]
    assert len(set(messages)) == 1000
    for chunk in (messages[:500], messages[500:]):
        batch = [failed(error_message=m, time=minutes_ago(rng.uniform(1, 120))) for m in chunk]
        assert ingest(batch).status_code == 200

    (group,) = groups_of(project)
    assert (group.count, group.kind, group.status) == (1000, "message", "open")
    assert group.title in messages  # a real message, not the normalised one
    assert ApiRequest.objects.filter(project=project, error_group_id=group.pk).count() == 1000
    assert group.first_seen == ApiRequest.objects.filter(project=project).earliest("time").time
    assert group.last_seen == ApiRequest.objects.filter(project=project).latest("time").time


def test_one_exception_type_at_two_call_sites_is_two_groups(ingest, project):
    at_pay = python_trace(function="pay")
    at_refund = python_trace(function="refund")
    at_pay_after_an_edit = python_trace(function="pay", line=57, view_line=12)
    common = {"exception_type": "shop.errors.PaymentError"}
    response = ingest([
        failed(**common, exception_message="card 4242 declined", stacktrace=at_pay),
        failed(**common, exception_message="card 1881 declined", stacktrace=at_pay_after_an_edit,
               endpoint="/checkout"),
        failed(**common, exception_message="card 4242 declined", stacktrace=at_refund),
    ])  # fmt: skip
    assert response.status_code == 200, response.json()

    pay, refund = groups_of(project)
    assert (pay.kind, pay.count, refund.count) == ("stack", 2, 1)
    assert pay.title == "shop.errors.PaymentError: card 4242 declined"
    assert "in pay" in pay.stacktrace and "in refund" in refund.stacktrace
    assert pay.endpoint == ""  # a stack's group spans endpoints
    detail = client_with(make_key(project)).get(f"{GROUPS}{pay.pk}/").json()
    assert {(e["endpoint"], e["count"]) for e in detail["endpoints"]} == {
        ("/cart", 1), ("/checkout", 1),
    }  # fmt: skip


def test_a_client_fingerprint_overrides(ingest, project):
    ingest([
        failed(error_message="connection reset", fingerprint="payments-provider-down"),
        failed(error_message="TLS handshake timeout", fingerprint="payments-provider-down",
               endpoint="/pay"),
        failed(error_message="connection reset", fingerprint="database-down"),
    ])  # fmt: skip
    provider, database = groups_of(project)
    assert (provider.kind, provider.count, database.count) == ("client", 2, 1)


def test_what_is_not_a_failure_has_no_group(ingest, project):
    ingest([event(status_code=404, error_message="no such user 42"), event(status_code=200)])
    ingest([event(status_code=200, exception_type="TimeoutError", exception_message="retried")])
    (group,) = groups_of(project)  # only the recorded exception
    assert group.title == "TimeoutError: retried"
    assert ApiRequest.objects.filter(project=project, error_group_id__isnull=True).count() == 2


def test_a_5xx_without_a_message_groups_by_status_and_endpoint(ingest, project):
    ingest([failed(status_code=503), failed(status_code=503), failed(status_code=502)])
    assert [(g.title, g.count) for g in groups_of(project)] == [("HTTP 503", 2), ("HTTP 502", 1)]


def test_the_exception_becomes_the_error_message_when_none_is_given(ingest, project):
    ingest([failed(exception_type="KeyError", exception_message="'sku'")])
    assert ApiRequest.objects.get(project=project).error_message == "KeyError: 'sku'"


def test_a_retried_batch_is_counted_once(ingest, project):
    batch = [failed(error_message="boom 1"), failed(error_message="boom 2")]
    ingest(batch)
    ingest(batch)
    ingest([*batch, failed(error_message="boom 3")])  # partly new
    (group,) = groups_of(project)
    assert group.count == 3
    assert sum(hour.count for hour in group_hours(group)) == 3


def group_hours(group):
    from observability.models import ErrorGroupHour

    return ErrorGroupHour.objects.filter(group=group)


def test_resolve_then_a_new_occurrence_reopens_it(ingest, project):
    admin = client_with(make_key(project, scopes=[ApiKey.SCOPE_READ, ApiKey.SCOPE_ADMIN]))
    ingest([failed(error_message="payment 12 failed", time=minutes_ago(10))])
    (group,) = groups_of(project)

    response = admin.patch(f"{GROUPS}{group.pk}/", {"status": "resolved"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "resolved" and response.json()["resolved_at"]

    # A late event from before the resolution is counted, and does not reopen it.
    ingest([failed(error_message="payment 13 failed", time=minutes_ago(5))])
    group.refresh_from_db()
    assert (group.status, group.count, group.times_reopened) == ("resolved", 2, 0)

    ingest([failed(error_message="payment 14 failed", time=timezone.now().isoformat())])
    group.refresh_from_db()
    assert (group.status, group.count, group.times_reopened) == ("open", 3, 1)
    assert group.reopened_at is not None
    assert store.OPENED.labels("regression")._value.get() >= 0  # registered and exported


def test_ignored_stays_ignored_and_can_be_reopened_by_hand(ingest, project):
    admin = client_with(make_key(project, scopes=[ApiKey.SCOPE_READ, ApiKey.SCOPE_ADMIN]))
    ingest([failed(error_message="noisy 1")])
    (group,) = groups_of(project)
    admin.patch(f"{GROUPS}{group.pk}/", {"status": "ignored"}, format="json")
    ingest([failed(error_message="noisy 2", time=timezone.now().isoformat())])
    group.refresh_from_db()
    assert (group.status, group.count) == ("ignored", 2)
    assert admin.patch(f"{GROUPS}{group.pk}/", {"status": "open"}, format="json").status_code == 200
    group.refresh_from_db()
    assert (group.status, group.resolved_at) == ("open", None)


def test_groups_never_mix_projects(ingest, project, other_project):
    same_failure = {"error_message": "stock 7 below zero"}
    ingest([failed(**same_failure)])
    other_api = client_with(make_key(other_project))
    other_api.post("/api/v1/ingest/", [failed(**same_failure), failed(**same_failure)],
                   format="json")  # fmt: skip
    store.fold()

    (ours,), (theirs,) = groups_of(project), groups_of(other_project)
    assert ours.fingerprint == theirs.fingerprint and ours.pk != theirs.pk
    assert (ours.count, theirs.count) == (1, 2)
    listed = client_with(make_key(project)).get(GROUPS).json()["results"]
    assert [g["id"] for g in listed] == [ours.pk]
    admin = client_with(make_key(project, scopes=[ApiKey.SCOPE_READ, ApiKey.SCOPE_ADMIN]))
    assert admin.get(f"{GROUPS}{theirs.pk}/").status_code == 404
    assert (
        admin.patch(f"{GROUPS}{theirs.pk}/", {"status": "resolved"}, format="json").status_code
        == 404
    )
    theirs.refresh_from_db()
    assert theirs.status == "open"
    sample_projects = {s["event_id"] for s in admin.get(f"{GROUPS}{ours.pk}/").json()["samples"]}
    assert len(sample_projects) == 1


def test_counts_are_recorded_with_the_batch_and_folded_once(transactional_db, api, project):
    """Ingest records occurrences in the batch's transaction; the job adds them (a new
    group at once). Committed for real: the worker caches groups once committed."""
    first = [failed(error_message="slot 3 taken"), failed(error_message="slot 9 taken")]
    assert api.post("/api/v1/ingest/", first, format="json").status_code == 200
    (group,) = groups_of(project)
    assert group.count == 2  # a new group: folded in its batch's request
    more = [failed(error_message="slot 12 taken")]
    assert api.post("/api/v1/ingest/", more, format="json").status_code == 200
    group.refresh_from_db()
    assert group.count == 2 and ErrorGroupDelta.objects.count() == 1  # until the job
    assert store.fold() == 1
    assert store.fold() == 0  # each delta once
    api.post("/api/v1/ingest/", more, format="json")  # a retry: nothing new to record
    store.fold()
    group.refresh_from_db()
    assert group.count == 3 and [hour.count for hour in group_hours(group)] == [3]
    assert not ErrorGroupDelta.objects.exists()


def test_scopes(ingest, project):
    ingest([failed(error_message="x")])
    (group,) = groups_of(project)
    reader = client_with(make_key(project, scopes=[ApiKey.SCOPE_READ]))
    sender = client_with(make_key(project, scopes=[ApiKey.SCOPE_INGEST]))
    assert reader.get(GROUPS).status_code == 200
    assert sender.get(GROUPS).status_code == 403
    refused = reader.patch(f"{GROUPS}{group.pk}/", {"status": "resolved"}, format="json")
    assert refused.status_code == 403 and "'admin'" in refused.json()["detail"]
    admin = client_with(make_key(project, scopes=[ApiKey.SCOPE_READ, ApiKey.SCOPE_ADMIN]))
    url = f"{GROUPS}{group.pk}/"
    assert admin.put(url, {"status": "resolved"}, format="json").status_code == 405
    assert admin.delete(url).status_code == 405


@pytest.mark.parametrize(
    ("body", "field"),
    [({"status": "fixed"}, "status"), ({}, "status"), ({"status": "open", "title": "x"}, "title")],
)
def test_a_bad_status_change_is_a_400_naming_the_field(ingest, project, body, field):
    ingest([failed(error_message="x")])
    (group,) = groups_of(project)
    admin = client_with(make_key(project, scopes=[ApiKey.SCOPE_READ, ApiKey.SCOPE_ADMIN]))
    response = admin.patch(f"{GROUPS}{group.pk}/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()


def test_list_filters_and_sorts(ingest, project):
    api = client_with(make_key(project))
    old = (timezone.now() - timedelta(days=3)).isoformat()
    ingest([failed(service="billing", endpoint="/invoices", error_message="pdf failed", time=old)])
    ingest([failed(error_message="cart 1 locked") for _ in range(3)])
    ingest([failed(endpoint="/pay", error_message="gateway 504") for _ in range(2)])

    def listed(query=""):
        response = api.get(f"{GROUPS}{query}")
        assert response.status_code == 200, response.json()
        return [g["title"] for g in response.json()["results"]]

    assert listed("?ordering=-count") == ["cart 1 locked", "gateway 504", "pdf failed"]
    assert listed("?ordering=first_seen")[0] == "pdf failed"
    assert listed()[-1] == "pdf failed"  # default: last seen, newest first
    assert listed("?service=billing") == ["pdf failed"]
    assert listed("?endpoint=/pay") == ["gateway 504"]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert sorted(listed(f"?from={since}")) == ["cart 1 locked", "gateway 504"]
    assert listed(f"?to={since}") == ["pdf failed"]
    assert listed("?status=resolved") == []
    windowed = api.get(GROUPS, {"from": since, "ordering": "-window_count"}).json()["results"]
    assert [(g["title"], g["window_count"]) for g in windowed] == [
        ("cart 1 locked", 3), ("gateway 504", 2),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"status": "closed"}, "status"),
        ({"ordering": "title"}, "ordering"),
        ({"from": "yesterday"}, "from"),
        ({"page_size": "0"}, "page_size"),
    ],
)
def test_bad_list_parameters_are_400s_naming_them(api, query, parameter):
    response = api.get(GROUPS, query)
    assert response.status_code == 400
    assert parameter in response.json()["errors"], response.json()


def test_detail_has_timeline_endpoints_and_latest_samples(ingest, project):
    now = timezone.now()
    times = [(now - timedelta(hours=n % 3, minutes=1)).isoformat() for n in range(12)]
    batch = [failed(error_message=f"lock {n} timeout", time=t) for n, t in enumerate(times)]
    ingest(batch)
    (group,) = groups_of(project)
    detail = client_with(make_key(project)).get(f"{GROUPS}{group.pk}/").json()

    assert sum(hour["count"] for hour in detail["timeline"]) == 12 == detail["window_count"]
    assert len(detail["timeline"]) in (3, 4)  # three hours back, the hour boundary may split
    assert [s["time"] for s in detail["samples"]] == sorted(
        (s["time"] for s in detail["samples"]), reverse=True
    )
    assert len(detail["samples"]) == 10
    assert detail["endpoints"] == [
        {"endpoint": "/cart", "method": "GET", "count": 12, "last_seen": detail["last_seen"]}
    ]


def test_otlp_exception_events_and_rest_errors_group_the_same_way(live_server, project):
    key = make_key(project)
    memory = InMemorySpanExporter()
    tracer = tracer_provider(memory).get_tracer("test")
    http_500 = {"http.request.method": "POST", "http.route": "/pay",
                "http.response.status_code": 500}  # fmt: skip
    with tracer.start_as_current_span("POST /pay", kind=trace.SpanKind.SERVER,
                                      attributes=http_500) as span:  # fmt: skip
        try:
            raise LookupError("order 8c1f2b not found")
        except LookupError as exc:
            span.record_exception(exc)
    with tracer.start_as_current_span(
        "GET /stock", kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": "GET", "http.route": "/stock"},
    ) as span:  # fmt: skip
        span.set_status(trace.Status(trace.StatusCode.ERROR, "timeout after 3012 ms"))
    spans = memory.get_finished_spans()
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces", headers={"Authorization": f"Bearer {key}"}
    )
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    recorded = {a["exception.type"]: a for a in [dict(spans[0].events[0].attributes)]}

    rest = client_with(key).post("/api/v1/ingest/", [
        failed(service="shop", endpoint="/pay", method="POST",
               exception_type="LookupError", exception_message="order 77aa01 not found",
               stacktrace=recorded["LookupError"]["exception.stacktrace"]),
        failed(service="shop", endpoint="/stock", error_message="timeout after 2999 ms"),
    ], format="json")  # fmt: skip
    assert rest.status_code == 200, rest.json()
    store.fold()

    groups = groups_of(project)
    assert [(g.kind, g.count) for g in groups] == [("stack", 2), ("message", 2)]
    assert groups[0].title == "LookupError: order 8c1f2b not found"
    assert groups[1].title == "timeout after 3012 ms"


def test_a_group_another_batch_is_creating_is_found_not_duplicated(transactional_db, project):
    """Two batches bring one new failure at once: the second waits on the first's insert,
    and, once it commits, finds its group (the retry in store._find_or_create)."""
    now = timezone.now()
    row = Row(now, project.pk, "shop", "/pay", "GET", 500, 1.0, uuid.uuid4(), None, "", "",
              "", "boom", None, None, b"\x01{}")  # fmt: skip
    failure = Failure("shop", "/pay", 500, message="boom")
    found_by_second = []

    def second_batch():
        try:
            with transaction.atomic():
                found_by_second.extend(store.assign(project.pk, [(failure, row)])[0])
        except Exception as exc:
            found_by_second.append(exc)
            raise
        finally:
            connections.close_all()

    with transaction.atomic():
        (first,), _ = store.assign(project.pk, [(failure, row)])
        worker = threading.Thread(target=second_batch)
        worker.start()
        wait_for_a_lock_wait()
    worker.join(timeout=30)

    assert found_by_second == [first]
    assert ErrorGroup.objects.filter(project=project).count() == 1


def wait_for_a_lock_wait(timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # fresh within a transaction
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the second batch never waited on the first")


def test_the_cache_serves_committed_groups_only(transactional_db, project):
    api = client_with(make_key(project))
    api.post("/api/v1/ingest/", [failed(error_message="cached 1")], format="json")
    (group,) = groups_of(project)
    assert store._ids.get((project.pk, group.fingerprint)) == group.pk

    with pytest.raises(RuntimeError), transaction.atomic():
        api.post("/api/v1/ingest/", [failed(error_message="rolled back")], format="json")
        raise RuntimeError
    assert len(groups_of(project)) == 1
    api.post("/api/v1/ingest/", [failed(error_message="rolled back")], format="json")
    store.fold()
    assert [g.count for g in groups_of(project)] == [1, 1]


def test_retention_follows_the_rollups(ingest, project, settings):
    from observability import jobs
    from observability.models import ErrorGroupEndpoint, ErrorGroupHour

    settings.APM_HOURLY_RETENTION_DAYS, settings.APM_DAILY_RETENTION_DAYS = 2, 4
    now = timezone.now()
    ingest([failed(error_message="old", time=minutes_ago(60 * 24 * 3))])
    ingest([failed(error_message="recent", time=minutes_ago(10))])
    old, recent = groups_of(project)
    jobs.apply_error_group_retention(now)
    assert ErrorGroupHour.objects.filter(group=old).count() == 0  # past hourly retention
    assert ErrorGroupHour.objects.filter(group=recent).count() == 1
    assert groups_of(project) == [old, recent]

    deleted = jobs.apply_error_group_retention(now + timedelta(days=2))
    assert groups_of(project) == [recent]
    assert deleted["apm_error_group"] == 1 and deleted["apm_error_group_endpoint"] == 1
    assert not ErrorGroupEndpoint.objects.filter(group_id=old.pk).exists()


def test_window_count_sums_the_hours_in_the_window_for_every_group(ingest, project):
    """Groups seen only within the window count their lifetime count (queries.py's
    shortcut), the others sum their hours: the two agree with the hours in every case."""
    from observability.error_groups import queries

    ingest([failed(error_message="disk 1 full", time=minutes_ago(60 * 72))])
    ingest([failed(error_message=f"disk {n} full", time=minutes_ago(n)) for n in (5, 9)])
    ingest([failed(error_message=f"cache {n} cold", time=minutes_ago(30 + n)) for n in (1, 2)])
    ingest([failed(error_message="queue 3 stuck", time=minutes_ago(60 * 50))])
    now = timezone.now()
    windows = [(now - timedelta(days=1), now), (now - timedelta(days=4), now),
               (now - timedelta(days=4), now - timedelta(hours=20)), (None, now), (now, None),
               (now - timedelta(minutes=20), now + timedelta(hours=1))]  # fmt: skip
    for start, end in windows:
        counted = queries.with_window_count(queries.of_project(project.pk), start, end)
        for group in counted:
            hours = group_hours(group)
            if start is not None:
                hours = hours.filter(bucket__gte=queries.hour_of(start))
            if end is not None:
                hours = hours.filter(bucket__lt=end)
            expected = sum(hour.count for hour in hours)
            assert group.window_count == expected, (group.title, start, end)
    disk = ErrorGroup.objects.get(project=project, title="disk 1 full")
    day = queries.with_window_count(ErrorGroup.objects.filter(pk=disk.pk), now - timedelta(days=1))
    assert (disk.count, day.get().window_count) == (3, 2)
