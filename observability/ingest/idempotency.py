"""`Idempotency-Key` for ingest requests (the IETF httpapi draft's semantics).

A client that cannot give every event an `event_id` can still retry safely: a request
with the same key and the same body as an earlier one is answered with the earlier
result and stores nothing; the same key with another body is refused (422); a retry
while the first request is still being processed is refused (409), to be retried.
Keys are per project and kept APM_IDEMPOTENCY_TTL_HOURS. Only successful results are
kept: a refused request stored nothing, so its retry is simply processed again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.http import HttpRequest
from django.utils import timezone

from observability.ingest.errors import IngestRejected, MalformedBody
from observability.models import IdempotencyKey

HEADER = "Idempotency-Key"
# A Structured Field string (quoted) as the draft says, or the bare token many clients send.
_KEY = re.compile(r'^"?([\x21\x23-\x7e]{1,255})"?$')
# A first request that has not finished after this long died with its worker.
IN_FLIGHT_LIMIT = timedelta(minutes=5)

CLAIM = """
INSERT INTO apm_idempotency_key (project_id, key, fingerprint, result, created_at)
VALUES (%(project)s, %(key)s, %(fingerprint)s, NULL, now())
ON CONFLICT (project_id, key) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, result = NULL, created_at = EXCLUDED.created_at
WHERE apm_idempotency_key.created_at < now() - %(ttl)s
   OR (apm_idempotency_key.result IS NULL
       AND apm_idempotency_key.created_at < now() - %(in_flight)s)
RETURNING 1
"""


class KeyInUse(IngestRejected):
    """The first request with this key is still being processed (409)."""


class KeyReused(IngestRejected):
    """The key was used for another request body (422)."""


@dataclasses.dataclass(frozen=True)
class Claim:
    project_id: int
    key: str
    # The earlier request's result, for a retry; None: this request must be processed.
    replay: dict | None


def key_of(request: HttpRequest) -> str | None:
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    match = _KEY.match(raw.strip())
    if match is None:
        raise MalformedBody(f"{HEADER} must be 1 to 255 visible ASCII characters.")
    return match.group(1)


def claim(project_id: int, key: str, request_line: str, body: bytes) -> Claim:
    """Take the key for this request (its own committed transaction), or find the answer
    of the earlier request that took it. `request_line`: what else makes two requests the
    same (the door and the query string)."""
    fingerprint = hashlib.sha256(request_line.encode() + b"\n" + body).hexdigest()
    params = {
        "project": project_id, "key": key, "fingerprint": fingerprint,
        "ttl": timedelta(hours=settings.APM_IDEMPOTENCY_TTL_HOURS), "in_flight": IN_FLIGHT_LIMIT,
    }  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(CLAIM, params)
        if cursor.fetchone() is not None:
            return Claim(project_id, key, replay=None)
    earlier = IdempotencyKey.objects.get(project_id=project_id, key=key)
    if earlier.fingerprint != fingerprint:
        raise KeyReused(f"This {HEADER} was used for a request with another body.")
    if earlier.result is None:
        raise KeyInUse(f"A request with this {HEADER} is still being processed; retry later.")
    return Claim(project_id, key, replay=earlier.result)


def complete(claim_: Claim, result: dict) -> None:
    """Keep the result (in the transaction that stored the events)."""
    IdempotencyKey.objects.filter(project_id=claim_.project_id, key=claim_.key).update(
        result=result
    )


def release(claim_: Claim) -> None:
    """The request was refused and stored nothing: its retry must be processed again."""
    IdempotencyKey.objects.filter(
        project_id=claim_.project_id, key=claim_.key, result__isnull=True
    ).delete()


def expire() -> int:
    """Delete keys past their time to live; returns how many."""
    cutoff = timezone.now() - timedelta(hours=settings.APM_IDEMPOTENCY_TTL_HOURS)
    return IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()[0]
