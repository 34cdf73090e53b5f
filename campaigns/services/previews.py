"""Previews and test sends: render a message exactly as ace would, and say what was missing.

A preview looks templates up through ace's renderer (so database parts, file templates and the
language fallback behave as in a real send) and renders them with a :class:`TrackingContext`,
which records every context name a template asked for and did not get -- top-level names and
keys inside dict/list values (``user.nickname``, ``items[].title``). Those are reported instead of
silently rendering blanks. A static pass over the compiled templates separates names that are
only tested (``{% if x %}``) or have a ``|default`` from names that are printed.

A test send delivers one real message, through ``ace.send`` and the enabled channels, to the
operator's own address (the permission is checked here, on the server).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import attrs
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.template import Context, Template
from django.template.base import VariableNode
from django.template.defaulttags import ForNode, IfNode
from django.utils import translation

from ace import ace as ace_api
from ace import errors as ace_errors
from ace import presentation
from ace.channel import ChannelType, get_channel_for_message
from ace.message import Message
from ace.outcome import DeliveryOutcome
from campaigns.exceptions import CampaignError
from campaigns.messages import (
    CampaignMessageBuilder,
    Option,
    campaign_message_builder,
    definition_message_builder,
)
from campaigns.models import Campaign, MessageTypeDefinition
from campaigns.resolvers import ResolvedRecipient
from campaigns.sandbox import TemplateLimitError
from campaigns.templating import _iter_expressions, _variable_names, iter_nodes, node_variables

log = logging.getLogger(__name__)

#: Context names the dispatcher adds to every campaign message (see CAMPAIGNS_API.md).
DISPATCH_PROVIDED = frozenset({"unsubscribe_url"})
#: Names ace's renderer adds to every render.
RENDERER_PROVIDED = frozenset({"message", "channel"})
#: Filters that make a missing value harmless.
DEFAULT_FILTERS = frozenset({"default", "default_if_none"})

ERROR_NO_EMAIL = (
    "Your account has no email address, so a test can't be sent to you; add one to your user"
    " profile first."
)
ERROR_TEST_SEND_PERMISSION = "You don't have permission to send tests of %(what)s."
ERROR_NO_CHANNELS = "No channel to send on: choose at least one channel."


# ----------------------------------------------------------------------------------------------
# Tracking missing variables
# ----------------------------------------------------------------------------------------------


def _track(value: Any, path: str, missing: set[str]) -> Any:
    if isinstance(value, dict) and not isinstance(value, TrackedDict):
        return TrackedDict(value, path, missing)
    if isinstance(value, list) and not isinstance(value, TrackedList):
        return TrackedList(value, path, missing)
    return value


class TrackedDict(dict):
    """A dict that records keys a template asked for and it lacks."""

    #: Its read-only methods a sandboxed template may call, as it may on a plain dict.
    template_safe_methods = frozenset({"items", "keys", "values"})

    def __init__(self, data: dict, path: str, missing: set[str]):
        super().__init__(data)
        self._path = path
        self._missing = missing

    def __getitem__(self, key: Any) -> Any:
        if dict.__contains__(self, key):
            return _track(dict.__getitem__(self, key), f"{self._path}.{key}", self._missing)
        if not (isinstance(key, str) and hasattr(dict, key)):
            self._missing.add(f"{self._path}.{key}")
        raise KeyError(key)

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if dict.__contains__(self, key) else default

    def values(self):  # type: ignore[override]
        return [self[key] for key in self]

    def items(self):  # type: ignore[override]
        return [(key, self[key]) for key in self]


class TrackedList(list):
    """A list whose items are tracked as ``path[]``."""

    def __init__(self, data: list, path: str, missing: set[str]):
        super().__init__(data)
        self._path = path
        self._missing = missing

    def __getitem__(self, index: Any) -> Any:
        try:
            value = list.__getitem__(self, index)
        except IndexError:
            self._missing.add(f"{self._path}.{index}")
            raise
        if isinstance(index, slice):
            return value
        return _track(value, f"{self._path}[]", self._missing)

    def __iter__(self):
        for value in list.__iter__(self):
            yield _track(value, f"{self._path}[]", self._missing)


class TrackingContext(Context):
    """A template Context that records the names it was asked for and doesn't have.

    Copies (``Context.new``, used by the sandbox and by inclusion tags) share the record.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.missing: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        for d in reversed(self.dicts):
            if key in d:
                return _track(d[key], key, self.missing)
        self.missing.add(key)
        raise KeyError(key)


# ----------------------------------------------------------------------------------------------
# Static analysis
# ----------------------------------------------------------------------------------------------


