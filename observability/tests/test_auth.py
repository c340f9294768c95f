"""API keys: authentication, scopes, revocation, last use."""

from datetime import timedelta

import pytest
from django.utils import timezone

from observability.models import KEY_FIELDS, PROJECT_FIELDS, ApiKey, Project
from observability.tests.utils import client_with, event_payload, make_key, make_request

pytestmark = pytest.mark.django_db
URL = "/api/v1/requests/"


def test_missing_key_is_401_with_a_challenge():
    response = client_with(None).get(URL)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "bad", ["apm_nope", "apm_0123456789ab_wrongsecret", "Basic abc", "x" * 300]
)
def test_wrong_key_is_401(project, bad):
    make_key(project)

    response = client_with(bad).get(URL)

    assert response.status_code == 401


def test_tampered_secret_with_a_real_prefix_is_401(key):
    assert client_with(key[:-1] + ("A" if key[-1] != "A" else "B")).get(URL).status_code == 401


def test_x_api_key_header_works(api, key, project):
    make_request(project)
    response = client_with(None).get(URL, HTTP_X_API_KEY=key)

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1


def test_the_key_lookup_loads_every_field_of_the_key_and_its_project(project):
    """The lookup is SQL by hand (observability.models.ACTIVE_KEY_BY_PREFIX): a field
    added to either model must be added to it, or each request would load it again."""
    assert KEY_FIELDS == tuple(field.attname for field in ApiKey._meta.concrete_fields)
    assert PROJECT_FIELDS == tuple(field.attname for field in Project._meta.concrete_fields)
    plaintext = make_key(project, scopes=["read"])
    stored = ApiKey.objects.select_related("project").get(prefix=ApiKey.prefix_of(plaintext))

    found = ApiKey.objects.authenticate(plaintext)

    assert not found.get_deferred_fields() and not found.project.get_deferred_fields()
    assert [getattr(found, name) for name in KEY_FIELDS] == [
        getattr(stored, name) for name in KEY_FIELDS
    ]
    assert found.scopes == ["read"] and found.project == project
    assert found.project.slug == project.slug and not found._state.adding


def test_revoked_key_is_401(project):
    key_value = make_key(project)
    ApiKey.objects.get(prefix=ApiKey.prefix_of(key_value)).revoke()

    assert client_with(key_value).get(URL).status_code == 401


def test_read_only_key_cannot_write(project):
    reader = client_with(make_key(project, scopes=["read"]))

    response = reader.post(URL, event_payload(), format="json")

    assert response.status_code == 403
    assert "ingest" in response.json()["detail"]
    assert reader.get(URL).status_code == 200


def test_ingest_only_key_cannot_read(project):
    writer = client_with(make_key(project, scopes=["ingest"]))

    assert writer.post(URL, event_payload(), format="json").status_code == 201
    response = writer.get(URL)
    assert response.status_code == 403
    assert "read" in response.json()["detail"]


def test_only_the_hash_is_stored(project):
    key_obj, plaintext = ApiKey.objects.issue(project, "ci", ["read"])

    key_obj.refresh_from_db()
    assert plaintext not in (key_obj.key_hash, key_obj.prefix)
    assert key_obj.key_hash == ApiKey.hash(plaintext)
    assert plaintext.startswith(f"apm_{key_obj.prefix}_")


def test_last_use_is_recorded_at_most_once_per_interval(api, key, settings):
    settings.APM_API_KEY_TOUCH_INTERVAL_S = 60
    key_obj = ApiKey.objects.get(prefix=ApiKey.prefix_of(key))
    assert key_obj.last_used_at is None

    api.get(URL)
    key_obj.refresh_from_db()
    first_use = key_obj.last_used_at
    assert first_use is not None

    api.get(URL)
    key_obj.refresh_from_db()
    assert key_obj.last_used_at == first_use  # within the interval: no new write

    ApiKey.objects.filter(pk=key_obj.pk).update(last_used_at=timezone.now() - timedelta(minutes=5))
    api.get(URL)
    key_obj.refresh_from_db()
    assert key_obj.last_used_at > first_use


def test_authenticated_list_costs_a_fixed_number_of_queries(
    api, project, django_assert_num_queries
):
    for _ in range(5):
        make_request(project)
    api.get(URL)  # first use writes last_used_at; measure the steady state

    # key lookup (with its project), the read rate bucket (one statement), the page of rows
    with django_assert_num_queries(3):
        assert api.get(URL).status_code == 200
