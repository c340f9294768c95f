"""create_api_key and seed_apirequests."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Max, Min

from observability.models import ApiKey, ApiRequest, Project
from observability.seeding import CATALOGUE

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_api_key_prints_only_a_working_key_and_creates_the_project():
    out, _ = run("create_api_key", "--project", "shop", "--scopes", "read", "--name", "ci")

    plaintext = out.strip()
    assert "\n" not in plaintext
    key = ApiKey.objects.authenticate(plaintext)
    assert key is not None
    assert key.project.slug == "shop"
    assert key.scopes == ["read"]
    assert key.name == "ci"


def test_create_api_key_reuses_an_existing_project(project):
    run("create_api_key", "--project", project.slug)

    assert Project.objects.filter(slug=project.slug).count() == 1
    assert ApiKey.objects.get(project=project).scopes == ["ingest", "read"]


@pytest.mark.parametrize(
    ("option", "value"), [("--scopes", "superuser"), ("--scopes", ""), ("--project", "Not A Slug!")]
)
def test_create_api_key_rejects_bad_input(option, value):
    args = {"--project": "shop", "--scopes": "read", option: value}
    with pytest.raises(CommandError):
        run("create_api_key", *[item for pair in args.items() for item in pair])
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("via", ["copy", "orm"])
def test_seed_writes_realistic_requests(via):
    run(
        "seed_apirequests",
        "--count",
        "3000",
        "--days",
        "2",
        "--via",
        via,
        "--project",
        "demo",
        "--seed",
        "7",
    )

    rows = ApiRequest.objects.filter(project__slug="demo")
    assert rows.count() == 3000
    assert set(rows.values_list("service", flat=True).distinct()) == set(CATALOGUE)
    span = rows.aggregate(first=Min("time"), last=Max("time"))
    assert (span["last"] - span["first"]).total_seconds() > 1.5 * 86400
    assert rows.filter(status_code__gte=500).exclude(error_message="").exists()
    assert not rows.filter(status_code__gte=500, error_message="").exists()
    assert rows.filter(status_code__gte=400, status_code__lt=500).exists()
    assert rows.filter(latency_ms__lte=0).count() == 0
    # The slow search endpoint is slower than the cheap suggest endpoint, as configured.
    slow = sorted(rows.filter(endpoint="/search").values_list("latency_ms", flat=True))
    fast = sorted(rows.filter(endpoint="/search/suggest").values_list("latency_ms", flat=True))
    assert slow[len(slow) // 2] > 5 * fast[len(fast) // 2]


def test_seed_limits_services():
    run("seed_apirequests", "--count", "200", "--services", "search", "users", "--seed", "1")

    services = set(ApiRequest.objects.values_list("service", flat=True).distinct())
    assert services == {"search", "users"}


def test_seed_rejects_bad_arguments():
    with pytest.raises(CommandError):
        run("seed_apirequests", "--count", "-1")
    with pytest.raises(CommandError):
        run("seed_apirequests", "--services", "nope")


@pytest.mark.django_db(transaction=True)
def test_seed_via_api_posts_to_a_live_server(live_server, project):
    from observability.models import ApiKey

    _, key = ApiKey.objects.issue(project, "seed", ["ingest"])

    run(
        "seed_apirequests",
        "--count",
        "1200",
        "--days",
        "1",
        "--via",
        "api",
        "--url",
        live_server.url,
        "--api-key",
        key,
        "--batch-size",
        "500",
    )

    assert ApiRequest.objects.filter(project=project).count() == 1200


def test_seed_via_api_reports_a_server_refusal(live_server):
    with pytest.raises(CommandError, match="401"):
        run(
            "seed_apirequests",
            "--count",
            "10",
            "--via",
            "api",
            "--url",
            live_server.url,
            "--api-key",
            "apm_000000000000_nope",
        )
