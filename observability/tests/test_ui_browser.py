"""The UI in a real browser: Debian's Chromium driven by Playwright, against the live
test server on seeded data.

Sign in, open every page (a screenshot of each under .data/ui-screenshots/), numbers
shown equal the API's for the same window (error groups too), charts draw their series
on the canvas, an admin resolves an error group,
range, environment, sort, zoom and filters change the URL and the data, the keyboard
reaches every control, a viewer cannot reach settings, another project is 404.
Chromium comes from `scripts/dev/install-debian-packages.sh chromium` (Playwright's own
browser downloads are not used).
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from apm_platform.processes import BASE_DIR
from observability import jobs
from observability.models import ApiRequest, ErrorGroup, Membership, Project, Role
from observability.tests.utils import make_key, make_project, make_request

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


# Debian's chromium package; GitHub's Ubuntu runners have Google Chrome instead (their
# chromium is a snap).
BROWSERS = (Path("/usr/bin/chromium"), Path("/usr/bin/google-chrome"))
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]  # fmt: skip
SCREENSHOTS = BASE_DIR / ".data" / "ui-screenshots"
PASSWORD = "a long enough test password"
ACCENT = (0x24, 0x59, 0xD6)  # app.css --accent, the p95 line
BAD = (0xC4, 0x32, 0x1F)  # app.css --bad, the occurrences bars


@pytest.fixture(scope="module", autouse=True)
def _orm_beside_playwright():
    """Playwright's synchronous API runs an event loop in this thread; Django refuses ORM
    calls from a thread with a running loop unless told that this use is safe (it is: the
    test code and Playwright never run at the same time). Only for this module: set at
    import, the variable reached every later test's subprocesses (the deploy check
    refuses it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(scope="module")
def browser():
    executable = next((path for path in BROWSERS if path.exists()), None)
    if executable is None:
        pytest.fail("Chromium is missing: scripts/dev/install-debian-packages.sh chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=LAUNCH_ARGS)
        yield browser
        browser.close()


class Seeded:
    """A project with three days of traffic, its admin and viewer, another project."""

    def __init__(self):
        # Rollups outlive the truncation between transactional tests: a project of its own.
        self.slug = f"ui-{uuid.uuid4().hex[:8]}"
        call_command("seed_apirequests", count=4000, days=3, project=self.slug, seed=11,
                     services=["checkout", "payments", "search"])  # fmt: skip
        jobs.refresh("hour")
        jobs.refresh("day")
        call_command("embed_apirequests")  # documents for keyword search
        Project.objects.filter(slug=self.slug).update(name="Shop")  # a legible switcher
        self.project = Project.objects.get(slug=self.slug)
        self.other = make_project(f"other-{uuid.uuid4().hex[:8]}")
        self.other_request = make_request(self.other)
        for username, role in (("ada", Role.ADMIN), ("vic", Role.VIEWER)):
            user = User.objects.create_user(username, password=PASSWORD)
            Membership.objects.create(user=user, project=self.project, role=role)
        self.key = make_key(self.project)
        # A fixed window, given to the UI and to the API alike.
        end = timezone.now().replace(second=0, microsecond=0)
        self.window = {"from": (end - timedelta(days=2)).isoformat(), "to": end.isoformat()}

    def busiest_group(self) -> ErrorGroup:
        return ErrorGroup.objects.filter(project=self.project).order_by("-count", "id").first()

    def failed_request_id(self) -> uuid.UUID:
        rows = ApiRequest.objects.filter(project=self.project, status_code__gte=500)
        return rows.order_by("-time").first().event_id


@pytest.fixture
def seeded(transactional_db) -> Seeded:
    return Seeded()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    # Pages answered 4xx on purpose are checked by the tests; a script, style sheet or
    # fragment that fails is a problem.
    page.on("console", lambda m: problems.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)  # fmt: skip
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400
            and r.request.resource_type != "document" else None)  # fmt: skip
    yield page
    context.close()
    assert problems == [], "the browser reported errors"


@pytest.fixture
def api(live_server, seeded):
    with httpx.Client(base_url=live_server.url,
                      headers={"Authorization": f"Bearer {seeded.key}"}) as client:  # fmt: skip

        def get(path: str, **params) -> dict:
            response = client.get(path, params=params)
            assert response.status_code == 200, response.text
            return response.json()

        yield get


