"""
:mod:`ace.channel` is the extension point for delivery channels.

To add a channel, subclass :class:`Channel` and register it under the ``openedx.ace.channel``
entry point. Channels enabled by ``ACE_ENABLED_CHANNELS`` are loaded by :func:`channels`;
:func:`get_channel_for_message` picks the one that delivers a given message.

Beyond the reference, a channel can open a :class:`ChannelSession` that keeps its connection
open across many deliveries (used by :class:`ace.batch.BatchSender`).
"""

from __future__ import annotations

import abc
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from ace.errors import ChannelError, FatalChannelDeliveryError, UnsupportedChannelError
from ace.utils.once import once
from ace.utils.plugins import disabled_reason, get_plugins, load_plugin_class

if TYPE_CHECKING:
    from ace.message import Message

log = logging.getLogger(__name__)

CHANNEL_EXTENSION_NAMESPACE = "openedx.ace.channel"


class ChannelType(Enum):
    """All supported communication channels."""

    EMAIL = "email"
    PUSH = "push"

    def __str__(self) -> str:
        return str(self.value)


class Channel(metaclass=abc.ABCMeta):
    """
    Delivers messages that have already passed the policy and presentation steps.

    Subclasses take no constructor arguments (stevedore instantiates them) and set
    :attr:`channel_type` to a :class:`ChannelType`.
    """

    channel_type: ChannelType | None = None

    @classmethod
    def enabled(cls) -> bool:
        """Check the settings to decide whether this channel can be used."""
        return True

    @abc.abstractmethod
    def deliver(self, message: Message, rendered_message: Any) -> None:
        """
        Transmit a rendered message to its recipient.

        Args:
            message: The message to transmit.
            rendered_message: The rendered content personalized for this recipient.

        Raises:
            RecoverableChannelDeliveryError: Try again at its ``next_attempt_time``.
            FatalChannelDeliveryError: Do not try again.
        """
        raise NotImplementedError

    def overrides_delivery_for_message(self, message: Message) -> bool:
        """
        Return True if this channel wants this message regardless of the usual channel choice.

        E.g. with a Django transactional channel and a Braze default channel, Braze can claim
        a transactional message it has a campaign for.
        """
        return False

    def open_session(self) -> ChannelSession:
        """Open a session for delivering many messages; override to reuse a connection."""
        return ChannelSession(self)


class ChannelSession:
    """
    A channel's delivery session for many messages (the batch path).

    The default session simply calls :meth:`Channel.deliver` for each item. Channels with a
    connection to keep (SMTP, HTTP) return a subclass from :meth:`Channel.open_session`.
    """

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def deliver_many(self, items: Sequence[tuple[Message, Any]]) -> list[Exception | None]:
        """
        Deliver each ``(message, rendered)`` pair, in order.

        Returns:
            One entry per item: ``None`` for success, else the :class:`~ace.errors.ChannelError`
            (recoverable or fatal). A per-item failure never raises.
        """
        return [self.deliver_one(message, rendered) for message, rendered in items]

    def deliver_one(self, message: Message, rendered: Any) -> Exception | None:
        """Deliver one item; return None, or the error describing the failure."""
        try:
            self.channel.deliver(message, rendered)
        except ChannelError as error:
            return error
        except Exception as error:  # one bad item must not lose the batch's other results
            log.exception("Unexpected error delivering %s on %r", message.log_id, self.channel)
            wrapped = FatalChannelDeliveryError(f"{type(error).__name__}: {error}")
            wrapped.__cause__ = error
            return wrapped
        return None

    def close(self) -> None:
        """Release whatever the session holds open."""

    def __enter__(self) -> ChannelSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ChannelMap:
    """
    The enabled channels, by type and plugin name, in the order they were registered.

    Several channels of one type are allowed (e.g. a default and a transactional email
    channel); :meth:`get_default_channel` returns the first registered one.
    """

    def __init__(self, channels_list: Sequence[Sequence[Any]]) -> None:
        """
        Args:
            channels_list: ``[channel_name, channel]`` pairs, in order.
        """
        self.channel_type_to_channel_impl: defaultdict[ChannelType, OrderedDict[str, Channel]] = (
            defaultdict(OrderedDict)
        )
        #: Names of channels that were configured but left out, with the reason.
        self.disabled: dict[str, str] = {}
        self._names: dict[int, str] = {}
        for channel_name, channel in channels_list:
            self.register_channel(channel, channel_name)

    def register_channel(self, channel: Channel, channel_name: str) -> None:
        """
        Register a channel.

        Args:
            channel: The channel to register.
            channel_name: Its plugin name, as declared in the entry points.
        """
        if not isinstance(channel.channel_type, ChannelType):
            raise ImproperlyConfigured(
                f"ACE channel {channel_name!r} ({type(channel).__name__}) has no valid "
                f"channel_type: {channel.channel_type!r}"
            )
        self.channel_type_to_channel_impl[channel.channel_type][channel_name] = channel
        self._names[id(channel)] = channel_name

    def get_channel_by_name(self, channel_type: ChannelType, channel_name: str) -> Channel:
        """
        Get a registered channel by type and name.

        Raises:
            KeyError: If no channel of that type and name is registered.
        """
        return self.channel_type_to_channel_impl[channel_type][channel_name]

    def get_default_channel(self, channel_type: ChannelType) -> Channel:
        """
        Return the first registered channel of a type.

        Raises:
            UnsupportedChannelError: If no channel of that type is registered.
        """
        impls = self.channel_type_to_channel_impl.get(channel_type)
        if not impls:
            raise UnsupportedChannelError(
                f"No implementation for channel {channel_type} is registered. "
                f"Available channels are: {self}"
            )
        return next(iter(impls.values()))

    def has_channel_type(self, channel_type: ChannelType) -> bool:
        """True if at least one channel of this type is registered."""
        return bool(self.channel_type_to_channel_impl.get(channel_type))

    def name_of(self, channel: Channel) -> str | None:
        """The plugin name a channel was registered under (``None`` if not registered)."""
        return self._names.get(id(channel))

    def __str__(self) -> str:
        listing = {
            str(channel_type): list(impls)
            for channel_type, impls in self.channel_type_to_channel_impl.items()
        }
        return f"ChannelMap {listing!r}"


