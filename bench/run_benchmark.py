"""End-to-end benchmark of a campaign send, with the reference edx-ace beside it.

For each audience size it seeds N users (COPY), creates the message type, audience and campaign,
starts a Celery worker (prefork, 2 processes) on Redis, fires the schedule (enqueues
``start_run`` as django-celery-beat does), waits until the run is COMPLETED and prints:

* messages per second (first enqueue to the run's ``finished_at``), with the delivery log check;
* the worker's peak RSS (psutil over the worker's process tree: largest process and total);
* SQL queries per message (every query of the worker's connections, counted in-process);
* the SMTP sink's own ceiling (``smtp-source`` against the same ``smtp-sink``);
* the reference (``edx-ace`` from PyPI, ``ace.send`` per message, Django's SMTP backend) in the
  same run, and the ratio.

``--profile N`` runs the same pipeline in one process (Celery eager) with timers around each
stage and prints the per-message cost of resolve, personalize, policy, render, MIME, SMTP and
log (the delivery-log queries), so the next bottleneck is obvious.

Each measurement runs for each ``--email``: ``typical`` (the loop reads only the campaign's
context) and ``worst`` (a per-recipient tracking parameter in every item link, so rendering the
shared parts once per batch cannot take the loop); both by default.

    .venv/bin/python -m bench.run_benchmark --recipients 10000 100000
    .venv/bin/python -m bench.run_benchmark --profile 10000 --recipients

Needs PostgreSQL, Redis and Postfix's ``smtp-sink``/``smtp-source`` (Debian: ``apt-get install
postfix``); the reference needs ``bench/setup_reference.sh`` once.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
REFERENCE_PYTHON = BENCH_DIR / ".venv-ref" / "bin" / "python"
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/ace_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"
SINK_SESSIONS = 10

# Targets from the issue, checked in the summary.
TARGET_RATE = 1000
TARGET_RATIO = 5.0
TARGET_QUERIES = 0.05
TARGET_RSS_MB = 150
TARGET_RSS_SPREAD = 0.10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# Services ------------------------------------------------------------------------------------


class Sink:
    """Postfix's smtp-sink on a loopback port (accepts and discards, announces PIPELINING)."""

    def __init__(self) -> None:
        binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        if not Path(binary).exists():
            raise SystemExit(
                "smtp-sink not found: install Postfix (Debian: apt-get install postfix)"
            )
        self.port = free_port()
        command = [binary, f"127.0.0.1:{self.port}", "1024"]
        if os.geteuid() == 0:
            command[1:1] = ["-u", "nobody"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise SystemExit("smtp-sink did not start")

    def ceiling(self, messages: int = 50_000, size: int = 5000) -> float | None:
        """Messages/s the sink absorbs from Postfix's C client (``smtp-source``, 10 sessions,
        connections reused, ``size``-byte messages)."""
        binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
        if not Path(binary).exists():
            return None
        command = [binary, "-d", "-s", str(SINK_SESSIONS), "-m", str(messages), "-l", str(size)]
        started = time.perf_counter()
        subprocess.run(
            [*command, f"127.0.0.1:{self.port}"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return messages / (time.perf_counter() - started)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def ensure_database(url: str) -> None:
    """Create the benchmark's database if it does not exist."""
    import environ
    import psycopg
    from psycopg import sql

    config = environ.Env.db_url_config(url)
    admin = psycopg.connect(
        host=config["HOST"] or None,
        port=config["PORT"] or None,
        user=config["USER"] or None,
        password=config["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )
    with admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]
        ).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config["NAME"])))


def setup_django(args: argparse.Namespace, smtp_port: int) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ.update(worker_env(args, smtp_port))
    os.environ.pop("BENCH_COUNT_QUERIES", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def worker_env(args: argparse.Namespace, smtp_port: int) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "BENCH_DATABASE_URL": args.database_url,
        "BENCH_REDIS_URL": args.redis_url,
        "BENCH_SMTP_PORT": str(smtp_port),
        "BENCH_SMTP_CONNECTIONS": str(args.smtp_connections),
        "BENCH_FAST_SMTP": "0" if args.plain_smtp else "1",
        "BENCH_BATCH_RENDER": "0" if args.full_render else "1",
        "CAMPAIGNS_BATCH_SIZE": str(args.batch_size),
        "PYTHONPATH": str(ROOT),
    }


