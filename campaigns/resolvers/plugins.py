"""Resolver plugins: the ``campaigns.recipient_resolver`` entry points, and the resolver of a
``RecipientSource``."""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.core.exceptions import ValidationError
from stevedore import ExtensionManager

from campaigns.models import RecipientSource
from campaigns.resolvers.base import CampaignRecipientResolver

log = logging.getLogger(__name__)

NAMESPACE = "campaigns.recipient_resolver"

UNKNOWN_RESOLVER = "Unknown recipient resolver {name!r}; installed: {installed}."


def _on_load_failure(manager: Any, entrypoint: Any, exc: Exception) -> None:
    log.error("Recipient resolver plugin %s failed to load: %s", entrypoint, exc)


@functools.cache
def available_resolvers() -> dict[str, type[CampaignRecipientResolver]]:
    """Installed resolver plugins by entry-point name (cached; ``.cache_clear()`` in tests)."""
    manager = ExtensionManager(
        namespace=NAMESPACE, invoke_on_load=False, on_load_failure_callback=_on_load_failure
    )
    found: dict[str, type[CampaignRecipientResolver]] = {}
    for ext in manager:
        plugin = ext.plugin
        if isinstance(plugin, type) and issubclass(plugin, CampaignRecipientResolver):
            found[ext.name] = plugin
        else:
            log.error(
                "Recipient resolver plugin %s (%r) is not a CampaignRecipientResolver; ignored.",
                ext.name,
                plugin,
            )
    return dict(sorted(found.items()))


def resolver_choices() -> list[tuple[str, str]]:
    """``(name, label)`` pairs of the installed resolvers, for the admin."""
    return [(name, cls.label or name) for name, cls in available_resolvers().items()]


def resolver_class(name: str) -> type[CampaignRecipientResolver]:
    """The plugin class called ``name``; ``ValidationError`` if it is not installed."""
    resolvers = available_resolvers()
    try:
        return resolvers[name]
    except KeyError:
        raise ValidationError(
            UNKNOWN_RESOLVER.format(name=name, installed=", ".join(resolvers) or "none"),
            code="unknown_resolver",
        )


def resolver_for_source(source: RecipientSource) -> CampaignRecipientResolver:
    """The resolver of an audience, with its parameters validated again (a group or list may
    have been deleted since the source was saved); raises ``ValidationError``."""
    cls = resolver_class(source.resolver)
    return cls(cls.clean_parameters(source.parameters))
