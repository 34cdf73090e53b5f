"""Usage: .venv/bin/python -m bench.chaos [--recipients 10000] [--kills 10] [--seed 1]

A chaos run: one campaign (the benchmark's email, to ``--recipients`` seeded users) sent by a
real ``celery worker -P prefork -c 2`` on Redis against PostgreSQL, through the fault-injecting
SMTP server of ``ace.test_utils.smtp`` on loopback, while the worker is killed with SIGKILL
``--kills`` times at random moments (a new worker is started after each kill). The server
refuses some recipients for good (550 at RCPT, 554 after the content), answers 451 twice to
others, drops the connection once at RCPT for a few, keeps the message of a few more and drops
the connection instead of replying (the case where a retry would deliver twice), and takes
``--server-delay`` seconds to accept every other message (so kills land mid-send).

Each kill waits until a random share of the audience has been received (the shares are drawn
between 3 % and 90 %), then a random 0-1 s more. Printed at the end: duplicates, wrongly failed,
unaccounted (a recipient with no row or a row not terminal, a message received but neither SENT
nor UNKNOWN, a SENT row the server never received, an UNKNOWN no kill or lost reply explains,
run columns that do not match the rows or do not add up), UNKNOWN in all and per kill (against
the bound ``--chunk-size`` x ``--concurrency``), and the time from the last kill until every
recipient was terminal.

Defaults: PostgreSQL ``ace_chaos_bench`` (created if missing; its tables are emptied), Redis
database 6 (flushed). The recovery settings are short so that the run ends within minutes:
``--lease`` (``CAMPAIGNS_SENDING_LEASE_SECONDS``, 60 in production) and ``--visibility`` (the
Redis visibility timeout, after which a killed worker's unacknowledged tasks come back; 3600
in ``bench.settings``). Only loopback is contacted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.run_benchmark import (
    ROOT,
    create_campaign,
    ensure_database,
    log,
    redis_client,
    reset_and_seed,
    setup_django,
    worker_env,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/ace_chaos_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/6"

#: The worker's settings: the benchmark's, with a short visibility timeout swept every second
#: and retries after a second (written to a temporary directory, first on the worker's path).
SETTINGS_MODULE = "chaos_settings"
SETTINGS = """\
from bench.settings import *  # noqa: F403

CELERY_BROKER_TRANSPORT_OPTIONS = {{
    "visibility_timeout": {visibility},
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}}
ACE_CHANNEL_DJANGO_EMAIL_RETRY_DELAY = 1
EMAIL_TIMEOUT = 10
"""


class Faults:
    """Which recipients the server mistreats, drawn from ``rng`` (whole addresses)."""

    def __init__(self, rng: random.Random, count: int, email: Any) -> None:
        indices = list(range(count))
        rng.shuffle(indices)
        shares = {
            "rcpt_550": 0.01,
            "data_554": 0.01,
            "busy_451": 0.02,
            "drop": 0.005,
            "kept": 0.003,
        }
        self.sets: dict[str, set[str]] = {}
        start = 0
        for name, share in shares.items():
            size = max(1, round(count * share))
            self.sets[name] = {email(i) for i in indices[start : start + size]}
            start += size

    @property
    def rejected(self) -> set[str]:
        return self.sets["rcpt_550"] | self.sets["data_554"]

    def install(self, server: Any, delay: float) -> None:
        if delay > 0:  # first: the token rule every other address finds at once
            server.delay("example.org", delay, stage="data")
        for email in self.sets["rcpt_550"]:
            server.reply(email, "550 5.1.1 No such user here")
        for email in self.sets["data_554"]:
            server.reply(email, "554 5.7.1 Message refused", stage="data")
        for email in self.sets["busy_451"]:
            server.reply(email, "451 4.3.0 Mailbox busy, try later", times=2)
        for email in self.sets["drop"]:
            server.drop(email, times=1)
        for email in self.sets["kept"]:
            server.drop_after_accepting(email, times=1)


class Worker:
    """``celery worker`` in its own process group, so that a kill takes its pool too."""

    def __init__(self, env: dict[str, str], concurrency: int, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-P",
                "prefork",
                "-c",
                str(concurrency),
                "-n",
                f"chaos-{log_path.stem}@%h",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"The worker exited early; see {self.log_path}")
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.05)
        raise SystemExit(f"The worker did not get ready; see {self.log_path}")

    def kill(self) -> None:
        """``kill -9`` the main process and its pool children at once."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        """Warm shutdown (SIGTERM to the main process, which stops its pool)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def sending_rows(run_id: int) -> set[str]:
    from campaigns.models import Delivery

    rows = Delivery.objects.filter(run_id=run_id, status=Delivery.Status.SENDING)
    return set(rows.values_list("email", flat=True))


