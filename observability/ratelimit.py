"""Per-key rate limits (ingest events, read requests): token buckets in PostgreSQL, shared
by every worker and every node."""

from __future__ import annotations

import math

from django.db import connection

# One statement takes `cost` tokens if the refilled bucket holds them; no row comes
# back when it does not. clock_timestamp(), not now(): now() is frozen per transaction.
TAKE_TOKENS = """
SET LOCAL synchronous_commit = off;
INSERT INTO apm_rate_bucket AS b (key_id, kind, tokens, updated_at)
VALUES (%(key)s, %(kind)s, %(capacity)s - %(cost)s, clock_timestamp())
ON CONFLICT (key_id, kind) DO UPDATE
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
FROM apm_rate_bucket WHERE key_id = %(key)s AND kind = %(kind)s
"""


def take(key_id: int, kind: str, cost: int, rate: int, burst: int) -> float:
    """Take `cost` tokens from the key's bucket of `kind`: 0 if allowed, else seconds to
    wait. `rate` tokens per second refill it, up to `burst`; a rate of 0 is no limit."""
    if rate <= 0:
        return 0.0
    params = {"key": key_id, "kind": kind, "cost": cost, "rate": rate,
              "capacity": max(burst, cost)}  # fmt: skip
    # Its own transaction, without waiting for the WAL flush: losing a bucket update in
    # a crash is harmless, and the request's own transaction must not hold this row's
    # lock. SET LOCAL and the upsert travel as one multi-statement query (client-side
    # parameter binding), which PostgreSQL runs as one implicit transaction: one round
    # trip, no BEGIN/COMMIT. nextset() moves to the upsert's result.
    with connection.cursor() as cursor:
        cursor.execute(TAKE_TOKENS, params)
        cursor.nextset()
        if cursor.fetchone() is not None:
            return 0.0
        cursor.execute(AVAILABLE_TOKENS, params)
        available = cursor.fetchone()[0]
    return max(1.0, math.ceil((cost - available) / rate))
