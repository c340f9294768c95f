"""Cardinality caps: further endpoints of a service go to the overflow endpoint (the
service and environment caps are in test_ingest_trust.py), and overflows are counted."""

import pytest

from observability.ingest import cardinality
from observability.models import ApiRequest, Dimension, DimensionValue, Overflow
from observability.tests.utils import event_payload as event

pytestmark = pytest.mark.django_db


def endpoints_of(project, service):
    return DimensionValue.objects.filter(
        project=project, dimension=Dimension.ENDPOINT, scope=service
    )


def endpoint(project, service, name) -> DimensionValue:
    return DimensionValue(project=project, dimension=Dimension.ENDPOINT, scope=service, value=name)


@pytest.fixture
def cap(settings):
    settings.APM_ENDPOINT_CARDINALITY_CAP = 3
    return 3


def test_endpoints_beyond_the_cap_go_to_overflow(ingest, project, cap, client):
    batch = [event(endpoint=f"/e{n}") for n in range(5)] + [event(service="users", endpoint="/x")]

    body = ingest(batch).json()

    assert (body["accepted"], body["overflowed"]) == (6, 2)
    stored = sorted(
        ApiRequest.objects.filter(service="checkout").values_list("endpoint", flat=True)
    )
    assert stored == ["/e0", "/e1", "/e2", cardinality.OVERFLOW, cardinality.OVERFLOW]
    assert endpoints_of(project, "checkout").count() == cap
    assert ApiRequest.objects.get(service="users").endpoint == "/x"  # another service: own cap
    metrics = client.get("/metrics").content.decode()
    assert 'apm_ingest_overflow_events_total{dimension="endpoint",source="rest"}' in metrics
    (overflow,) = Overflow.objects.filter(project=project)
    assert (overflow.dimension, overflow.scope, overflow.events) == ("endpoint", "checkout", 2)


def test_admitted_endpoints_keep_their_name_after_the_cap_is_reached(ingest, cap):
    ingest([event(endpoint=f"/e{n}") for n in range(3)])

    ingest([event(endpoint="/e1"), event(endpoint="/new")])

    assert ApiRequest.objects.filter(endpoint="/e1").count() == 2
    assert ApiRequest.objects.filter(endpoint=cardinality.OVERFLOW).count() == 1


def test_another_worker_respects_what_the_database_admitted(ingest, cap):
    ingest([event(endpoint=f"/e{n}") for n in range(3)])
    cardinality.forget_cache()  # as a worker that never saw these endpoints

    ingest([event(endpoint="/e3"), event(endpoint="/e0")])

    assert ApiRequest.objects.filter(endpoint=cardinality.OVERFLOW).count() == 1
    assert ApiRequest.objects.filter(endpoint="/e0").count() == 2
    assert not DimensionValue.objects.filter(value="/e3").exists()


def test_projects_have_separate_caps(ingest, other_project, cap):
    DimensionValue.objects.bulk_create(
        [endpoint(other_project, "checkout", f"/o{n}") for n in range(3)]
    )

    body = ingest([event(endpoint="/mine")]).json()

    assert body["overflowed"] == 0


def test_admitted_endpoints_are_listed_by_the_api(ingest, api, cap, other_project):
    endpoint(other_project, "checkout", "/theirs").save()
    ingest([event(endpoint=f"/e{n}") for n in range(5)] + [event(service="users", endpoint="/u")])

    listed = api.get("/api/v1/endpoints/?service=checkout").json()["results"]

    assert [row["endpoint"] for row in listed] == ["/e0", "/e1", "/e2"]
    assert len(api.get("/api/v1/endpoints/").json()["results"]) == 4
