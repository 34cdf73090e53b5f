"""Tests for ace.recipient_resolver."""

from __future__ import annotations

import pytest
from ace_stubs import StubEmailChannel

from ace import ace
from ace.message import MessageType
from ace.recipient import Recipient
from ace.recipient_resolver import RecipientResolver


def test_recipient_resolver_is_abstract():
    with pytest.raises(TypeError):
        RecipientResolver()


def test_a_resolver_personalizes_and_sends(stub_email: StubEmailChannel):
    class Everyone(RecipientResolver):
        def __init__(self, recipients):
            self.recipients = recipients

        def send(self, msg_type, *args, **kwargs):
            return [
                ace.send(msg_type.personalize(r, "en", {"name": f"user {r.lms_user_id}"}))
                for r in self.recipients
            ]

    class TestMessage(MessageType):
        APP_LABEL = "testapp"

    msg_type = TestMessage(context={"items": []})
    Everyone([Recipient(1, "a@example.org"), Recipient(2, "b@example.org")]).send(msg_type)
    names = [message.context["name"] for message, _rendered in stub_email.delivered]
    assert names == ["user 1", "user 2"]
    assert {message.send_uuid for message, _ in stub_email.delivered} == {msg_type.uuid}
