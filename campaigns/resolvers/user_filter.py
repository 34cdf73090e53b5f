"""The ``user_filter`` audience: users matching a saved filter of whitelisted field lookups
(``{"date_joined__gte": "-30d", "is_staff": false}``), compiled into a ``Q`` at resolve time."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from campaigns.resolvers.base import UserResolver

FILTER_NOT_OBJECT = 'Must be a JSON object of field lookups, e.g. {{"is_staff": true}}.'
FILTER_BAD_LOOKUP = (
    "{key!r} is not an allowed lookup. Allowed fields: {fields}; lookups per field: {help}."
)
FILTER_BAD_VALUE = "{key!r}: {problem}"


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
