"""Semantic and hybrid search: masking, the Gemini client, the backfill, the API."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from observability.ai import EmbeddingError, documents
from observability.ai.backfill import backfill
from observability.ai.fake_server import FakeGemini
from observability.ai.gemini import GeminiProvider
from observability.models import Document, Embedding, EmbeddingCursor, RequestDocument
from observability.tests.utils import client_with, make_key
from observability.tests.utils import make_request as make_recent_request

pytestmark = pytest.mark.django_db


def make_request(project, **fields):
    """A request old enough for the backfill, which stays a few minutes behind now."""
    fields.setdefault("time", datetime.now(UTC) - timedelta(minutes=10))
    return make_recent_request(project, **fields)


@pytest.fixture(scope="module")
def fake():
    server = FakeGemini()
    yield server
    server.close()


@pytest.fixture
def gemini(fake, settings):
    fake.requests.clear()
    fake.fail_with.clear()
    fake.malformed = None
    settings.EMBEDDING_PROVIDER = "gemini"
    settings.GEMINI_API_KEY = "test-key"
    settings.GEMINI_BASE_URL = fake.url
    return fake


def provider(fake, **options) -> GeminiProvider:
    return GeminiProvider(api_key="test-key", base_url=fake.url, base_delay_s=0.01, **options)


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("login failed for jane.doe@example.com", "jane.doe@example.com"),
        ("upstream 10.1.2.3:5432 refused", "10.1.2.3"),
        ("peer 2001:db8::8a2e:370:7334 reset", "2001:db8::8a2e:370:7334"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def rejected", "eyJhbGciOiJIUzI1NiJ9"),
        ("bad key apm_0123456789ab_kW3tZ9xQ1mN8vB7cY6uT5rE4wQ", "kW3tZ9xQ1mN8vB7cY6uT5rE4wQ"),
        ("db password=hunter2 rejected", "hunter2"),
        ("session 9f8e7d6c5b4a39281706f5e4d3c2b1a0 expired", "9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
    ],
)
def test_masking_removes_what_identifies_or_grants_access(text, leaked):
    masked = documents.mask(text)

    assert leaked not in masked
    assert "<" in masked


def test_masking_keeps_what_search_needs():
    text = documents.document_text(
        "POST",
        "/users/{id}/orders",
        504,
        1234.5,
        "checkout",
        "production",
        "Gateway Timeout: upstream did not respond",
    )

    assert text == (
        "POST /users/{id}/orders status 504 (5xx), latency ~1 s, service checkout, "
        "environment production, error: Gateway Timeout: upstream did not respond"
    )


def test_the_client_batches_by_100_and_sends_the_key(gemini):
    vectors = provider(gemini).embed([f"text {n}" for n in range(250)])

    assert len(vectors) == 250 and {len(v) for v in vectors} == {768}
    assert [len(body["requests"]) for body in gemini.requests] == [100, 100, 50]
    assert all(
        path.endswith("models/gemini-embedding-001:batchEmbedContents") for path in gemini.paths
    )
    assert set(gemini.api_keys) == {"test-key"}
    assert gemini.requests[0]["requests"][0]["outputDimensionality"] == 768


def test_a_rate_limit_is_retried_with_back_off(gemini):
    gemini.fail_with[:] = [429, 503]

    vectors = provider(gemini).embed(["hello"])

    assert len(vectors) == 1
    assert len(gemini.requests) == 3  # two refusals, then success


def test_retries_give_up_with_a_clear_error(gemini):
    gemini.fail_with[:] = [429] * 5

    with pytest.raises(EmbeddingError, match="429"):
        provider(gemini, max_attempts=3).embed(["hello"])
    assert len(gemini.requests) == 3


@pytest.mark.parametrize("kind", ["missing", "short", "garbage"])
def test_a_malformed_answer_is_an_error_and_nothing_is_stored(gemini, project, kind):
    make_request(project, error_message="boom")
    gemini.malformed = kind

    with pytest.raises(CommandError, match="nothing of the failed batch was stored"):
        call_command("embed_apirequests", stdout=StringIO(), stderr=StringIO())

    assert not Embedding.objects.exists()
    assert not RequestDocument.objects.exists()
    assert not EmbeddingCursor.objects.exists()


def test_backfill_embeds_each_distinct_document_once_and_masks_what_it_sends(gemini, project):
    for _ in range(5):
        make_request(project, status_code=500, latency_ms=310,
                     error_message="failed for jane@example.com from 10.0.0.7")  # fmt: skip
    make_request(project, endpoint="/other")

    report = backfill(provider(gemini))

    assert (report.requests, report.documents, report.embedded) == (6, 2, 2)
    assert RequestDocument.objects.count() == 6
    assert Embedding.objects.count() == Document.objects.count() == 2
    assert not any("jane@example.com" in text or "10.0.0.7" in text for text in gemini.texts)
    assert Document.objects.filter(text__contains="<email>").exists()


def test_backfill_resumes_and_skips_what_is_done(gemini, project):
    start = datetime.now(UTC) - timedelta(hours=1)
    for n in range(30):
        make_request(project, time=start + timedelta(seconds=n), endpoint=f"/e{n}")

    first = backfill(provider(gemini), limit=12, batch_size=5)
    rest = backfill(provider(gemini), batch_size=5)
    again = backfill(provider(gemini), batch_size=5)

    assert (first.requests, rest.requests, again.requests) == (12, 18, 0)
    assert RequestDocument.objects.count() == 30
    assert len(gemini.texts) == 30  # nothing embedded twice


def test_dry_run_calls_no_provider_and_writes_nothing(gemini, project):
    make_request(project)

    out = StringIO()
    call_command("embed_apirequests", "--dry-run", stdout=out, stderr=StringIO())

    assert "would process 1 request(s)" in out.getvalue()
    assert gemini.requests == []
    assert not RequestDocument.objects.exists()


def test_without_a_provider_documents_are_still_built(project, settings):
    settings.EMBEDDING_PROVIDER = "none"
    make_request(project, error_message="card declined")

    call_command("embed_apirequests", stdout=StringIO(), stderr=StringIO())

    assert RequestDocument.objects.count() == 1
    assert not Embedding.objects.exists()


def search(key, **params):
    return client_with(key).get("/api/v1/search/", params)


def test_keyword_search_works_without_a_provider(project, key, settings):
    settings.EMBEDDING_PROVIDER = "none"
    hit = make_request(project, error_message="upstream timeout talking to inventory")
    make_request(project, error_message="card declined")
    call_command("embed_apirequests", stdout=StringIO(), stderr=StringIO())

    response = search(key, q="inventory timeout")

    assert response.status_code == 200
    assert response.json()["mode"] == "keyword"
    assert [r["event_id"] for r in response.json()["results"]] == [str(hit.event_id)]
    for mode in ("semantic", "hybrid"):
        refused = search(key, q="timeout", mode=mode)
        assert refused.status_code == 400
        assert "EMBEDDING_PROVIDER" in refused.json()["errors"]["mode"][0]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [({"q": ""}, "q"), ({"q": "x" * 501}, "q"), ({"q": "x", "mode": "fuzzy"}, "mode"),
     ({"q": "x", "limit": "0"}, "limit"), ({"q": "x", "from": "nope"}, "from")],
)  # fmt: skip
def test_bad_search_parameters(key, params, parameter):
    response = search(key, **params)

    assert response.status_code == 400
    assert parameter in response.json()["errors"]


@pytest.fixture
def crafted(project, other_project, gemini):
    """Requests around the query "checkout payment timeout":
    - target: all three words, and near the query in meaning;
    - near_only, nearish: near in meaning, but without "timeout": keyword search misses
      them;
    - words_only: all the words (repeated: the best keyword rank) drowned in unrelated
      text, so far in meaning;
    - unrelated, and the same text as target in another project.
    Only the target is ranked by both searches: fusion must put it first."""
    noise = " ".join(f"zz{n}" for n in range(60))
    rows = {
        "target": make_request(project, service="checkout", endpoint="/checkout", method="POST",
                               status_code=504, latency_ms=10_000,
                               error_message="payment provider timeout"),
        "near_only": make_request(project, service="checkout", endpoint="/checkout", method="POST",
                                  status_code=504, latency_ms=10_000,
                                  error_message="payment provider checkout payment"),
        "nearish": make_request(project, service="checkout", endpoint="/checkout", method="POST",
                                status_code=504, latency_ms=10_000,
                                error_message="provider failure"),
        "words_only": make_request(project, service="search", endpoint="/search", status_code=200,
                                   latency_ms=40,
                                   error_message=f"timeout timeout payment checkout {noise}"),
        "unrelated": make_request(project, service="users", endpoint="/users/{id}",
                                  status_code=404, latency_ms=12, error_message="no such user"),
        "other_project": make_request(other_project, service="checkout", endpoint="/checkout",
                                      method="POST", status_code=504, latency_ms=10_000,
                                      error_message="payment provider timeout"),
    }  # fmt: skip
    backfill(provider(gemini))
    return rows


def test_semantic_search_finds_by_meaning_within_the_project(crafted, key):
    response = search(
        key, q="POST /checkout 504 payment provider timeout", mode="semantic", limit=3
    )

    results = response.json()["results"]
    assert response.status_code == 200
    assert results[0]["event_id"] == str(crafted["target"].event_id)
    assert str(crafted["other_project"].event_id) not in {r["event_id"] for r in results}
    assert 0 < results[0]["score"] <= 1


def test_hybrid_search_puts_the_request_matching_both_ways_first(crafted, key):
    def ranking(mode):
        names = {str(row.event_id): name for name, row in crafted.items()}
        results = search(key, q="checkout payment timeout", mode=mode, limit=1).json()["results"]
        return [names[r["event_id"]] for r in results]

    semantic, keyword = ranking("semantic"), ranking("keyword")
    assert semantic[0] != "target" or keyword[0] != "target"  # neither alone is enough...
    assert "near_only" not in keyword and "words_only" not in ranking("semantic")[:1]
    assert ranking("hybrid") == ["target"]  # ...their fusion is


def test_search_filters_by_service_and_time(crafted, key):
    response = search(key, q="timeout", mode="semantic", service="search")

    assert [r["service"] for r in response.json()["results"]] == ["search"]
    before = {
        "from": (datetime.now(UTC) - timedelta(days=3)).isoformat(),
        "to": (datetime.now(UTC) - timedelta(days=2)).isoformat(),
    }
    assert search(key, q="timeout", mode="keyword", **before).json()["results"] == []


def test_similar_requests(crafted, key, project, gemini):
    twin = make_request(
        project,
        service="checkout",
        endpoint="/checkout",
        method="POST",
        status_code=504,
        latency_ms=10_400,  # rounds to the target's "~10 s": the same document
        error_message="payment provider timeout",
    )
    backfill(provider(gemini))
    target = crafted["target"].event_id

    response = client_with(key).get(f"/api/v1/requests/{target}/similar/", {"limit": 2})

    ids = [r["event_id"] for r in response.json()["results"]]
    assert response.status_code == 200
    assert ids[0] == str(twin.event_id)
    assert str(target) not in ids
    missing = client_with(key).get(f"/api/v1/requests/{make_request(project).event_id}/similar/")
    assert missing.status_code == 404


def test_the_nearest_query_uses_the_hnsw_index(crafted):
    from observability.ai.search import NEAREST

    query = NEAREST.format(dim=768, filters="")
    vector = "[" + ",".join(["0.01"] * 768) + "]"
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        params = {
            "vector": vector,
            "model": "gemini-embedding-001",
            "project": 1,
            "candidates": 10,
            "limit": 5,
        }
        cursor.execute("EXPLAIN " + query, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "apm_embedding_hnsw_768" in plan


def test_retention_removes_search_data_with_its_requests(crafted, settings):
    from observability import jobs

    jobs.apply_retention(
        now=datetime.now(UTC) + timedelta(days=settings.APM_RAW_RETENTION_DAYS + 1)
    )

    assert not RequestDocument.objects.exists()
    assert not Document.objects.exists()
    assert not Embedding.objects.exists()


@pytest.fixture
def key(project):
    return make_key(project)


def test_a_small_project_finds_its_nearest_requests_whatever_other_projects_hold(
    project, other_project, key, gemini
):
    """The project filter runs inside the candidate scan: 300 documents of another
    project nearer to the query than anything of ours used to fill every candidate."""
    for n in range(300):
        make_request(other_project, service="checkout", endpoint="/checkout", method="POST",
                     status_code=504, error_message=f"payment provider timeout {n}")  # fmt: skip
    mine = [
        make_request(project, service="checkout", endpoint="/cart", method="GET",
                     status_code=200, error_message=f"cart ok {n}")
        for n in range(3)
    ]  # fmt: skip
    call_command("embed_apirequests", stdout=StringIO(), stderr=StringIO())

    response = search(key, q="POST /checkout 504 payment provider timeout", mode="semantic")
    assert response.status_code == 200
    assert {r["event_id"] for r in response.json()["results"]} == {str(r.event_id) for r in mine}


def test_searches_are_bounded_in_time_by_default(project, key, gemini, settings):
    settings.APM_SEARCH_DEFAULT_DAYS = 1
    old = make_request(project, time=datetime.now(UTC) - timedelta(days=2),
                       error_message="inventory timeout")  # fmt: skip
    recent = make_request(project, error_message="inventory timeout")
    since = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    call_command("embed_apirequests", "--since", since, stdout=StringIO(), stderr=StringIO())

    default = search(key, q="inventory timeout", mode="keyword").json()["results"]
    explicit = search(key, q="inventory timeout", mode="keyword",
                      **{"from": (datetime.now(UTC) - timedelta(days=3)).isoformat()})  # fmt: skip

    assert [r["event_id"] for r in default] == [str(recent.event_id)]
    assert {r["event_id"] for r in explicit.json()["results"]} == {
        str(recent.event_id), str(old.event_id)
    }  # fmt: skip
