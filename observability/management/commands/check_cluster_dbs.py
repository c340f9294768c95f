"""Probe every configured database: reachable, role, lag, version, extensions."""

from __future__ import annotations

import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from apm_platform import replication

PROBE_SQL = """
SELECT current_setting('server_version'),
       (SELECT coalesce(json_object_agg(extname, extversion), '{}') FROM pg_extension
        WHERE extname IN ('timescaledb', 'vector'))
"""


class Command(BaseCommand):
    help = (
        "Check the primary (`default`) and every replica of DATABASE_REPLICA_URLS: reachable, "
        "role (primary/standby from pg_is_in_recovery()), for standbys the WAL receiver's "
        "status and how far behind the primary's WAL position they are (bytes) and since "
        "their last replayed transaction (seconds), server version, timescaledb and vector "
        "extensions. Exits 1 if the primary is unreachable or a configured replica is in "
        "fact a primary."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="One JSON document on stdout.")

    def handle(self, *args, json=False, **options):
        primary = probe(DEFAULT_DB_ALIAS)
        reports = [primary]
        reports += [
            probe(alias, primary.get("wal_position")) for alias in settings.DATABASE_REPLICAS
        ]
        if json:
            self.stdout.write(orjson.dumps(reports, option=orjson.OPT_INDENT_2).decode())
        else:
            for report in reports:
                self.stdout.write(describe(report))
        problems = problems_of(reports)
        if problems:
            raise CommandError("; ".join(problems))


def probe(alias: str, primary_position: int | None = None) -> dict:
    params = connections[alias].settings_dict
    report = {
        "alias": alias, "host": params["HOST"], "port": params["PORT"], "name": params["NAME"],
        "expected_role": "primary" if alias == DEFAULT_DB_ALIAS else "standby",
    }  # fmt: skip
    try:
        with connections[alias].cursor() as cursor:
            state = replication.standby_state(cursor)
            position = None if state.in_recovery else replication.primary_position(cursor)
            cursor.execute(PROBE_SQL)
            version, extensions = cursor.fetchone()
    except DatabaseError as exc:
        connections[alias].close()
        return {**report, "reachable": False, "error": str(exc).strip().splitlines()[0]}
    report |= {
        "reachable": True,
        "role": "standby" if state.in_recovery else "primary",
        "server_version": version,
        "extensions": extensions if isinstance(extensions, dict) else orjson.loads(extensions),
    }
    if not state.in_recovery:
        return {**report, "wal_position": position}
    behind = None
    if primary_position is not None and state.replayed is not None:
        behind = max(0, primary_position - state.replayed)
    return {
        **report,
        "wal_receiver": state.receiver,
        "behind_primary_bytes": behind,
        "since_last_replay_s": state.since_last_replay_s,
    }


def problems_of(reports: list[dict]) -> list[str]:
    problems = []
    for report in reports:
        if not report["reachable"]:
            if report["expected_role"] == "primary":
                problems.append(f"primary {report['alias']} is unreachable")
        elif report["role"] != report["expected_role"]:
            expected, actual = report["expected_role"], report["role"]
            problems.append(f"{report['alias']} is configured as {expected} but is a {actual}")
    return problems


def describe(report: dict) -> str:
    where = f"{report['alias']} ({report['host']}:{report['port']}/{report['name']})"
    if not report["reachable"]:
        return f"{where}: UNREACHABLE - {report['error']}"
    replication_state = ""
    if report["role"] == "standby":
        behind = report["behind_primary_bytes"]
        replication_state = f", WAL receiver {report['wal_receiver'] or 'not running'}" + (
            "" if behind is None else f", {behind} bytes behind the primary"
        )
    extensions = ", ".join(f"{k} {v}" for k, v in sorted(report["extensions"].items())) or "none"
    return (f"{where}: {report['role']}{replication_state}, PostgreSQL "
            f"{report['server_version']}, extensions: {extensions}")  # fmt: skip
