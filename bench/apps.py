"""The ``bench`` app: installed only by ``bench.settings``; counts the worker's SQL queries."""

from __future__ import annotations

import gc
import os
import time
from typing import Any

from django.apps import AppConfig

#: Redis keys the worker adds its counts to (read by ``bench.run_benchmark``).
QUERIES_KEY = "bench:queries"
TASKS_KEY = "bench:tasks"
TASK_CPU_KEY = "bench:task_cpu_us"  # hash: task name -> CPU microseconds inside tasks
GC_KEY = "bench:gc_us"  # hash: generation -> microseconds spent in garbage collections

_pending = {"queries": 0, "started": 0.0}
_gc: dict[int, float] = {}
_gc_started = [0.0]


def _gc_timer(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        generation = info["generation"]
        _gc[generation] = _gc.get(generation, 0.0) + time.perf_counter() - _gc_started[0]


def _count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    _pending["queries"] += 1
    return execute(sql, params, many, context)


def _wrap_connection(*, connection: Any, **_kwargs: Any) -> None:
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


def _started(**_kwargs: Any) -> None:
    _pending["started"] = time.process_time()


def _flush(*, sender: Any = None, **_kwargs: Any) -> None:
    """After each task: add this process's query count and the task's CPU time to Redis (one
    round trip per task)."""
    import redis

    cpu = time.process_time() - _pending["started"]
    queries, _pending["queries"] = _pending["queries"], 0
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    try:
        pipe = client.pipeline()
        pipe.incrby(QUERIES_KEY, queries)
        pipe.incr(TASKS_KEY)
        pipe.hincrby(TASK_CPU_KEY, getattr(sender, "name", "?"), round(cpu * 1e6))
        for generation, seconds in _gc.items():
            pipe.hincrby(GC_KEY, str(generation), round(seconds * 1e6))
        _gc.clear()
        pipe.execute()
    finally:
        client.close()


class BenchConfig(AppConfig):
    """With ``BENCH_COUNT_QUERIES=1`` every query of every database connection is counted."""

    name = "bench"
    label = "bench"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if os.environ.get("BENCH_COUNT_QUERIES") != "1":
            return
        from celery.signals import task_postrun, task_prerun
        from django.db import connections
        from django.db.backends.signals import connection_created

        connection_created.connect(_wrap_connection, dispatch_uid="bench.count_queries")
        for connection in connections.all(initialized_only=True):
            _wrap_connection(connection=connection)
        gc.callbacks.append(_gc_timer)
        task_prerun.connect(_started, dispatch_uid="bench.task_started", weak=False)
        task_postrun.connect(_flush, dispatch_uid="bench.flush_queries", weak=False)
