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
