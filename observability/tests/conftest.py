import pytest

from observability.tests.utils import client_with, make_key, make_project


@pytest.fixture
def project(db):
    return make_project("acme")


@pytest.fixture
def other_project(db):
    return make_project("globex")


@pytest.fixture
def key(project):
    return make_key(project)


@pytest.fixture
def api(key):
    """An API client authenticated with a read+ingest key of `project`."""
    return client_with(key)


@pytest.fixture(autouse=True)
def fresh_ingest_caches():
    """Each test's transaction is rolled back; the per-process caches of ingest (admitted
    endpoints, Apdex thresholds, error groups) must not remember a previous test's data."""
    from observability.error_groups import store as error_groups
    from observability.ingest import cardinality, thresholds

    caches = (cardinality, thresholds, error_groups)
    for cache in caches:
        cache.forget_cache()
    yield
    for cache in caches:
        cache.forget_cache()


@pytest.fixture
def ingest(api):
    """POST a batch to /api/v1/ingest/ and return the response, then fold the error
    groups' counts as the `error_group_counts` job would."""
    from observability.error_groups import store as error_groups

    def post(events, *, query: str = "", **extra):
        response = api.post(f"/api/v1/ingest/{query}", events, format="json", **extra)
        # What run_jobs does within seconds: the error groups' counts include the batch.
        error_groups.fold()
        return response

    return post


@pytest.fixture
def isolated_project(transactional_db):
    """A project of its own, for tests that commit: rollups and the refresh state outlive
    the truncation between transactional tests, so each such test reads its own project."""
    import uuid

    return make_project(f"p-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def isolated_api(isolated_project):
    return client_with(make_key(isolated_project))
