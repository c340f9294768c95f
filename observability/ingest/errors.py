"""Why the ingest pipeline refuses a whole request. The API layer turns each into its
HTTP answer (observability/api/errors.py); invalid single events are not errors here but
entries of the IngestResult."""

from __future__ import annotations


class IngestRejected(Exception):
    """The request as a whole cannot be ingested; nothing of it was stored."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class PayloadTooLarge(IngestRejected):
    """More bytes or events than the limits allow (413)."""


class UnsupportedMediaType(IngestRejected):
    """A Content-Type the door does not decode (415)."""


class UnsupportedEncoding(IngestRejected):
    """A Content-Encoding other than identity or gzip (415)."""


class MalformedBody(IngestRejected):
    """Not decodable: bad gzip, bad JSON or protobuf, not a batch of events (400)."""


class EmptyBatch(IngestRejected):
    """A batch with no events (400, on the `events` field)."""


class RateLimited(IngestRejected):
    """The API key's ingest rate is used up (429 with Retry-After)."""

    def __init__(self, detail: str, wait_s: float):
        super().__init__(detail)
        self.wait_s = wait_s


class InvalidEvents(IngestRejected):
    """Strict mode: some events are invalid, so none is stored (400 listing them all)."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("The request has invalid events.")
        self.errors = errors
