"""Audiences: create and validate recipient sources, and preview who they reach."""

from __future__ import annotations

from typing import Any

import attrs
from django.core.exceptions import ValidationError

from campaigns.models import RecipientSource
from campaigns.resolvers import ResolvedRecipient, resolver_class, resolver_for_source


def recipient_source_clean(*, resolver: str, parameters: Any) -> dict:
    """Validate ``parameters`` with the resolver's ``parameters_form``; return what to store.
    Raises ``ValidationError`` (unknown resolver, or messages naming each bad parameter)."""
    return resolver_class(resolver).clean_parameters(parameters)


def recipient_source_create(
    *, name: str, resolver: str, parameters: dict | None = None
) -> RecipientSource:
    """Create an audience with validated parameters."""
    cleaned = recipient_source_clean(resolver=resolver, parameters=parameters or {})
    source = RecipientSource(name=name, resolver=resolver, parameters=cleaned)
    source.full_clean()
    source.save()
    return source


def recipient_source_update(
    *, source: RecipientSource, resolver: str | None = None, parameters: dict | None = None
) -> RecipientSource:
    """Change an audience's resolver and/or parameters (validated again)."""
    resolver = resolver if resolver is not None else source.resolver
    parameters = parameters if parameters is not None else source.parameters
    source.parameters = recipient_source_clean(resolver=resolver, parameters=parameters)
    source.resolver = resolver
    source.save(update_fields=["resolver", "parameters", "updated_at"])
    return source


@attrs.define(frozen=True)
class AudiencePreview:
    """How many recipients an audience has and the first few; ``error`` if it cannot resolve."""

    count: int = 0
    recipients: list[ResolvedRecipient] = attrs.field(factory=list)
    error: str = ""


def recipient_source_preview(*, source: RecipientSource, limit: int = 20) -> AudiencePreview:
    """Count and first ``limit`` recipients (two queries), for the admin change page."""
    try:
        resolver = resolver_for_source(source)
    except ValidationError as exc:
        return AudiencePreview(error="; ".join(exc.messages))
    return AudiencePreview(count=resolver.count(), recipients=resolver.preview(limit=limit))
