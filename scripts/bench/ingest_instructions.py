"""`make bench-ingest-instructions`: the CPU an ingest worker spends per event, counted
in instructions (valgrind's callgrind), for this code and another checkout's.

Throughput on a shared 2-core machine swings with the neighbours' load; an instruction
count does not: the same code, input and database give the same count on a busy machine
as on an idle one. Each checkout serves 1,000-event batches through Django's WSGI handler
in one process (middleware, authentication, pipeline, COPY into a real embedded
PostgreSQL its own code migrated), once with 1 batch and once with 1 + --batches; the
difference, per event, is what one more batch costs, start-up excluded (each run starts
with a batch of its own: no batch is stored twice). Two kinds of
batch: the events of `make bench-ingest` (the same attributes in every event), and the
same events with attributes that differ in every event.

Only the worker is counted, not PostgreSQL: `make bench-ingest` measures them together.
Writes reports/bench/ingest_instructions.json and prints it as the last line.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

from apm_platform.processes import BASE_DIR, app_env, manage, scratch_postgres
from scripts.bench.ingest import BATCH, make_events
from scripts.bench.report import REPORTS, describe, write_report

SERVE = Path(__file__).with_name("serve_batches.py")


def write_bodies(directory: Path, count: int, distinct_attributes: bool) -> Path:
    """`count` batches (new event ids in each) as one JSON array of bodies."""
    now = datetime.now(UTC)
    bodies = []
    for _ in range(count):
        events = make_events(BATCH, now)
        if distinct_attributes:
            for event in events:
                event["attributes"] = {**event["attributes"], "user.id": uuid.uuid4().hex[:12]}
        bodies.append(orjson.dumps(events).decode())
    path = directory / f"bodies-{'distinct' if distinct_attributes else 'same'}.json"
    path.write_bytes(orjson.dumps(bodies))
    return path


def instructions(
    code: Path, database_url: str, key: str, bodies: Path, first: int, batches: int
) -> int:
    """Instructions of one process serving body `first` of `bodies`, then `batches` more."""
    result = subprocess.run(  # noqa: S603 - valgrind on our own script
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",  # noqa: S607
         sys.executable, str(SERVE), key, str(bodies), str(first), str(batches)],
        cwd=code, env=app_env(database_url, DATABASE_CONN_MAX_AGE="60"),
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    collected = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or collected is None:
        raise RuntimeError(f"serving batches under valgrind failed:\n{result.stderr[-3000:]}")
    return int(collected.group(1))


def per_event(code: Path, scratch: Path, bodies: Path, batches: int) -> float:
    with scratch_postgres(scratch, code) as database:
        key = manage(database.url(), "create_api_key", "--project", "bench", code_dir=code)
        one = instructions(code, database.url(), key.strip(), bodies, 0, 0)
        more = instructions(code, database.url(), key.strip(), bodies, 1, batches)
    return (more - one) / (batches * BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-with", type=Path, required=True, metavar="CHECKOUT",
                        help="Another checkout of the project (a git worktree of the code "
                        "before a change).")  # fmt: skip
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--output", default=str(REPORTS / "ingest_instructions.json"))
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("needs valgrind (apt-get install valgrind)")
    other = args.compare_with.resolve()
    result = {"compared_with": describe(other), "batches": args.batches, "batch_events": BATCH}
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as scratch:
        for kind, distinct in (("same_attributes", False), ("distinct_attributes", True)):
            bodies = write_bodies(Path(scratch), args.batches + 2, distinct)
            this = per_event(BASE_DIR, Path(scratch) / f"this-{kind}", bodies, args.batches)
            then = per_event(other, Path(scratch) / f"other-{kind}", bodies, args.batches)
            print(f"{kind}: {this:.0f} vs {then:.0f} instructions per event", file=sys.stderr)
            result |= {f"{kind}_instructions_per_event": round(this),
                       f"{kind}_compared_instructions_per_event": round(then),
                       f"{kind}_ratio": round(this / then, 3)}  # fmt: skip
    write_report(result, Path(args.output))


if __name__ == "__main__":
    main()
