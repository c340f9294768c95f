"""The one report writer of the six steps: stepN-report.json, stepN-junit.xml and
stepN-report.html (readable on its own: the table of checks, their durations, the
failures with their output) in the run's directory, reports/all_tests_<UTC timestamp>/."""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass
class CheckResult:
    name: str
    result: str
    duration_s: float
    detail: str = ""  # one line: what was measured (passed) or why it failed/was skipped
    output: str = ""  # the command's or client's output, kept for failures


@dataclass
class StepReport:
    step: int
    title: str
    target: str
    started_at: str
    finished_at: str = ""
    duration_s: float = 0.0
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {
            kind: sum(c.result == kind for c in self.checks) for kind in (PASSED, FAILED, SKIPPED)
        }

    @property
    def result(self) -> str:
        return FAILED if self.counts[FAILED] or not self.checks else PASSED


def write(report: StepReport, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / f"step{report.step}"
    paths = [
        base.with_name(base.name + "-report.json"),
        base.with_name(base.name + "-junit.xml"),
        base.with_name(base.name + "-report.html"),
    ]
    paths[0].write_text(_json(report))
    paths[1].write_bytes(_junit(report))
    paths[2].write_text(_html(report))
    return paths


def _json(report: StepReport) -> str:
    document = {
        "step": report.step,
        "title": report.title,
        "target": report.target,
        "result": report.result,
        "started_at": report.started_at,
        "finished_at": report.finished_at,
        "duration_s": report.duration_s,
        "counts": report.counts,
        "checks": [asdict(check) for check in report.checks],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _junit(report: StepReport) -> bytes:
    counts = report.counts
    suite = ET.Element(
        "testsuite",
        {
            "name": f"step{report.step}: {report.title}",
            "tests": str(len(report.checks)),
            "failures": str(counts[FAILED]),
            "errors": "0",
            "skipped": str(counts[SKIPPED]),
            "time": f"{report.duration_s:.3f}",
            "timestamp": report.started_at,
        },
    )
    ET.SubElement(
        ET.SubElement(suite, "properties"), "property", {"name": "target", "value": report.target}
    )
    for check in report.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": f"step{report.step}",
                "name": check.name,
                "time": f"{check.duration_s:.3f}",
            },
        )
        if check.result == FAILED:
            ET.SubElement(case, "failure", {"message": check.detail}).text = check.output
        elif check.result == SKIPPED:
            ET.SubElement(case, "skipped", {"message": check.detail})
        elif check.detail:
            ET.SubElement(case, "system-out").text = check.detail
    ET.indent(suite)
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True) + b"\n"


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #1d232a; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #d8dde3; padding: .35em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.passed { color: #1a7f37; font-weight: 600; } .failed { color: #cf222e; font-weight: 600; }
.skipped { color: #9a6700; font-weight: 600; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; white-space: pre-wrap; font-size: 12px; }
"""


def _html(report: StepReport) -> str:
    e = html.escape
    counts = report.counts
    rows = "\n".join(
        f'<tr><td>{i}</td><td>{e(c.name)}</td><td class="{c.result}">{c.result}</td>'
        f'<td class="num">{c.duration_s:.2f} s</td><td>{e(c.detail)}</td></tr>'
        for i, c in enumerate(report.checks, 1)
    )
    failures = "\n".join(
        f'<h3 id="f{i}">{i}. {e(c.name)}</h3><p class="failed">{e(c.detail)}</p><pre>{e(c.output)}</pre>'
        for i, c in enumerate(report.checks, 1)
        if c.result == FAILED
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Step {report.step}: {e(report.title)} ({report.result})</title>
<style>{STYLE}</style></head>
<body>
<h1>Step {report.step}: {e(report.title)}</h1>
<p>Result: <span class="{report.result}">{report.result}</span>. Target <code>{e(report.target)}</code>,
{e(report.started_at)} to {e(report.finished_at)} ({report.duration_s:.1f} s).
{counts[PASSED]} passed, {counts[FAILED]} failed, {counts[SKIPPED]} skipped.</p>
<table><thead><tr><th>#</th><th>check</th><th>result</th><th>duration</th><th>detail</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<h2>Failures</h2>
{failures or "<p>None.</p>"}
</body></html>
"""
