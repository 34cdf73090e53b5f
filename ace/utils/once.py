"""
:mod:`ace.utils.once` makes a module-level function cache its result after the first call,
which ACE uses to load plugins lazily.

Unlike the reference, every cached function can be reset (``func.reset()``), and
:func:`reset_all` resets them all, so tests and setting changes never see stale plugins.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_NOT_SET = object()
_REGISTRY: weakref.WeakSet[Any] = weakref.WeakSet()


class _Once:
    """A zero-argument callable that runs the wrapped function at most once until reset."""

    def __init__(self, func: Callable[[], T]) -> None:
        functools.update_wrapper(self, func)
        self._func = func
        self._result: Any = _NOT_SET
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        result = self._result
        if result is _NOT_SET:
            with self._lock:
                if self._result is _NOT_SET:
                    self._result = self._func()
                result = self._result
        return result

    def reset(self) -> None:
        """Forget the cached result; the next call runs the function again."""
        with self._lock:
            self._result = _NOT_SET

    def __repr__(self) -> str:
        return f"<once {self._func.__module__}.{self._func.__qualname__}>"


def once(func: Callable[[], T]) -> Callable[[], T]:
    """
    Decorate a function so that it is called exactly once.

    After the first call its result is kept in memory and returned to every later caller
    instead of calling the function again (until ``reset()``).

    Example::

        @once
        def load_config():
            with open("config.json") as cfg_file:
                return json.load(cfg_file)

        cfg = load_config()   # reads the file
        cfg2 = load_config()  # returns the same object, no file access

    Args:
        func: The zero-argument function to call once.

    Returns:
        The wrapped function, with a ``reset()`` method.
    """
    wrapper = _Once(func)
    _REGISTRY.add(wrapper)
    return wrapper  # type: ignore[return-value]


def reset_all() -> None:
    """Reset every function decorated with :func:`once` (used between tests)."""
    for wrapper in list(_REGISTRY):
        wrapper.reset()
