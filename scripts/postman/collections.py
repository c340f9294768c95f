"""The five Postman step collections (postman/APM_Observability_Step<N>.postman_collection.json).

Written from this module so that their test scripts share one set of helpers and stay
valid JSON; `python -m scripts.postman.collections` rewrites them and
observability/tests/test_postman.py fails when a committed file differs from what this
module writes. Every request asserts on its body (shape and the values that must hold),
not only on its status. Run them with newman (`make newman`, the steps).

Variables: base_url (the app, through the proxy in a deployment), monitoring_url (the app
without the proxy: /readyz details), api_key (ingest+read), admin_api_key (admin scope),
read_api_key (read only), expected_replicas; each collection's first request sets the
run's own names (service, event ids, times) unless the environment gives `service`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

POSTMAN = Path(__file__).resolve().parents[2] / "postman"
SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
NAMESPACE = uuid.UUID("6f1e3c2a-1b7d-4d2e-9a55-3c1f0e8b7a10")

# Shared by the first request of every collection: the run's names and times, kept in
# collection variables so that a retried body is byte-identical to the first one.
RUN_SETUP = [
    "// This run's names: a service of its own (unless the environment names one), event ids, times.",
    "const uuid = () => 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {",
    "    const r = Math.random() * 16 | 0; return (c === 'x' ? r : (r & 0x3 | 0x8)).toString(16); });",
    "const run = Math.random().toString(16).slice(2, 10);",
    "const now = Date.now();",
    "const at = (minutes) => new Date(now - minutes * 60000).toISOString();",
    "pm.collectionVariables.set('run_id', run);",
    "if (!pm.environment.get('service')) { pm.collectionVariables.set('service', '{prefix}-' + run); }",
    "['a', 'b', 'c', 'd', 'e', 'f'].forEach((name, i) => {",
    "    pm.collectionVariables.set('event_' + name, uuid());",
    "    pm.collectionVariables.set('time_' + name, at(6 - i));",
    "});",
    "pm.collectionVariables.set('idempotency_key', uuid());",
    "pm.collectionVariables.set('from', at(60));",
    "pm.collectionVariables.set('to', new Date(now + 60000).toISOString());",
    "pm.collectionVariables.set('end_unix_nano', String(now) + '000000');",
    "pm.collectionVariables.set('start_unix_nano', String(now - 120) + '000000');",
]

ERROR_SHAPE = [
    "pm.test('the error has its one shape', () => {",
    "    pm.expect(body.code).to.be.a('string');",
    "    pm.expect(body.detail).to.be.a('string');",
    "});",
]

LATENCY_ORDER = [
    "const ordered = (k) => k.latency_ms.p50 <= k.latency_ms.p95 && k.latency_ms.p95 <= k.latency_ms.p99",
    "    && k.latency_ms.p99 <= k.latency_ms.max;",
]


def _url(path: str, query: list[tuple[str, str]], base: str) -> dict:
    raw = "{{" + base + "}}" + path
    if query:
        raw += "?" + "&".join(f"{key}={value}" for key, value in query)
    url = {"raw": raw, "host": ["{{" + base + "}}"], "path": path.lstrip("/").split("/")}
    if query:
        url["query"] = [{"key": key, "value": value} for key, value in query]
    return url


def request(
    name: str,
    method: str,
    path: str,
    status: int,
    tests: list[str],
    *,
    query: list[tuple[str, str]] = (),
    body: object = None,
    key: str | None = "api_key",
    base: str = "base_url",
    headers: dict[str, str] | None = None,
    prerequest: list[str] | None = None,
    json_body: bool = True,
) -> dict:
    """One request whose test script checks STATUS, then TESTS (with `body` parsed)."""
    header = [{"key": "Authorization", "value": "Bearer {{" + key + "}}"}] if key else []
    header += [{"key": k, "value": v} for k, v in (headers or {}).items()]
    spec = {"method": method, "header": header, "url": _url(path, list(query), base)}
    if body is not None:
        header.append({"key": "Content-Type", "value": "application/json"})
        raw = body if isinstance(body, str) else json.dumps(body, indent=2)
        spec["body"] = {"mode": "raw", "raw": raw}
    script = [f"pm.test('status is {status}', () => {{ pm.response.to.have.status({status}); }});"]
    if json_body:
        script.append("const body = pm.response.json();")
    events = [{"listen": "test", "script": {"type": "text/javascript", "exec": script + tests}}]
    if prerequest:
        events.insert(
            0, {"listen": "prerequest", "script": {"type": "text/javascript", "exec": prerequest}}
        )
    return {"name": name, "event": events, "request": spec}


def folder(name: str, *items: dict) -> dict:
    return {"name": name, "item": list(items)}


def collection(step: int, description: str, folders: list[dict]) -> dict:
    name = f"APM_Observability_Step{step}"
    return {
        "info": {
            "_postman_id": str(uuid.uuid5(NAMESPACE, name)),
            "name": name,
            "description": description,
            "schema": SCHEMA,
        },
        "variable": [{"key": key, "value": ""} for key in ("service", "run_id", "from", "to")]
        + [{"key": "invalid_api_key", "value": "apm_000000000000_not-a-key"}],
        "item": folders,
    }


def run_setup(prefix: str) -> list[str]:
    return [line.replace("{prefix}", prefix) for line in RUN_SETUP]


def event(letter: str, endpoint_field: str, endpoint: str, method: str, status: int,
          latency: float, **extra) -> dict:  # fmt: skip
    return {
        "event_id": "{{event_" + letter + "}}",
        "time": "{{time_" + letter + "}}",
        "service": "{{service}}",
        endpoint_field: endpoint,
        "method": method,
        "status_code": status,
        "latency_ms": latency,
        **extra,
    }


INVALID_EVENT = {
    "time": "{{time_d}}",
    "service": "{{service}}",
    "method": "GET",
    "status_code": "abc",
}
EVENT_A = event("a", "path", "/cart/42", "GET", 200, 20)
EVENT_B = event("b", "path", "/cart/43", "GET", 200, 80)
EVENT_C = event("c", "endpoint", "/checkout", "POST", 500, 250,
                error_message="payment gateway timeout after 250 ms")  # fmt: skip
EVENT_D = event("d", "path", "/cart/46", "GET", 200, 10)
EVENT_E = event("e", "path", "/cart/44", "GET", 200, 40)
EVENT_F = event("f", "path", "/cart/45", "PUT", 204, 15)


def ids_are(*letters: str) -> list[str]:
    expected = ", ".join("pm.collectionVariables.get('event_" + letter + "')" for letter in letters)
    return [
        f"pm.test('the results are {', '.join(letters).upper()}, in this order', () => {{",
        f"    pm.expect(body.results.map((r) => r.event_id)).to.eql([{expected}]);",
        "});",
    ]


def otlp_span(service: str) -> dict:
    attribute = lambda key, value: {"key": key, "value": value}  # noqa: E731
    return {"resourceSpans": [{
        "resource": {"attributes": [attribute("service.name", {"stringValue": service})]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "name": "GET /search",
            "kind": 2,
            "startTimeUnixNano": "{{start_unix_nano}}",
            "endTimeUnixNano": "{{end_unix_nano}}",
            "attributes": [attribute("http.request.method", {"stringValue": "GET"}),
                           attribute("http.route", {"stringValue": "/search"}),
                           attribute("http.response.status_code", {"intValue": "200"})],
        }]}],
    }]}  # fmt: skip


# --- Step 1: functional -----------------------------------------------------------------


def step1() -> dict:
    health = folder(
        "Health",
        request("Liveness", "GET", "/healthz", 200,
                ["pm.test('it is alive', () => { pm.expect(body).to.eql({status: 'ok'}); });"],
                key=None, prerequest=run_setup("step1")),
        request("Readiness", "GET", "/readyz", 200,
                ["pm.test('it is ready', () => { pm.expect(body.status).to.eql('ok'); });"], key=None),
        request("Prometheus metrics", "GET", "/metrics", 200, [
            "const text = pm.response.text();",
            "pm.test('the app\\'s request metrics are exposed', () => {",
            "    pm.expect(text).to.include('# TYPE apm_http_requests_total counter');",
            "    pm.expect(text).to.include('# TYPE apm_http_request_duration_seconds histogram');",
            "});",
        ], key=None, base="monitoring_url", json_body=False),
    )  # fmt: skip
    auth = folder(
        "Auth",
        request("No key: 401 not_authenticated", "GET", "/api/v1/requests/", 401, [*ERROR_SHAPE, "pm.test('the code says the key is missing', () => { pm.expect(body.code).to.eql('not_authenticated'); });"], key=None),
        request("Unknown key: 401 authentication_failed", "GET", "/api/v1/requests/", 401, [*ERROR_SHAPE, "pm.test('the code says the key is invalid', () => { pm.expect(body.code).to.eql('authentication_failed'); });"], key="invalid_api_key"),
    )  # fmt: skip
    counts = lambda accepted, duplicates, rejected: [  # noqa: E731
        "pm.test('the answer counts the events', () => {",
        f"    pm.expect(body.accepted).to.eql({accepted});",
        f"    pm.expect(body.duplicates).to.eql({duplicates});",
        f"    pm.expect(body.rejected).to.eql({rejected});",
        "    pm.expect(body.overflowed).to.eql(0);",
        "});",
    ]
    ingest = folder(
        "Ingest",
        request("Strict batch: three events stored, paths normalised", "POST", "/api/v1/ingest/", 200,
                [*counts(3, 0, 0), "pm.test('no errors', () => { pm.expect(body.errors).to.eql({}); });"],
                body=[EVENT_A, EVENT_B, EVENT_C]),
        request("The same batch again: accepted, all duplicates, nothing stored twice", "POST", "/api/v1/ingest/", 200,
                counts(3, 3, 0), body=[EVENT_A, EVENT_B, EVENT_C]),
        request("Strict batch with an invalid event: 400, every invalid field named", "POST",
                "/api/v1/ingest/", 400, [*ERROR_SHAPE, "pm.test('every invalid field of the second event is named', () => {", "    pm.expect(body.code).to.eql('invalid');", "    pm.expect(body.errors).to.include.all.keys('events[1].status_code', 'events[1].latency_ms', 'events[1].endpoint');", "    Object.keys(body.errors).forEach((field) => pm.expect(field).to.match(/^events\\[1\\]\\./));", "});"], body=[EVENT_D, INVALID_EVENT]),
        request("Non-strict batch: the valid event stored, the invalid one reported", "POST",
                "/api/v1/ingest/", 200, [*counts(1, 0, 1), "pm.test('the invalid event is named by index and field', () => {", "    pm.expect(body.errors).to.include.all.keys('events[1].status_code', 'events[1].latency_ms');", "    pm.expect(body.errors['events[1].status_code'][0]).to.be.a('string').and.not.be.empty;", "});"], query=[("strict", "false")], body=[EVENT_E, INVALID_EVENT]),
        request("OTLP/HTTP JSON: one SERVER span", "POST", "/v1/traces", 200, [
            "pm.test('no span was rejected', () => {",
            "    const rejected = (body.partialSuccess || {}).rejectedSpans || 0;",
            "    pm.expect(Number(rejected)).to.eql(0);",
            "});",
        ], body=otlp_span("{{service}}-otlp")),
    )  # fmt: skip
    record = lambda letter, endpoint, method, status: [  # noqa: E731
        "pm.test('the record is the one sent, its path normalised', () => {",
        f"    pm.expect(body.event_id).to.eql(pm.collectionVariables.get('event_{letter}'));",
        "    pm.expect(body.service).to.eql(pm.variables.get('service'));",
        f"    pm.expect(body.endpoint).to.eql('{endpoint}');",
        f"    pm.expect(body.method).to.eql('{method}');",
        f"    pm.expect(body.status_code).to.eql({status});",
        f"    pm.expect(body.status_class).to.eql('{str(status)[0]}xx');",
        "});",
    ]
    not_found = [
        *ERROR_SHAPE,
        "pm.test('not found', () => { pm.expect(body.code).to.eql('not_found'); });",
    ]
    crud = folder(
        "Requests: create, retrieve, filters",
        request("Create one record", "POST", "/api/v1/requests/", 201, record("f", "/cart/{id}", "PUT", 204),
                body=EVENT_F),
        request("Create it again: 409 duplicate", "POST", "/api/v1/requests/", 409, [*ERROR_SHAPE, "pm.test('the code says duplicate', () => { pm.expect(body.code).to.eql('duplicate'); });"], body=EVENT_F),
        request("Create without a service: 400 naming it", "POST", "/api/v1/requests/", 400, [*ERROR_SHAPE, "pm.test('the field is named', () => { pm.expect(body.errors).to.have.property('service'); });"], body={k: v for k, v in EVENT_D.items() if k != "service"}),
        request("Retrieve one", "GET", "/api/v1/requests/{{event_a}}/", 200,
                [*record("a", "/cart/{id}", "GET", 200), "pm.test('its latency', () => { pm.expect(body.latency_ms).to.eql(20); });"]),
        request("Retrieve an event of the rejected strict batch: 404", "GET", "/api/v1/requests/{{event_d}}/",
                404, not_found),
        request("List the service: newest first", "GET", "/api/v1/requests/", 200,
                ids_are("f", "e", "c", "b", "a"), query=[("service", "{{service}}")]),
        request("Filter: server errors", "GET", "/api/v1/requests/", 200, [*ids_are("c"), "pm.test('a 500 with its message', () => {", "    pm.expect(body.results[0].status_code).to.eql(500);", "    pm.expect(body.results[0].error_message).to.include('payment gateway timeout');", "});"], query=[("service", "{{service}}"), ("status_class", "5xx")]),
        request("Filter: GET at least 30 ms", "GET", "/api/v1/requests/", 200, [*ids_are("e", "b"), "pm.test('every result matches', () => body.results.forEach((r) => {", "    pm.expect(r.method).to.eql('GET'); pm.expect(r.latency_ms).to.be.at.least(30); }));"], query=[("service", "{{service}}"), ("method", "GET"), ("min_latency_ms", "30")]),
        request("Filter: one route, oldest first", "GET", "/api/v1/requests/", 200, ids_are("a", "b", "e", "f"),
                query=[("service", "{{service}}"), ("endpoint", "/cart/%7Bid%7D"), ("ordering", "time")]),
        request("Filter: a window", "GET", "/api/v1/requests/", 200, ids_are("f", "e"),
                query=[("service", "{{service}}"), ("from", "{{time_e}}"), ("to", "{{to}}")]),
        request("Pagination: two per page, a cursor to the next", "GET", "/api/v1/requests/", 200, [
            "pm.test('two results and a next page', () => {",
            "    pm.expect(body.results).to.have.lengthOf(2);",
            "    pm.expect(body.next).to.be.a('string').and.include('cursor=');",
            "    pm.expect(body.previous).to.eql(null);",
            "});",
        ], query=[("service", "{{service}}"), ("page_size", "2")]),
        request("Filter with an invalid value: 400 naming it", "GET", "/api/v1/requests/", 400, [*ERROR_SHAPE, "pm.test('the parameter is named', () => { pm.expect(body.errors.status_class[0]).to.include('7xx'); });"], query=[("status_class", "7xx")]),
        request("Endpoints admitted for the service", "GET", "/api/v1/endpoints/", 200, [
            "pm.test('both routes, normalised', () => {",
            "    const endpoints = body.results.map((r) => r.endpoint);",
            "    pm.expect(endpoints).to.have.members(['/cart/{id}', '/checkout']);",
            "});",
        ], query=[("service", "{{service}}")]),
    )  # fmt: skip
    groups = folder(
        "Error groups",
        request("List the service's groups", "GET", "/api/v1/error-groups/", 200, [
            "pm.test('one open group for the failed checkout', () => {",
            "    pm.expect(body.results).to.have.lengthOf(1);",
            "    const group = body.results[0];",
            "    pm.expect(group.title).to.include('payment gateway timeout');",
            "    pm.expect(group.status).to.eql('open');",
            "    pm.expect(group.endpoint).to.eql('/checkout');",
            "    pm.expect(group.count).to.eql(1);",
            "    pm.collectionVariables.set('error_group_id', group.id);",
            "});",
        ], query=[("service", "{{service}}")]),
        request("One group: timeline, endpoints, samples", "GET", "/api/v1/error-groups/{{error_group_id}}/", 200, [
            "pm.test('the failed request is its sample', () => {",
            "    pm.expect(body.samples.map((s) => s.event_id)).to.eql([pm.collectionVariables.get('event_c')]);",
            "    pm.expect(body.endpoints.map((e) => [e.endpoint, e.method, e.count])).to.eql([['/checkout', 'POST', 1]]);",
            "    pm.expect(body.timeline.reduce((sum, b) => sum + b.count, 0)).to.eql(1);",
            "});",
        ]),
        request("Resolve it without the admin scope: 403", "PATCH", "/api/v1/error-groups/{{error_group_id}}/",
                403, ERROR_SHAPE, body={"status": "resolved"}),
        request("An unknown status: 400 naming it", "PATCH", "/api/v1/error-groups/{{error_group_id}}/", 400,
                [*ERROR_SHAPE, "pm.test('status is named', () => { pm.expect(body.errors).to.have.property('status'); });"],
                body={"status": "bogus"}, key="admin_api_key"),
        request("Resolve it (admin)", "PATCH", "/api/v1/error-groups/{{error_group_id}}/", 200, [
            "pm.test('resolved, with its time', () => {",
            "    pm.expect(body.status).to.eql('resolved');",
            "    pm.expect(body.resolved_at).to.be.a('string');",
            "});",
        ], body={"status": "resolved"}, key="admin_api_key"),
    )  # fmt: skip
    delete = folder(
        "Delete",
        request("Delete without the admin scope: 403", "DELETE", "/api/v1/requests/{{event_f}}/", 403, ERROR_SHAPE),
        request("Delete (admin)", "DELETE", "/api/v1/requests/{{event_f}}/", 204, [], key="admin_api_key",
                json_body=False),
        request("Retrieve the deleted record: 404", "GET", "/api/v1/requests/{{event_f}}/", 404, not_found),
    )  # fmt: skip
    return collection(
        1,
        "Step 1, functional: health, auth, ingest (strict and non-strict, idempotent, OTLP), "
        "one record's create/retrieve/delete, the list's filters, error groups. Works on any "
        "project: the first request names a service of this run.",
        [health, auth, ingest, crud, groups, delete],
    )


# --- Step 2: cluster connectivity through the app -----------------------------------------


def step2() -> dict:
    return collection(
        2,
        "Step 2, connectivity: the app through its TLS proxy (details hidden) and on its "
        "monitoring path (database, migrations, every replica usable and in recovery).",
        [folder(
            "App and its databases",
            request("Liveness through the proxy", "GET", "/healthz", 200,
                    ["pm.test('alive', () => { pm.expect(body).to.eql({status: 'ok'}); });"],
                    key=None, prerequest=run_setup("step2")),
            request("Readiness through the proxy: the status only", "GET", "/readyz", 200,
                    ["pm.test('no details for the outside', () => { pm.expect(body).to.eql({status: 'ok'}); });"],
                    key=None),
            request("Readiness on the monitoring path: database, migrations, replicas", "GET", "/readyz", 200, [
                "pm.test('the primary answers and every migration is applied', () => {",
                "    pm.expect(body.checks.database.ok).to.eql(true);",
                "    pm.expect(body.checks.migrations).to.eql({ok: true, pending: 0});",
                "});",
                "pm.test('every replica is reachable, in recovery, receiving WAL and usable', () => {",
                "    const replicas = Object.values(body.replicas || {});",
                "    pm.expect(replicas).to.have.lengthOf(Number(pm.environment.get('expected_replicas') || 0));",
                "    replicas.forEach((r) => {",
                "        pm.expect(r.reachable).to.eql(true);",
                "        pm.expect(r.in_recovery).to.eql(true);",
                "        pm.expect(r.usable).to.eql(true);",
                "        pm.expect(r.error).to.not.be.ok;",
                "    });",
                "});",
            ], key=None, base="monitoring_url"),
            request("Metrics on the monitoring path", "GET", "/metrics", 200, [
                "pm.test('database reads are counted', () => { pm.expect(pm.response.text()).to.include('apm_db_reads_total'); });",
            ], key=None, base="monitoring_url", json_body=False),
        )],
    )  # fmt: skip


# --- Step 3: roles and routing -----------------------------------------------------------------


def step3() -> dict:
    return collection(
        3,
        "Step 3, routing: every read right after a write sees it (read-after-write pins the "
        "client to the primary), a read-only key cannot write, reads are served while "
        "replicas take them.",
        [folder(
            "Read after write",
            request("Write one record", "POST", "/api/v1/requests/", 201,
                    ["pm.test('stored', () => { pm.expect(body.event_id).to.eql(pm.collectionVariables.get('event_f')); });"],
                    body=EVENT_F, prerequest=run_setup("step3")),
            request("Read it at once", "GET", "/api/v1/requests/{{event_f}}/", 200,
                    ["pm.test('it is there', () => { pm.expect(body.endpoint).to.eql('/cart/{id}'); });"]),
            request("Write a batch", "POST", "/api/v1/ingest/", 200,
                    ["pm.test('three accepted', () => { pm.expect(body.accepted).to.eql(3); });"],
                    body=[EVENT_A, EVENT_B, EVENT_C]),
            request("List at once: every write is seen", "GET", "/api/v1/requests/", 200,
                    ids_are("f", "c", "b", "a"), query=[("service", "{{service}}")]),
        ), folder(
            "Scopes",
            request("A read-only key cannot ingest: 403", "POST", "/api/v1/ingest/", 403,
                    ERROR_SHAPE, body=[EVENT_E], key="read_api_key"),
            request("A read-only key reads", "GET", "/api/v1/requests/", 200,
                    ids_are("f", "c", "b", "a"), query=[("service", "{{service}}")], key="read_api_key"),
            request("KPIs of the service include the writes", "GET", "/api/v1/kpis/", 200, [
                "pm.test('four hits, one error', () => {",
                "    pm.expect(body.hits).to.eql(4);",
                "    pm.expect(body.errors).to.eql(1);",
                "});",
            ], query=[("service", "{{service}}"), ("from", "{{from}}"), ("to", "{{to}}")], key="read_api_key"),
        )],
    )  # fmt: skip


# --- Step 4: the data a backup must keep ----------------------------------------------------


def step4() -> dict:
    batch = [EVENT_A, EVENT_B, EVENT_C, EVENT_E, EVENT_F]
    other = [EVENT_A]
    answer = [
        "pm.test('five accepted', () => {",
        "    pm.expect(body).to.eql({accepted: 5, duplicates: 0, rejected: 0, overflowed: 0, errors: {}});",
        "});",
    ]
    return collection(
        4,
        "Step 4, the rows a backup must keep: a batch with an Idempotency-Key, its retry "
        "(the first answer, nothing stored twice), the key reused for another body (422), "
        "and every row read back. The step's restore checks these rows by checksum.",
        [folder(
            "Markers",
            request("A batch with an Idempotency-Key", "POST", "/api/v1/ingest/", 200, answer, body=batch,
                    headers={"Idempotency-Key": "{{idempotency_key}}"}, prerequest=run_setup("step4")),
            request("Its retry: the first answer again", "POST", "/api/v1/ingest/", 200, answer, body=batch,
                    headers={"Idempotency-Key": "{{idempotency_key}}"}),
            request("The key with another body: 422", "POST", "/api/v1/ingest/", 422, ERROR_SHAPE, body=other,
                    headers={"Idempotency-Key": "{{idempotency_key}}"}),
            request("Every row read back, once", "GET", "/api/v1/requests/", 200, ids_are("f", "e", "c", "b", "a"),
                    query=[("service", "{{service}}")]),
        )],
    )  # fmt: skip


# --- Step 5: analytics over seeded traffic -------------------------------------------------


def step5() -> dict:
    window = [("from", "{{from}}"), ("to", "{{to}}")]
    # The window: the last two days, whole hours, so that the hourly series covers it exactly.
    setup = [
        "const hour = 3600 * 1000;",
        "const end = Math.ceil((Date.now() + 60000) / hour) * hour;",
        "pm.collectionVariables.set('from', new Date(end - 48 * hour).toISOString());",
        "pm.collectionVariables.set('to', new Date(end).toISOString());",
    ]
    kpi_shape = [
        *LATENCY_ORDER,
        "const wellFormed = (k) => {",
        "    pm.expect(k).to.include.all.keys('hits', 'errors', 'error_rate', 'rps', 'apdex', 'latency_ms');",
        "    pm.expect(k.errors).to.be.within(0, k.hits);",
        "    if (k.hits > 0) {",
        "        pm.expect(k.error_rate).to.be.closeTo(k.errors / k.hits, 0.0006);",
        "        pm.expect(k.apdex).to.be.within(0, 1);",
        "        pm.expect(ordered(k), JSON.stringify(k.latency_ms)).to.eql(true);",
        "    }",
        "};",
    ]
    sorted_by = lambda what: [  # noqa: E731
        f"const value = (r) => {what};",
        "pm.test('ranked, at most the limit', () => {",
        "    pm.expect(body.results.length).to.be.within(1, 10);",
        "    body.results.slice(1).forEach((r, i) => pm.expect(value(r)).to.be.at.most(value(body.results[i])));",
        "    body.results.forEach((r) => pm.expect(r).to.include.all.keys('service', 'endpoint', 'method', 'hits'));",
        "});",
    ]
    total = lambda field: [  # noqa: E731
        f"pm.test('the {field} add up to the KPIs', () => {{",
        f"    const sum = body.results.reduce((s, r) => s + r.{field}, 0);",
        f"    pm.expect(sum).to.eql(Number(pm.collectionVariables.get('kpi_{field}')));",
        "});",
    ]
    kpis = folder(
        "KPIs",
        request("KPIs of the project", "GET", "/api/v1/kpis/", 200, [*kpi_shape, "pm.test('traffic, error rate, percentiles in order, Apdex', () => {", "    wellFormed(body);", "    pm.expect(body.hits).to.be.above(0);", "    pm.collectionVariables.set('kpi_hits', body.hits);", "    pm.collectionVariables.set('kpi_errors', body.errors);", "});"], query=window, prerequest=setup),
        request("KPIs of one service: part of the project's", "GET", "/api/v1/kpis/", 200, [*kpi_shape, "pm.test('a share of the traffic', () => {", "    wellFormed(body);", "    pm.expect(body.hits).to.be.within(1, Number(pm.collectionVariables.get('kpi_hits')));", "});"], query=[("service", "checkout"), *window]),
        request("Hourly series: whole window, zero-filled", "GET", "/api/v1/kpis/timeseries/", 200, [*kpi_shape, "pm.test('48 hourly buckets in order', () => {", "    pm.expect(body.results).to.have.lengthOf(48);", "    body.results.slice(1).forEach((b, i) => pm.expect(Date.parse(b.bucket) - Date.parse(body.results[i].bucket)).to.eql(3600000));", "    body.results.forEach(wellFormed);", "});", *total("hits"), *total("errors")], query=[("interval", "hour"), *window]),
        request("Series with an unknown interval: 400 naming it", "GET", "/api/v1/kpis/timeseries/", 400,
                [*ERROR_SHAPE, "pm.test('interval named', () => { pm.expect(body.errors.interval[0]).to.include('week'); });"],
                query=[("interval", "week")]),
        request("Services: their traffic adds up", "GET", "/api/v1/services/", 200,
                [*kpi_shape, "pm.test('each well formed', () => body.results.forEach(wellFormed));", *total("hits"), *total("errors")], query=window),
    )  # fmt: skip
    rankings = folder(
        "Top endpoints",
        request("By hits", "GET", "/api/v1/top-endpoints/", 200, sorted_by("r.hits"),
                query=[("by", "hits"), ("limit", "10"), *window]),
        request("By error rate", "GET", "/api/v1/top-endpoints/", 200, sorted_by("r.error_rate"),
                query=[("by", "error_rate"), ("limit", "10"), *window]),
        request("By p95", "GET", "/api/v1/top-endpoints/", 200, sorted_by("r.latency_ms.p95"),
                query=[("by", "p95"), ("limit", "10"), *window]),
        request("An unknown ranking: 400 naming it", "GET", "/api/v1/top-endpoints/", 400,
                [*ERROR_SHAPE, "pm.test('by named', () => { pm.expect(body.errors.by[0]).to.include('nope'); });"],
                query=[("by", "nope")]),
    )  # fmt: skip
    search = folder(
        "Search",
        request("Keyword search", "GET", "/api/v1/search/", 200, [
            "pm.test('keyword mode, requests of the project', () => {",
            "    pm.expect(body.mode).to.eql('keyword');",
            "    pm.expect(body.results).to.be.an('array');",
            "    body.results.forEach((r) => pm.expect(r).to.include.all.keys('event_id', 'service', 'endpoint'));",
            "});",
        ], query=[("q", "timeout"), ("mode", "keyword"), *window]),
    )  # fmt: skip
    return collection(
        5,
        "Step 5, analytics over the project's traffic (seeded by the step): KPIs well formed, "
        "the hourly series and the services adding up to them, rankings in order.",
        [kpis, rankings, search],
    )


BUILDERS = {1: step1, 2: step2, 3: step3, 4: step4, 5: step5}


def path_of(step: int) -> Path:
    return POSTMAN / f"APM_Observability_Step{step}.postman_collection.json"


def render(step: int) -> str:
    return json.dumps(BUILDERS[step](), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    for step in BUILDERS:
        path_of(step).write_text(render(step))
        print(f"wrote {path_of(step).relative_to(POSTMAN.parent)}")


if __name__ == "__main__":
    main()
