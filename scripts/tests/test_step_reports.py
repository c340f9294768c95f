"""The steps' one report writer (scripts/steps/report.py): the three files of a step, a
JUnit document CI tools read, an HTML page that stands alone, JSON with the counts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scripts.steps import report  # noqa: E402


def sample() -> report.StepReport:
    step = report.StepReport(
        4, "backups", "local", "2026-12-02T06:00:00Z", "2026-12-02T06:00:09Z", 9.0
    )
    step.checks = [
        report.CheckResult("pgbackrest check", report.PASSED, 1.5, "archived to both repositories"),
        report.CheckResult(
            "restore <scratch>", report.FAILED, 7.25, "did not start", "FATAL: max_connections & co"
        ),
        report.CheckResult("drill 03", report.SKIPPED, 0.0, "needs TARGET=local"),
    ]
    return step


def test_the_three_files_of_a_step(tmp_path):
    paths = report.write(sample(), tmp_path)
    assert [p.name for p in paths] == ["step4-report.json", "step4-junit.xml", "step4-report.html"]


def test_json_has_the_result_counts_and_checks(tmp_path):
    report.write(sample(), tmp_path)
    document = json.loads((tmp_path / "step4-report.json").read_text())
    assert document["result"] == "failed"
    assert document["counts"] == {"passed": 1, "failed": 1, "skipped": 1}
    assert document["checks"][1]["output"] == "FATAL: max_connections & co"


def test_junit_marks_failures_and_skips(tmp_path):
    report.write(sample(), tmp_path)
    suite = ET.parse(tmp_path / "step4-junit.xml").getroot()  # noqa: S314 - our own file
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert cases[1].find("failure").get("message") == "did not start"
    assert cases[1].find("failure").text == "FATAL: max_connections & co"
    assert cases[2].find("skipped") is not None
    assert float(cases[1].get("time")) == 7.25


def test_html_stands_alone_and_escapes(tmp_path):
    report.write(sample(), tmp_path)
    page = (tmp_path / "step4-report.html").read_text()
    assert "<script" not in page and "<link" not in page  # no external resources
    assert page.count("<tr><td>") == 3
    assert "restore &lt;scratch&gt;" in page and "max_connections &amp; co" in page
    assert "7.25 s" in page


def test_a_step_without_checks_fails():
    empty = report.StepReport(1, "functional", "local", "2026-12-02T06:00:00Z")
    assert empty.result == "failed"
