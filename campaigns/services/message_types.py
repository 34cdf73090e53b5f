"""Message type services: template validation, part completeness, code-defined type sync."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import attrs
from django.core.exceptions import ValidationError
from django.db import transaction
from django.template import Template, TemplateDoesNotExist, TemplateSyntaxError, engines
from django.template.engine import Engine
from django.utils.module_loading import import_string

from ace import MessageType
from campaigns import conf
from campaigns.exceptions import CampaignError
from campaigns.message_types import registered_message_types
from campaigns.models import ChannelChoice, MessageTypeDefinition, TemplatePart
from campaigns.templating import compile_template, included_paths, node_error

log = logging.getLogger(__name__)

F = TemplatePart.Filename
#: Files each channel's renderer reads (ace renders every field of its rendered-message class).
CHANNEL_FILES: dict[str, tuple[str, ...]] = {
    ChannelChoice.EMAIL: (F.FROM_NAME, F.SUBJECT, F.BODY_TEXT, F.BODY_HTML, F.HEAD_HTML),
    ChannelChoice.PUSH: (F.TITLE, F.BODY_TEXT),
}
#: Files an operator must write (in the fallback language); the others may stay empty.
REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    ChannelChoice.EMAIL: (F.SUBJECT, F.BODY_TEXT, F.BODY_HTML),
    ChannelChoice.PUSH: (F.TITLE, F.BODY_TEXT),
}
#: Files that must be one line (they become headers or titles).
SINGLE_LINE_FILES = (F.FROM_NAME, F.SUBJECT, F.TITLE)

ERROR_FILE_NOT_FOR_CHANNEL = "%(file)s is not a %(channel)s template; use one of: %(allowed)s."
ERROR_MISSING_REQUIRED = (
    "%(channel)s templates need %(missing)s for “any language” (the fallback used when a"
    " recipient's language has no translation)."
)
ERROR_DUPLICATE_PART = "There are two %(channel)s “%(file)s” parts for %(language)s."
ERROR_INCLUDES_ITSELF = "This template would include itself: %(chain)s → itself."
ERROR_INCLUDES_TOO_DEEP = (
    "Includes/extends nest more than %(limit)s deep (CAMPAIGNS_TEMPLATE_MAX_INCLUDE_DEPTH):"
    " %(chain)s."
)
ERROR_SINGLE_LINE = "%(file)s must be a single line (it becomes an email header or a title)."
ERROR_CODE_READ_ONLY = (
    "%(type)s is defined in code (%(path)s); its templates are files and can't be edited here."
)
ERROR_CODE_PATH = "Message type class %(path)r cannot be imported: %(error)s"


def _label(filename: str) -> str:
    return str(F(filename).label) if filename in F.values else filename


def _channel_label(channel: str) -> str:
    return str(ChannelChoice(channel).label) if channel in ChannelChoice.values else channel


def template_part_path(*, app_label: str, name: str, channel: str, filename: str) -> str:
    """The ACE template path a part is served at (``campaigns.template_loader``)."""
    return f"{app_label}/edx_ace/{name}/{channel}/{filename}"


def template_source_validate(*, content: str, filename: str = "", path: str = "") -> None:
    """Compile ``content`` as an operator template; raise ValidationError with the reason.

    Compiling applies the sandbox rules (campaigns.templating): allowed tag libraries only, no
    ``{% debug %}`` or ``{% lorem %}``, includes/extends of ACE paths only, no request/settings
    variables, literal width/count arguments of ``ljust``, ``center``... within the limit.
    Includes/extends are followed through the templates they name (as they are now): a template
    that includes ``path`` (its own, see :func:`template_part_path`) or nests deeper than
    ``CAMPAIGNS_TEMPLATE_MAX_INCLUDE_DEPTH`` is refused.
    """
    engine = engines["django"].engine
    try:
        template = compile_template(content, engine=engine)
        _includes_check(template, path=path, engine=engine)
    except TemplateSyntaxError as exc:
        raise ValidationError(str(exc), code="template_syntax")
    if filename in SINGLE_LINE_FILES and ("\n" in content.strip() or "\r" in content.strip()):
        raise ValidationError(
            ERROR_SINGLE_LINE, code="single_line", params={"file": _label(filename)}
        )


def _includes_check(template: Template, *, path: str, engine: Engine) -> None:
    """Follow includes/extends (errors name the line of the saved template's own tag)."""
    limit = conf.template_max_include_depth()

    def walk(nodelist: Any, chain: tuple[str, ...], tag: Any) -> None:
        for node, included in included_paths(nodelist):
            if path and included == path:
                error = ERROR_INCLUDES_ITSELF % {"chain": " → ".join(chain)}
                raise node_error(tag or node, error)
            if len(chain) > limit:
                shown = " → ".join((*chain, included))
                error = ERROR_INCLUDES_TOO_DEEP % {"limit": limit, "chain": shown}
                raise node_error(tag or node, error)
            try:
                child = engine.get_template(included)
            except (TemplateDoesNotExist, TemplateSyntaxError):
                continue  # reported when that template is saved or rendered
            walk(child.nodelist, (*chain, included), tag or node)

    walk(template.nodelist, (path or "this template",), None)


def template_part_content_validate(
    *,
    content: str,
    filename: str,
    channel: str,
    message_type: MessageTypeDefinition | None,
) -> None:
    """:func:`template_source_validate` for a part of ``message_type`` under its own template
    path, so that a template including itself (directly or not) is refused on save."""
    path = ""
    if message_type is not None and message_type.name and filename:
        path = template_part_path(
            app_label=message_type.app_label,
            name=message_type.name,
            channel=channel,
            filename=filename,
        )
    template_source_validate(content=content, filename=filename, path=path)


def template_parts_validate(*, channel: str, parts: Iterable[tuple[str, str]]) -> None:
    """Check one channel's parts, given as (filename, language) pairs, as a whole.

    Refuses files of another channel, duplicates, and a fallback ("" language) set without the
    required files -- ace needs every file of the channel to render a message.
    """
    errors: list[ValidationError] = []
    allowed = CHANNEL_FILES.get(channel, ())
    seen: set[tuple[str, str]] = set()
    for filename, language in parts:
        if filename not in allowed:
            errors.append(
                ValidationError(
                    ERROR_FILE_NOT_FOR_CHANNEL,
                    code="wrong_channel",
                    params={
                        "file": _label(filename),
                        "channel": _channel_label(channel),
                        "allowed": ", ".join(_label(f) for f in allowed),
                    },
                )
            )
        key = (filename, language)
        if key in seen:
            errors.append(
                ValidationError(
                    ERROR_DUPLICATE_PART,
                    code="duplicate",
                    params={
                        "channel": _channel_label(channel),
                        "file": _label(filename),
                        "language": f"language “{language}”" if language else "any language",
                    },
                )
            )
        seen.add(key)
    if seen:
        missing = [f for f in REQUIRED_FILES.get(channel, ()) if (f, "") not in seen]
        if missing:
            errors.append(
                ValidationError(
                    ERROR_MISSING_REQUIRED,
                    code="missing_required",
                    params={
                        "channel": _channel_label(channel),
                        "missing": ", ".join(_label(f) for f in missing),
                    },
                )
            )
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def message_type_fill_optional_parts(*, message_type: MessageTypeDefinition) -> list[TemplatePart]:
    """Create empty fallback parts for optional files of channels that have parts.

    ace renders every file of a channel; an operator only has to write the required ones.
    """
    existing = set(message_type.template_parts.values_list("channel", "filename", "language"))
    channels = {channel for channel, _f, _l in existing}
    created = []
    for channel in channels:
        for filename in CHANNEL_FILES.get(channel, ()):
            if (channel, filename, "") not in existing:
                created.append(
                    TemplatePart.objects.create(
                        message_type=message_type,
                        channel=channel,
                        filename=filename,
                        language="",
                        content="",
                    )
                )
    return created


def message_type_class(*, definition: MessageTypeDefinition) -> type[MessageType]:
    """The ace.MessageType class to instantiate for a definition (plain MessageType for DB)."""
    if definition.source != MessageTypeDefinition.Source.CODE:
        return MessageType
    try:
        cls = import_string(definition.code_path)
    except ImportError as exc:
        raise CampaignError(
            ERROR_CODE_PATH % {"path": definition.code_path, "error": exc},
            {"message_type_id": definition.pk},
        )
    if not (isinstance(cls, type) and issubclass(cls, MessageType)):
        raise CampaignError(
            ERROR_CODE_PATH % {"path": definition.code_path, "error": "not a MessageType"},
            {"message_type_id": definition.pk},
        )
    return cls


def message_type_instance(
    *,
    definition: MessageTypeDefinition,
    context: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    expiration_time=None,
) -> MessageType:
    """The ace.MessageType for a definition: the code class, or a plain one for DB types.

    ``options["campaign_message_type_id"]`` is set so policies can find the definition.
    """
    cls = message_type_class(definition=definition)
    opts = {"campaign_message_type_id": definition.pk, **(options or {})}
    kwargs: dict[str, Any] = {
        "context": dict(context or {}),
        "options": opts,
        "expiration_time": expiration_time,
    }
    if cls is MessageType:
        kwargs.update(app_label=definition.app_label, name=definition.name)
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------------
# Code-defined message types
# ----------------------------------------------------------------------------------------------


@attrs.define
class MessageTypeSyncReport:
    """What :func:`message_type_sync_code_defined` did."""

    created: list[str] = attrs.field(factory=list)
    updated: list[str] = attrs.field(factory=list)
    unchanged: list[str] = attrs.field(factory=list)
    #: Code types whose app_label/name is taken by a database-defined type (left alone).
    conflicts: list[str] = attrs.field(factory=list)
    #: CODE rows whose class is no longer registered (kept: campaigns may refer to them).
    stale: list[str] = attrs.field(factory=list)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


@transaction.atomic
def message_type_sync_code_defined(
    *, classes: dict[str, type[MessageType]] | None = None
) -> MessageTypeSyncReport:
    """Mirror registered ``ace.MessageType`` subclasses as read-only CODE definitions.

    Idempotent (an upsert keyed on app_label/name); runs after migrations and when the admin's
    message type list is opened, so a new plugin shows up without a manual step.
    """
    if classes is None:
        classes = registered_message_types()
    report = MessageTypeSyncReport()
    paths = set()
    for cls in classes.values():
        instance = cls()
        app_label, name = instance.app_label, instance.name
        code_path = f"{cls.__module__}.{cls.__qualname__}"
        paths.add(code_path)
        label = f"{app_label}/{name}"
        wanted = {
            "source": MessageTypeDefinition.Source.CODE,
            "code_path": code_path,
            "description": _first_line(cls.__doc__),
            "sample_context": dict(getattr(cls, "SAMPLE_CONTEXT", {}) or {}),
        }
        row = (
            MessageTypeDefinition.objects.select_for_update()
            .filter(app_label=app_label, name=name)
            .first()
        )
        if row is None:
            MessageTypeDefinition.objects.create(app_label=app_label, name=name, **wanted)
            report.created.append(label)
            continue
        if row.source != MessageTypeDefinition.Source.CODE:
            log.warning("Code message type %s clashes with a database-defined type", label)
            report.conflicts.append(label)
            continue
        changed = [field for field, value in wanted.items() if getattr(row, field) != value]
        if changed:
            for field in changed:
                setattr(row, field, wanted[field])
            row.save(update_fields=[*changed, "updated_at"])
            report.updated.append(label)
        else:
            report.unchanged.append(label)
    report.stale = [
        str(row)
        for row in MessageTypeDefinition.objects.filter(
            source=MessageTypeDefinition.Source.CODE
        ).exclude(code_path__in=paths)
    ]
    return report


def sync_after_migrate(**kwargs: Any) -> None:
    """post_migrate handler: sync code-defined types (never fails a migration)."""
    try:
        report = message_type_sync_code_defined()
    except Exception:  # a broken plugin must not break `migrate`; the admin shows it later
        log.exception("Could not sync code-defined message types after migrate")
        return
    if report.created or report.updated:
        log.info(
            "Code-defined message types: created %s, updated %s", report.created, report.updated
        )
