"""
:mod:`ace.utils.plugins` loads ACE plugins (channels, policies) through stevedore entry points.
It is intended for internal ACE use.

A name listed in the settings that no installed package provides, or whose entry point fails
to import, is an :class:`~django.core.exceptions.ImproperlyConfigured` error naming it; the
reference skipped such names silently. A plugin whose ``enabled()`` returns false is left out
with a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from importlib.metadata import entry_points
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from stevedore import enabled
from stevedore.extension import Extension

log = logging.getLogger(__name__)


def check_plugin(extension: Extension, namespace: str, names: Iterable[str] | None = None) -> bool:
    """
    Check whether an extension is wanted and enabled.

    Args:
        extension: The extension to check.
        namespace: The namespace it was loaded from.
        names: The names that should be used (``None`` means all).

    Returns:
        True if the extension is listed (or no list is given) and its ``enabled()`` is true.
    """
    if names is not None and extension.name not in names:
        return False
    check = getattr(extension.plugin, "enabled", None)
    plugin_enabled = bool(check()) if callable(check) else True
    if not plugin_enabled:
        log.warning(
            "ACE plugin %r (namespace %s) is left out: %s",
            extension.name,
            namespace,
            disabled_reason(extension.plugin),
        )
    return plugin_enabled


def disabled_reason(plugin: Any) -> str:
    """Why a plugin reports itself disabled: its ``disabled_reason()`` if it has one."""
    explain = getattr(plugin, "disabled_reason", None)
    reason = explain() if callable(explain) else None
    name = getattr(plugin, "__name__", repr(plugin))
    return str(reason) if reason else f"{name}.enabled() returned False; check its settings"


def _on_load_failure(names: Iterable[str] | None, manager: Any, entrypoint: Any, exc: Exception):
    if names is None or entrypoint.name in names:
        raise ImproperlyConfigured(
            f"ACE plugin {entrypoint.name!r} ({entrypoint.value}) in namespace "
            f"{manager.namespace!r} could not be loaded: {exc!r}"
        ) from exc
    log.debug("Ignoring unloadable ACE plugin %r: %r", entrypoint.name, exc)


def get_manager(
    namespace: str, names: Iterable[str] | None = None
) -> enabled.EnabledExtensionManager:
    """
    Get the stevedore extension manager for a namespace, with the extensions instantiated.

    Args:
        namespace: The entry point namespace to load plugins from.
        names: The names to load; ``None`` loads every extension of the namespace.

    Raises:
        ImproperlyConfigured: If a listed plugin cannot be imported.
    """
    names = None if names is None else list(names)
    return enabled.EnabledExtensionManager(
        namespace=namespace,
        check_func=partial(check_plugin, namespace=namespace, names=names),
        invoke_on_load=True,
        on_load_failure_callback=partial(_on_load_failure, names),
    )


def available_names(namespace: str) -> list[str]:
    """The names of every entry point installed in ``namespace``."""
    return sorted({ep.name for ep in entry_points(group=namespace)})


def load_plugin_class(namespace: str, name: str) -> Any:
    """The object an entry point names (not instantiated)."""
    for entry_point in entry_points(group=namespace, name=name):
        return entry_point.load()
    raise LookupError(f"No entry point {name!r} in namespace {namespace!r}")


def get_plugins(namespace: str, names: Iterable[str] | None = None) -> list[Extension]:
    """
    Get the enabled extensions of a namespace, in the order of ``names`` when given.

    Args:
        namespace: The entry point namespace to load plugins from.
        names: The names to load; ``None`` loads every extension of the namespace.

    Returns:
        The enabled extensions (disabled ones are left out and logged).

    Raises:
        ImproperlyConfigured: If a listed name is not installed, or cannot be imported.
    """
    if names is not None:
        names = list(names)
        installed = set(available_names(namespace))
        missing = [name for name in names if name not in installed]
        if missing:
            raise ImproperlyConfigured(
                f"Unknown ACE plugin name(s) {missing} for namespace {namespace!r}; "
                f"installed: {sorted(installed)}"
            )
    extensions = []
    seen: set[str] = set()
    for extension in get_manager(namespace, names):
        if extension.name not in seen:  # a package installed twice lists its plugins twice
            seen.add(extension.name)
            extensions.append(extension)
    if names is not None:
        order = {name: index for index, name in enumerate(names)}
        extensions.sort(key=lambda ext: order[ext.name])
    return extensions
