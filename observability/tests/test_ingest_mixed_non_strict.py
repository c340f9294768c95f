"""Non-strict ingest: valid events are stored, invalid ones are counted and described."""

import pytest

from observability.models import ApiRequest
from observability.tests.utils import event_payload as event

pytestmark = pytest.mark.django_db


def test_valid_events_are_stored_and_invalid_ones_listed(ingest):
    batch = [event(), event(status_code=99), event(), event(latency_ms=-5), event()]

    response = ingest(batch, query="?strict=false")

    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["rejected"], body["duplicates"]) == (3, 2, 0)
    assert set(body["errors"]) == {"events[1].status_code", "events[3].latency_ms"}
    stored = set(ApiRequest.objects.values_list("event_id", flat=True))
    assert {str(e) for e in stored} == {batch[i]["event_id"] for i in (0, 2, 4)}


def test_all_invalid_stores_nothing_and_still_answers_200(ingest):
    response = ingest([event(method="???")], query="?strict=false")

    assert response.status_code == 200
    assert (response.json()["accepted"], response.json()["rejected"]) == (0, 1)
    assert ApiRequest.objects.count() == 0


def test_retrying_a_partially_valid_batch_stores_nothing_twice(ingest):
    batch = [event(), event(status_code=1000), event()]

    ingest(batch, query="?strict=false")
    again = ingest(batch, query="?strict=false").json()

    assert (again["accepted"], again["duplicates"], again["rejected"]) == (2, 2, 1)
    assert ApiRequest.objects.count() == 2
