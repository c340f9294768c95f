"""The UI through Django's test client: sign-in and its throttling, who sees which
project, the admin-only settings (keys, Apdex), error groups and their status actions,
bad parameters, the demo sign-in.

The same pages in a real browser: test_ui_browser.py.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from observability import demo
from observability.models import (
    ApiKey,
    ErrorGroup,
    LoginThrottle,
    Membership,
    Role,
    ServiceSettings,
)
from observability.tests.utils import (
    client_with,
    event_payload,
    make_key,
    make_project,
    make_request,
)

PASSWORD = "correct horse battery staple"


def member(project, role=Role.VIEWER, username="alice") -> User:
    user = User.objects.create_user(username, password=PASSWORD)
    Membership.objects.create(user=user, project=project, role=role)
    return user


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_signed_out_the_root_is_the_login_page(db):
    client = Client()
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert "Sign in" in client.get("/login/").content.decode()
    # Pages ask for a sign-in and come back afterwards.
    project = make_project("acme")
    response = client.get(f"/p/{project.slug}/?range=7d")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/p/acme/%3Frange%3D7d"


def test_sign_in_with_csrf_then_sign_out(project):
    member(project)
    client = Client(enforce_csrf_checks=True)
    page = client.get("/login/")
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/login/", {"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert client.get("/").headers["Location"] == "/p/acme/"
    assert client.get("/p/acme/").status_code == 200
    # Without the CSRF token a POST is refused.
    without_token = Client(enforce_csrf_checks=True).post("/login/", {"username": "alice"})
    assert without_token.status_code == 403
    token = client.cookies["csrftoken"].value
    assert client.post("/logout/", {"csrfmiddlewaretoken": token}).status_code == 302
    assert client.get("/p/acme/").status_code == 302  # signed out
    assert client.get("/logout/").status_code == 405  # a link cannot sign anyone out


def test_failed_sign_ins_are_throttled_per_user_and_address(project, settings):
    settings.APM_LOGIN_MAX_FAILURES = 3
    member(project)
    client = Client()
    for _ in range(3):
        response = client.post("/login/", {"username": "alice", "password": "wrong"})
        assert response.status_code == 400
    # Now even the right password is refused, before it is checked.
    response = client.post("/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    # Another address is not blocked for this user name.
    other = Client(REMOTE_ADDR="10.1.2.3")
    assert other.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 302
    # After the window, the address may try again.
    LoginThrottle.objects.update(window_start=timezone.now() - timedelta(hours=1))
    assert client.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 302


def test_throttling_takes_the_client_address_behind_the_proxy(project, settings):
    settings.APM_LOGIN_MAX_FAILURES = 1
    settings.USE_X_FORWARDED_FOR = True
    member(project)
    client = Client()
    first = {"HTTP_X_FORWARDED_FOR": "203.0.113.5"}
    client.post("/login/", {"username": "alice", "password": "wrong"}, **first)
    blocked = client.post("/login/", {"username": "alice", "password": PASSWORD}, **first)
    assert blocked.status_code == 429
    second = {"HTTP_X_FORWARDED_FOR": "203.0.113.5, 198.51.100.7"}  # the proxy saw this one
    allowed = client.post("/login/", {"username": "alice", "password": PASSWORD}, **second)
    assert allowed.status_code == 302


def test_users_see_their_projects_only_and_staff_see_all(project, other_project):
    client = signed_in(member(project))
    assert client.get("/p/acme/").status_code == 200
    assert client.get("/p/globex/").status_code == 404
    assert client.get("/p/globex/requests/").status_code == 404
    assert client.get("/p/nothing/").status_code == 404  # the same answer as no access
    overview = client.get("/p/acme/").content.decode()
    assert "Globex" not in overview  # not in the project switcher

    staff = User.objects.create_user("root", password=PASSWORD, is_staff=True)
    client = signed_in(staff)
    assert client.get("/p/globex/").status_code == 200
    assert client.get("/p/globex/settings/").status_code == 200


def test_a_request_of_another_project_is_404(project, other_project):
    row = make_request(other_project)
    client = signed_in(member(project))
    assert client.get(f"/p/acme/requests/{row.event_id}/").status_code == 404
    assert client.get(f"/p/globex/requests/{row.event_id}/").status_code == 404


def test_viewers_cannot_reach_settings(project):
    client = signed_in(member(project, Role.VIEWER))
    assert "Settings" not in client.get("/p/acme/").content.decode()
    assert client.get("/p/acme/settings/").status_code == 403
    create = client.post("/p/acme/settings/keys/", {"name": "x", "scopes": ["read"]})
    assert create.status_code == 403
    assert ApiKey.objects.count() == 0


def test_admins_create_a_key_shown_once_that_works_then_revoke_it(project):
    client = signed_in(member(project, Role.ADMIN))
    response = client.post("/p/acme/settings/keys/", {"name": "ci", "scopes": ["read"]})
    assert response.status_code == 201
    plaintext = re.search(r'id="new-key">(apm_[^<]+)<', response.content.decode()).group(1)
    key = ApiKey.objects.get(name="ci")
    assert key.scopes == ["read"] and key.project == project
    # It works against the API, with its scope only.
    api = client_with(plaintext)
    assert api.get("/api/v1/requests/").status_code == 200
    assert api.post("/api/v1/ingest/", [], format="json").status_code == 403
    # Shown once: the settings page lists the key by its prefix, never the secret.
    page = client.get("/p/acme/settings/").content.decode()
    assert key.prefix in page and plaintext not in page

    response = client.post(f"/p/acme/settings/keys/{key.pk}/revoke/")
    assert response.status_code == 302
    assert api.get("/api/v1/requests/").status_code == 401


def test_key_creation_names_what_is_wrong(project):
    client = signed_in(member(project, Role.ADMIN))
    response = client.post("/p/acme/settings/keys/", {"name": "", "scopes": ["everything"]})
    assert response.status_code == 400
    text = response.content.decode()
    assert "name:" in text and "scopes:" in text
    assert ApiKey.objects.count() == 0


def test_admins_set_a_services_apdex_threshold(project):
    client = signed_in(member(project, Role.ADMIN))
    response = client.post("/p/acme/settings/apdex/", {"service": "checkout", "apdex_t_ms": "120"})
    assert response.status_code == 302
    assert ServiceSettings.objects.get(project=project, service="checkout").apdex_t_ms == 120
    client.post("/p/acme/settings/apdex/", {"service": "checkout", "apdex_t_ms": "80"})
    assert ServiceSettings.objects.get(project=project, service="checkout").apdex_t_ms == 80
    bad = client.post("/p/acme/settings/apdex/", {"service": "checkout", "apdex_t_ms": "0"})
    assert bad.status_code == 400 and "apdex_t_ms" in bad.content.decode()


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("range=2w", "range"),
        ("range=custom", "from"),
        ("range=custom&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("from=yesterday", "from"),
        ("range=30d&interval=minute", "interval"),
        ("range=1h&interval=week", "interval"),
    ],
)
def test_bad_scope_parameters_are_a_400_naming_them(project, query, parameter):
    client = signed_in(member(project))
    response = client.get(f"/p/acme/?{query}")
    assert response.status_code == 400
    assert f"<code>{parameter}</code>" in response.content.decode()


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("service/", "service"),
        ("service/?service=checkout&sort=speed", "sort"),
        ("endpoint/?service=checkout&endpoint=/cart", "method"),
        ("requests/?status_code=42", "status_code"),
        ("requests/?cursor=not-a-cursor", "cursor"),
        ("search/?q=x&mode=psychic", "mode"),
        ("charts/?part=pie&service=checkout", "part"),
        ("charts/?part=latency&service=checkout&endpoint=/cart", "method"),
        ("errors/?status=closed", "status"),
        ("errors/?sort=title", "sort"),
        ("errors/table/?sort=-count", "sort"),
    ],
)
def test_bad_page_parameters_are_a_400_naming_them(project, path, parameter):
    client = signed_in(member(project))
    response = client.get(f"/p/acme/{path}")
    assert response.status_code == 400
    assert f"<code>{parameter}</code>" in response.content.decode()


def test_a_fragment_asked_for_when_signed_out_sends_the_browser_to_the_login_page(project):
    response = Client().get(
        "/p/acme/service/endpoints/?service=checkout",
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL="http://testserver/p/acme/service/?service=checkout",
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/login/?next=/p/acme/service/%3Fservice%3Dcheckout"


def test_semantic_search_without_a_provider_says_so(project, settings):
    settings.EMBEDDING_PROVIDER = "none"
    client = signed_in(member(project))
    response = client.get("/p/acme/search/?q=timeout&mode=semantic")
    assert response.status_code == 400
    assert "needs an embedding provider" in response.content.decode()
    assert client.get("/p/acme/search/?q=timeout").status_code == 200  # keyword by default


def test_demo_login_is_saved_reused_and_signs_in(project, tmp_path):
    path = tmp_path / "demo-login"
    username, password = demo.saved_login(project, path)
    assert path.read_text() == f"{username} {password}\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert demo.saved_login(project, path) == (username, password)
    assert Membership.role_of(User.objects.get(username=username), project) == Role.ADMIN
    assert Client().post("/login/", {"username": username, "password": password}).status_code == 302
    # A stale file (the database was reset) gets a new password.
    path.write_text("demo wrong-password\n")
    assert demo.saved_login(project, path)[1] != "wrong-password"


def test_the_distribution_chart_merges_sketch_buckets_into_bands():
    from observability.analytics import sketch
    from observability.ui import charts

    buckets = [(*sketch.bucket_bounds(b), b) for b in (1, 2, 9, 10, 16, 17, 500, 1024)]
    bands = charts.distribution(buckets)
    assert sum(bands["count"]) == sum(b for *_, b in buckets)
    # 8 sketch buckets a band: {1, 2}, {9, 10, 16}, {17}, {500}, {1024}.
    assert bands["count"] == [3, 35, 17, 500, 1024]
    assert bands["x"] == sorted(bands["x"])
    assert all(low < high for low, high in zip(bands["low"], bands["x"], strict=True))


def failures(ingest, project, *messages, **fields) -> list[ErrorGroup]:
    """Ingest one failed request per message; the project's groups, oldest first."""
    response = ingest([event_payload(status_code=500, error_message=m, **fields) for m in messages])
    assert response.status_code == 200, response.json()
    return list(ErrorGroup.objects.filter(project=project).order_by("id"))


