"""The admin issues keys (showing the secret once) and revokes them."""

import re

import pytest
from django.contrib.auth.models import User

from observability.models import ApiKey, Project

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests")
    client.login(username="admin", password="pw-for-tests")
    return client


def test_adding_a_key_shows_its_secret_once(staff_client, project):
    response = staff_client.post(
        "/admin/observability/apikey/add/",
        {"project": project.pk, "name": "from-admin", "scopes": ["read"]},
        follow=True,
    )

    text = response.content.decode()
    shown = re.search(r"(apm_[0-9a-f]{12}_[A-Za-z0-9_-]+)", text).group(1)
    key = ApiKey.objects.authenticate(shown)
    assert key is not None and key.name == "from-admin" and key.scopes == ["read"]
    # The key page afterwards shows the prefix, never the secret again.
    page = staff_client.get(f"/admin/observability/apikey/{key.pk}/change/").content.decode()
    assert shown not in page
    assert key.prefix in page


def test_revoke_action(staff_client, project):
    key, plaintext = ApiKey.objects.issue(project, "old", ["read"])

    staff_client.post(
        "/admin/observability/apikey/",
        {"action": "revoke", "_selected_action": [key.pk]},
        follow=True,
    )

    assert ApiKey.objects.authenticate(plaintext) is None


def test_projects_cannot_be_deleted_from_the_admin(staff_client, project):
    response = staff_client.post(
        f"/admin/observability/project/{project.pk}/delete/", {"post": "yes"}
    )

    assert response.status_code == 403
    assert Project.objects.filter(pk=project.pk).exists()
