"""Tests for ace.message: Message, MessageType, MessageLoggingAdapter."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID, uuid4

import attrs
import pytest

from ace.message import Message, MessageLoggingAdapter, MessageType
from ace.recipient import Recipient

RECIPIENT = Recipient(lms_user_id=3, email_address="r@example.org")


def test_message_arguments_defaults_and_uuid():
    message = Message("app", "name", RECIPIENT)
    assert (message.app_label, message.name, message.recipient) == ("app", "name", RECIPIENT)
    assert message.expiration_time is None
    assert message.context == {}
    assert message.options == {}
    assert message.send_uuid is None
    assert message.language is None
    assert message.log_level is None
    assert isinstance(message.uuid, UUID)
    assert Message("app", "name", RECIPIENT).uuid != message.uuid


def test_message_argument_order_matches_the_spec():
    names = [a.name for a in attrs.fields(Message) if a.init]
    assert names == [
        "app_label",
        "name",
        "recipient",
        "expiration_time",
        "context",
        "send_uuid",
        "options",
        "language",
        "log_level",
    ]
    with pytest.raises(TypeError):
        Message(app_label="a", name="b", recipient=None, uuid=uuid4())


def test_defaults_are_not_shared_between_messages():
    first, second = Message("a", "b", None), Message("a", "b", None)
    first.context["x"] = 1
    first.options["y"] = 2
    assert second.context == {} and second.options == {}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recipient": "someone@example.org"},
        {"expiration_time": "2030-01-01"},
        {"send_uuid": "not-a-uuid"},
    ],
)
def test_message_validation(kwargs):
    fields = {"app_label": "a", "name": "b", "recipient": None} | kwargs
    with pytest.raises(TypeError):
        Message(**fields)


def test_validation_also_applies_on_assignment():
    message = Message("a", "b", None)
    with pytest.raises(TypeError):
        message.recipient = "x"
    with pytest.raises(TypeError):
        message.uuid = "x"


def test_unique_name_and_log_id():
    message = Message("app", "welcome", None)
    assert message.unique_name == "app.welcome"
    assert message.log_id == f"app.welcome.no_send_uuid.{message.uuid}"
    send_uuid = uuid4()
    message = Message("app", "welcome", None, send_uuid=send_uuid)
    assert message.log_id == f"app.welcome.{send_uuid}.{message.uuid}"


def test_report_and_report_basics(monkeypatch):
    reported = []
    monkeypatch.setattr("ace.message.monitoring_report", lambda k, v: reported.append((k, v)))
    message = Message("app", "welcome", None, language="fr")
    message.report_basics()
    message.report("custom", 5)
    assert reported == [("message_name", "app.welcome"), ("language", "fr"), ("custom", 5)]


def test_message_specific_logger_prefixes_the_log_id(caplog):
    message = Message("app", "welcome", None)
    logger = message.get_message_specific_logger(logging.getLogger("ace.tests"))
    assert isinstance(logger, MessageLoggingAdapter)
    with caplog.at_level(logging.INFO, logger="ace.tests"):
        logger.info("hello %s", "world")
        logger.debug("hidden")
    assert [r.getMessage() for r in caplog.records] == [f"[{message.log_id}] hello world"]


def test_debug_log_level_promotes_debug_lines_to_info(caplog):
    message = Message("app", "welcome", None, log_level=logging.DEBUG)
    logger = message.get_message_specific_logger(logging.getLogger("ace.tests"))
    with caplog.at_level(logging.INFO, logger="ace.tests"):
        logger.debug("traced")
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage() == f"[{message.log_id}] traced"


# MessageType -----------------------------------------------------------------------------


class WelcomeEmail(MessageType):
    APP_LABEL = "onboarding"


class Named(MessageType):
    APP_LABEL = "onboarding"
    NAME = "custom_name"


def test_message_type_defaults():
    msg_type = WelcomeEmail()
    assert msg_type.name == "welcomeemail"  # the lower-cased class name
    assert msg_type.app_label == "onboarding"
    assert msg_type.context == {} and msg_type.options == {}
    assert msg_type.expiration_time is None and msg_type.log_level is None
    assert isinstance(msg_type.uuid, UUID)
    assert Named().name == "custom_name"


def test_message_type_argument_order_matches_the_spec():
    names = [a.name for a in attrs.fields(MessageType) if a.init]
    assert names == ["context", "expiration_time", "app_label", "name", "options", "log_level"]
    explicit = MessageType({"a": 1}, None, "app", "name", {"o": 1}, 10)
    assert (explicit.app_label, explicit.name, explicit.options) == ("app", "name", {"o": 1})


def test_default_app_label_is_the_containing_django_app():
    cls = type("Reminder", (MessageType,), {"__module__": "ace.some_module"})
    assert cls().app_label == "ace"
    assert cls().name == "reminder"


def test_default_app_label_outside_an_app_is_a_clear_error():
    cls = type("Orphan", (MessageType,), {"__module__": "not_an_app.module"})
    with pytest.raises(ValueError, match="APP_LABEL"):
        cls()
    assert cls(app_label="explicit").app_label == "explicit"


def test_personalize_builds_a_message_for_one_recipient():
    expires = datetime(2031, 5, 1, tzinfo=UTC)
    msg_type = WelcomeEmail(
        context={"shared": 1, "overridden": "type"},
        expiration_time=expires,
        options={"transactional": True},
        log_level=logging.DEBUG,
    )
    message = msg_type.personalize(RECIPIENT, "fr", {"overridden": "user", "mine": 2})
    assert isinstance(message, Message)
    assert message.app_label == "onboarding" and message.name == "welcomeemail"
    assert message.recipient == RECIPIENT
    assert message.language == "fr"
    assert message.context == {"shared": 1, "overridden": "user", "mine": 2}
    assert message.send_uuid == msg_type.uuid
    assert message.expiration_time == expires
    assert message.options == {"transactional": True}
    assert message.log_level == logging.DEBUG
    assert msg_type.context == {"shared": 1, "overridden": "type"}


def test_personalize_does_not_share_options_between_messages():
    # The reference passed the same options dict to every message.
    msg_type = WelcomeEmail(options={"headers": {"X-Batch": "1"}})
    first = msg_type.personalize(RECIPIENT, "en", {})
    second = msg_type.personalize(RECIPIENT, "en", {})
    first.options["from_address"] = "other@example.org"
    first.options["headers"]["X-User"] = "3"
    assert second.options == {"headers": {"X-Batch": "1"}}
    assert msg_type.options == {"headers": {"X-Batch": "1"}}
    assert first.context is not second.context


def test_message_type_equality_is_by_value_across_subclasses():
    msg_type = WelcomeEmail(context={"a": 1})
    plain = MessageType.from_string(str(msg_type))
    assert type(plain) is MessageType
    assert plain == msg_type and msg_type == plain
    assert (plain != msg_type) is False
    assert WelcomeEmail(context={"a": 1}) != msg_type  # a different uuid
    assert hash(plain) == hash(msg_type)
    assert (msg_type == "something") is False
