"""Recipient resolver plugins: who a campaign goes to, streamed in keyset-paginated id chunks.

Resolvers are found through the ``campaigns.recipient_resolver`` entry-point namespace
(declared in ``pyproject.toml``), so a developer adds an audience by subclassing
:class:`CampaignRecipientResolver` and declaring an entry point; it then appears in the
admin's resolver choices. See the README section "Extending: recipient resolvers".
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import attrs
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from stevedore import ExtensionManager

from ace.recipient import Recipient
from ace.recipient_resolver import RecipientResolver
from campaigns.models import RecipientList, RecipientListEntry, RecipientSource
from campaigns.parameters import (  # noqa: F401 - importable from here too
    NO_PARAMETERS,
    PARAMETERS_NOT_OBJECT,
    UNKNOWN_PARAMETERS,
    parameters_clean,
)

log = logging.getLogger(__name__)

NAMESPACE = "campaigns.recipient_resolver"
DEFAULT_CHUNK_SIZE = 500

UNKNOWN_RESOLVER = "Unknown recipient resolver {name!r}; installed: {installed}."
FILTER_NOT_OBJECT = 'Must be a JSON object of field lookups, e.g. {{"is_staff": true}}.'
FILTER_BAD_LOOKUP = (
    "{key!r} is not an allowed lookup. Allowed fields: {fields}; lookups per field: {help}."
)
FILTER_BAD_VALUE = "{key!r}: {problem}"


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


# Parameter forms --------------------------------------------------------------------------


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


class AllActiveUsersResolver(UserResolver):
    """Every active user."""

    label = "All active users"
    description = "Every user whose account is active."


class GroupMembersForm(forms.Form):
    """Parameters of the group_members resolver."""

    group = forms.ModelChoiceField(
        queryset=Group.objects.all(), help_text="id of a Django group (auth.Group)"
    )


class GroupMembersResolver(UserResolver):
    """The active members of one Django group."""

    label = "Members of a group"
    description = "Active users in one Django group."
    parameters_form = GroupMembersForm

    def users(self) -> models.QuerySet:
        return super().users().filter(groups__pk=self.parameters["group"])


# The user_filter resolver: a saved filter of whitelisted field lookups ------------------------

TEXT_LOOKUPS = frozenset(
    {
        "exact",
        "iexact",
        "contains",
        "icontains",
        "startswith",
        "istartswith",
        "endswith",
        "iendswith",
        "in",
    }
)
NUMBER_LOOKUPS = frozenset({"exact", "gt", "gte", "lt", "lte", "in"})
DATE_LOOKUPS = frozenset({"gt", "gte", "lt", "lte", "isnull"})
BOOL_LOOKUPS = frozenset({"exact"})

#: Fields of the user model a saved filter may use, and the lookups allowed on each. No
#: relations, no transforms: a filter cannot reach other tables or expensive expressions.
USER_FILTER_FIELDS: dict[str, frozenset[str]] = {
    "id": NUMBER_LOOKUPS,
    "username": TEXT_LOOKUPS,
    "email": TEXT_LOOKUPS,
    "first_name": TEXT_LOOKUPS,
    "last_name": TEXT_LOOKUPS,
    "is_staff": BOOL_LOOKUPS,
    "is_superuser": BOOL_LOOKUPS,
    "is_active": BOOL_LOOKUPS,
    "date_joined": DATE_LOOKUPS,
    "last_login": DATE_LOOKUPS,
}
MAX_IN_VALUES = 1000
_RELATIVE = re.compile(r"^(?P<sign>[-+])(?P<n>\d{1,5})(?P<unit>[mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _lookup_help() -> str:
    return "; ".join(
        f"{field}: {', '.join(sorted(lookups))}" for field, lookups in USER_FILTER_FIELDS.items()
    )


def parse_filter_datetime(value: Any) -> dt.datetime:
    """A filter's date value: ISO date or datetime, ``now``, or relative (``-30d``, ``-12h``,
    ``+1w``) computed when the audience is resolved, so a recurring campaign's "users who
    joined in the last 30 days" stays true on every run."""
    if not isinstance(value, str):
        raise ValueError('expected a date string ("2024-01-31", "-30d" or "now")')
    text = value.strip()
    if text == "now":
        return timezone.now()
    match = _RELATIVE.match(text)
    if match:
        delta = dt.timedelta(**{_UNITS[match["unit"]]: int(match["n"])})
        return timezone.now() + (delta if match["sign"] == "+" else -delta)
    parsed = parse_datetime(text)
    if parsed is None:
        day = parse_date(text)
        if day is None:
            raise ValueError(f'{value!r} is not a date ("2024-01-31"), "-30d" or "now"')
        parsed = dt.datetime.combine(day, dt.time())
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


