"""Per-key ingest rate limit: a token bucket in PostgreSQL, shared by every worker."""

from __future__ import annotations

import math

from django.db import connection, transaction

# One statement takes `cost` tokens if the refilled bucket holds them; no row comes
# back when it does not. clock_timestamp(), not now(): now() is frozen per transaction.
TAKE_TOKENS = """
SET LOCAL synchronous_commit = off;
INSERT INTO apm_ingest_bucket AS b (key_id, tokens, updated_at)
VALUES (%(key)s, %(capacity)s - %(cost)s, clock_timestamp())
ON CONFLICT (key_id) DO UPDATE
SET tokens = LEAST(%(capacity)s,
                   b.tokens + %(rate)s * EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at))
             - %(cost)s,
    updated_at = clock_timestamp()
WHERE LEAST(%(capacity)s,
            b.tokens + %(rate)s * EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at))
      >= %(cost)s
RETURNING tokens
"""

AVAILABLE_TOKENS = """
SELECT LEAST(%(capacity)s, tokens + %(rate)s * EXTRACT(EPOCH FROM clock_timestamp() - updated_at))
FROM apm_ingest_bucket WHERE key_id = %(key)s
"""


def take(key_id: int, cost: int, rate: int, burst: int) -> float:
    """Take `cost` events from the key's bucket: 0 if allowed, else seconds to wait."""
    if rate <= 0:
        return 0.0
    params = {"key": key_id, "cost": cost, "rate": rate, "capacity": max(burst, cost)}
    # Its own transaction, without waiting for the WAL flush: losing a bucket update in
    # a crash is harmless, and the ingest transaction must not hold this row's lock.
    # SET LOCAL and the upsert travel in one round trip (client-side parameter binding);
    # nextset() moves to the upsert's result.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(TAKE_TOKENS, params)
        cursor.nextset()
        if cursor.fetchone() is not None:
            return 0.0
        cursor.execute(AVAILABLE_TOKENS, params)
        available = cursor.fetchone()[0]
    return max(1.0, math.ceil((cost - available) / rate))