def sign_in(page: Page, username: str) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/$"))
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/p/[\w-]+/$"))


def open_page(page: Page, path: str, screenshot: str | None = None) -> None:
    response = page.goto(path)
    assert response.status == 200, f"{path}: {response.status}"
    page.wait_for_load_state("networkidle")
    if screenshot:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"{screenshot}.png", full_page=True)


def query_of(page: Page) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def shown(page: Page, kpi: str) -> float | None:
    """A KPI card's value as the page holds it (data-value: the number it formats)."""
    raw = page.locator(f".cards [data-kpi={kpi}]").get_attribute("data-value")
    return None if raw == "None" else float(raw)


def assert_cards_equal(page: Page, kpis: dict) -> None:
    expected = {"hits": kpis["hits"], "errors": kpis["errors"], "error_rate": kpis["error_rate"],
                "rps": kpis["rps"], "apdex": kpis["apdex"],
                **{q: kpis["latency_ms"][q] for q in ("p50", "p95", "p99")}}  # fmt: skip
    for name, value in expected.items():
        assert math.isclose(shown(page, name), value, rel_tol=1e-9), name


def test_every_page_opens_after_sign_in(page, seeded):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto("/")
    page.screenshot(path=SCREENSHOTS / "login.png")
    sign_in(page, "ada")
    base = f"/p/{seeded.slug}"
    window = urlencode({"range": "custom", **seeded.window})
    event_id = seeded.failed_request_id()
    pages = {
        "overview": f"{base}/?range=24h",
        "service": f"{base}/service/?service=checkout&{window}",
        "endpoint": f"{base}/endpoint/?service=checkout&endpoint=/checkout&method=POST&{window}",
        "requests": f"{base}/requests/?{window}",
        "request": f"{base}/requests/{event_id}/?range=7d",
        "search": f"{base}/search/?q=gateway+timeout&range=7d",
        "settings": f"{base}/settings/",
        "errors": f"{base}/errors/?{window}",
        "error-group": f"{base}/errors/{seeded.busiest_group().pk}/?{window}",
        "empty-range": f"{base}/service/?service=checkout&range=custom"
        "&from=2020-01-01T00:00Z&to=2020-01-02T00:00Z",
    }
    for name, path in pages.items():
        open_page(page, path, screenshot=name)
    expect(page.get_by_text("No requests in this range")).to_be_visible()


def test_numbers_shown_equal_the_apis_for_the_same_window(page, seeded, api):
    sign_in(page, "vic")
    window = {"range": "custom", **seeded.window}
    open_page(page, f"/p/{seeded.slug}/?{urlencode(window)}")
    assert_cards_equal(page, api("/api/v1/kpis/", **seeded.window))
    services = api("/api/v1/services/", **seeded.window)["results"]
    rows = page.locator("#services tbody tr")
    assert rows.count() == len(services)
    assert [rows.nth(n).get_attribute("data-service") for n in range(rows.count())] == [
        s["service"] for s in services
    ]

    open_page(page, f"/p/{seeded.slug}/service/?{urlencode({**window, 'service': 'payments'})}")
    assert_cards_equal(page, api("/api/v1/kpis/", service="payments", **seeded.window))
    top = api("/api/v1/top-endpoints/", service="payments", by="hits", limit=100, **seeded.window)
    shown_endpoints = page.locator("#endpoints tbody th").all_inner_texts()
    assert shown_endpoints == [f"{r['method']} {r['endpoint']}" for r in top["results"]]

    endpoint = {"service": "payments", "endpoint": "/payments", "method": "POST"}
    open_page(page, f"/p/{seeded.slug}/endpoint/?{urlencode({**window, **endpoint})}")
    assert_cards_equal(page, api("/api/v1/kpis/", **endpoint, **seeded.window))


def pixels_of(page: Page, chart: str, colour: tuple[int, int, int]) -> int:
    """How many pixels of a chart's canvas are (nearly) of this colour."""
    return page.evaluate(
        """([chart, [r, g, b]]) => {
            const canvas = document.querySelector(`[data-chart=${chart}] canvas`);
            const ctx = canvas.getContext('2d');
            const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
            const near = (i, c) => Math.abs(data[i] - c) < 8;
            let n = 0;
            for (let i = 0; i < data.length; i += 4)
                if (near(i, r) && near(i + 1, g) && near(i + 2, b)) n++;
            return n;
        }""",
        [chart, list(colour)],
    )


