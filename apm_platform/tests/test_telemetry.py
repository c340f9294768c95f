"""JSON access logs with request ids, and the Prometheus metrics."""

import logging
import sys

import orjson
import pytest

from apm_platform.jsonlog import JsonLogFormatter, request_id_var


def test_every_response_carries_a_request_id(client):
    generated = client.get("/healthz")["X-Request-ID"]
    echoed = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"]
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID="bad id; drop table")["X-Request-ID"]

    assert len(generated) == 32
    assert echoed == "abc-123"
    assert replaced not in ("bad id; drop table", "")


def test_access_log_line_is_json_with_request_fields(client, caplog):
    with caplog.at_level(logging.INFO, logger="apm.access"):
        client.get("/healthz", HTTP_X_REQUEST_ID="req-42")

    record = next(r for r in caplog.records if r.name == "apm.access")
    line = orjson.loads(JsonLogFormatter().format(record))
    assert line["path"] == "/healthz"
    assert line["status"] == 200
    assert line["view"] == "healthz"
    assert line["duration_ms"] >= 0
    assert line["level"] == "info"
    assert line["ts"].endswith("+00:00")


def test_formatter_adds_the_current_request_id_and_exceptions():
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.makeLogRecord(
        {
            "name": "x",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "failed %s",
            "args": ("op",),
            "exc_info": exc_info,
        }
    )
    token = request_id_var.set("rid-7")
    try:
        line = orjson.loads(JsonLogFormatter().format(record))
    finally:
        request_id_var.reset(token)

    assert line["message"] == "failed op"
    assert line["request_id"] == "rid-7"
    assert "ValueError: boom" in line["exception"]


@pytest.mark.django_db
def test_metrics_count_requests_by_view_and_status(client):
    client.get("/api/v1/requests/")  # 401: no key

    body = client.get("/metrics").content.decode()

    assert 'apm_http_requests_total{method="GET",status="401",view="request-list"}' in body
    assert "apm_http_request_duration_seconds_bucket" in body


def test_unknown_paths_share_one_label(client, db):  # /metrics reads the SLO statuses
    client.get("/no/such/path/12345")

    body = client.get("/metrics").content.decode()
    assert "/no/such/path" not in body
    assert 'status="404",view="unmatched"' in body