# Data ----------------------------------------------------------------------------------------


def reset_and_seed(count: int) -> None:
    """Empty the users and campaign tables, then COPY ``count`` active users."""
    from django.db import connection
    from django.utils import timezone

    from bench import workload

    with connection.cursor() as cursor:
        tables = [
            "campaigns_delivery",
            "campaigns_runbatch",
            "campaigns_campaignrun",
            "campaigns_campaign",
            "campaigns_recipientsource",
            "campaigns_optout",
            "campaigns_policytoggle",
            "campaigns_messagetypedefinition",
            "auth_user",
        ]
        existing = set(connection.introspection.table_names(cursor))
        names = ", ".join(t for t in tables if t in existing)
        cursor.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        now = timezone.now()
        columns = (
            "password, last_login, is_superuser, username, first_name, last_name, email, "
            "is_staff, is_active, date_joined"
        )
        with cursor.cursor.copy(f"COPY auth_user ({columns}) FROM STDIN") as copy:
            for index in range(count):
                copy.write_row(
                    (
                        "!",
                        None,
                        False,
                        f"learner{index}",
                        f"Learner{index}",
                        "Bench",
                        workload.recipient_email(index),
                        False,
                        True,
                        now,
                    )
                )
        cursor.execute("ANALYZE auth_user")


def create_campaign(
    *,
    name: str = "Weekly picks (benchmark)",
    resolver: str = "all_active_users",
    parameters=None,
    email: str = "typical",
) -> int:
    """A scheduled campaign of the benchmark's message type ``email`` (code-defined, file
    templates)."""
    from bench import workload
    from campaigns.models import Campaign, MessageTypeDefinition, RecipientSource

    message_name, code_path = workload.EMAILS[email]
    definition, _ = MessageTypeDefinition.objects.get_or_create(
        app_label=workload.APP_LABEL,
        name=message_name,
        defaults={
            "source": MessageTypeDefinition.Source.CODE,
            "code_path": code_path,
            "default_language": workload.LANGUAGE,
        },
    )
    source = RecipientSource.objects.create(
        name=f"Audience of {name}", resolver=resolver, parameters=parameters or {}
    )
    campaign = Campaign.objects.create(
        name=name,
        message_type=definition,
        recipient_source=source,
        context=workload.CAMPAIGN_CONTEXT,
        channels=["email"],
        language=workload.LANGUAGE,
        status=Campaign.Status.SCHEDULED,
        schedule_kind=Campaign.ScheduleKind.NOW,
    )
    # Runs start only while an approval covers the content: store what approving would.
    from django.utils import timezone

    from campaigns.services.campaigns import campaign_content_digest

    campaign.approved_digest = campaign_content_digest(campaign=campaign)
    campaign.approved_at = timezone.now()
    campaign.save(update_fields=["approved_digest", "approved_at"])
    return campaign.pk


def fire_and_wait(campaign_id: int, timeout: float) -> tuple[Any, dt.datetime]:
    """Enqueue ``start_run`` as beat does, wait for the run to finish; (run, fired at)."""
    from django.utils import timezone

    from campaigns.models import CampaignRun
    from campaigns.tasks import start_run

    due_at = timezone.now()
    start_run.apply_async(kwargs={"campaign_id": campaign_id, "due_at": due_at.isoformat()})
    deadline = time.monotonic() + timeout
    run = None
    while time.monotonic() < deadline:
        time.sleep(0.1)
        run = CampaignRun.objects.filter(campaign_id=campaign_id).first()
        if run is not None and run.status in ("completed", "failed", "cancelled"):
            return run, due_at
    raise SystemExit(f"Run not finished after {timeout} s: {run and run.status}")


# The worker ------------------------------------------------------------------------------------


class Worker:
    """``celery worker`` (prefork) with query counting on."""

    def __init__(self, args: argparse.Namespace, smtp_port: int, log_path: Path) -> None:
        env = {**os.environ, **worker_env(args, smtp_port), "BENCH_COUNT_QUERIES": "1"}
        command = [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "config",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(args.concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
            "-n",
            f"bench-{os.getpid()}@%h",
        ]
        self.log_file = log_path.open("w")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60) -> None:
        from config.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"The worker exited early; see {self.log_file.name}")
            if app.control.ping(timeout=0.5):
                return
        raise SystemExit("The worker did not answer a ping")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log_file.close()


