"""The embedded SQLite default holds up with web, worker and beat writing at once.

Several processes, configured by the real settings (``config.settings.local`` on a SQLite file),
hammer one database together: read-modify-write transactions on one row (what beat does to a
periodic task, and a request to a campaign), inserts (a worker's log rows) and plain reads.
With WAL, a busy timeout and ``BEGIN IMMEDIATE`` none of them may see "database is locked" and
no update may be lost. The control case runs the same load with SQLite's default deferred
transactions and must hit the error, which shows the load really contends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from project_helpers import ROOT, site_env

WRITERS = 4
ITERATIONS = 150

# One process of the load. argv: role, iterations, go-file. Prints a JSON summary.
LOAD = r"""
import json, os, sys, time
import django
from django.conf import settings

role, iterations, go_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if os.environ.get("LOAD_TRANSACTION_MODE") == "DEFERRED":
    settings.DATABASES["default"]["OPTIONS"]["transaction_mode"] = None  # SQLite's default
django.setup()
from django.db import connection, transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

if role == "setup":
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="counter", task="config.debug_task", interval=every)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        print(json.dumps({"journal_mode": cursor.fetchone()[0]}))
    sys.exit(0)

while not os.path.exists(go_file):
    time.sleep(0.005)
errors, increments, inserts, reads = [], 0, 0, 0
for i in range(iterations):
    try:
        if role == "reader":
            reads += PeriodicTask.objects.filter(name="counter").count()
            continue
        with transaction.atomic():
            task = PeriodicTask.objects.get(name="counter")  # read ...
            time.sleep(0.001)  # ... work, as a request or a task does between the two ...
            task.total_run_count += 1
            task.save(update_fields=["total_run_count"])  # ... then write
            IntervalSchedule.objects.create(every=1000 + i, period=IntervalSchedule.SECONDS)
        increments += 1
        inserts += 1
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
print(json.dumps({"role": role, "errors": errors, "increments": increments,
                  "inserts": inserts, "reads": reads}))
"""


def run_load(var_dir: Path, mode: str) -> tuple[list[dict], int, int, float]:
    """Run WRITERS writer processes and one reader at once; return their summaries and totals."""
    env = site_env(var_dir, LOAD_TRANSACTION_MODE=mode)
    go_file = var_dir / "go"

    def spawn(role: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", LOAD, role, str(ITERATIONS), str(go_file)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    setup = spawn("setup")
    out, err = setup.communicate(timeout=120)
    assert setup.returncode == 0, err
    assert json.loads(out)["journal_mode"] == "wal"

    processes = [spawn(f"writer-{n}") for n in range(WRITERS)] + [spawn("reader")]
    time.sleep(2)  # let every process finish importing Django, so they start together
    started = time.monotonic()
    go_file.touch()
    summaries = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        summaries.append(json.loads(out))
    elapsed = time.monotonic() - started

    import sqlite3

    with sqlite3.connect(var_dir / "db.sqlite3") as db:
        (counter,) = db.execute(
            "SELECT total_run_count FROM django_celery_beat_periodictask WHERE name = 'counter'"
        ).fetchone()
        (inserted,) = db.execute(
            "SELECT COUNT(*) FROM django_celery_beat_intervalschedule WHERE every >= 1000"
        ).fetchone()
    return summaries, counter, inserted, elapsed


@pytest.mark.slow
def test_concurrent_writers_never_see_database_is_locked(site_var_dir: Path) -> None:
    summaries, counter, inserted, elapsed = run_load(site_var_dir, "IMMEDIATE")

    errors = [error for summary in summaries for error in summary["errors"]]
    assert errors == [], errors[:5]
    assert counter == WRITERS * ITERATIONS  # no lost update
    assert inserted == WRITERS * ITERATIONS
    assert next(s for s in summaries if s["role"] == "reader")["reads"] == ITERATIONS
    total = WRITERS * ITERATIONS
    print(f"{WRITERS} writers: {total} transactions in {elapsed:.2f}s ({total / elapsed:.0f}/s)")


@pytest.mark.slow
def test_control_deferred_transactions_do_fail_under_the_same_load(site_var_dir: Path) -> None:
    summaries, counter, _inserted, _elapsed = run_load(site_var_dir, "DEFERRED")

    errors = [error for summary in summaries for error in summary["errors"]]
    assert any("database is locked" in error for error in errors), (
        "the load did not contend: the test above proves nothing"
    )
    assert counter < WRITERS * ITERATIONS
    print(f"deferred: {len(errors)} of {WRITERS * ITERATIONS} transactions failed")
