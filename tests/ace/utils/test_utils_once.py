"""Tests for ace.utils.once."""

from __future__ import annotations

import threading

from ace.utils import once as once_module
from ace.utils.once import once, reset_all


def test_called_once_until_reset():
    calls = []

    @once
    def load():
        calls.append(1)
        return object()

    first = load()
    assert load() is first
    assert calls == [1]
    load.reset()
    assert load() is not first
    assert calls == [1, 1]


def test_reset_all_resets_every_cached_function():
    counter = {"a": 0, "b": 0}

    @once
    def a():
        counter["a"] += 1
        return counter["a"]

    @once
    def b():
        counter["b"] += 1
        return counter["b"]

    assert (a(), b()) == (1, 1)
    reset_all()
    assert (a(), b()) == (2, 2)


def test_keeps_the_function_metadata():
    @once
    def documented():
        """Docs."""
        return 1

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Docs."
    assert "documented" in repr(documented)


def test_concurrent_first_calls_run_the_function_once():
    calls = []
    gate = threading.Event()

    @once
    def slow():
        gate.wait(1)
        calls.append(1)
        return len(calls)

    threads = [threading.Thread(target=slow) for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join()
    assert calls == [1]
    assert once_module._NOT_SET is not slow()