def test_charts_draw_their_series(page, seeded, api):
    sign_in(page, "vic")
    window = {"range": "custom", **seeded.window}
    open_page(page, f"/p/{seeded.slug}/service/?{urlencode({**window, 'service': 'checkout'})}")
    series = api("/api/v1/kpis/timeseries/", service="checkout", interval="hour", **seeded.window)
    drawn = page.evaluate("window.apmCharts")
    assert drawn["latency"] == {**drawn["latency"], "points": len(series["results"]), "series": 3}
    for chart in ("traffic", "errors", "apdex", "distribution"):
        assert drawn[chart]["points"] > 0, chart
    # The p95 line is on the canvas: pixels of its colour.
    assert pixels_of(page, "latency", ACCENT) > 200
    # Hovering shows the exact values of a bucket in the legend.
    over = page.locator("[data-chart=latency] .u-over").bounding_box()
    page.mouse.move(over["x"] + over["width"] * 0.5, over["y"] + over["height"] * 0.5)
    legend = page.locator("[data-chart=latency] .u-legend").inner_text()
    assert re.search(r"p95\s*[\d.]+ (ms|s)", legend), legend


def test_range_environment_sort_and_zoom_change_the_url_and_the_data(page, seeded, api):
    sign_in(page, "vic")
    open_page(page, f"/p/{seeded.slug}/service/?service=checkout")
    day_hits = shown(page, "hits")
    page.get_by_role("link", name="7d", exact=True).click()
    expect(page).to_have_url(re.compile(r"range=7d"))
    assert query_of(page)["service"] == "checkout"
    assert shown(page, "hits") > day_hits

    page.get_by_label("Environment").select_option("staging")
    expect(page).to_have_url(re.compile(r"environment=staging"))
    assert query_of(page)["range"] == "7d"
    assert 0 < shown(page, "hits") < day_hits * 3

    # Sorting the endpoints table: a partial update (htmx), the URL keeps it.
    page.locator("#endpoints thead a", has_text="p95").click()
    expect(page).to_have_url(re.compile(r"sort=p95"))
    expect(page.locator("#endpoints th[aria-sort]")).to_contain_text("p95")
    start = page.locator(".scope").get_attribute("data-window-start")
    end = page.locator(".scope").get_attribute("data-window-end")
    ranked = api("/api/v1/top-endpoints/", service="checkout", environment="staging",
                 by="p95", **{"from": start, "to": end})["results"]  # fmt: skip
    first = page.locator("#endpoints tbody th").first.inner_text()
    assert first == f"{ranked[0]['method']} {ranked[0]['endpoint']}"

    # Zoom: drag across the latency chart narrows the range to the selection.
    over = page.locator("[data-chart=latency] .u-over").bounding_box()
    y = over["y"] + over["height"] / 2
    page.mouse.move(over["x"] + over["width"] * 0.4, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.7, y, steps=5)
    page.mouse.up()
    expect(page).to_have_url(re.compile(r"range=custom"))
    query = query_of(page)
    zoomed = (timezone.datetime.fromisoformat(query["to"].replace("Z", "+00:00"))
              - timezone.datetime.fromisoformat(query["from"].replace("Z", "+00:00")))  # fmt: skip
    assert timedelta(days=1) < zoomed < timedelta(days=3)
    assert query["service"] == "checkout" and query["environment"] == "staging"
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.apmCharts.latency.points") < 7 * 24


def test_request_explorer_filters_pages_and_details(page, seeded):
    sign_in(page, "vic")
    window = urlencode({"range": "custom", **seeded.window})
    open_page(page, f"/p/{seeded.slug}/requests/?{window}")
    page.get_by_label("Class").select_option("5xx")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status_class=5xx"))
    statuses = page.locator("#request-rows .status").all_inner_texts()
    assert statuses and all(status.startswith("5") for status in statuses)

    open_page(page, f"/p/{seeded.slug}/requests/?{window}")
    first_page = page.locator("#request-rows a.mono").all_inner_texts()
    assert len(first_page) == 50
    page.get_by_role("link", name="Older requests →").click()
    expect(page).to_have_url(re.compile(r"cursor="))
    expect(page.locator("#request-rows a.mono").first).not_to_have_text(first_page[0])
    second_page = page.locator("#request-rows a.mono").all_inner_texts()
    assert len(second_page) == 50 and not set(second_page) & set(first_page)

    page.locator("#request-rows a.mono").first.click()
    expect(page.locator("h1.mono")).to_have_text(re.compile(r"^[0-9a-f-]{36}$"))
    expect(page.get_by_text("Trace id")).to_be_visible()
    expect(page.locator("#similar")).to_contain_text("needs an embedding provider")


