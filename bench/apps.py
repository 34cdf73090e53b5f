"""The ``bench`` app: installed only by ``bench.settings``; counts the worker's SQL queries."""

from __future__ import annotations

import os
from typing import Any

from django.apps import AppConfig

#: Redis keys the worker adds its counts to (read by ``bench.run_benchmark``).
QUERIES_KEY = "bench:queries"
TASKS_KEY = "bench:tasks"

_pending = {"queries": 0}


def _count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    _pending["queries"] += 1
    return execute(sql, params, many, context)


def _wrap_connection(*, connection: Any, **_kwargs: Any) -> None:
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


def _flush(**_kwargs: Any) -> None:
    """After each task: add this process's query count to Redis (one round trip per task)."""
    import redis

    queries, _pending["queries"] = _pending["queries"], 0
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    try:
        pipe = client.pipeline()
        pipe.incrby(QUERIES_KEY, queries)
        pipe.incr(TASKS_KEY)
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
        from celery.signals import task_postrun
        from django.db import connections
        from django.db.backends.signals import connection_created

        connection_created.connect(_wrap_connection, dispatch_uid="bench.count_queries")
        for connection in connections.all(initialized_only=True):
            _wrap_connection(connection=connection)
        task_postrun.connect(_flush, dispatch_uid="bench.flush_queries", weak=False)
