"""What an audience is: :class:`ResolvedRecipient` (one recipient of a run) and the resolver
base classes, :class:`CampaignRecipientResolver` (validated parameters, keyset-paginated id
chunks, and ``send``, the spec's pattern) and the queryset-backed :class:`QuerySetResolver`
and :class:`UserResolver`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import attrs
from django import forms
from django.contrib.auth import get_user_model
from django.db import models

from ace.recipient import Recipient
from ace.recipient_resolver import RecipientResolver
from campaigns.parameters import parameters_clean

DEFAULT_CHUNK_SIZE = 500


@attrs.define(frozen=True)
class ResolvedRecipient:
    """One recipient of a run: identity, address and the per-recipient template context."""

    key: str  # stable in a run: "user:<id>" or "email:<lowercased address>"
    user_id: int | None
    email: str
    language: str = ""  # "" -> campaign / message type default
    time_zone: str = ""  # IANA name or ""
    context: dict = attrs.field(factory=dict)

    def ace_recipient(self) -> Recipient:
        """The ACE recipient (user id + address) for ``MessageType.personalize``."""
        return Recipient(lms_user_id=self.user_id, email_address=self.email or None)


def _jsonable(value: Any) -> Any:
    """Cleaned form values -> what is stored in ``RecipientSource.parameters`` (JSON)."""
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class CampaignRecipientResolver(RecipientResolver):
    """Base class of campaign audiences: an ACE ``RecipientResolver`` that streams recipients.

    Subclasses set ``label`` (shown in the admin) and ``parameters_form`` (a Django form that
    validates ``RecipientSource.parameters``; its errors are shown in the admin), and implement
    the four audience methods below. The constructor receives parameters already cleaned by
    :meth:`clean_parameters`. A resolver never loads the whole audience: the dispatcher walks
    :meth:`iter_id_chunks` and loads each chunk with :meth:`recipients_for_ids`.
    """

    label: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters_form: ClassVar[type[forms.Form] | None] = None

    def __init__(self, parameters: dict | None = None) -> None:
        self.parameters = dict(parameters or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.parameters!r})"

    # -- validation ---------------------------------------------------------------------
    @classmethod
    def clean_parameters(cls, parameters: Any) -> dict:
        """Validate raw parameters through ``parameters_form``; return the JSON to store.

        Raises ``ValidationError`` whose messages name the parameter ("group: ...").
        """
        cleaned = parameters_clean(
            form_class=cls.parameters_form,
            parameters=parameters,
            kind="resolver",
            initial_defaults=False,
        )
        return {k: _jsonable(v) for k, v in cleaned.items()}

    @classmethod
    def parameters_help(cls) -> str:
        """One line describing the accepted parameters, for the admin's help text."""
        if cls.parameters_form is None:
            return "no parameters"
        parts = []
        for name, field in cls.parameters_form.base_fields.items():
            text = name + ("" if field.required else " (optional)")
            if field.help_text:
                text += f": {field.help_text}"
            parts.append(text)
        return "; ".join(parts)

    # -- the audience -------------------------------------------------------------------
    def iter_id_chunks(
        self, *, after: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[list[int]]:
        """Keyset-paginated ids (``ORDER BY id``, ``id > after``), one chunk at a time."""
        raise NotImplementedError

    def recipients_for_ids(self, ids: Sequence[int]) -> list[ResolvedRecipient]:
        """The recipients of these ids in one query, in the order of ``ids``; ids that left
        the audience since they were listed are dropped."""
        raise NotImplementedError

    def count(self) -> int:
        """How many recipients the audience has now."""
        raise NotImplementedError

    def preview(self, limit: int = 20) -> list[ResolvedRecipient]:
        """The first ``limit`` recipients (by id), for the admin."""
        for ids in self.iter_id_chunks(chunk_size=limit):
            return self.recipients_for_ids(ids)
        return []

    def iter_recipients(
        self, *, after: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[ResolvedRecipient]:
        """Every recipient, one chunk in memory at a time."""
        for ids in self.iter_id_chunks(after=after, chunk_size=chunk_size):
            yield from self.recipients_for_ids(ids)

    # -- the ACE pattern ------------------------------------------------------------------
    def send(
        self,
        msg_type,
        *args: Any,
        language: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        **kwargs: Any,
    ) -> int:
        """The spec's pattern: personalize ``msg_type`` for every recipient and ``ace.send`` it.

        A fresh context dict is built for each recipient, so keys never leak from one message
        to the next. Extra keyword arguments go to ``ace.send`` (e.g. ``limit_to_channels``).
        Returns how many messages were handed to ACE. Campaign runs use the batch path
        (``campaigns.tasks``) instead; this one sends synchronously, message by message.
        """
        from ace import ace as ace_api
        from campaigns.messages import CampaignMessageBuilder

        builder = CampaignMessageBuilder(msg_type, language=language)
        sent = 0
        for recipient in self.iter_recipients(chunk_size=chunk_size):
            ace_api.send(builder.build(recipient), **kwargs)
            sent += 1
        return sent


class QuerySetResolver(CampaignRecipientResolver):
    """A resolver over a model queryset: subclasses give ``get_queryset`` and ``to_recipient``."""

    def get_queryset(self) -> models.QuerySet:
        raise NotImplementedError

    def to_recipient(self, obj: Any) -> ResolvedRecipient:
        raise NotImplementedError

    def iter_id_chunks(
        self, *, after: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> Iterator[list[int]]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1.")
        ids_qs = self.get_queryset().order_by("pk").values_list("pk", flat=True)
        while True:
            page = ids_qs.filter(pk__gt=after) if after is not None else ids_qs
            ids = list(page[:chunk_size])
            if not ids:
                return
            yield ids
            if len(ids) < chunk_size:
                return
            after = ids[-1]

    def recipients_for_ids(self, ids: Sequence[int]) -> list[ResolvedRecipient]:
        if not ids:
            return []
        by_id = {obj.pk: obj for obj in self.get_queryset().filter(pk__in=list(ids))}
        return [self.to_recipient(by_id[i]) for i in ids if i in by_id]

    def count(self) -> int:
        return self.get_queryset().count()

    def preview(self, limit: int = 20) -> list[ResolvedRecipient]:
        return [self.to_recipient(obj) for obj in self.get_queryset().order_by("pk")[:limit]]


class UserResolver(QuerySetResolver):
    """Base of the audiences made of users (override ``to_recipient`` to add profile data)."""

    user_fields: ClassVar[tuple[str, ...]] = ("id", "email", "first_name", "last_name", "username")

    def users(self) -> models.QuerySet:
        """Active users; subclasses narrow this down."""
        return get_user_model().objects.filter(is_active=True)

    def get_queryset(self) -> models.QuerySet:
        return self.users().only(*self.user_fields)

    def to_recipient(self, user: Any) -> ResolvedRecipient:
        return ResolvedRecipient(
            key=f"user:{user.pk}",
            user_id=user.pk,
            email=user.email or "",
            context={
                "first_name": user.first_name,
                "last_name": user.last_name,
                "username": user.get_username(),
            },
        )