def test_keyword_search_finds_requests_and_semantic_says_what_it_needs(page, seeded):
    sign_in(page, "vic")
    open_page(page, f"/p/{seeded.slug}/search/?range=7d")
    page.get_by_label("Search requests").fill("gateway timeout")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"q=gateway\+timeout"))
    statuses = page.locator("table.data .status").all_inner_texts()
    assert statuses and set(statuses) <= {"502", "504"}  # "Bad Gateway", "Gateway Timeout"
    page.get_by_label("semantic").check()
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("needs an embedding provider")


def tab_through(page: Page) -> None:
    """Tab from the top of the page; every visible control must get the focus (a group
    of radio buttons is one stop: arrow keys move within it)."""
    controls = page.evaluate("""() => {
        const all = document.querySelectorAll('a[href], button, select, summary, '
            + 'input:not([type=hidden]), [tabindex]:not([tabindex="-1"])');
        const groups = {};
        let n = 0;
        for (const el of all) {
            if (!el.checkVisibility()) continue;
            if (el.type === "radio") {
                if (!(el.name in groups)) groups[el.name] = String(n++);
                el.dataset.kb = groups[el.name];
            } else {
                el.dataset.kb = String(n++);
            }
        }
        return n;
    }""")
    assert controls > 10
    reached = set()
    for _ in range(controls + 10):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.dataset.kb"))
    assert {str(n) for n in range(controls)} <= reached, page.url


KEYBOARD_PAGES = ["/", "/service/?service=checkout&range=7d", "/requests/?range=7d",
                  "/search/?q=timeout&range=7d", "/settings/", "/errors/?range=7d"]  # fmt: skip


@pytest.mark.parametrize("path", KEYBOARD_PAGES)
def test_keyboard_reaches_every_control(page, seeded, path):
    sign_in(page, "ada")
    open_page(page, f"/p/{seeded.slug}{path}")
    tab_through(page)
    # The custom range opens from the keyboard and its fields are reachable.
    page.locator(".custom summary").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "from"


def test_a_viewer_cannot_reach_settings_and_other_projects_are_404(page, seeded):
    sign_in(page, "vic")
    expect(page.get_by_role("navigation", name="Project pages")).not_to_contain_text("Settings")
    assert page.goto(f"/p/{seeded.slug}/settings/").status == 403
    assert page.goto(f"/p/{seeded.other.slug}/").status == 404
    other_request = f"/p/{seeded.other.slug}/requests/{seeded.other_request.event_id}/"
    assert page.goto(other_request).status == 404
    open_page(page, f"/p/{seeded.slug}/")
    options = page.get_by_label("Project").locator("option").all_inner_texts()
    assert options == [seeded.project.name]


def test_an_admin_creates_a_key_shown_once(page, seeded, api):
    sign_in(page, "ada")
    open_page(page, f"/p/{seeded.slug}/settings/")
    form = page.get_by_role("form", name="Create an API key")
    form.get_by_label("Name").fill("browser")
    form.get_by_label("ingest").check()
    form.get_by_role("button", name="Create key").click()
    plaintext = page.locator("#new-key").inner_text()
    assert plaintext.startswith("apm_")
    page.screenshot(path=SCREENSHOTS / "settings-new-key.png", full_page=True)
    response = httpx.get(f"{page.url.split('/p/')[0]}/api/v1/kpis/",
                         headers={"Authorization": f"Bearer {plaintext}"})  # fmt: skip
    assert response.status_code == 200
    open_page(page, f"/p/{seeded.slug}/settings/")
    assert plaintext not in page.content()


