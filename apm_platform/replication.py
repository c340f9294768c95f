"""How fresh a streaming standby is, judged against its primary's WAL position.

A standby's own view is not enough: when its WAL receiver is cut off, it has replayed
everything it received, so "received = replayed" says it is fresh forever. Instead each
process samples the primary's current WAL position (a cheap query) at every probe. A
standby that has replayed past the last sample is fresh; one that has not is as stale as
the newest sample it has replayed (or older): freshness is known to within one probe
interval. On an idle primary the position does not move, so an idle standby stays fresh.
A standby whose WAL receiver is not streaming is not fresh either.
"""

from __future__ import annotations

import collections
import dataclasses
import time

# A standby's position, its WAL receiver, and the replay timestamp (for reports).
STANDBY_STATE = """
SELECT pg_is_in_recovery(),
       pg_last_wal_replay_lsn()::text,
       (SELECT status FROM pg_stat_wal_receiver),
       EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())
"""
PRIMARY_POSITION = "SELECT pg_current_wal_lsn()::text"
# Samples older than this are forgotten; a standby behind all of them is at least this stale.
HISTORY_S = 300.0


def lsn(text: str | None) -> int | None:
    """'16/B374D848' -> an integer that orders like the WAL position."""
    if not text:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclasses.dataclass(frozen=True)
class StandbyState:
    in_recovery: bool
    replayed: int | None
    receiver: str | None  # pg_stat_wal_receiver.status ("streaming"), None: no receiver
    since_last_replay_s: float | None


def standby_state(cursor) -> StandbyState:
    cursor.execute(STANDBY_STATE)
    in_recovery, replayed, receiver, since_replay = cursor.fetchone()
    return StandbyState(
        in_recovery, lsn(replayed), receiver,
        None if since_replay is None else float(since_replay),
    )  # fmt: skip


def primary_position(cursor) -> int:
    cursor.execute(PRIMARY_POSITION)
    return lsn(cursor.fetchone()[0])


class PrimaryHistory:
    """The primary's WAL positions over time, as this process saw them."""

    def __init__(self):
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def observe(self, position: int, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        self._samples.append((at, position))
        while self._samples and at - self._samples[0][0] > HISTORY_S:
            self._samples.popleft()

    def staleness_s(self, replayed: int, now: float | None = None) -> float:
        """Seconds since the last sample the standby has replayed past (0: it has replayed
        past the newest sample). Ask before observing the sample of the same probe."""
        now = time.monotonic() if now is None else now
        if not self._samples or replayed >= self._samples[-1][1]:
            return 0.0
        caught_up_at = self._samples[0][0]  # behind every sample: at least this stale
        for at, position in self._samples:
            if position <= replayed:
                caught_up_at = at
        return now - caught_up_at

    def clear(self) -> None:
        self._samples.clear()
