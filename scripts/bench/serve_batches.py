"""Serve ingest batches through Django's WSGI handler in this process (for
ingest_instructions.py, which runs it under valgrind in the checkout being measured).

Usage: serve_batches.py KEY BODIES_JSON FIRST N. Serves body FIRST (start-up: imports,
URL resolution, caches), then the next N; each body is served once per database. Only
Django's public WSGI interface is used, so any version of the project can be measured.
"""

import io
import os
import sys
from pathlib import Path

sys.path.insert(0, os.getcwd())  # the checkout being measured, not this file's

import django

django.setup()

import orjson  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402


def post(app: WSGIHandler, key: str, body: bytes) -> None:
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/ingest/", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {key}",
    }  # fmt: skip
    statuses = []
    answer = b"".join(app(environ, lambda status, headers, *_: statuses.append(status)))
    if not statuses[0].startswith("200"):
        raise SystemExit(f"{statuses[0]}: {answer[:500]!r}")


def main() -> None:
    key, bodies_path, first, count = sys.argv[1], Path(sys.argv[2]), *map(int, sys.argv[3:5])
    bodies = orjson.loads(bodies_path.read_bytes())[first : first + 1 + count]
    app = WSGIHandler()
    for body in bodies:
        post(app, key, body.encode())


main()