def test_error_groups_show_the_apis_numbers_and_their_timeline(page, seeded, api):
    sign_in(page, "vic")
    window = {"range": "custom", **seeded.window}
    open_page(page, f"/p/{seeded.slug}/?{urlencode(window)}")
    page.get_by_role("navigation", name="Project pages").get_by_role("link", name="Errors").click()
    expect(page).to_have_url(re.compile(r"/errors/\?"))
    assert query_of(page)["from"] == seeded.window["from"]  # the scope carries on

    # Sorting by the count in range: the table is replaced (htmx), the URL keeps it.
    page.locator("#error-groups thead a", has_text="In range").click()
    expect(page).to_have_url(re.compile(r"sort=count"))
    expect(page.locator("#error-groups th[aria-sort]")).to_contain_text("In range")
    listed = api("/api/v1/error-groups/", ordering="-window_count", **seeded.window)["results"]
    assert listed, "the seeded data has failures"
    rows = page.locator("#error-groups tbody tr").all()
    shown_rows = [
        (int(row.get_attribute("data-group")), int(row.get_attribute("data-window-count")),
         row.locator("th").inner_text()) for row in rows
    ]  # fmt: skip
    assert shown_rows == [(g["id"], g["window_count"], g["title"]) for g in listed]
    assert "<id>" not in " ".join(title for *_, title in shown_rows)  # real messages

    # Filtering by status: none is resolved yet.
    page.get_by_label("Status").select_option("resolved")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No error groups match these filters")).to_be_visible()

    # The busiest group's page: its count in range and its timeline are the API's.
    group = listed[0]
    open_page(page, f"/p/{seeded.slug}/errors/{group['id']}/?{urlencode(window)}")
    detail = api(f"/api/v1/error-groups/{group['id']}/", **seeded.window)
    count = page.locator("[data-window-count]").get_attribute("data-window-count")
    assert int(count) == detail["window_count"] == group["window_count"]
    drawn = page.evaluate("window.apmCharts.occurrences")
    start, end = (datetime.fromisoformat(seeded.window[k]) for k in ("from", "to"))
    hours = math.ceil((end - start.replace(minute=0)).total_seconds() / 3600)
    assert drawn["series"] == 1 and drawn["points"] == hours  # every hour, 0 without any
    assert pixels_of(page, "occurrences", BAD) > 50
    samples = page.locator("#group-samples tbody tr a.mono")
    assert samples.count() == len(detail["samples"]) > 0
    shown_endpoints = page.locator("#group-endpoints tbody a").all_inner_texts()
    assert shown_endpoints == [f"{e['method']} {e['endpoint']}" for e in detail["endpoints"]]
    expect(page.get_by_role("button", name="Resolve")).to_have_count(0)  # a viewer
    samples.first.click()
    expect(page.locator("h1.mono")).to_have_text(detail["samples"][0]["event_id"])


def test_an_admin_resolves_a_group_from_the_keyboard(page, seeded, api):
    group = seeded.busiest_group()
    sign_in(page, "ada")
    open_page(page, f"/p/{seeded.slug}/errors/{group.pk}/?range=7d")
    expect(page.locator("#group-status")).to_have_text("open")
    tab_through(page)  # the status actions among them
    page.get_by_role("button", name="Resolve").focus()
    page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")
    expect(page.locator("#group-status")).to_have_text("resolved")
    expect(page.get_by_role("status")).to_contain_text("Error group resolved.")
    assert query_of(page)["range"] == "7d"
    assert api(f"/api/v1/error-groups/{group.pk}/")["status"] == "resolved"
    page.screenshot(path=SCREENSHOTS / "error-group-resolved.png", full_page=True)
    page.get_by_role("button", name="Reopen").click()
    expect(page.locator("#group-status")).to_have_text("open")
    assert api(f"/api/v1/error-groups/{group.pk}/")["status"] == "open"


def test_the_slo_pages_show_the_budget_and_the_burn_rates(page, seeded):
    from observability.alerting.models import Slo

    slo = Slo.objects.create(project=seeded.project, name="checkout available",
                             service="checkout", objective="availability", target=99,
                             window_days=7)  # fmt: skip
    jobs.evaluate_alerts()
    sign_in(page, "vic")
    open_page(page, f"/p/{seeded.slug}/slos/", screenshot="slos")
    expect(page.get_by_role("link", name="checkout available")).to_be_visible()
    open_page(page, f"/p/{seeded.slug}/slos/{slo.pk}/", screenshot="slo")
    expect(page.locator("#rules tbody tr")).to_have_count(4)  # the workbook's four rules
    points = page.locator("svg.burn-down polyline").get_attribute("points")
    assert len(points.split()) > 24  # an hour per point over the seeded days