def test_the_errors_page_lists_groups_with_the_apis_numbers(ingest, project):
    failures(ingest, project, "cart 1 locked", "cart 2 locked", "cart 3 locked")
    failures(ingest, project, "gateway 504", endpoint="/pay", exception_type="GatewayError")
    client = signed_in(member(project))
    page = client.get("/p/acme/errors/?range=24h&sort=count")
    assert page.status_code == 200
    text = page.content.decode()
    # The real messages (the first ingested), not the normalised text.
    assert "cart 1 locked" in text and "&lt;id&gt;" not in text and "<id>" not in text
    rows = re.findall(r'data-group="(\d+)" data-window-count="(\d+)"', text)
    start, end = re.search(r'data-window-start="([^"]+)" data-window-end="([^"]+)"', text).groups()
    listed = client_with(make_key(project)).get(
        "/api/v1/error-groups/", {"from": start, "to": end, "ordering": "-window_count"}
    )
    assert rows == [(str(g["id"]), str(g["window_count"])) for g in listed.json()["results"]]
    assert [count for _, count in rows] == ["3", "1"]
    assert "GatewayError" in text
    # The table fragment, filtered by status and service.
    fragment = client.get("/p/acme/errors/table/?range=24h&status=resolved").content.decode()
    assert 'id="error-groups"' in fragment and "No error groups match" in fragment
    assert "<html" not in fragment
    assert "cart 1 locked" not in client.get("/p/acme/errors/?service=billing").content.decode()