def run_chaos(args: argparse.Namespace) -> dict[str, Any]:
    from ace.test_utils.smtp import RecordingSMTPServer
    from bench import workload

    rng = random.Random(args.seed)
    faults = Faults(rng, args.recipients, workload.recipient_email)
    # PIPELINING as real servers (and smtp-sink in bench.run_benchmark) announce it: the
    # transport then pipelines, instead of one round trip per command.
    server = RecordingSMTPServer(extensions=[] if args.no_pipelining else ["PIPELINING"]).start()
    workdir = Path(tempfile.mkdtemp(prefix="ace-chaos-"))
    workers: list[Worker] = []
    try:
        faults.install(server, args.server_delay)
        setup_django(args, server.port)
        from django.db import connection
        from django.utils import timezone

        from campaigns.models import CampaignRun
        from campaigns.tasks import start_run

        log(f"-- seeding {args.recipients:,} users")
        reset_and_seed(args.recipients)
        campaign_id = create_campaign(name="Chaos run")
        redis_client(args.redis_url).flushdb()  # our own Redis database
        connection.close()

        (workdir / f"{SETTINGS_MODULE}.py").write_text(SETTINGS.format(visibility=args.visibility))
        env = {
            **{k: v for k, v in os.environ.items() if k != "BENCH_COUNT_QUERIES"},
            **worker_env(args, server.port),
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)]),
            "CAMPAIGNS_SEND_CHUNK_SIZE": str(args.chunk_size),
            "CAMPAIGNS_SENDING_LEASE_SECONDS": str(args.lease),
            # Redis redelivers an eta task held longer than the visibility timeout.
            "CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS": str(args.visibility / 2),
            "PYTHONUNBUFFERED": "1",
        }

        def new_worker() -> Worker:
            worker = Worker(env, args.concurrency, workdir / f"worker-{len(workers)}.log")
            workers.append(worker)
            worker.wait_ready()
            return worker

        def run_row() -> Any:
            return CampaignRun.objects.filter(campaign_id=campaign_id).first()

        worker = new_worker()
        log(f"-- firing the campaign; {args.kills} kills to come (worker logs in {workdir})")
        fired = time.monotonic()
        start_run.apply_async(
            kwargs={"campaign_id": campaign_id, "due_at": timezone.now().isoformat()}
        )
        thresholds = sorted(
            round(rng.uniform(0.03, 0.9) * args.recipients) for _ in range(args.kills)
        )
        kills: list[dict[str, Any]] = []
        earlier: set[str] = set()
        for number, threshold in enumerate(thresholds, 1):
            deadline = time.monotonic() + args.timeout
            while len(server.messages) < threshold:
                if time.monotonic() > deadline:
                    raise SystemExit(f"Kill {number}: {threshold} messages never arrived")
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 1.0))
            run = run_row()
            if run is not None and run.status == CampaignRun.Status.COMPLETED:
                raise SystemExit(f"The run completed before kill {number}: lower the shares")
            worker.kill()
            killed_at, killed_wall = timezone.now(), time.monotonic()
            received_then = len(server.messages)
            time.sleep(0.3)  # let PostgreSQL end the killed sessions
            in_flight = sending_rows(run.pk)
            kills.append(
                {
                    "kill": number,
                    "at_second": round(killed_wall - fired, 1),
                    "received": received_then,
                    "in_flight": in_flight - earlier,  # new since the earlier kills
                    "at": killed_at,
                }
            )
            earlier |= in_flight
            log(
                f"   kill {number:2d} at {killed_wall - fired:5.1f} s: {received_then:,} "
                f"received, {len(kills[-1]['in_flight'])} new rows in flight"
            )
            worker = new_worker()

        deadline = time.monotonic() + args.timeout
        run = run_row()
        while run is None or run.status != CampaignRun.Status.COMPLETED:
            if time.monotonic() > deadline:
                raise SystemExit(f"Run not completed {args.timeout} s after the last kill")
            time.sleep(0.2)
            run = run_row()
        total_seconds = time.monotonic() - fired
        worker.stop()
        return report(args, run, server, faults, kills, total_seconds)
    finally:
        for worker in workers:
            worker.stop()
        server.stop()


