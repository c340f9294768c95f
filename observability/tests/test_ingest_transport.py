"""Ingest bodies as real clients send them, through the real servers: gunicorn (as in
production), and the shipped Nginx TLS proxy in front of it.

Chunked bodies without Content-Length (streaming exporters), gzip, protobuf and JSON,
and the OpenTelemetry SDK's own exporter over HTTPS.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.client
import shutil
import ssl
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from apm_platform.processes import BASE_DIR, Gunicorn, free_port, manage, scratch_postgres
from apm_platform.tests.system_processes import self_signed_certificate
from observability.tests.test_ingest_trust import http_server_span, sdk_spans
from observability.tests.test_otlp import to_otlp_json

pytestmark = pytest.mark.slow
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
requires_nginx = pytest.mark.skipif(
    not Path(NGINX).exists(), reason="needs nginx (apt-get install nginx; .ci/run does)"
)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    with scratch_postgres(tmp_path_factory.mktemp("transport")) as server:
        yield server


@pytest.fixture(scope="module")
def server(database, tmp_path_factory):
    gunicorn = Gunicorn(database.url(), tmp_path_factory.mktemp("metrics") / "m")
    yield gunicorn
    log = gunicorn.stop()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def project_key(database):
    project = f"t{uuid.uuid4().hex[:8]}"
    return project, manage(database.url(), "create_api_key", "--project", project).strip()


@dataclasses.dataclass(frozen=True)
class Proxy:
    port: int
    certificate: Path  # its own CA, for localhost


@pytest.fixture(scope="module")
def proxy(server, tmp_path_factory):
    """The shipped Nginx configuration (docker/nginx) on loopback ports, in front of the
    test's gunicorn instead of the `web` container."""
    if not Path(NGINX).exists():
        pytest.skip("needs nginx (apt-get install nginx; .ci/run does)")
    prefix = tmp_path_factory.mktemp("nginx")
    certificate, _ = self_signed_certificate(prefix / "certs", "localhost")
    https = free_port()
    rewrites = {
        "/etc/nginx/": f"{prefix}/",
        "pid /tmp/nginx.pid": f"pid {prefix}/nginx.pid",
        "web:8000": f"127.0.0.1:{server.port}",
        "listen 8080;": f"listen 127.0.0.1:{free_port()};",
        "listen 8443 ssl http2;": f"listen 127.0.0.1:{https} ssl http2;",
        "listen 9443 ssl;": f"listen 127.0.0.1:{free_port()} ssl;",
    }
    (prefix / "conf.d").mkdir()
    for source, target in [
        ("docker/nginx/nginx.conf", "nginx.conf"),
        ("docker/nginx/conf.d/default.conf", "conf.d/default.conf"),
    ]:
        text = (BASE_DIR / source).read_text()
        for old, new in rewrites.items():
            text = text.replace(old, new)
        (prefix / target).write_text(text)
    shutil.copy("/etc/nginx/mime.types", prefix / "mime.types")
    process = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _wait_for_port(https, process)
    yield Proxy(https, certificate)
    process.terminate()
    process.wait(timeout=30)


def _wait_for_port(port: int, process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {process.stderr.read().decode()[-2000:]}")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nginx did not listen on {port}")


def events(count: int) -> list[dict]:
    now = datetime.now(UTC)
    return [
        {"time": (now - timedelta(seconds=n)).isoformat(), "service": "shop",
         "path": f"/items/{n}", "method": "GET", "status_code": 200, "latency_ms": 3.5}
        for n in range(count)
    ]  # fmt: skip


def bodies() -> dict[str, tuple[str, str, bytes, dict]]:
    """name -> (path, content type, body, extra headers), each worth 300 records."""
    spans = sdk_spans(lambda tracer: [http_server_span(tracer, f"/r{n}") for n in range(300)])
    json_batch = orjson.dumps(events(300))
    return {
        "rest json": ("/api/v1/ingest/", "application/json", json_batch, {}),
        "rest gzip": ("/api/v1/ingest/", "application/json", gzip.compress(json_batch),
                      {"Content-Encoding": "gzip"}),
        "otlp protobuf": ("/v1/traces", "application/x-protobuf",
                          encode_spans(spans).SerializeToString(), {}),
        "otlp json": ("/v1/traces", "application/json", orjson.dumps(to_otlp_json(spans)), {}),
    }  # fmt: skip


def send_chunked(connection: http.client.HTTPConnection, path, content_type, body, headers):
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    connection.request(
        "POST", path, body=iter(pieces), encode_chunked=True,
        headers={"Content-Type": content_type, **headers},
    )  # fmt: skip
    response = connection.getresponse()
    return response.status, response.read()


def stored_in(database, project: str) -> int:
    with psycopg.connect(database.url()) as conn:
        return conn.execute(
            "SELECT count(*) FROM api_request r JOIN apm_project p ON p.id = r.project_id "
            "WHERE p.slug = %s",
            [project],
        ).fetchone()[0]


@pytest.mark.parametrize("name", list(bodies()))
def test_a_chunked_body_is_read_whole_by_gunicorn(server, database, project_key, name):
    project, key = project_key
    path, content_type, body, headers = bodies()[name]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

    status, answer = send_chunked(
        connection, path, content_type, body, {"Authorization": f"Bearer {key}", **headers}
    )

    assert status == 200, answer[:500]
    assert stored_in(database, project) == 300


@requires_nginx
@pytest.mark.parametrize("name", list(bodies()))
def test_a_chunked_body_is_read_whole_behind_the_shipped_nginx(proxy, database, project_key, name):
    project, key = project_key
    path, content_type, body, headers = bodies()[name]
    connection = http.client.HTTPSConnection(
        "localhost", proxy.port, timeout=30,
        context=ssl.create_default_context(cafile=proxy.certificate),
    )  # fmt: skip

    status, answer = send_chunked(
        connection, path, content_type, body, {"Authorization": f"Bearer {key}", **headers}
    )

    assert status == 200, answer[:500]
    assert stored_in(database, project) == 300


@requires_nginx
def test_the_sdk_exporter_reaches_ingest_through_the_shipped_nginx(
    proxy, database, project_key, monkeypatch
):
    project, key = project_key
    # requests lets these variables override the exporter's certificate_file.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    exporter = OTLPSpanExporter(
        endpoint=f"https://localhost:{proxy.port}/v1/traces",
        headers={"Authorization": f"Bearer {key}"},
        certificate_file=str(proxy.certificate),
    )

    result = exporter.export(sdk_spans(lambda tracer: http_server_span(tracer)))

    assert result == SpanExportResult.SUCCESS
    assert stored_in(database, project) == 1