def test_errors_empty_states_say_so(project):
    client = signed_in(member(project))
    assert "No errors in this range" in client.get("/p/acme/errors/").content.decode()


def test_a_group_page_shows_its_timeline_endpoints_and_samples(ingest, project):
    (group,) = failures(ingest, project, "order 8c1f2b not found", "order 77aa01 not found")
    response = signed_in(member(project)).get(f"/p/acme/errors/{group.pk}/?range=7d")
    assert response.status_code == 200
    text = response.content.decode()
    assert "order 8c1f2b not found" in text and group.fingerprint in text
    assert 'data-window-count="2"' in text
    assert text.count("/p/acme/requests/") >= 2  # samples link to the request page
    assert 'data-chart="occurrences"' in text
    # No actions for a viewer.
    assert "Resolve" not in text


def test_viewers_cannot_change_a_groups_status_and_admins_can(ingest, project):
    (group,) = failures(ingest, project, "boom 1")
    viewer = signed_in(member(project, Role.VIEWER))
    refused = viewer.post(f"/p/acme/errors/{group.pk}/status/", {"status": "resolved"})
    assert refused.status_code == 403
    group.refresh_from_db()
    assert group.status == "open"

    admin = Client(enforce_csrf_checks=True)
    admin.force_login(member(project, Role.ADMIN, username="ada"))
    page = admin.get(f"/p/acme/errors/{group.pk}/?range=7d").content.decode()
    assert 'value="resolved"' in page and 'value="ignored"' in page
    url = f"/p/acme/errors/{group.pk}/status/?range=7d"
    assert admin.post(url, {"status": "resolved"}).status_code == 403  # without CSRF
    token = admin.cookies["csrftoken"].value
    response = admin.post(url, {"status": "resolved", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert response["Location"] == f"/p/acme/errors/{group.pk}/?range=7d"
    group.refresh_from_db()
    assert group.status == "resolved" and group.resolved_at is not None
    page = admin.get(response["Location"]).content.decode()
    assert "Error group resolved." in page and 'value="open"' in page  # Reopen

    bad = admin.post(url, {"status": "fixed", "csrfmiddlewaretoken": token})
    assert bad.status_code == 400 and "<code>status</code>" in bad.content.decode()
    assert admin.get(url).status_code == 405


def test_another_projects_group_is_404(ingest, project, other_project):
    other_api = client_with(make_key(other_project))
    other_api.post("/api/v1/ingest/", [event_payload(status_code=500)], format="json")
    theirs = ErrorGroup.objects.get(project=other_project)
    client = signed_in(member(project, Role.ADMIN))
    assert client.get(f"/p/acme/errors/{theirs.pk}/").status_code == 404
    response = client.post(f"/p/acme/errors/{theirs.pk}/status/", {"status": "resolved"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "open"
    assert client.get("/p/acme/errors/999999/").status_code == 404


def test_a_group_timeline_longer_than_the_apis_is_a_400(ingest, project):
    (group,) = failures(ingest, project, "boom")
    client = signed_in(member(project))
    response = client.get(
        f"/p/acme/errors/{group.pk}/?range=custom&from=2026-01-01T00:00Z&to=2026-03-01T00:00Z"
    )
    assert response.status_code == 400
    assert "<code>from</code>" in response.content.decode()


@pytest.mark.parametrize("path, tab", [
    ("", "Overview"), ("service/?service=checkout", "Overview"), ("requests/", "Requests"),
    ("errors/", "Errors"), ("search/", "Search"), ("settings/", "Settings"),
])  # fmt: skip
def test_the_nav_marks_the_current_pages_tab(project, path, tab):
    client = signed_in(member(project, Role.ADMIN))
    page = client.get(f"/p/{project.slug}/{path}").content.decode()
    current = re.findall(r'<a href="[^"]*" aria-current="page">([^<]+)</a>', page)
    assert current == [tab]
