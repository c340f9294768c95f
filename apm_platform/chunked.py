"""Request bodies sent with `Transfer-Encoding: chunked`, made ordinary ones.

Django reads exactly CONTENT_LENGTH bytes of a body, so a chunked body (no
Content-Length: several OpenTelemetry exporters stream their exports that way) would be
read as empty. This middleware reads it first, at most the largest body the app accepts
plus one byte (a longer body is cut there, and the view's own size check answers 413),
and gives the request those bytes with their length.

gunicorn (like mod_wsgi) de-chunks the body itself and says so with
`wsgi.input_terminated`: the input then ends where the body ends. Servers that do not
(Django's runserver: wsgiref) give the raw socket stream, chunk framing included; the
framing is decoded here (RFC 9112, section 7.1). Behind Nginx with request buffering
(the shipped configuration) the body arrives with a Content-Length anyway.
"""

from __future__ import annotations

import io

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse

CHUNKED = "chunked"


class ChunkedBodyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if CHUNKED in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            limit = max(settings.APM_INGEST_MAX_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE) + 1
            body = read_chunked_body(request.META, limit)
            request.META["CONTENT_LENGTH"] = str(len(body))
            # WSGIRequest reads its body from this stream (bounded by CONTENT_LENGTH).
            request._stream = LimitedStream(io.BytesIO(body), len(body))
        return self.get_response(request)


def read_chunked_body(environ, limit: int) -> bytes:
    """The body, at most `limit` bytes."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        return _read_up_to(stream.read, limit)
    # runserver wraps the socket in a LimitedStream of CONTENT_LENGTH bytes, 0 here; its
    # reader functions are the socket file's own.
    read = getattr(stream, "_read", stream.read)
    readline = getattr(stream, "_readline", stream.readline)
    return _dechunk(read, readline, limit)


def _read_up_to(read, limit: int) -> bytes:
    parts, size = [], 0
    while size < limit and (data := read(min(65536, limit - size))):
        parts.append(data)
        size += len(data)
    return b"".join(parts)


def _dechunk(read, readline, limit: int) -> bytes:
    parts, size = [], 0
    while True:
        line = readline(1024)
        try:
            chunk = int(line.split(b";", 1)[0].strip() or b"x", 16)
        except ValueError:
            break  # malformed framing: what was read is the body (the view will judge it)
        if chunk == 0:
            while readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailer fields
            break
        data = _read_up_to(read, chunk)
        read(2)  # the CRLF after the chunk
        parts.append(data)
        size += len(data)
        if size >= limit or len(data) < chunk:
            break
    return b"".join(parts)[:limit]
