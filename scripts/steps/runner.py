"""Runs a step's named checks, times them and writes its reports (scripts/steps/report.py).

A check is a function returning a one-line detail (what it measured); it fails by raising
Failed (a reason and the output to keep), CommandFailed, or any other exception (its
traceback is the output), and is skipped by raising Skipped (the target cannot run it).
"""

from __future__ import annotations

import json
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from scripts.postman import newman
from scripts.steps import report
from scripts.steps.target import CommandFailed, Keys, Skipped, Target, newman_variables

OUTPUT_LIMIT = 20_000


class Failed(Exception):
    def __init__(self, reason: str, output: str = ""):
        super().__init__(reason)
        self.output = output


def expect(condition: bool, reason: str, output: object = "") -> None:
    if not condition:
        raise Failed(
            reason, output if isinstance(output, str) else json.dumps(output, indent=2, default=str)
        )


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Step:
    def __init__(self, number: int, title: str, target: Target, directory: Path):
        self.report = report.StepReport(number, title, target.name, utc_now())
        self.target = target
        self.directory = directory
        self._started = time.monotonic()

    def check(self, name: str, function: Callable[[], str], *, requires: str | None = None) -> bool:
        """Run one check; REQUIRES names an earlier check that must have passed."""
        started = time.monotonic()
        if requires and not self.passed(requires):
            result = report.CheckResult(
                name, report.SKIPPED, 0.0, f"needs '{requires}', which did not pass"
            )
        else:
            result = self._run(name, function)
        result.duration_s = round(time.monotonic() - started, 3)
        self.report.checks.append(result)
        print(
            f"[step{self.report.step}] {result.result:7} {result.duration_s:7.2f}s {name}: {result.detail}",
            flush=True,
        )
        return result.result == report.PASSED

    def _run(self, name: str, function: Callable[[], str]) -> report.CheckResult:
        try:
            detail = function() or ""
        except Skipped as exc:
            return report.CheckResult(name, report.SKIPPED, 0.0, str(exc))
        except (Failed, CommandFailed) as exc:
            return report.CheckResult(
                name, report.FAILED, 0.0, str(exc), exc.output[-OUTPUT_LIMIT:]
            )
        except Exception as exc:
            return report.CheckResult(
                name,
                report.FAILED,
                0.0,
                f"{type(exc).__name__}: {exc}",
                traceback.format_exc()[-OUTPUT_LIMIT:],
            )
        return report.CheckResult(name, report.PASSED, 0.0, str(detail))

    def passed(self, name: str) -> bool:
        return any(c.name == name and c.result == report.PASSED for c in self.report.checks)

    def newman(self, collection: int, keys: Keys, **variables: str) -> bool:
        """The collection under newman: one check per request (its assertions), after one
        check for the run itself (newman's exit status and summary)."""
        with tempfile.TemporaryDirectory() as work:
            export = Path(work) / "newman.json"
            name = f"newman: APM_Observability_Step{collection}"
            outcome = {}

            def run_collection() -> str:
                result = newman.run(
                    collection,
                    newman_variables(self.target, keys, **variables),
                    ca_file=self.target.ca_file,
                    json_export=export,
                )
                outcome["run"] = json.loads(export.read_text())["run"] if export.exists() else None
                stats = (outcome["run"] or {}).get("stats", {})
                summary = (
                    f"{stats.get('requests', {}).get('total', 0)} requests, "
                    f"{stats.get('assertions', {}).get('total', 0)} assertions, "
                    f"{stats.get('assertions', {}).get('failed', 0)} failed"
                )
                expect(
                    result.returncode == 0,
                    f"newman exited {result.returncode}: {summary}",
                    result.stdout[-OUTPUT_LIMIT:] + result.stderr[-5000:],
                )
                return summary

            ok = self.check(name, run_collection)
            for execution in (outcome.get("run") or {}).get("executions", []):
                self._record_execution(collection, execution)
        return ok

    def _record_execution(self, collection: int, execution: dict) -> None:
        item = execution["item"]["name"]
        response = execution.get("response") or {}
        failures = [a for a in execution.get("assertions", []) if a.get("error")]
        detail = (
            f"{execution['request']['method']} {response.get('code', '-')} in "
            f"{response.get('responseTime', 0)} ms, {len(execution.get('assertions', []))} assertions"
        )
        if execution.get("requestError"):
            failures.append({"assertion": "request", "error": execution["requestError"]})
        result = report.CheckResult(
            f"Step{collection} / {item}",
            report.FAILED if failures else report.PASSED,
            round(response.get("responseTime", 0) / 1000, 3),
            detail
            if not failures
            else f"{len(failures)} assertion(s) failed: {failures[0]['assertion']}",
            "\n".join(
                f"{f['assertion']}: {f['error'].get('message', f['error'])}" for f in failures
            ),
        )
        self.report.checks.append(result)

    def finish(self) -> int:
        self.report.finished_at = utc_now()
        self.report.duration_s = round(time.monotonic() - self._started, 1)
        paths = report.write(self.report, self.directory)
        counts = self.report.counts
        print(
            f"[step{self.report.step}] {self.report.result}: {counts} in {self.report.duration_s}s; "
            f"reports {', '.join(str(p) for p in paths)}",
            flush=True,
        )
        return 0 if self.report.result == report.PASSED else 1
