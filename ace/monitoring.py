"""
:mod:`ace.monitoring` reports ACE delivery facts to monitoring services.

Only New Relic is supported, as in the reference; without the ``newrelic`` package installed
every call is a no-op.
"""

from __future__ import annotations

from typing import Any

try:  # pragma: no cover - depends on the environment
    import newrelic.agent as _newrelic_agent
except ImportError:
    _newrelic_agent = None


def report(key: str, value: Any) -> None:
    """Report a key/value fact about the current message to every monitoring backend."""
    report_to_newrelic(key, value)


def report_to_newrelic(key: str, value: Any) -> None:
    """Attach ``key=value`` to the current New Relic transaction (no-op without New Relic)."""
    if _newrelic_agent is None:
        return
    add = getattr(_newrelic_agent, "add_custom_attribute", None) or getattr(
        _newrelic_agent, "add_custom_parameter", None
    )
    if add is not None:
        add(key, value)
