"""Policy plugins: every installed ``openedx.ace.policy`` entry point (enabled in ACE or not),
and one shared instance of each."""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from django.conf import settings
from stevedore import ExtensionManager

from ace.policy import POLICY_PLUGIN_NAMESPACE, Policy

log = logging.getLogger(__name__)

UNKNOWN_POLICY = "Unknown policy {name!r}; installed: {installed}."


def _on_load_failure(manager: Any, entrypoint: Any, exc: Exception) -> None:
    log.error("ACE policy plugin %s failed to load: %s", entrypoint, exc)


@functools.cache
def installed_policy_classes() -> dict[str, type]:
    """Every installed ``openedx.ace.policy`` plugin class, by name (enabled in ACE or not)."""
    manager = ExtensionManager(
        namespace=POLICY_PLUGIN_NAMESPACE,
        invoke_on_load=False,
        on_load_failure_callback=_on_load_failure,
    )
    return dict(sorted((ext.name, ext.plugin) for ext in manager))


_instances_lock = threading.Lock()
_instances: dict[str, Policy] = {}


def policy_instance(name: str) -> Policy:
    """One shared instance per plugin (policies are stateless apart from prefetch caches,
    which are per thread)."""
    with _instances_lock:
        if name not in _instances:
            _instances[name] = installed_policy_classes()[name]()
        return _instances[name]


def policy_instances() -> list[Policy]:
    """The instances made so far."""
    with _instances_lock:
        return list(_instances.values())


def reset_plugin_caches() -> None:
    """Forget loaded plugins (tests, settings changes)."""
    installed_policy_classes.cache_clear()
    with _instances_lock:
        _instances.clear()


def ace_enabled_policy_names() -> list[str]:
    return list(getattr(settings, "ACE_ENABLED_POLICIES", []))
