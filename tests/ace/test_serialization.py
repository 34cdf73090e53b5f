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
from ace.serialization import (
    MAX_DEPTH,
    DecodeError,
    MessageAttributeSerializationMixin,
    MessageEncoder,
)

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


def _wire(**changes):
    """The JSON of a valid message with some fields replaced (``None`` values: removed)."""
    data = json.loads(str(full_message()))
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key)
        else:
            data[key] = value
    return json.dumps(data)


_DROP = object()


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        # Wrong JSON types where the reference raised TypeError/AttributeError or said nothing.
        (_wire(recipient=5), "Message.recipient", "must be an object or null, not an integer"),
        (_wire(recipient=[]), "Message.recipient", "not an array"),
        (_wire(recipient="a@b.c"), "Message.recipient", "not a string"),
        (_wire(app_label=5), "Message.app_label", "must be a string, not an integer"),
        (_wire(app_label=["a"]), "Message.app_label", "not an array"),
        (_wire(name=None), "Message.name", "must be a string, not null"),
        (_wire(context=[1]), "Message.context", "must be an object, not an array"),
        (_wire(context=None), "Message.context", "not null"),
        (_wire(options="x"), "Message.options", "must be an object, not a string"),
        (_wire(language=5), "Message.language", "must be a string or null, not an integer"),
        (_wire(log_level="10"), "Message.log_level", "must be an integer or null"),
        (_wire(log_level=True), "Message.log_level", "not true or false"),
        (_wire(uuid=5), "Message.uuid", "must be a string, not an integer"),
        (_wire(uuid=None), "Message.uuid", "not null"),
        (_wire(uuid="nope"), "Message.uuid", "invalid value 'nope'"),
        (_wire(send_uuid={}), "Message.send_uuid", "must be a string or null, not an object"),
        (_wire(expiration_time=5), "Message.expiration_time", "not an integer"),
        (_wire(expiration_time="soon"), "Message.expiration_time", "invalid value 'soon'"),
        (
            _wire(recipient={"lms_user_id": [1], "email_address": "a@b.c"}),
            "Message.recipient.lms_user_id",
            "must be an integer, a string or null, not an array",
        ),
        (
            _wire(recipient={"lms_user_id": 1, "email_address": 5}),
            "Message.recipient.email_address",
            "must be a string or null, not an integer",
        ),
        (_wire(recipient={"lms_user_id": 1, "x": 1}), "Message.recipient", "unknown field"),
        (_wire(recipient={}), "Message.recipient", "missing required field(s) ['lms_user_id']"),
        # Missing and unknown fields.
        (_wire(name=_DROP), "Message", "missing required field(s) ['name']"),
        (_wire(recipient=_DROP), "Message", "missing required field(s) ['recipient']"),
        (_wire(bogus=1), "Message", "unknown field(s) ['bogus']"),
        # Bad tagged values deep in the free-form fields, with where they are.
        (
            _wire(context={"a": [0, {"when": {"$ace:datetime": "soon"}}]}),
            "Message.context['a'][1]['when']",
            "invalid $ace:datetime value 'soon'",
        ),
        (
            _wire(options={"price": {"$ace:decimal": "cheap"}}),
            "Message.options['price']",
            "invalid $ace:decimal value 'cheap'",
        ),
        (_wire(context={"id": {"$ace:uuid": "x"}}), "Message.context['id']", "$ace:uuid"),
        # Not JSON, not an object, not a string.
        ("not json", "Message", "not valid JSON (Expecting value"),
        (b"\xff", "Message", "not valid JSON"),
        ('{"n": ' + "9" * 5000 + "}", "Message", "not valid JSON"),
        ("[1, 2]", "Message", "expected a JSON object, got an array"),
        ("null", "Message", "expected a JSON object, got null"),
        (None, "Message", "expected a JSON string, got NoneType"),
        (5, "Message", "expected a JSON string, got int"),
    ],
)
def test_malformed_input_is_a_value_error_naming_the_field(text, field, problem):
    with pytest.raises(ValueError) as info:
        Message.from_string(text)
    assert isinstance(info.value, DecodeError)
    assert info.value.where == field
    assert problem in info.value.problem
    assert str(info.value).startswith(f"Cannot decode {field}: ")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 200_000])
