"""Tests for ace.serialization: round trips through str()/from_string() and MessageEncoder."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from django.utils.translation import gettext_lazy

from ace.message import Message, MessageType
from ace.recipient import Recipient
from ace.serialization import MessageAttributeSerializationMixin, MessageEncoder

PARIS = timezone(timedelta(hours=2))


def full_message() -> Message:
    return Message(
        app_label="app",
        name="digest",
        recipient=Recipient(lms_user_id=42, email_address="l@example.org"),
        expiration_time=datetime(2031, 1, 2, 3, 4, 5, 678, tzinfo=PARIS),
        context={
            # Keys named like Message fields must be left exactly as they are.
            "uuid": "not-a-uuid",
            "send_uuid": 17,
            "recipient": {"lms_user_id": "kept as a dict"},
            "expiration_time": "tomorrow",
            "message": {"name": "x"},
            "when": datetime(2030, 6, 1, 12, 0, tzinfo=UTC),
            "day": date(2030, 6, 1),
            "at": time(9, 30),
            "id": uuid4(),
            "price": Decimal("9.90"),
            "nested": {"list": [1, "two", {"deep": datetime(2030, 1, 1, tzinfo=PARIS)}]},
        },
        send_uuid=uuid4(),
        options={"transactional": True, "headers": {"X-A": "1"}, "reply_to": ["a@b.c"]},
        language="fr",
        log_level=10,
    )


def test_message_round_trips_with_equality_and_types():
    message = full_message()
    decoded = Message.from_string(str(message))
    assert decoded == message
    assert decoded.uuid == message.uuid
    assert isinstance(decoded.recipient, Recipient)
    assert decoded.expiration_time.utcoffset() == timedelta(hours=2)
    assert isinstance(decoded.send_uuid, UUID)
    assert decoded.context["uuid"] == "not-a-uuid"
    assert decoded.context["recipient"] == {"lms_user_id": "kept as a dict"}
    assert decoded.context["message"] == {"name": "x"}
    assert decoded.context["when"] == datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    assert isinstance(decoded.context["id"], UUID)
    assert decoded.context["price"] == Decimal("9.90")
    assert decoded.context["nested"]["list"][2]["deep"].tzinfo is not None


def test_string_is_plain_json_with_typed_fields_in_reference_shape():
    message = full_message()
    data = json.loads(str(message))
    assert data["uuid"] == str(message.uuid)
    assert data["send_uuid"] == str(message.send_uuid)
    assert data["expiration_time"] == "2031-01-02T03:04:05.000678+02:00"
    assert data["recipient"] == {"lms_user_id": 42, "email_address": "l@example.org"}


def test_minimal_message_round_trips():
    message = Message("app", "name", None)
    assert Message.from_string(str(message)) == message


def test_naive_datetimes_stay_naive():
    message = Message("a", "b", None, expiration_time=datetime(2030, 1, 1, 8, 0))
    decoded = Message.from_string(str(message))
    assert decoded == message and decoded.expiration_time.tzinfo is None


def test_a_string_written_by_the_reference_decodes():
    uuid, send_uuid = uuid4(), uuid4()
    reference = json.dumps(
        {
            "app_label": "app",
            "name": "n",
            "recipient": {"lms_user_id": 1, "email_address": "a@b.c"},
            "expiration_time": "2030-01-01T00:00:00Z",
            "context": {"when": "2030-01-01T00:00:00+00:00", "uuid": str(uuid)},
            "uuid": str(uuid),
            "send_uuid": str(send_uuid),
            "options": {},
            "language": "en",
            "log_level": None,
        }
    )
    message = Message.from_string(reference)
    assert message.uuid == uuid and message.send_uuid == send_uuid
    assert message.expiration_time == datetime(2030, 1, 1, tzinfo=UTC)
    assert message.context == {"when": "2030-01-01T00:00:00+00:00", "uuid": str(uuid)}


def test_message_type_and_recipient_round_trip():
    msg_type = MessageType(
        context={"when": datetime(2030, 1, 1, tzinfo=UTC)},
        expiration_time=datetime(2030, 2, 1, tzinfo=UTC),
        app_label="app",
        name="n",
        options={"x": [1, 2]},
        log_level=20,
    )
    decoded = MessageType.from_string(str(msg_type))
    assert decoded == msg_type and decoded.uuid == msg_type.uuid
    recipient = Recipient(lms_user_id="abc", email_address=None)
    assert Recipient.from_string(str(recipient)) == recipient


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[1, 2]", "JSON object"),
        ('{"app_label": "a", "bogus": 1}', "bogus"),
        ("not json", "Expecting value"),
    ],
)
def test_from_string_rejects_bad_input(text, error):
    with pytest.raises(ValueError, match=error):
        Message.from_string(text)


def test_to_json_is_a_dictionary_of_fields():
    message = full_message()
    data = message.to_json()
    assert data["recipient"] == {"lms_user_id": 42, "email_address": "l@example.org"}
    assert data["uuid"] == message.uuid
    assert data["context"] is not message.context
    assert json.loads(json.dumps(data, cls=MessageEncoder))["uuid"] == str(message.uuid)


def test_message_encoder():
    uuid = uuid4()
    when = datetime(2030, 1, 1, tzinfo=UTC)
    encoded = json.loads(
        json.dumps(
            {
                "u": uuid,
                "w": when,
                "d": date(2030, 1, 2),
                "lazy": gettext_lazy("Yes"),
                "r": Recipient(1, "a@b.c"),
                "n": Decimal("1.5"),
            },
            cls=MessageEncoder,
        )
    )
    assert encoded == {
        "u": str(uuid),
        "w": "2030-01-01T00:00:00+00:00",
        "d": "2030-01-02",
        "lazy": "Yes",
        "r": {"lms_user_id": 1, "email_address": "a@b.c"},
        "n": "1.5",
    }
    with pytest.raises(TypeError):
        json.dumps({"x": object()}, cls=MessageEncoder)


def test_unencodable_context_value_is_a_type_error():
    with pytest.raises(TypeError):
        str(Message("a", "b", None, context={"x": object()}))


def test_mixin_is_slot_friendly():
    assert MessageAttributeSerializationMixin.__slots__ == ()
    assert not hasattr(Recipient(1), "__dict__")
