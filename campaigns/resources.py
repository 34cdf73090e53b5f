"""django-import-export resources: recipient list import/export (and the delivery log export).

https://django-import-export.readthedocs.io/en/4.4/advanced_usage.html
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from import_export import fields, resources

from campaigns import conf
from campaigns.exports import csv_unsafe
from campaigns.models import Delivery, RecipientList, RecipientListEntry

# Recipient lists ----------------------------------------------------------------------------

ENTRY_COLUMNS = ("email", "first_name", "last_name", "language", "time_zone")
CONTEXT_PREFIX = "context."
_CONTEXT_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_LOOKUP_CHUNK = 1000
#: C0 control characters except tab, and DEL: never part of a name, an address or a code.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

NO_RECIPIENT_LIST = "Choose the recipient list to import into."
TOO_MANY_ROWS = "This file has {count:,} rows; the most one import accepts is {limit:,}."
UNKNOWN_COLUMN = (
    "Unknown column {column!r}. Allowed: {allowed}, and context.<name> for template context."
)
DUPLICATE_IN_FILE = "Duplicate address: already on row {row} of this file."
DUPLICATE_IN_LIST = "Duplicate address: already in the list {list_name!r}."
EMAIL_REQUIRED = "An email address is required."
BAD_LANGUAGE = "{value!r} is not a language code (e.g. en, pt-br)."
BAD_TIME_ZONE = "{value!r} is not an IANA time zone (e.g. Europe/Paris)."
CONTROL_CHARACTER = (
    "Control character {char} is not allowed (only printable text and tabs): remove it."
)


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _context_value(value: Any) -> Any:
    """A spreadsheet cell as JSON: dates become ISO strings, empty cells empty strings."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _chunks(items: list[str], size: int = _LOOKUP_CHUNK) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RecipientListEntryResource(resources.ModelResource):
    """Rows of a recipient list: email, first_name, last_name, language, time_zone and
    ``context.<name>`` columns (per-recipient template context, stored in ``extra``).

    Imports are additive into the list given to the constructor: an address already in the
    list or repeated in the file is an error, as are invalid addresses and unknown columns;
    every error is reported on its row in the preview, and with import-export's transaction
    (``use_transactions``) nothing is saved unless every row is valid. Entries are linked to
    the user with the same address. Addresses are stored in lower case.
    """

    class Meta:
        model = RecipientListEntry
        fields = ENTRY_COLUMNS
        import_order = ENTRY_COLUMNS
        export_order = ENTRY_COLUMNS
        # The email identifies a row; rows are never matched to existing entries (each row
        # creates one), so a repeated address is reported instead of silently updated.
        import_id_fields = ("email",)
        force_init_instance = True
        clean_model_instances = True
        use_transactions = True
        skip_unchanged = False
        report_skipped = False

    def __init__(
        self,
        recipient_list: RecipientList | None = None,
        on_row: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.recipient_list = recipient_list
        self.on_row = on_row  # called after each row (a background import's progress)
        self._context_columns: list[str] = []

    # -- import ---------------------------------------------------------------------------
    def before_import(self, dataset, **kwargs: Any) -> None:
        """Normalise headers and addresses, and load in a few queries what rows are checked
        against: the list's existing addresses and the users to link."""
        if self.recipient_list is None:
            raise ValidationError(NO_RECIPIENT_LIST)
        if len(dataset) > conf.import_max_rows():
            raise ValidationError(
                TOO_MANY_ROWS.format(count=len(dataset), limit=conf.import_max_rows())
            )
        headers = [str(h or "").strip() for h in dataset.headers or []]
        headers = [h if h.startswith(CONTEXT_PREFIX) else h.lower() for h in headers]
        dataset.headers = headers
        self._context_columns = [
            h
            for h in headers
            if h.startswith(CONTEXT_PREFIX) and _CONTEXT_KEY.match(h[len(CONTEXT_PREFIX) :])
        ]
        known = set(ENTRY_COLUMNS) | set(self._context_columns)
        self._unknown_columns = [h for h in headers if h not in known]
        self._seen: dict[str, int] = {}

        # A cell our own export neutralised ("'=x") comes back as it was stored ("=x"), and
        # addresses are compared in lower case.
        col = headers.index("email") if "email" in headers else None
        emails: set[str] = set()
        for i in range(len(dataset)):
            row = [csv_unsafe(value) for value in dataset[i]]
            if col is not None and col < len(row):
                row[col] = str(row[col]).strip().lower() if row[col] is not None else ""
                if row[col]:
                    emails.add(row[col])
            dataset[i] = row
        self._existing: set[str] = set()
        self._users: dict[str, int] = {}
        User = get_user_model()
        for chunk in _chunks(sorted(emails)):
            self._existing.update(
                RecipientListEntry.objects.filter(
                    recipient_list=self.recipient_list, email__in=chunk
                ).values_list("email", flat=True)
            )
            # Lowest id wins when several accounts share an address.
            for email, pk in (
                User.objects.annotate(email_lower=Lower("email"))
                .filter(email_lower__in=chunk)
                .order_by("-pk")
                .values_list("email_lower", "pk")
            ):
                self._users[email] = pk

    def init_instance(self, row: Any = None) -> RecipientListEntry:
        return RecipientListEntry(recipient_list=self.recipient_list)

    def import_instance(self, instance: RecipientListEntry, row: dict, **kwargs: Any) -> None:
        """Set the fields, then collect every problem of the row into one ValidationError
        (keyed by column) so the preview lists them all at once."""
        errors: dict[str, list[ValidationError]] = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)

        def add(column: str, message: str, code: str) -> None:
            errors.setdefault(column, []).append(ValidationError(message, code=code))

        for column, value in row.items():
            if isinstance(value, str) and (bad := _CONTROL.search(value)):
                char = f"U+{ord(bad.group()):04X}"
                add(column or "(blank header)", CONTROL_CHARACTER.format(char=char), "control")

        for column in self._unknown_columns:
            add(
                column or "(blank header)",
                UNKNOWN_COLUMN.format(column=column, allowed=", ".join(ENTRY_COLUMNS)),
                "unknown_column",
            )

        email = (instance.email or "").strip().lower()
        instance.email = email
        if not email:
            add("email", EMAIL_REQUIRED, "required")
        elif email in self._seen:
            add("email", DUPLICATE_IN_FILE.format(row=self._seen[email]), "duplicate")
        else:
            self._seen[email] = kwargs.get("row_number", 0)
            if email in self._existing:
                add(
                    "email",
                    DUPLICATE_IN_LIST.format(list_name=self.recipient_list.name),
                    "duplicate",
                )

        instance.language = (instance.language or "").strip()
        if instance.language and not _LANGUAGE.match(instance.language):
            add("language", BAD_LANGUAGE.format(value=instance.language), "invalid")
        instance.time_zone = (instance.time_zone or "").strip()
        if instance.time_zone and instance.time_zone not in _time_zones():
            add("time_zone", BAD_TIME_ZONE.format(value=instance.time_zone), "invalid")

        instance.first_name = (instance.first_name or "").strip()
        instance.last_name = (instance.last_name or "").strip()
        instance.extra = {
            column[len(CONTEXT_PREFIX) :]: _context_value(row.get(column))
            for column in self._context_columns
        }
        instance.user_id = self._users.get(email)
        if errors:
            raise ValidationError(errors)

    def after_import_row(self, row: Any, row_result: Any, **kwargs: Any) -> None:
        if self.on_row is not None:
            self.on_row()

    # -- export ---------------------------------------------------------------------------
    def before_export(self, queryset, **kwargs: Any) -> None:
        """Find the context keys used by the exported entries, so an export re-imports."""
        keys: set[str] = set()
        if queryset is not None:
            for extra in queryset.values_list("extra", flat=True).iterator(chunk_size=2000):
                if isinstance(extra, dict):
                    keys.update(extra)
        self._context_columns = [CONTEXT_PREFIX + k for k in sorted(keys)]

    def get_export_headers(self, selected_fields=None) -> list[str]:
        return super().get_export_headers(selected_fields) + self._context_columns

    def export_resource(self, instance: RecipientListEntry, selected_fields=None, **kwargs: Any):
        extra = instance.extra or {}
        return super().export_resource(instance, selected_fields, **kwargs) + [
            extra.get(column[len(CONTEXT_PREFIX) :], "") for column in self._context_columns
        ]


