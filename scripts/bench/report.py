"""What every benchmark writes: pretty JSON under reports/bench/, one line on stdout."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson

from apm_platform.processes import BASE_DIR

REPORTS = BASE_DIR / "reports" / "bench"


def write_report(result: dict, output: Path) -> None:
    """The results: pretty JSON in the report file, one line on stdout (printed last)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    print(orjson.dumps(result).decode())


def describe(checkout: Path) -> str:
    """The commit of a checkout a benchmark compared with, for its report."""
    return subprocess.run(  # noqa: S603 - git on the operator's own checkout
        ["git", "-C", str(checkout), "describe", "--always", "--dirty"],  # noqa: S607
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
