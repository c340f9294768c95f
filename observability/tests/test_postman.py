"""The Postman collection, run against the API over real HTTP (a live server).

Every request is sent in the collection's order with its variables filled in as
Postman would (the collection's pre-request script computes a one-hour window; here the
same values are computed in Python), and must get the status its test script expects.
API requests must also match an operation of the OpenAPI schema, with declared query
parameters only, so the collection cannot drift from the API.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from drf_spectacular.generators import SchemaGenerator

from observability.tests.utils import make_key, make_project

POSTMAN = Path(__file__).resolve().parents[2] / "postman"
COLLECTION = json.loads((POSTMAN / "APM_Observability.postman_collection.json").read_text())
VARIABLE = re.compile(r"\{\{([$\w]+)\}\}")
NON_API_PATHS = {"/healthz", "/readyz", "/metrics"}

pytestmark = pytest.mark.django_db(transaction=True)


def requests_in_order(items: list[dict]) -> list[dict]:
    flat = []
    for item in items:
        flat += requests_in_order(item["item"]) if "item" in item else [item]
    return flat


def expected_statuses(item: dict) -> set[int]:
    """From the test script: pm.response.to.have.status(N) or ...to.be.oneOf([N, M])."""
    script = "\n".join(line for event in item.get("event", []) for line in event["script"]["exec"])
    match = re.search(r"to\.have\.status\((\d+)\)|to\.be\.oneOf\(\[([\d, ]+)\]\)", script)
    assert match, f"{item['name']}: no status check in its test script"
    return {int(code) for code in (match[1] or match[2]).split(",")}


def postman_variables(base_url: str, api_key: str) -> dict[str, str]:
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    iso = lambda moment: moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # noqa: E731
    return {
        **{variable["key"]: variable["value"] for variable in COLLECTION["variable"]},
        "base_url": base_url,
        "api_key": api_key,
        # The collection's pre-request script.
        "from": iso(now - timedelta(hours=1)),
        "to": iso(now + timedelta(minutes=1)),
        "end_unix_nano": f"{now_ms}000000",
        "start_unix_nano": f"{now_ms - 120}000000",
        # Postman's dynamic variable.
        "$isoTimestamp": iso(now),
    }


def fill(text: str, variables: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        assert match[1] in variables, f"{{{{{match[1]}}}}} is defined nowhere"
        return variables[match[1]]

    return VARIABLE.sub(value, text)


def test_every_request_gets_the_status_it_expects(live_server):
    project = make_project("postman")
    variables = postman_variables(live_server.url, make_key(project))
    with httpx.Client(timeout=30) as client:
        for item in requests_in_order(COLLECTION["item"]):
            request = item["request"]
            body = request.get("body", {}).get("raw")
            response = client.request(
                request["method"],
                fill(request["url"]["raw"], variables),
                headers={h["key"]: fill(h["value"], variables) for h in request["header"]},
                content=fill(body, variables).encode() if body else None,
            )
            assert response.status_code in expected_statuses(item), (
                f"{item['name']}: {response.status_code} {response.text[:500]}"
            )


def test_api_requests_match_the_openapi_schema():
    operations = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    for item in requests_in_order(COLLECTION["item"]):
        url = item["request"]["url"]
        path = "/" + "/".join(url["path"])
        if path in NON_API_PATHS:
            continue
        path = VARIABLE.sub(lambda match: "{" + match[1] + "}", path)
        assert path in operations, f"{item['name']}: {path} is not in the schema"
        operation = operations[path].get(item["request"]["method"].lower())
        assert operation, f"{item['name']}: {item['request']['method']} {path} is not in the schema"
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        used = {parameter["key"] for parameter in url.get("query", [])}
        assert used <= declared, f"{item['name']}: undeclared query parameters {used - declared}"


def test_environments_define_what_the_collection_leaves_open():
    for path in POSTMAN.glob("*.postman_environment.json"):
        keys = {value["key"] for value in json.loads(path.read_text())["values"]}
        assert {"base_url", "api_key"} <= keys, path.name