# Delivery log -------------------------------------------------------------------------------

#: Export column -> the ``values()`` key it is read from (one joined query per chunk).
DELIVERY_COLUMNS: dict[str, str] = {
    "id": "id",
    "campaign_id": "run__campaign_id",
    "campaign": "run__campaign__name",
    "run": "run_id",
    "run_due_at": "run__due_at",
    "send_uuid": "send_uuid",
    "message_uuid": "message_uuid",
    "recipient_key": "recipient_key",
    "user_id": "user_id",
    "email": "email",
    "channel": "channel",
    "status": "status",
    "attempts": "attempts",
    "reason": "reason",
    "exception_type": "exception_type",
    "created_at": "created_at",
    "sent_at": "sent_at",
    "updated_at": "updated_at",
    "next_attempt_at": "next_attempt_at",
}


def _delivery_cell(value: Any, native: bool) -> Any:
    """Datetimes in UTC (ISO 8601 text, or naive UTC for spreadsheets), UUIDs as text."""
    if value is None:
        return "" if not native else None
    if isinstance(value, dt.datetime):
        utc = value.astimezone(dt.UTC)
        return utc.replace(tzinfo=None) if native else utc.isoformat()
    if isinstance(value, (int, float, str)):
        return value
    return str(value)


class DeliveryResource(resources.ModelResource):
    """Export of the delivery log: one row per (run, recipient, channel), with the campaign.

    Rows are read with ``values()`` in chunks (no model instances, no per-row queries) and
    turned into cells directly instead of through per-field widgets: 100k rows export in
    seconds, in constant memory.
    """

    campaign_id = fields.Field(attribute="run__campaign_id", column_name="campaign_id")
    campaign = fields.Field(attribute="run__campaign__name", column_name="campaign")
    run_due_at = fields.Field(attribute="run__due_at", column_name="run_due_at")

    class Meta:
        model = Delivery
        fields = tuple(DELIVERY_COLUMNS)
        export_order = tuple(DELIVERY_COLUMNS)
        chunk_size = 2000

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._columns_cache: dict[tuple, list[str]] = {}

    def export_columns(self, selected_fields=None) -> list[str]:
        """The exported column names, in order (all, or the ones chosen in the export form)."""
        key = tuple(selected_fields or ())
        if key not in self._columns_cache:
            self._columns_cache[key] = [
                f.column_name for f in self.get_export_fields(selected_fields)
            ]
        return self._columns_cache[key]

    def iter_queryset(self, queryset):
        if not isinstance(queryset, models.QuerySet):
            yield from super().iter_queryset(queryset)
            return
        yield from queryset.values(*DELIVERY_COLUMNS.values()).iterator(
            chunk_size=self.get_chunk_size()
        )

    def export_resource(self, instance, selected_fields=None, **kwargs: Any):
        if not isinstance(instance, dict):  # a model instance: import-export's generic path
            return super().export_resource(instance, selected_fields, **kwargs)
        native = bool(kwargs.get("force_native_type"))
        return [
            _delivery_cell(instance[DELIVERY_COLUMNS[column]], native)
            for column in self.export_columns(selected_fields)
        ]