def report(
    args: argparse.Namespace,
    run: Any,
    server: Any,
    faults: Faults,
    kills: list[dict[str, Any]],
    total_seconds: float,
) -> dict[str, Any]:
    from bench import workload
    from campaigns.models import Delivery
    from campaigns.services.batches import REASON_INTERRUPTED

    status = Delivery.Status
    received = Counter(r.lower() for m in server.messages for r in m.rcpt_tos)
    rows = {
        email: (state, reason)
        for email, state, reason in Delivery.objects.filter(run=run).values_list(
            "email", "status", "reason"
        )
    }

    def having(*states: str) -> set[str]:
        return {email for email, (state, _reason) in rows.items() if state in states}

    unknown = having(status.UNKNOWN)
    interrupted = {e for e in unknown if rows[e][1] == REASON_INTERRUPTED}
    reply_lost = unknown - interrupted
    in_flight = set().union(*(kill["in_flight"] for kill in kills))
    sent, failed = having(status.SENT), having(status.FAILED)
    audience = {workload.recipient_email(i) for i in range(args.recipients)}
    by_status = Counter(state for state, _reason in rows.values())
    columns = {str(s): getattr(run, str(s)) for s in Delivery.TERMINAL}
    unaccounted = {
        "recipients without a row": len(audience - set(rows)),
        "rows not terminal": sum(n for s, n in by_status.items() if s not in Delivery.TERMINAL),
        "received, neither sent nor unknown": len(set(received) - sent - unknown),
        "sent, never received": len(sent - set(received)),
        "unknown, not in flight at a kill": len(interrupted - in_flight),
        "unknown, reply not lost by the server": len(reply_lost - faults.sets["kept"]),
        "run columns not matching the rows": sum(
            1 for s in Delivery.TERMINAL if columns[str(s)] != by_status[s]
        ),
        "run columns not adding up to the total": int(sum(columns.values()) != run.total),
    }
    last_kill = kills[-1]["at"] if kills else run.started_at
    return {
        "command": " ".join([".venv/bin/python", "-m", "bench.chaos", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "settings": {
            "recipients": args.recipients,
            "kills": args.kills,
            "seed": args.seed,
            "concurrency": args.concurrency,
            "batch_size": args.batch_size,
            "chunk_size": args.chunk_size,
            "lease_seconds": args.lease,
            "visibility_seconds": args.visibility,
            "server_delay_seconds": args.server_delay,
            "server_pipelining": not args.no_pipelining,
        },
        "faults": {name: len(emails) for name, emails in faults.sets.items()},
        "status": run.status,
        "total": run.total,
        "deliveries": dict(sorted(by_status.items())),
        "messages_received": sum(received.values()),
        "duplicates": sum(n - 1 for n in received.values() if n > 1),
        "wrongly_failed": len(failed - faults.rejected),
        "refused_but_not_failed": len(faults.rejected - failed - interrupted),
        "unaccounted": sum(unaccounted.values()),
        "unaccounted_detail": unaccounted,
        "unknown": len(unknown),
        "unknown_interrupted": len(interrupted),
        "unknown_reply_lost": len(reply_lost),
        "unknown_received": len(unknown & set(received)),  # the rest never reached the server
        "unknown_bound_per_kill": args.chunk_size * args.concurrency,
        "kills_detail": [
            {
                "kill": kill["kill"],
                "at_second": kill["at_second"],
                "received": kill["received"],
                "in_flight": len(kill["in_flight"]),
                "unknown": len(kill["in_flight"] & interrupted),
            }
            for kill in kills
        ],
        "seconds_from_last_kill_to_all_terminal": round(
            (run.finished_at - last_kill).total_seconds(), 1
        ),
        "seconds_in_all": round(total_seconds, 1),
    }


def summarize(result: dict[str, Any]) -> str:
    per_kill = [kill["unknown"] for kill in result["kills_detail"]]
    lines = [
        f"chaos: {result['total']:,} deliveries, {len(per_kill)} kills, {result['status']}",
        f"  duplicates                  {result['duplicates']}",
        f"  wrongly failed              {result['wrongly_failed']}"
        f" (refused but not failed: {result['refused_but_not_failed']})",
        f"  unaccounted                 {result['unaccounted']}",
        f"  unknown                     {result['unknown']}: {result['unknown_interrupted']} in"
        f" flight at a kill, {result['unknown_reply_lost']} reply lost by the server;"
        f" {result['unknown_received']} of them had reached the server",
        f"  unknown per kill            {per_kill} (bound {result['unknown_bound_per_kill']})",
        f"  last kill -> all terminal   {result['seconds_from_last_kill_to_all_terminal']} s",
        f"  whole run                   {result['seconds_in_all']} s",
        f"  deliveries                  {result['deliveries']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--chunk-size", type=int, default=100, help="CAMPAIGNS_SEND_CHUNK_SIZE")
    parser.add_argument("--lease", type=float, default=5, help="CAMPAIGNS_SENDING_LEASE_SECONDS")
    parser.add_argument("--visibility", type=int, default=10, help="Redis visibility timeout")
    parser.add_argument("--server-delay", type=float, default=0.005)
    parser.add_argument("--smtp-connections", type=int, default=4)
    parser.add_argument("--no-pipelining", action="store_true", help="server without PIPELINING")
    parser.add_argument(
        "--database-url", default=os.environ.get("CHAOS_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--redis-url", default=os.environ.get("CHAOS_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    args.plain_smtp = False  # for bench.run_benchmark.worker_env

    ensure_database(args.database_url)
    result = run_chaos(args)
    print(json.dumps(result, indent=2, default=str))
    print(summarize(result))


if __name__ == "__main__":
    main()
