"""Every public name of the ACE spec exists at the reference's module path (edx_ace -> ace)."""

from __future__ import annotations

import importlib
import inspect

import pytest

SPEC_NAMES = {
    "ace": [
        "Channel",
        "ChannelType",
        "Message",
        "MessageType",
        "Policy",
        "PolicyResult",
        "Recipient",
        "RecipientResolver",
        "send",
    ],
    "ace.ace": ["send"],
    "ace.channel": ["Channel", "ChannelType", "ChannelMap", "channels", "get_channel_for_message"],
    "ace.channel.mixins": ["EmailChannelMixin"],
    "ace.channel.django_email": ["DjangoEmailChannel"],
    "ace.channel.sailthru": ["SailthruEmailChannel", "RecoverableErrorCodes", "ResponseHeaders"],
    "ace.errors": [
        "ChannelError",
        "FatalChannelDeliveryError",
        "InvalidMessageError",
        "RecoverableChannelDeliveryError",
        "UnsupportedChannelError",
    ],
    "ace.message": ["Message", "MessageType", "MessageLoggingAdapter"],
    "ace.monitoring": ["report", "report_to_newrelic"],
    "ace.policy": ["Policy", "PolicyResult", "channels_for", "policies"],
    "ace.presentation": ["render"],
    "ace.recipient": ["Recipient"],
    "ace.recipient_resolver": ["RecipientResolver"],
    "ace.renderers": ["AbstractRenderer", "EmailRenderer", "RenderedEmail"],
    "ace.delivery": ["deliver"],
    "ace.serialization": ["MessageAttributeSerializationMixin", "MessageEncoder"],
    "ace.signals": ["ACE_MESSAGE_SENT"],
    "ace.utils.date": ["deserialize", "get_current_time", "serialize"],
    "ace.utils.once": ["once"],
    "ace.utils.plugins": ["check_plugin", "get_manager", "get_plugins"],
    "ace.test_utils": ["StubPolicy", "patch_policies"],
}

SIGNATURES = {
    "ace.ace.send": ["msg", "limit_to_channels"],
    "ace.delivery.deliver": ["channel", "rendered_message", "message", "channel_name"],
    "ace.presentation.render": ["channel", "message"],
    "ace.policy.channels_for": ["message"],
    "ace.channel.get_channel_for_message": ["channel_type", "message"],
    "ace.utils.plugins.check_plugin": ["extension", "namespace", "names"],
    "ace.utils.plugins.get_manager": ["namespace", "names"],
    "ace.utils.plugins.get_plugins": ["namespace", "names"],
    "ace.message.MessageType.personalize": ["self", "recipient", "language", "user_context"],
    "ace.message.Message.get_message_specific_logger": ["self", "logger"],
    "ace.message.Message.report": ["self", "key", "value"],
    "ace.channel.Channel.deliver": ["self", "message", "rendered_message"],
    "ace.channel.Channel.overrides_delivery_for_message": ["self", "message"],
    "ace.channel.ChannelMap.register_channel": ["self", "channel", "channel_name"],
    "ace.channel.ChannelMap.get_channel_by_name": ["self", "channel_type", "channel_name"],
    "ace.channel.ChannelMap.get_default_channel": ["self", "channel_type"],
    "ace.renderers.AbstractRenderer.render": ["self", "channel", "message"],
    "ace.renderers.AbstractRenderer.get_template_for_message": [
        "self",
        "channel",
        "message",
        "filename",
    ],
    "ace.recipient.Recipient": ["lms_user_id", "email_address"],
    "ace.test_utils.StubPolicy": ["deny_value"],
    "ace.test_utils.patch_policies": ["test_case", "policies"],
    "ace.utils.date.serialize": ["timestamp_obj"],
    "ace.utils.date.deserialize": ["timestamp_iso8601_str"],
}


@pytest.mark.parametrize(
    ("module", "name"), [(m, n) for m, names in SPEC_NAMES.items() for n in names]
)
def test_spec_name_exists(module, name):
    assert hasattr(importlib.import_module(module), name)


def _resolve(dotted):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize(("dotted", "params"), list(SIGNATURES.items()))
def test_spec_signatures(dotted, params):
    assert list(inspect.signature(_resolve(dotted)).parameters) == params
