"""One step: python -m scripts.steps N --target local|deployed --reports DIR [options].

scripts/stepN_test.sh and scripts/run_all_tests.sh are the entry points: they turn TARGET,
BASE_URL, the database URLs and the keys of the environment into these options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scripts.steps import checks
from scripts.steps.runner import Step
from scripts.steps.target import deployed_target, local_target


def options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.steps", description=__doc__)
    parser.add_argument("step", type=int, choices=sorted(checks.STEPS))
    parser.add_argument("--target", choices=["local", "deployed"], required=True)
    parser.add_argument(
        "--reports", type=Path, required=True, help="reports/all_tests_<UTC timestamp>/"
    )
    deployed = parser.add_argument_group("TARGET=deployed")
    for name in (
        "base-url",
        "monitoring-url",
        "ca-file",
        "database-url",
        "database-reader-urls",
        "database-monitor-url",
        "api-key",
        "admin-api-key",
        "read-api-key",
    ):
        deployed.add_argument(f"--{name}", default="")
    parsed = parser.parse_args(argv)
    if parsed.target == "deployed":
        missing = [
            n
            for n in ("base_url", "database_url", "api_key", "admin_api_key", "read_api_key")
            if not getattr(parsed, n)
        ]
        if missing:
            parser.error("TARGET=deployed needs " + ", ".join(n.upper() for n in missing))
    return parsed


def main(argv: list[str]) -> int:
    parsed = options(argv)
    target = local_target() if parsed.target == "local" else deployed_target(parsed)
    step = Step(parsed.step, checks.TITLES[parsed.step], target, parsed.reports)
    try:
        checks.STEPS[parsed.step](step)
    except SystemExit as stop:  # a check the rest depends on failed; its report is written
        return int(stop.code or 1)
    return step.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
