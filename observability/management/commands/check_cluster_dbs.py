"""Probe every configured database: reachable, role, lag, version, extensions."""

from __future__ import annotations

import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from apm_platform.db_router import REPLAY_LAG

# The replay lag as the router judges it (NULL on a primary), version and extensions.
PROBE_SQL = f"""
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN {REPLAY_LAG} END,
       current_setting('server_version'),
       (SELECT coalesce(json_object_agg(extname, extversion), '{{}}') FROM pg_extension
        WHERE extname IN ('timescaledb', 'vector'))
"""  # noqa: S608 - constants only


class Command(BaseCommand):
    help = (
        "Check the primary (`default`) and every replica of DATABASE_REPLICA_URLS: reachable, "
        "role (primary/standby from pg_is_in_recovery()), replay lag, server version, "
        "timescaledb and vector extensions. Exits 1 if the primary is unreachable or a "
        "configured replica is in fact a primary."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="One JSON document on stdout.")

    def handle(self, *args, json=False, **options):
        reports = [probe(alias) for alias in [DEFAULT_DB_ALIAS, *settings.DATABASE_REPLICAS]]
        if json:
            self.stdout.write(orjson.dumps(reports, option=orjson.OPT_INDENT_2).decode())
        else:
            for report in reports:
                self.stdout.write(describe(report))
        problems = problems_of(reports)
        if problems:
            raise CommandError("; ".join(problems))


def probe(alias: str) -> dict:
    params = connections[alias].settings_dict
    report = {
        "alias": alias, "host": params["HOST"], "port": params["PORT"], "name": params["NAME"],
        "expected_role": "primary" if alias == DEFAULT_DB_ALIAS else "standby",
    }  # fmt: skip
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(PROBE_SQL)
            in_recovery, lag, version, extensions = cursor.fetchone()
    except DatabaseError as exc:
        connections[alias].close()
        return {**report, "reachable": False, "error": str(exc).strip().splitlines()[0]}
    return {
        **report,
        "reachable": True,
        "role": "standby" if in_recovery else "primary",
        "replay_lag_s": None if lag is None else float(lag),
        "server_version": version,
        "extensions": extensions if isinstance(extensions, dict) else orjson.loads(extensions),
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
    lag = "" if report["replay_lag_s"] is None else f", replay lag {report['replay_lag_s']:.2f}s"
    extensions = ", ".join(f"{k} {v}" for k, v in sorted(report["extensions"].items())) or "none"
    return (f"{where}: {report['role']}{lag}, PostgreSQL {report['server_version']}, "
            f"extensions: {extensions}")  # fmt: skip
