"""docs/PRISE_EN_MAIN.md: every command of its bash blocks is a line of .ci/run, which CI
runs on a clean clone, so the runbook cannot drift from what is executed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def commands(text: str) -> list[str]:
    """Shell lines with continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", "", text)
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_every_runbook_command_is_run_by_ci():
    runbook = (ROOT / "docs" / "PRISE_EN_MAIN.md").read_text()
    ci = set(commands((ROOT / ".ci" / "run").read_text()))
    documented = [command for block in BLOCK.findall(runbook) for command in commands(block)]
    assert len(documented) >= 8
    missing = [command for command in documented if command not in ci]
    assert not missing, f"not run by .ci/run: {missing}"


def test_runbook_commands_run_in_the_runbooks_order_in_ci():
    ci = commands((ROOT / ".ci" / "run").read_text())
    documented = [
        c
        for block in BLOCK.findall((ROOT / "docs" / "PRISE_EN_MAIN.md").read_text())
        for c in commands(block)
    ]
    positions = [ci.index(command) for command in documented]
    assert positions == sorted(positions)
