"""The Postman step collections: up to date with the module that writes them, every
request an operation of the OpenAPI schema, and the Step1 collection run by newman (the
real npm package, as a subprocess) against the API over real HTTP (a live server), every
assertion of its test scripts passing. Steps 2 to 5 need a cluster or seeded traffic:
scripts/step<N>_test.sh run them under newman against TARGET=local.
"""

from __future__ import annotations

import json
import re

import pytest
from drf_spectacular.generators import SchemaGenerator

from observability.models import ApiKey
from observability.tests.utils import make_key, make_project
from scripts.postman import collections, newman

VARIABLE = re.compile(r"\{\{([$\w]+)\}\}")
PARAMETER = re.compile(r"\{[^}]*\}")
NON_API_PATHS = {"/healthz", "/readyz", "/metrics"}
STEPS = sorted(collections.BUILDERS)


def requests_in_order(items: list[dict]) -> list[dict]:
    flat = []
    for item in items:
        flat += requests_in_order(item["item"]) if "item" in item else [item]
    return flat


@pytest.mark.parametrize("step", STEPS)
def test_committed_collection_is_what_the_module_writes(step):
    assert collections.path_of(step).read_text() == collections.render(step), (
        f"run `python -m scripts.postman.collections` (Step{step} differs)"
    )


@pytest.mark.parametrize("step", STEPS)
def test_every_request_asserts_on_its_body_or_has_none(step):
    for item in requests_in_order(collections.BUILDERS[step]()["item"]):
        script = next(e["script"]["exec"] for e in item["event"] if e["listen"] == "test")
        assert "pm.response.to.have.status(" in script[0], item["name"]
        body_checks = [line for line in script[1:] if "pm.test(" in line]
        assert body_checks or item["request"]["method"] == "DELETE", f"{item['name']}: status only"


@pytest.mark.parametrize("step", STEPS)
def test_api_requests_match_the_openapi_schema(step):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {PARAMETER.sub("{}", path): value for path, value in schema["paths"].items()}
    for item in requests_in_order(collections.BUILDERS[step]()["item"]):
        url = item["request"]["url"]
        path = "/" + "/".join(url["path"])
        if path in NON_API_PATHS:
            continue
        path = VARIABLE.sub("{}", path)
        assert path in operations, f"{item['name']}: {path} is not in the schema"
        operation = operations[path].get(item["request"]["method"].lower())
        assert operation, f"{item['name']}: {item['request']['method']} {path} is not in the schema"
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        used = {parameter["key"] for parameter in url.get("query", [])}
        assert used <= declared, f"{item['name']}: undeclared query parameters {used - declared}"


def test_environments_define_what_the_collections_leave_open():
    defined = {variable["key"] for variable in collections.step1()["variable"]}
    used = set()
    for step in STEPS:
        used |= set(VARIABLE.findall(collections.render(step))) - {"$guid"}
        used |= set(re.findall(r"pm\.environment\.get\('(\w+)'\)", collections.render(step)))
    # Set by the collections' own scripts.
    produced = {"error_group_id", "idempotency_key", "end_unix_nano", "start_unix_nano"}
    produced |= {"kpi_hits", "kpi_errors"}
    produced |= {f"{kind}_{letter}" for kind in ("event", "time") for letter in "abcdef"}
    for path in collections.POSTMAN.glob("*.postman_environment.json"):
        keys = {value["key"] for value in json.loads(path.read_text())["values"]}
        assert used - defined - produced - {"service"} == keys, path.name


@pytest.mark.django_db(transaction=True)
def test_newman_runs_the_step1_collection_with_every_assertion_passing(live_server):
    project = make_project("postman")
    variables = {
        "base_url": live_server.url,
        "monitoring_url": live_server.url,
        "api_key": make_key(project, scopes=[ApiKey.SCOPE_INGEST, ApiKey.SCOPE_READ]),
        "admin_api_key": make_key(project, name="admin"),
        "read_api_key": make_key(project, scopes=[ApiKey.SCOPE_READ], name="reader"),
        "expected_replicas": "0",
    }
    result = newman.run(1, variables)
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert re.search(r"│\s+assertions\s+│\s+\d+\s+│\s+0\s+│", result.stdout), result.stdout[-5000:]
