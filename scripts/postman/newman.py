"""Runs a step collection with newman (the npm package pinned in package-lock.json,
installed by scripts/dev/ui_assets.sh into node_modules/)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from scripts.postman.collections import POSTMAN, path_of

NEWMAN = POSTMAN.parent / "node_modules" / ".bin" / "newman"


def run(
    step: int,
    variables: dict[str, str],
    *,
    ca_file: Path | None = None,
    json_export: Path | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """newman run on APM_Observability_Step<step>; VARIABLES become environment variables
        (--env-var), so they rank above the collection's own. JSON_EXPORT: newman's JSON report
    of every request and assertion (the steps turn it into their checks)."""
    if not NEWMAN.exists():
        raise FileNotFoundError(f"{NEWMAN} is missing: run `make ui-assets` (npm ci)")
    command = [
        str(NEWMAN),
        "run",
        str(path_of(step)),
        "--reporters",
        "cli",
        "--color",
        "off",
        "--timeout-request",
        "30000",
    ]
    for key, value in variables.items():
        command += ["--env-var", f"{key}={value}"]
    if json_export:
        command[4] = "cli,json"
        command += ["--reporter-json-export", str(json_export)]
    if ca_file:
        command += ["--ssl-extra-ca-certs", str(ca_file)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