class Sampler:
    """Samples, every 50 ms, the RSS of the worker's processes and the CPU time of the worker,
    of this database's PostgreSQL backends and of the sink, cheaply enough not to disturb the
    run: the worker's process list is refreshed once a second, the backends come from
    ``pg_stat_activity`` (Celery closes the database connection after each task, so backends
    come and go; the last value seen per process is kept)."""

    def __init__(self, worker_pid: int, sink_pid: int, database_url: str) -> None:
        self.worker_pid = worker_pid
        self.sink_pid = sink_pid
        self.database_url = database_url
        self.peak_process = 0
        self.peak_total = 0
        self.peak_children: dict[int, int] = {}
        self._cpu: dict[str, dict[int, float]] = {"worker": {}, "postgres": {}, "smtp-sink": {}}
        self._mark: dict[str, dict[int, float]] | None = None
        self._machine_mark = 0.0
        self._steal_mark = 0.0
        self._procs: dict[int, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def _process(self, pid: int) -> Any:
        import psutil

        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = psutil.Process(pid)
        return proc

    def _run(self) -> None:
        import environ
        import psutil
        import psycopg

        config = environ.Env.db_url_config(self.database_url)
        conn = psycopg.connect(
            host=config["HOST"] or None,
            port=config["PORT"] or None,
            user=config["USER"] or None,
            password=config["PASSWORD"] or None,
            dbname=config["NAME"],
            autocommit=True,
        )
        root = psutil.Process(self.worker_pid)
        workers: list[int] = [self.worker_pid]
        refreshed = 0.0
        with conn:
            while not self._stop.is_set():
                now = time.monotonic()
                if now - refreshed > 1.0:
                    with contextlib.suppress(psutil.Error):
                        workers = [self.worker_pid, *(c.pid for c in root.children(recursive=True))]
                    refreshed = now
                backends = [
                    pid
                    for (pid,) in conn.execute(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ]
                self._sample(workers, backends)
                self._stop.wait(0.05)

    def _sample(self, workers: list[int], backends: list[int]) -> None:
        import psutil

        sizes = {}
        for group, pids in (
            ("worker", workers),
            ("postgres", backends),
            ("smtp-sink", [self.sink_pid]),
        ):
            for pid in pids:
                try:
                    proc = self._process(pid)
                    cpu = proc.cpu_times()
                    if group == "worker":
                        sizes[pid] = proc.memory_info().rss
                except psutil.Error:
                    self._procs.pop(pid, None)
                    continue
                self._cpu[group][pid] = cpu.user + cpu.system
        if sizes:
            self.peak_process = max(self.peak_process, *sizes.values())
            self.peak_total = max(self.peak_total, sum(sizes.values()))
            for pid, rss in sizes.items():
                if pid != self.worker_pid:
                    self.peak_children[pid] = max(self.peak_children.get(pid, 0), rss)

    @staticmethod
    def _steal_seconds() -> float:
        """Time the hypervisor gave this VM's CPUs to someone else (0 on bare metal)."""
        import psutil

        return getattr(psutil.cpu_times(), "steal", 0.0)

    @staticmethod
    def _machine_seconds() -> float:
        import psutil

        cpu = psutil.cpu_times()
        busy = cpu.user + cpu.system + cpu.nice
        return busy + getattr(cpu, "irq", 0) + getattr(cpu, "softirq", 0)

    def mark(self) -> None:
        """Start counting CPU from now."""
        time.sleep(0.1)  # one fresh sample
        self._mark = {group: dict(times) for group, times in self._cpu.items()}
        self._machine_mark = self._machine_seconds()
        self._steal_mark = self._steal_seconds()

    def cpu_since_mark(self) -> dict[str, float]:
        """CPU seconds per group since :meth:`mark` (processes born since count fully)."""
        time.sleep(0.1)
        mark = self._mark or {}
        used = {
            group: sum(t - mark.get(group, {}).get(pid, 0.0) for pid, t in times.items())
            for group, times in self._cpu.items()
        }
        used["machine"] = self._machine_seconds() - self._machine_mark
        used["steal"] = self._steal_seconds() - self._steal_mark
        return used

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def run_once(
    args: argparse.Namespace, count: int, sink: Sink, email: str = "typical"
) -> dict[str, Any]:
    """One end-to-end run for ``count`` recipients of ``email`` (after an untimed warm-up run,
    if asked)."""
    from django.db import connection

    from bench.apps import GC_KEY, QUERIES_KEY, TASK_CPU_KEY, TASKS_KEY

    log(f"-- {count:,} recipients, {email} email: seeding")
    reset_and_seed(count)
    warmup_id = None
    if args.warmup:
        warmup_id = create_campaign(
            name="Warm-up (not timed)",
            resolver="user_filter",
            parameters={"filters": {"id__lte": args.warmup}},
            email=email,
        )
    campaign_id = create_campaign(email=email)
    redis = redis_client(args.redis_url)
    redis.flushdb()  # our own Redis database: broker queues, rate limits, counters
    connection.close()

    RESULTS_DIR.mkdir(exist_ok=True)
    worker = Worker(args, sink.port, RESULTS_DIR / f"worker-{count}-{email}.log")
    sampler = None
    try:
        worker.wait_ready()
        sampler = Sampler(worker.process.pid, sink.process.pid, args.database_url).start()
        if warmup_id is not None:
            log(f"-- warm-up: {args.warmup:,} recipients through the fresh worker (not timed)")
            fire_and_wait(warmup_id, args.timeout)
            time.sleep(0.5)
            redis.delete(QUERIES_KEY, TASKS_KEY, TASK_CPU_KEY, GC_KEY)
        sampler.mark()
        log(f"-- {count:,} recipients: schedule fired, sending")
        run, due_at = fire_and_wait(campaign_id, args.timeout)
        cpu = sampler.cpu_since_mark()
        # The last task's counters are flushed right after it returns.
        tasks = -1
        for _ in range(50):
            time.sleep(0.1)
            now_tasks = int(redis.get(TASKS_KEY) or 0)
            if now_tasks == tasks:
                break
            tasks = now_tasks
    finally:
        if sampler is not None:
            sampler.stop()
        worker.stop()
    queries = int(redis.get(QUERIES_KEY) or 0)
    task_cpu = {k.decode(): int(v) for k, v in redis.hgetall(TASK_CPU_KEY).items()}
    gc_us = {k.decode(): int(v) for k, v in redis.hgetall(GC_KEY).items()}
    statuses = _status_counts(run)
    seconds = (run.finished_at - due_at).total_seconds()
    return {
        "email": email,
        "recipients": count,
        "status": run.status,
        "deliveries": statuses,
        "sent": run.sent,
        "seconds": round(seconds, 2),
        "per_second": round(run.sent / seconds, 1) if seconds > 0 else None,
        "tasks": tasks,
        "queries": queries,
        "queries_per_message": round(queries / max(run.sent, 1), 4),
        "peak_rss_process_mb": round(sampler.peak_process / 2**20, 1),
        "peak_rss_children_mb": sorted(round(v / 2**20, 1) for v in sampler.peak_children.values()),
        "peak_rss_tree_mb": round(sampler.peak_total / 2**20, 1),
        "cpu_us_per_message": {
            group: round(used / max(run.sent, 1) * 1e6) for group, used in cpu.items()
        },
        "task_cpu_us_per_message": {
            name.rsplit(".", 1)[-1]: round(us / max(run.sent, 1)) for name, us in task_cpu.items()
        },
        "gc_us_per_message": {
            f"generation {gen}": round(us / max(run.sent, 1), 1)
            for gen, us in sorted(gc_us.items())
        },
        "machine_busy_percent": round(cpu["machine"] / (seconds * (os.cpu_count() or 1)) * 100),
        "steal_percent": round(cpu["steal"] / (seconds * (os.cpu_count() or 1)) * 100, 1),
    }


def _status_counts(run: Any) -> dict[str, int]:
    from django.db.models import Count

    from campaigns.models import Delivery

    return {
        row["status"]: row["n"]
        for row in Delivery.objects.filter(run=run).values("status").annotate(n=Count("id"))
    }


# The reference -------------------------------------------------------------------------------


def run_reference(
    args: argparse.Namespace, sink: Sink, email: str = "typical"
) -> dict[str, Any] | None:
    if args.reference_count <= 0:
        return None
    if not REFERENCE_PYTHON.exists():
        log("!! bench/.venv-ref is missing: run bench/setup_reference.sh to measure edx-ace")
        return None
    log(f"-- reference: edx-ace, {args.reference_count:,} messages of the {email} email over SMTP")
    command = [
        str(REFERENCE_PYTHON),
        str(BENCH_DIR / "reference_send.py"),
        "--count",
        str(args.reference_count),
        "--email",
        email,
        "--smtp",
        f"127.0.0.1:{sink.port}",
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The same without a network: Django's locmem backend (render + build the email only).
    log("-- reference: the same with the locmem email backend (no network)")
    local = [*command[:-2], "--backend", "locmem"]
    done = subprocess.run(local, check=True, capture_output=True, text=True, cwd=ROOT)
    result["no_network_per_second"] = json.loads(done.stdout.strip().splitlines()[-1])["per_second"]
    return result


# Profile mode --------------------------------------------------------------------------------


class StageTimer:
    """Exclusive (self) time per stage, wall clock and this process's CPU: a nested stage's
    time is not counted in its parent. CPU time leaves out waiting (for PostgreSQL, for the
    SMTP server) and time lost to other processes, so it is the steadier figure on a busy
    machine."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._stack: list[list[Any]] = []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        frame = [name, time.perf_counter(), time.process_time(), 0.0, 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            wall = time.perf_counter() - frame[1]
            cpu = time.process_time() - frame[2]
            self.wall[name] = self.wall.get(name, 0.0) + wall - frame[3]
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu - frame[4]
            if self._stack:
                self._stack[-1][3] += wall
                self._stack[-1][4] += cpu

    def wrap_context_manager(self, owner: Any, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)
        timer = self

        @contextlib.contextmanager
        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            manager = original(*args, **kwargs)
            with timer.stage(name):
                value = manager.__enter__()
            try:
                yield value
            except BaseException as error:
                with timer.stage(name):
                    if not manager.__exit__(type(error), error, error.__traceback__):
                        raise
            else:
                with timer.stage(name):
                    manager.__exit__(None, None, None)

        setattr(owner, attribute, wrapper)

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)
        timer = self

        if isinstance(owner, type) and isinstance(owner.__dict__.get(attribute), staticmethod):

            def static(*args: Any, **kwargs: Any) -> Any:
                with timer.stage(name):
                    return original(*args, **kwargs)

            setattr(owner, attribute, staticmethod(static))
            return

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with timer.stage(name):
                return original(*args, **kwargs)

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(owner, attribute, wrapper)


def instrument(timer: StageTimer) -> None:
    """Put timers around each stage of the batch path (monkeypatching, profile mode only)."""
    import ace.batch
    import ace.channel.django_email
    import ace.channel.mime
    import ace.channel.smtp_pipelining
    import ace.policy
    import ace.renderers
    import ace.utils.signals
    import campaigns.resolvers
    import campaigns.services.batches as batches
    from campaigns.querysets import DeliveryQuerySet

    stages = [
        (campaigns.resolvers.QuerySetResolver, "recipients_for_ids", "resolve"),
        (campaigns.resolvers.QuerySetResolver, "iter_id_chunks", "resolve"),
        (batches, "_messages", "personalize"),
        (ace.policy, "decide", "policy"),
        (ace.policy, "evaluate", "policy"),
        (ace.renderers.AbstractRenderer, "render_templates", "render"),
        (ace.channel.django_email.DjangoEmailChannel, "build_email", "MIME"),
        (ace.channel.mime, "message_bytes", "MIME"),
        (ace.channel.mime, "envelope", "MIME"),
        (ace.channel.smtp_pipelining.PipelinedSMTPTransport, "send_many", "SMTP"),
        (ace.channel.smtp_pipelining.PipelinedSMTPTransport, "close", "SMTP"),
        (ace.batch, "send_ace_message_sent_signal", "signals"),
    ]
    stages += [(batches, name, "log") for name in ("_claim", "run_complete_if_done")]
    stages += [(DeliveryQuerySet, name, "log") for name in ("rows", "mark_sending", "record")]
    for owner, attribute, stage in stages:
        if hasattr(owner, attribute):
            timer.wrap(owner, attribute, stage)
        else:
            log(f"!! profile: {getattr(owner, '__name__', owner)}.{attribute} is gone; not timed")
    # A context manager: time what it does on entry and exit (the batch's policy look-ups).
    if hasattr(batches, "policies_prefetched"):
        timer.wrap_context_manager(batches, "policies_prefetched", "policy")


def run_profile(
    args: argparse.Namespace, count: int, sink: Sink, email: str, timer: StageTimer
) -> dict[str, Any]:
    """The pipeline in this process (eager Celery) for ``email``, timed per stage by ``timer``
    (already put around the stages by :func:`instrument`)."""
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from campaigns.services.runs import run_start
    from config.celery import app

    app.conf.task_always_eager = True  # batches run inline, in this process
    reset_and_seed(count)
    campaign_id = create_campaign(email=email)
    redis_client(args.redis_url).flushdb()
    timer.wall.clear()
    timer.cpu.clear()
    reset_queries()
    log(f"-- profile: {count:,} recipients of the {email} email in one process")

    sampler = Sampler(os.getpid(), sink.process.pid, args.database_url).start()
    sampler.mark()
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        with timer.stage("other"):
            run = run_start(campaign_id=campaign_id, due_at=dt.datetime.now(dt.UTC))
        seconds = time.perf_counter() - started
    cpu = sampler.cpu_since_mark()
    sampler.stop()
    app.conf.task_always_eager = False
    run.refresh_from_db()
    sent = max(run.sent, 1)
    stages = sorted(timer.cpu, key=lambda stage: -timer.cpu[stage])
    return {
        "email": email,
        "recipients": count,
        "status": run.status,
        "sent": run.sent,
        "seconds": round(seconds, 2),
        "per_second_one_process": round(run.sent / seconds, 1),
        "queries": len(queries),
        "queries_per_message": round(len(queries) / sent, 4),
        "cpu_us_per_message": {s: round(timer.cpu[s] / sent * 1e6, 1) for s in stages},
        "wall_us_per_message": {s: round(timer.wall[s] / sent * 1e6, 1) for s in stages},
        "postgres_cpu_us_per_message": round(cpu["postgres"] / sent * 1e6, 1),
        "sink_cpu_us_per_message": round(cpu["smtp-sink"] / sent * 1e6, 1),
    }


# Main ----------------------------------------------------------------------------------------


def summarize(results: dict[str, Any]) -> str:
    lines = []
    sink = results.get("sink_ceiling_per_second")
    if sink:
        lines.append(
            f"SMTP sink ceiling (smtp-source, {SINK_SESSIONS} sessions): {sink:,.0f} msg/s"
        )
    runs = results.get("runs", [])
    for run in runs:
        ref = run.get("reference")
        if ref:
            lines.append(
                f"Reference {ref['library']} (ace.send per message, Django's SMTP backend) just "
                f"before: {ref['per_second']:,.1f} msg/s over {ref['messages']:,} messages "
                f"({ref.get('no_network_per_second', 0):,.1f} msg/s with the locmem backend)"
            )
        ratio = f", {run['per_second'] / ref['per_second']:.1f}x the reference" if ref else ""
        lines.append(
            f"{run['recipients']:>7,} recipients ({run.get('email', 'typical')} email): "
            f"{run['per_second']:,.1f} msg/s{ratio} "
            f"({run['sent']:,} sent in {run['seconds']} s, {run['tasks']} tasks); "
            f"{run['queries_per_message']} queries/message; peak RSS "
            f"{run['peak_rss_process_mb']} MB per process (pool: {run['peak_rss_children_mb']}), "
            f"{run['peak_rss_tree_mb']} MB worker tree"
        )
        cpu = run["cpu_us_per_message"]
        ours = cpu["worker"] + cpu["postgres"] + cpu["smtp-sink"]
        lines.append(
            f"{'':>9}CPU per message: worker {cpu['worker']} us, PostgreSQL {cpu['postgres']} us, "
            f"sink {cpu['smtp-sink']} us (machine: {cpu['machine']} us, "
            f"{cpu['machine'] - ours} us not ours; {run['machine_busy_percent']} % busy, "
            f"{run['steal_percent']} % stolen by the hypervisor)"
        )
        if cpu["machine"] - ours > 0.2 * cpu["machine"]:
            lines.append(
                f"{'':>9}!! other processes used {1 - ours / cpu['machine']:.0%} of the CPU "
                "during this run: the figures above are pessimistic; rerun on a quiet machine"
            )
    sized = [run for run in runs if run.get("email", "typical") == runs[0].get("email")]
    if len(sized) >= 2:
        low, high = sized[0]["peak_rss_process_mb"], sized[-1]["peak_rss_process_mb"]
        lines.append(
            f"Peak RSS growth {sized[0]['recipients']:,} -> {sized[-1]['recipients']:,}: "
            f"{(high - low) / low * 100:+.1f} %"
        )
    stages = results.get("stages_microseconds_per_message")
    if stages:
        lines.append("Stages in isolation, one process, per message:")
        for stage, micros in stages.items():
            unit = "" if "size" in stage else " us"
            lines.append(f"    {stage:<45} {micros:>9.1f}{unit}")
    for profile in results.get("profiles", []):
        lines.append(
            f"Profile ({profile['recipients']:,} recipients, {profile['email']} email, one "
            f"process, eager Celery): {profile['per_second_one_process']:,.1f} msg/s; per "
            "message, this process:"
        )
        lines.append(f"    {'stage':<12} {'CPU':>9} {'wall':>9}")
        for stage, micros in profile["cpu_us_per_message"].items():
            wall = profile["wall_us_per_message"][stage]
            lines.append(f"    {stage:<12} {micros:>6.1f} us {wall:>6.1f} us")
        total_cpu = sum(profile["cpu_us_per_message"].values())
        total_wall = sum(profile["wall_us_per_message"].values())
        lines.append(f"    {'total':<12} {total_cpu:>6.1f} us {total_wall:>6.1f} us")
        lines.append(
            f"    plus PostgreSQL {profile['postgres_cpu_us_per_message']} us and the sink "
            f"{profile['sink_cpu_us_per_message']} us of CPU per message in their own processes"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--profile", type=int, default=0, help="profile mode with N recipients")
    parser.add_argument("--stages", type=int, default=0, help="per-stage micro-benchmarks (N)")
    parser.add_argument("--reference-count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--smtp-connections", type=int, default=4)
    parser.add_argument("--plain-smtp", action="store_true", help="one smtplib connection")
    parser.add_argument(
        "--full-render",
        action="store_true",
        help="render every message in full (ACE_BATCH_RENDER = False, as before ace.batch_render)",
    )
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--email",
        nargs="+",
        choices=["typical", "worst"],
        default=["typical", "worst"],
        help="the emails to measure: typical (the loop reads only shared context) and worst "
        "(a per-recipient parameter in every item link)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=5000,
        help="recipients of an untimed run first, so that every fresh worker process has run a "
        "few batches (each imports, loads plugins and compiles templates on its first batch: "
        "~0.5 s of CPU); 0 measures from a cold worker",
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)

    ensure_database(args.database_url)
    sink = Sink()
    results: dict[str, Any] = {
        "command": " ".join(
            [Path(sys.executable).name, "-m", "bench.run_benchmark", *sys.argv[1:]]
        ),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "settings": {
            "concurrency": args.concurrency,
            "smtp_connections": 0 if args.plain_smtp else args.smtp_connections,
            "batch_size": args.batch_size,
            "warmup": args.warmup,
            "batch_render": not args.full_render,
        },
    }
    try:
        setup_django(args, sink.port)
        log("-- measuring the sink's ceiling")
        results["sink_ceiling_per_second"] = round(sink.ceiling() or 0)
        if args.stages:
            from bench.stages import run_stages

            results["stages_microseconds_per_message"] = run_stages(args.stages)
        if args.profile:
            timer = StageTimer()
            instrument(timer)
            results["profiles"] = [
                run_profile(args, args.profile, sink, email, timer) for email in args.email
            ]
        if args.recipients:
            results["runs"] = []
            for count in args.recipients:
                for email in args.email:
                    # The reference right before each run: the machine's speed drifts over
                    # minutes (a shared VM); a ratio is only meaningful between neighbours.
                    reference = run_reference(args, sink, email)
                    run = run_once(args, count, sink, email)
                    run["reference"] = reference
                    if reference:
                        run["ratio"] = round(run["per_second"] / reference["per_second"], 2)
                    results["runs"].append(run)
    finally:
        sink.stop()
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS_DIR / f"benchmark-{stamp}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(summarize(results))


if __name__ == "__main__":
    main()
