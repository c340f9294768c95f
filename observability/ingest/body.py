"""Reading an ingest request body safely: size caps, gzip without bombs, content types."""

from __future__ import annotations

import zlib

from django.http import HttpRequest

from observability.ingest.errors import (
    MalformedBody,
    PayloadTooLarge,
    UnsupportedEncoding,
    UnsupportedMediaType,
)


def read_body(request: HttpRequest, max_bytes: int, content_types: tuple[str, ...]) -> bytes:
    """The (decompressed) body, at most `max_bytes`; raises IngestRejected errors."""
    if request.content_type not in content_types:
        raise UnsupportedMediaType(f"Content-Type must be {' or '.join(content_types)}.")
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The body exceeds {max_bytes} bytes.")
    # Read the stream directly: HttpRequest.body would apply Django's form-upload limit.
    raw = request.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"The body exceeds {max_bytes} bytes.")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding == "gzip":
        return _gunzip(raw, max_bytes)
    raise UnsupportedEncoding("Unsupported Content-Encoding: send identity or gzip.")


def _gunzip(raw: bytes, max_bytes: int) -> bytes:
    """Every member of a gzip body (RFC 1952 allows several, one after the other)."""
    parts: list[bytes] = []
    size, rest = 0, raw
    while rest:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            # Never inflate more than the cap: a small gzip bomb cannot use up memory.
            data = decompressor.decompress(rest, max_bytes + 1 - size)
        except zlib.error as exc:
            raise MalformedBody(f"Invalid gzip body: {exc}") from exc
        size += len(data)
        if size > max_bytes or decompressor.unconsumed_tail:
            raise PayloadTooLarge(f"The decompressed body exceeds {max_bytes} bytes.")
        if not decompressor.eof:
            raise MalformedBody("Invalid gzip body: truncated.")
        parts.append(data)
        rest = decompressor.unused_data
    return b"".join(parts)
