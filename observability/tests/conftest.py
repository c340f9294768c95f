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