def template_variable_usage(template: Template) -> tuple[set[str], set[str]]:
    """(printed, optional) top-level names a template reads.

    "optional" names are only tested in ``{% if %}`` or always have a ``|default`` filter, so
    a missing value doesn't print a blank. Names bound by the template itself are left out.
    """
    printed: set[str] = set()
    optional: set[str] = set()
    bound: set[str] = {"True", "False", "None"}
    for node in iter_nodes(template.nodelist):
        used, node_bound = node_variables(node)
        bound |= node_bound
        if isinstance(node, IfNode):
            optional |= {name.split(".", 1)[0] for name in used}
            continue
        if isinstance(node, (VariableNode, ForNode)):
            exprs = list(
                _iter_expressions(
                    node.filter_expression if isinstance(node, VariableNode) else node.sequence
                )
            )
            for expr in exprs:
                names = {n.split(".", 1)[0] for n in _variable_names(expr)}
                filters = {getattr(f, "__name__", "") for f, _args in getattr(expr, "filters", [])}
                (optional if filters & DEFAULT_FILTERS else printed).update(names)
            continue
        printed |= {name.split(".", 1)[0] for name in used}
    printed -= bound
    optional = (optional - bound) - printed
    return printed, optional


# ----------------------------------------------------------------------------------------------
# Preview
# ----------------------------------------------------------------------------------------------


@attrs.define
class ChannelPreview:
    """One channel's rendered message, or why it could not be rendered."""

    channel: str
    #: field name of ace's rendered message ("subject", "body", "body_html"...) -> text
    fields: dict[str, str] = attrs.field(factory=dict)
    #: names asked for and not provided, printed as blanks
    missing: list[str] = attrs.field(factory=list)
    #: names asked for and not provided, but only tested or with a default
    missing_optional: list[str] = attrs.field(factory=list)
    error: str = ""


@attrs.define
class Preview:
    """A message rendered for one recipient in one language, per channel."""

    recipient: ResolvedRecipient
    language: str
    message: Message
    channels: list[ChannelPreview]

    @property
    def missing(self) -> list[str]:
        return sorted({name for c in self.channels for name in c.missing})


def recipient_for_user(user: AbstractBaseUser) -> ResolvedRecipient:
    """The recipient a user is in the user-based audiences (same per-recipient context)."""
    from campaigns.resolvers import AllActiveUsersResolver

    return AllActiveUsersResolver({}).to_recipient(user)


def _render_channel(channel_value: str, message: Message) -> ChannelPreview:
    result = ChannelPreview(channel=channel_value)
    try:
        channel_type = ChannelType(channel_value)
        channel = get_channel_for_message(channel_type, message)
        renderer = presentation.get_renderer(channel_type)
        templates = renderer.get_templates(channel, message)
    except (ValueError, ace_errors.ChannelError, ace_errors.TemplateNotFoundError) as exc:
        result.error = str(exc)
        return result
    missing: set[str] = set()
    printed: set[str] = set()
    optional: set[str] = set()
    for field, wrapper in templates.items():
        template = getattr(wrapper, "template", wrapper)
        context = TrackingContext({"message": message, "channel": channel, **message.context})
        try:
            result.fields[field] = template.render(context)
        except TemplateLimitError as exc:  # too big, slow or deep: the other parts can wait
            result.error = f"{field}: {exc}"
            break
        except Exception as exc:  # a template tag or filter may raise anything while rendering
            result.error = f"{field}: {type(exc).__name__}: {exc}"
        missing |= context.missing
        field_printed, field_optional = template_variable_usage(template)
        printed |= field_printed
        optional |= field_optional
    optional -= printed
    result.missing = sorted(n for n in missing if n.split(".", 1)[0] not in optional)
    result.missing_optional = sorted(n for n in missing if n.split(".", 1)[0] in optional)
    return result


def message_preview(
    *,
    definition: MessageTypeDefinition,
    recipient: ResolvedRecipient,
    context: dict[str, Any] | None = None,
    language: str = "",
    channels: Iterable[str] | None = None,
    builder: CampaignMessageBuilder | None = None,
) -> Preview:
    """Render ``definition`` for ``recipient`` in ``language`` (default: the recipient's, then the
    message type's) on each channel (default: every channel with templates).

    The message is built as it is sent (``builder``; default: the definition with ``context``,
    else its sample context)."""
    from campaigns.selectors import message_type_channels

    language = language or recipient.language or definition.default_language
    if builder is None:
        builder = definition_message_builder(
            definition=definition,
            context=dict(definition.sample_context if context is None else context),
        )
    message = builder.build(recipient, language=language)
    channel_values = list(channels) if channels else message_type_channels(definition=definition)
    if not channel_values:
        channel_values = [ChannelType.EMAIL.value]
    with translation.override(message.language or settings.LANGUAGE_CODE):
        previews = [_render_channel(value, message) for value in channel_values]
    return Preview(recipient=recipient, language=language, message=message, channels=previews)


