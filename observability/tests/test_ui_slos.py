"""The UI's SLO pages through Django's test client: the list with the last evaluation and
alert states, one SLO's status, and project access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from observability.alerting import slos, state
from observability.alerting.models import Slo
from observability.models import Membership, Role
from observability.tests.utils import make_project, make_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(project):
    user = User.objects.create_user("vera", password="x")
    Membership.objects.create(user=user, project=project, role=Role.VIEWER)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def slo(project):
    return Slo.objects.create(project=project, name="pay up", service="checkout",
                              objective="availability", target=99, window_days=7)  # fmt: skip


def test_the_list_shows_the_last_evaluation_and_alert_states(viewer, project, slo):
    now = datetime.now(UTC)
    for n in range(10):
        make_request(project, time=now - timedelta(minutes=3), status_code=500 if n < 2 else 200)
    slos.run_alerts(project.pk, now)
    page = viewer.get(f"/p/{project.slug}/slos/").content.decode()
    assert "pay up" in page and "80.000%" in page  # 8 good of 10
    assert 'class="alert-state firing">firing' in page  # 20 % bad: 20x burns everywhere
    assert f'href="/p/{project.slug}/slos/"' in page and 'aria-current="page">SLOs' in page


def test_the_detail_shows_the_status_now(viewer, project, slo):
    make_request(project, status_code=200)
    state.record(project.pk, "slo_ticket", str(slo.pk), True, datetime.now(UTC))
    response = viewer.get(f"/p/{project.slug}/slos/{slo.pk}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "100.000%" in page and "14.4x over 1h and 5m" in page and "<polyline" in page
    assert 'class="alert-state firing">firing' in page  # the ticket


def test_another_projects_slo_is_404(viewer, project):
    theirs = Slo.objects.create(project=make_project("globex"), name="x", service="s",
                                objective="availability", target=99)  # fmt: skip
    assert viewer.get(f"/p/{project.slug}/slos/{theirs.pk}/").status_code == 404
    assert viewer.get("/p/globex/slos/").status_code == 404


def test_no_slos_says_how_to_make_one(viewer, project):
    assert "POST /api/v1/slos/" in viewer.get(f"/p/{project.slug}/slos/").content.decode()