def _clean_value(field: str, lookup: str, value: Any) -> Any:
    """Check (and convert) one lookup value; raises ValueError with a readable problem."""
    lookups = USER_FILTER_FIELDS[field]
    if lookup == "isnull" or lookups is BOOL_LOOKUPS:
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if lookup == "in":
        if not isinstance(value, list) or not value or len(value) > MAX_IN_VALUES:
            raise ValueError(f"expected a non-empty list of at most {MAX_IN_VALUES} values")
        return [_clean_value(field, "exact", v) for v in value]
    if lookups is NUMBER_LOOKUPS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected an integer")
        return value
    if lookups is DATE_LOOKUPS:
        return parse_filter_datetime(value)
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def compile_user_filter(lookups: dict) -> models.Q:
    """Turn a saved filter (``{"date_joined__gte": "-30d", "is_staff": false}``) into a ``Q``.

    Raises ``ValidationError`` naming the offending key. Only fields and lookups of
    :data:`USER_FILTER_FIELDS` are accepted, so a filter cannot traverse relations.
    """
    if not isinstance(lookups, dict):
        raise ValidationError(FILTER_NOT_OBJECT, code="not_object")
    model_fields = {f.name for f in get_user_model()._meta.get_fields()}
    q = models.Q()
    errors = []
    for key, value in lookups.items():
        field, _, lookup = key.partition("__")
        lookup = lookup or "exact"
        allowed = USER_FILTER_FIELDS.get(field)
        if allowed is None or field not in model_fields or lookup not in allowed:
            errors.append(
                ValidationError(
                    FILTER_BAD_LOOKUP.format(
                        key=key, fields=", ".join(USER_FILTER_FIELDS), help=_lookup_help()
                    ),
                    code="bad_lookup",
                )
            )
            continue
        try:
            q &= models.Q(**{f"{field}__{lookup}": _clean_value(field, lookup, value)})
        except ValueError as exc:
            errors.append(
                ValidationError(FILTER_BAD_VALUE.format(key=key, problem=exc), code="bad_value")
            )
    if errors:
        raise ValidationError(errors)
    return q


class UserFilterForm(forms.Form):
    """Parameters of the user_filter resolver."""

    filters = forms.JSONField(
        required=False,
        help_text='field lookups the users must match, e.g. {"date_joined__gte": "-30d", '
        '"email__iendswith": "@example.org", "is_staff": false}',
    )
    exclude = forms.JSONField(
        required=False, help_text="field lookups of users to leave out (same syntax)"
    )
    include_inactive = forms.BooleanField(
        required=False, help_text="true to include inactive accounts"
    )

    def clean_filters(self) -> dict:
        value = self.cleaned_data.get("filters") or {}
        compile_user_filter(value)
        return value

    def clean_exclude(self) -> dict:
        value = self.cleaned_data.get("exclude") or {}
        compile_user_filter(value)
        return value


class UserFilterResolver(UserResolver):
    """Users matching a saved filter of whitelisted field lookups."""

    label = "Users matching a filter"
    description = "Users selected by field lookups on a whitelist of user fields."
    parameters_form = UserFilterForm

    def users(self) -> models.QuerySet:
        users = get_user_model().objects.all()
        if not self.parameters.get("include_inactive"):
            users = users.filter(is_active=True)
        # Compiled at resolve time: relative dates ("-30d") are relative to this run.
        users = users.filter(compile_user_filter(self.parameters.get("filters") or {}))
        exclude = self.parameters.get("exclude") or {}
        if exclude:
            users = users.exclude(compile_user_filter(exclude))
        return users


class RecipientListForm(forms.Form):
    """Parameters of the recipient_list resolver."""

    recipient_list = forms.ModelChoiceField(
        queryset=RecipientList.objects.all(), help_text="id of an imported recipient list"
    )


class RecipientListResolver(QuerySetResolver):
    """The entries of an imported recipient list (ids are entry ids, keys are addresses)."""

    label = "Imported recipient list"
    description = "The addresses of a list imported from CSV or XLSX."
    parameters_form = RecipientListForm

    def get_queryset(self) -> models.QuerySet:
        return RecipientListEntry.objects.filter(
            recipient_list_id=self.parameters["recipient_list"]
        )

    def to_recipient(self, entry: RecipientListEntry) -> ResolvedRecipient:
        return ResolvedRecipient(
            key=f"email:{entry.email.lower()}",
            user_id=entry.user_id,
            email=entry.email,
            language=entry.language,
            time_zone=entry.time_zone,
            context={
                **(entry.extra or {}),
                "first_name": entry.first_name,
                "last_name": entry.last_name,
            },
        )


# Plugin discovery --------------------------------------------------------------------------


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
