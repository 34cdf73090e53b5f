"""Tests for ace.signals and the payload helpers in ace.utils.signals."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from uuid import uuid4

from ace_stubs import StubEmailChannel, make_message, recoverable
from django.dispatch import Signal
from django.utils import translation

from ace.channel import ChannelType
from ace.outcome import DeliveryOutcome
from ace.signals import ACE_MESSAGE_FAILED, ACE_MESSAGE_SENT
from ace.utils.signals import (
    make_serializable_object,
    message_payload,
    send_ace_message_failed_signal,
    send_ace_message_sent_signal,
)


def test_signals_are_django_signals():
    assert isinstance(ACE_MESSAGE_SENT, Signal)
    assert isinstance(ACE_MESSAGE_FAILED, Signal)
    assert ACE_MESSAGE_SENT is not ACE_MESSAGE_FAILED


def test_make_serializable_object():
    uuid = uuid4()

    class Unprintable:
        def __str__(self):
            raise RuntimeError

    value = {
        "n": 1,
        "f": 1.5,
        "t": True,
        "s": "x",
        "none": None,
        "list": [uuid, (1, 2), [uuid]],
        "when": datetime(2030, 1, 1, tzinfo=UTC),
        "day": date(2030, 1, 1),
        3: {1, 2},
        ("a", 1): "tuple key",
        "bad": Unprintable(),
    }
    result = make_serializable_object(value)
    json.dumps(result)
    assert result["n"] == 1 and result["f"] == 1.5 and result["t"] is True
    assert result["s"] == "x" and result["none"] is None
    assert result["list"] == [str(uuid), (1, 2), [str(uuid)]]
    assert isinstance(result["list"][1], tuple)
    # As the reference: anything else is str(obj) (a datetime str(dt), a set its str()).
    assert result["when"] == "2030-01-01 00:00:00+00:00"
    assert result["day"] == "2030-01-01"
    assert result[3] == "{1, 2}"  # JSON can take an int key: kept
    assert result["('a', 1)"] == "tuple key"
    assert result["bad"] == "<unprintable Unprintable>"


def test_make_serializable_object_walks_tuples_and_keeps_primitives():
    assert make_serializable_object((1, "a", None, (uuid4(),)))[:3] == (1, "a", None)
    assert make_serializable_object(("x", [datetime(16, 1, 2)])) == ("x", ["0016-01-02 00:00:00"])
    for primitive in ("", 0, -1.25, False, None):
        kept = make_serializable_object(primitive)
        assert kept == primitive and type(kept) is type(primitive)
    assert make_serializable_object(ChannelType.EMAIL) == "email"
    nested = {"a": {"b": [{"c": (uuid4(), 1)}]}}
    json.dumps(make_serializable_object(nested))


def test_message_payload_matches_the_reference_keys():
    message = make_message(language="fr", send_uuid=uuid4(), options={"transactional": True})
    with translation.override("de"):
        payload = message_payload(StubEmailChannel(), message)
    assert payload == {
        "name": "testmessage",
        "app_label": "testapp",
        "recipient": {"email": "learner@example.org", "user_id": 7},
        "channel": "StubEmailChannel",
        "context": message.context,
        "options": {"transactional": True},
        "uuid": str(message.uuid),
        "send_uuid": str(message.send_uuid),
        "message_language": "fr",
        "translation_language": "de",
    }
    assert message_payload(None, message)["channel"] == "Other"


def test_send_helpers_send_the_signals():
    received = []

    def receiver(sender, message, signal, **kwargs):
        received.append((signal, sender, message))

    ACE_MESSAGE_SENT.connect(receiver)
    ACE_MESSAGE_FAILED.connect(receiver)
    try:
        channel, message = StubEmailChannel(), make_message()
        send_ace_message_sent_signal(channel, message)
        outcome = DeliveryOutcome.from_error(message, ChannelType.EMAIL, recoverable(30), "stub")
        send_ace_message_failed_signal(channel, message, outcome)
    finally:
        ACE_MESSAGE_SENT.disconnect(receiver)
        ACE_MESSAGE_FAILED.disconnect(receiver)
    (sent_signal, sent_sender, sent), (failed_signal, _sender, failed) = received
    assert sent_signal is ACE_MESSAGE_SENT and sent_sender is channel
    assert sent["uuid"] == str(message.uuid)
    assert failed_signal is ACE_MESSAGE_FAILED
    assert failed["status"] == "retry"
    assert failed["channel_type"] == "email"
    assert failed["channel_name"] == "stub"
    assert failed["next_attempt_time"] == outcome.next_attempt_time.isoformat()
    json.dumps(failed)
