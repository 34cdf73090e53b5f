"""Tests for ace.channel.mixins.EmailChannelMixin."""

from __future__ import annotations

import re

import pytest
from ace_stubs import make_message

from ace.channel import ChannelType
from ace.channel.mixins import (
    BAD_HEADER_NAME,
    BAD_HEADERS_OPTION,
    BAD_SUBJECT_PREFIX,
    HEADER_NEWLINE,
    NO_FROM_ADDRESS,
    NO_RECIPIENT_ADDRESS,
    EmailChannelMixin,
)
from ace.errors import FatalChannelDeliveryError, RecipientAddressMissingError
from ace.recipient import Recipient
from ace.renderers import RenderedEmail

mixin = EmailChannelMixin


def rendered(subject="s", from_name="n"):
    return RenderedEmail(from_name=from_name, subject=subject, body_html="", head_html="", body="")


def test_channel_type_is_email():
    assert EmailChannelMixin.channel_type is ChannelType.EMAIL


def test_from_address_option_then_default(settings):
    settings.DEFAULT_FROM_EMAIL = "default@example.org"
    assert mixin.get_from_address(make_message()) == "default@example.org"
    message = make_message(options={"from_address": "option@example.org"})
    assert mixin.get_from_address(message) == "option@example.org"


def test_no_from_address_is_fatal(settings):
    settings.DEFAULT_FROM_EMAIL = None
    with pytest.raises(FatalChannelDeliveryError, match=NO_FROM_ADDRESS):
        mixin.get_from_address(make_message())


def test_subject_collapses_every_kind_of_whitespace():
    subject = "  Hello\n\tthere\u00a0\u2003friend \r\n  "
    assert mixin.get_subject(rendered(subject=subject)) == "Hello there friend"
    assert mixin.get_from_name(rendered(from_name="\n The\n  Platform\n")) == "The Platform"


def test_subject_and_from_name_undo_djangos_html_escaping():
    # What Django's autoescape makes of "O'Brien & <Sons> \"Ltd\"" in a .txt template.
    escaped = "O&#x27;Brien &amp; &lt;Sons&gt; &quot;Ltd&quot; &#39;"
    assert mixin.get_subject(rendered(subject=escaped)) == "O'Brien & <Sons> \"Ltd\" '"
    assert mixin.get_from_name(rendered(from_name=escaped)) == "O'Brien & <Sons> \"Ltd\" '"
    # One pass: a literal "&lt;" typed by a user (escaped to "&amp;lt;") stays "&lt;".
    assert mixin.get_subject(rendered(subject="a &amp;lt; b &amp;amp; c")) == "a &lt; b &amp; c"
    # Other entities are not Django's doing and are left alone.
    assert mixin.get_subject(rendered(subject="caf&eacute; &#10;x")) == "caf&eacute; &#10;x"


def test_subject_prefix_option_goes_before_the_subject():
    message = make_message(options={"subject_prefix": "[TEST] "})
    assert mixin.get_message_subject(message, rendered(subject=" Hi\n all ")) == "[TEST] Hi all"
    assert mixin.get_message_subject(message, rendered(subject="")) == "[TEST]"
    assert mixin.get_message_subject(make_message(), rendered(subject="Hi")) == "Hi"
    with pytest.raises(FatalChannelDeliveryError, match="'Subject'"):
        mixin.get_message_subject(
            make_message(options={"subject_prefix": "x\r\nBcc: a@b.c"}), rendered()
        )
    with pytest.raises(FatalChannelDeliveryError, match=re.escape(BAD_SUBJECT_PREFIX)):
        mixin.get_message_subject(make_message(options={"subject_prefix": ["x"]}), rendered())


def test_recipient_address():
    assert mixin.get_recipient_address(make_message()) == "learner@example.org"
    for recipient in (None, Recipient(lms_user_id=1), Recipient(lms_user_id=1, email_address="")):
        with pytest.raises(RecipientAddressMissingError, match=NO_RECIPIENT_ADDRESS):
            mixin.get_recipient_address(make_message(recipient=recipient))
    evil = make_message(recipient=Recipient(1, "a@example.org\r\nBcc: b@example.org"))
    with pytest.raises(FatalChannelDeliveryError, match="'To'"):
        mixin.get_recipient_address(evil)


def test_reply_to_accepts_one_address_or_a_list():
    assert mixin.get_reply_to(make_message()) == []
    assert mixin.get_reply_to(make_message(options={"reply_to": "a@x.org"})) == ["a@x.org"]
    message = make_message(options={"reply_to": ("a@x.org", "b@x.org")})
    assert mixin.get_reply_to(message) == ["a@x.org", "b@x.org"]


def test_headers_are_checked():
    message = make_message(options={"headers": {"X-Num": 5}})
    assert mixin.get_headers(message) == {"X-Num": "5"}
    with pytest.raises(FatalChannelDeliveryError, match=re.escape(BAD_HEADERS_OPTION)):
        mixin.get_headers(make_message(options={"headers": ["X-A: b"]}))
    with pytest.raises(FatalChannelDeliveryError) as info:
        mixin.get_headers(make_message(options={"headers": {"X-A": "b\nX-B: c"}}))
    assert str(info.value) == HEADER_NEWLINE.format(name="X-A")
    with pytest.raises(FatalChannelDeliveryError):
        mixin.get_headers(make_message(options={"headers": {"X-A\n": "b"}}))


@pytest.mark.parametrize(
    "name",
    [
        "X-A\n",
        "X-A\r\nBcc",
        "Bcc: victim@example.org\r\nX-A",
        "X A",
        "X-A:",
        ":",
        "",
        "X\tA",
        "X\x00A",
        "X\x7fA",
        "X-Zoë",
        "X-\u2028A",
    ],
)
def test_header_names_must_be_rfc_5322_field_names(name):
    with pytest.raises(FatalChannelDeliveryError) as info:
        mixin.get_headers(make_message(options={"headers": {name: "b"}}))
    assert str(info.value) == BAD_HEADER_NAME.format(name=name)
    assert "RFC 5322" in str(info.value)


def test_every_printable_ascii_character_but_the_colon_is_a_valid_header_name_character():
    name = "".join(chr(c) for c in range(33, 127) if c != ord(":"))
    message = make_message(options={"headers": {name: "v", "X-Campaign-Id": "7"}})
    assert mixin.get_headers(message) == {name: "v", "X-Campaign-Id": "7"}


def test_simple_html_template_and_action_links():
    html = mixin.make_simple_html_template("<style></style>", "<p>x</p>")
    assert html.startswith("<!DOCTYPE html>")
    assert html.index("<style></style>") < html.index("</head>") < html.index("<p>x</p>")
    assert EmailChannelMixin().get_action_links(omit_unsubscribe_link=True) == []