def campaign_preview(
    *, campaign: Campaign, recipient: ResolvedRecipient, language: str = ""
) -> Preview:
    """Render a campaign for one of its recipients (or any chosen one) on its channels."""
    return message_preview(
        definition=campaign.message_type,
        recipient=recipient,
        context=dict(campaign.context or {}),
        language=language or recipient.language or campaign.language,
        channels=campaign.channels,
        builder=campaign_message_builder(campaign=campaign),
    )


def campaign_sample_recipients(*, campaign: Campaign, limit: int = 10) -> list[ResolvedRecipient]:
    """The first recipients of the campaign's audience (via its resolver)."""
    from campaigns.resolvers import resolver_for_source

    return resolver_for_source(campaign.recipient_source).preview(limit=limit)


def campaign_unprovided_variables(*, campaign: Campaign) -> list[str]:
    """Names the campaign's templates print that neither its context nor its recipients give.

    Recipients' keys come from the first few recipients of the source; names the dispatcher and
    the renderer add (``unsubscribe_url``, ``message``, ``channel``) count as provided.
    """
    from django.template import TemplateDoesNotExist, TemplateSyntaxError, loader

    from campaigns.selectors import message_type_template_paths

    provided = set(campaign.context or {}) | DISPATCH_PROVIDED | RENDERER_PROVIDED
    try:
        for recipient in campaign_sample_recipients(campaign=campaign, limit=5):
            provided |= set(recipient.context)
    except Exception as exc:  # a broken audience is reported elsewhere; don't hide the check
        log.info("Could not list sample recipients of campaign %s: %s", campaign.pk, exc)
    printed: set[str] = set()
    for channel in campaign.channels or []:
        for path in message_type_template_paths(definition=campaign.message_type, channel=channel):
            try:
                wrapper = loader.get_template(path)
            except (TemplateDoesNotExist, TemplateSyntaxError):
                continue
            names, _optional = template_variable_usage(getattr(wrapper, "template", wrapper))
            printed |= names
    return sorted(printed - provided)


# ----------------------------------------------------------------------------------------------
# Test send
# ----------------------------------------------------------------------------------------------


@attrs.define
class TestSendResult:
    """What happened to a test message, per channel, and what its templates missed."""

    address: str
    outcomes: list[DeliveryOutcome]
    preview: Preview

    @property
    def sent(self) -> bool:
        return any(o.status == "sent" for o in self.outcomes)


def _test_send(
    *,
    definition: MessageTypeDefinition,
    user: AbstractBaseUser,
    context: dict[str, Any],
    channels: list[str],
    language: str,
    builder: CampaignMessageBuilder,
) -> TestSendResult:
    if not getattr(user, "email", ""):
        raise CampaignError(ERROR_NO_EMAIL, {"user_id": user.pk})
    if not channels:
        raise CampaignError(ERROR_NO_CHANNELS)
    recipient = recipient_for_user(user)
    preview = message_preview(
        definition=definition,
        recipient=recipient,
        context=context,
        language=language,
        channels=channels,
        builder=builder,
    )
    message = builder.build(recipient, language=preview.language)
    outcomes = ace_api.send(message, limit_to_channels=[ChannelType(c) for c in channels])
    log.info(
        "Test send of %s to user %s: %s",
        definition,
        user.pk,
        [(str(o.channel_type), str(o.status)) for o in outcomes],
    )
    return TestSendResult(address=user.email, outcomes=outcomes, preview=preview)


def message_type_test_send(
    *, definition: MessageTypeDefinition, user: AbstractBaseUser, language: str = ""
) -> TestSendResult:
    """Send ``definition`` with its sample context to ``user``'s own address (needs
    ``campaigns.test_send_messagetypedefinition``)."""
    if not user.has_perm("campaigns.test_send_messagetypedefinition"):
        raise CampaignError(ERROR_TEST_SEND_PERMISSION % {"what": "message types"})
    from campaigns.selectors import message_type_channels

    context = dict(definition.sample_context or {})
    return _test_send(
        definition=definition,
        user=user,
        context=context,
        channels=message_type_channels(definition=definition),
        language=language,
        builder=definition_message_builder(
            definition=definition, context=context, options={Option.TEST_SEND: True}
        ),
    )


def campaign_test_send(
    *, campaign: Campaign, user: AbstractBaseUser, language: str = ""
) -> TestSendResult:
    """Send the campaign's message to ``user``'s own address on its channels (needs
    ``campaigns.test_send_campaign``). Policies apply as in a real send."""
    if not user.has_perm("campaigns.test_send_campaign"):
        raise CampaignError(ERROR_TEST_SEND_PERMISSION % {"what": "campaigns"})
    return _test_send(
        definition=campaign.message_type,
        user=user,
        context=dict(campaign.context or {}),
        channels=list(campaign.channels or []),
        language=language or campaign.language,
        builder=campaign_message_builder(campaign=campaign, options={Option.TEST_SEND: True}),
    )