@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deep_nesting_is_a_value_error_not_a_recursion_error(depth, opener):
    closer = "]" if opener == "[" else "}"
    deep = opener * depth + "1" + closer * depth
    in_context = _wire().replace('"context": {', '"context": {"deep": ' + deep + ", ", 1)
    for text in (in_context, deep) if depth > 1000 else (in_context,):
        with pytest.raises(DecodeError, match=f"nested deeper than {MAX_DEPTH} levels"):
            Message.from_string(text)


def test_nesting_up_to_the_limit_round_trips():
    value: object = 1
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    message = Message("a", "b", None, context={"deep": value})
    assert Message.from_string(str(message)) == message


def test_message_type_and_recipient_refuse_wrong_types_too():
    with pytest.raises(DecodeError, match=r"MessageType.context: must be an object, not an array"):
        MessageType.from_string('{"context": [], "app_label": "a", "name": "b"}')
    with pytest.raises(DecodeError, match=r"MessageType.name: must be a string, not an integer"):
        MessageType.from_string('{"app_label": "a", "name": 5}')
    with pytest.raises(DecodeError, match=r"Recipient: missing required field\(s\)"):
        Recipient.from_string("{}")


def test_a_string_written_by_the_reference_library_round_trips():
    """The exact JSON edx-ace 1.15 writes for a full message (attr.asdict + its encoder)."""
    reference = (
        '{"app_label": "app", "name": "n", "recipient": {"lms_user_id": 7, "email_address": '
        '"a@b.c"}, "expiration_time": "2030-01-01T00:00:00+00:00", "context": {"k": [1, "x", '
        '{"y": null}], "flag": true, "ratio": 0.5}, "uuid": "a0d6e7e2-3c5e-4a57-9f2a-'
        '5e0d0d9c9a11", "send_uuid": "6f7d1c1e-7a5b-4a33-8f19-2d1c3b4a5e6f", "options": '
        '{"transactional": true, "headers": {"X-A": "1"}}, "language": "fr", "log_level": 10}'
    )
    message = Message.from_string(reference)
    assert message.recipient == Recipient(lms_user_id=7, email_address="a@b.c")
    assert message.context == {"k": [1, "x", {"y": None}], "flag": True, "ratio": 0.5}
    assert Message.from_string(str(message)) == message
    assert json.loads(str(message)) == json.loads(reference)


def test_a_string_written_by_edx_ace_1_15_decodes_its_headers_into_the_options():
    """edx-ace 1.15 adds a ``headers`` attribute (email headers) that the spec's Message does
    not have; a message it queued still decodes, its headers where our channels read them."""
    written = (
        '{"app_label": "app", "name": "n", "recipient": {"lms_user_id": 7, "email_address": '
        '"a@b.c"}, "expiration_time": null, "context": {}, "uuid": "a0d6e7e2-3c5e-4a57-9f2a-'
        '5e0d0d9c9a11", "send_uuid": null, "options": {"headers": {"X-B": "own"}}, '
        '"headers": %s, "language": "fr", "log_level": null}'
    )
    plain = Message.from_string(written % "{}")
    assert plain.options == {"headers": {"X-B": "own"}}
    assert Message.from_string(str(plain)) == plain
    message = Message.from_string(written % '{"X-A": "1", "X-B": "theirs"}')
    assert message.options == {"headers": {"X-A": "1", "X-B": "own"}}
    assert Message.from_string(str(message)) == message
    with pytest.raises(DecodeError, match=r"Message.headers: must be an object or null"):
        Message.from_string(written % "[]")


def test_from_wire_still_takes_to_json_output():
    message = full_message()
    assert Message.from_wire(message.to_json()) == message


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