@once
def channels() -> ChannelMap:
    """
    Gather the enabled channels.

    Loads the entry points named by the ``ACE_ENABLED_CHANNELS`` setting, in that order.
    Several channels of one type may be enabled. A channel whose ``enabled()`` is false is
    left out and logged.

    Raises:
        ImproperlyConfigured: If a listed name is not an installed channel, or fails to load.

    Returns:
        ChannelMap: The channels, by type and name.
    """
    names = list(getattr(settings, "ACE_ENABLED_CHANNELS", []))
    extensions = get_plugins(namespace=CHANNEL_EXTENSION_NAMESPACE, names=names)
    channel_map = ChannelMap([[ext.name, ext.obj] for ext in extensions])
    loaded = {ext.name for ext in extensions}
    for name in names:
        if name not in loaded:
            plugin = load_plugin_class(CHANNEL_EXTENSION_NAMESPACE, name)
            channel_map.disabled[name] = disabled_reason(plugin)
    return channel_map


def message_options(message: Any) -> Mapping[str, Any]:
    """``message.options`` if it is a mapping, else an empty one.

    Channel selection reads options of any message-like object (a test double, a duck-typed
    message), so it must not assume a dict: anything that is not a mapping has no options.
    """
    options = getattr(message, "options", None)
    return options if isinstance(options, Mapping) else {}


def _candidate_names(channel_type: ChannelType, message: Message) -> list[tuple[str, str]]:
    """The (setting, channel name) pairs preferred for this message, best first."""
    options = message_options(message)
    if channel_type == ChannelType.EMAIL:
        if options.get("override_default_channel"):
            return [("options['override_default_channel']", options["override_default_channel"])]
        names = []
        if options.get("transactional"):
            names.append(
                (
                    "ACE_CHANNEL_TRANSACTIONAL_EMAIL",
                    getattr(settings, "ACE_CHANNEL_TRANSACTIONAL_EMAIL", None),
                )
            )
        names.append(
            ("ACE_CHANNEL_DEFAULT_EMAIL", getattr(settings, "ACE_CHANNEL_DEFAULT_EMAIL", None))
        )
        return [(setting, name) for setting, name in names if name]
    if channel_type == ChannelType.PUSH:
        default_push = getattr(settings, "ACE_CHANNEL_DEFAULT_PUSH", None)
        if default_push:
            return [("ACE_CHANNEL_DEFAULT_PUSH", default_push)]
        return [("ACE_PUSH_CHANNELS", name) for name in getattr(settings, "ACE_PUSH_CHANNELS", [])]
    return []


def get_channel_for_message(channel_type: ChannelType, message: Message) -> Channel:
    """
    Choose the channel that delivers this message on this channel type.

    The candidates, as in the reference: for email, the channel named by
    ``options['override_default_channel']`` alone if set; else ``ACE_CHANNEL_TRANSACTIONAL_EMAIL``
    then ``ACE_CHANNEL_DEFAULT_EMAIL`` when ``options['transactional']`` is true; else
    ``ACE_CHANNEL_DEFAULT_EMAIL``. For push, ``ACE_CHANNEL_DEFAULT_PUSH`` (or, beyond the
    reference, the ``ACE_PUSH_CHANNELS`` list). A candidate whose
    :meth:`Channel.overrides_delivery_for_message` is true wins (e.g. ``braze_email`` for a
    message mapped to a Braze campaign, even when the transactional channel would take it),
    else the first candidate. So with Braze as the default and Django as the transactional
    channel, a transactional message goes to Django unless Braze has a campaign for it. Options
    that are not a mapping count as none. A candidate that is enabled in settings but reported
    itself disabled is skipped with a warning. Without any candidate, the first channel of the
    type is used.

    Raises:
        UnsupportedChannelError: If no channel of this type is available.
        ImproperlyConfigured: If a setting names a channel that is not in ``ACE_ENABLED_CHANNELS``.

    Returns:
        The selected channel.
    """
    channel_map = channels()
    possible: list[Channel] = []
    for setting, name in _candidate_names(channel_type, message):
        try:
            possible.append(channel_map.get_channel_by_name(channel_type, name))
        except KeyError:
            if name in channel_map.disabled:
                log.warning(
                    "%s names ACE channel %r, which is disabled (%s); using another %s channel",
                    setting,
                    name,
                    channel_map.disabled[name],
                    channel_type,
                )
                continue
            enabled_names = list(getattr(settings, "ACE_ENABLED_CHANNELS", []))
            raise ImproperlyConfigured(
                f"{setting} names ACE channel {name!r}, which is not an enabled {channel_type} "
                f"channel (ACE_ENABLED_CHANNELS={enabled_names!r})"
            ) from None

    for channel in possible:
        if channel.overrides_delivery_for_message(message):
            return channel
    if possible:
        return possible[0]
    return channel_map.get_default_channel(channel_type)


def _reset_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("ACE_"):
        channels.reset()


setting_changed.connect(_reset_on_setting_change, dispatch_uid="ace.channel.reset_channels")
