"""ESP webhooks through django-anymail: events become DeliveryEvent rows on the matching
delivery (or unmatched ones), bounces and complaints suppress, replays change nothing, and a
webhook without the right basic auth or signature is refused and touches no row."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives, get_connection
from django.urls import reverse
from django.utils import timezone

from campaigns.feedback.models import DeliveryEvent, EspMessageId, Suppression
from campaigns.feedback.urls import NO_SECRET
from tests.campaigns.factories import DeliveryFactory
from tests.campaigns.feedback.conftest import WEBHOOK_PASSWORD, WEBHOOK_USER

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("webhook_settings")]

POSTMARK = "/anymail/postmark/tracking/"
MAILGUN = "/anymail/mailgun/tracking/"
MAILGUN_KEY = "mailgun-signing-key"
Kind = DeliveryEvent.Kind


def _auth(user=WEBHOOK_USER, password=WEBHOOK_PASSWORD) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def post(client, url, payload, auth=None):
    return client.post(
        url,
        data=json.dumps(payload),
        content_type="application/json",
        **(_auth() if auth is None else auth),
    )


def postmark_bounce(email="ada@example.net", *, kind="HardBounce", metadata=None, id_=42):
    return {
        "RecordType": "Bounce",
        "ID": id_,
        "Type": kind,
        "TypeCode": 1,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": metadata or {},
        "Description": "The server was unable to deliver your message.",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "BouncedAt": timezone.now().isoformat(),
    }


def test_the_urls_are_anymails():
    assert reverse("anymail:postmark_tracking_webhook") == POSTMARK
    assert reverse("anymail:mailgun_tracking_webhook") == MAILGUN


def test_a_hard_bounce_lands_on_its_delivery_and_suppresses_once(client, sent_delivery):
    payload = postmark_bounce(metadata={"ace_message_uuid": str(sent_delivery.message_uuid)})
    assert post(client, POSTMARK, payload).status_code == 200
    event = DeliveryEvent.objects.get()
    assert (event.delivery, event.matched_by) == (sent_delivery, "metadata")
    assert (event.kind, event.bounce_type, event.status_code) == ("bounced", "hard", "5.1.1")
    assert (event.source, event.recipient, event.esp_event_id) == (
        "Postmark",
        "ada@example.net",
        "42",
    )
    assert event.raw["Type"] == "HardBounce"
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.reason) == ("ada@example.net", "hard_bounce")
    assert suppression.source_event == event
    # The ESP sends it again: nothing changes.
    assert post(client, POSTMARK, payload).status_code == 200
    assert DeliveryEvent.objects.count() == 1
    assert Suppression.objects.count() == 1
    # The delivery log row is not touched (the run's counters still add up).
    sent_delivery.refresh_from_db()
    assert sent_delivery.status == "sent"


def test_a_soft_bounce_is_soft_and_does_not_suppress_alone(client, sent_delivery):
    payload = postmark_bounce(kind="SoftBounce")
    payload["Details"] = "smtp;452 4.2.2 Mailbox full"
    assert post(client, POSTMARK, payload).status_code == 200
    event = DeliveryEvent.objects.get()
    assert (event.kind, event.bounce_type) == ("bounced", "soft")
    assert not Suppression.objects.exists()


def test_complaint_unsubscribe_open_click_and_delivery(client, sent_delivery):
    meta = {"ace_message_uuid": str(sent_delivery.message_uuid)}
    base = {"MessageID": "pm-1", "Metadata": meta, "Recipient": "ada@example.net"}
    events = [
        {**base, "RecordType": "Delivery", "DeliveredAt": "2026-12-01T10:00:01Z"},
        {**base, "RecordType": "Open", "ReceivedAt": "2026-12-01T10:03:00Z", "UserAgent": "UA"},
        {
            **base,
            "RecordType": "Click",
            "ReceivedAt": "2026-12-01T10:04:00Z",
            "OriginalLink": "https://example.org/spring",
        },
        {
            **base,
            "RecordType": "SpamComplaint",
            "Type": "SpamComplaint",
            "ID": 7,
            "Email": "ada@example.net",
            "BouncedAt": "2026-12-01T10:05:00Z",
        },
    ]
    for payload in events:
        assert post(client, POSTMARK, payload).status_code == 200
    rows = {e.kind: e for e in DeliveryEvent.objects.all()}
    assert set(rows) == {"delivered", "opened", "clicked", "complained"}
    assert all(e.delivery == sent_delivery for e in rows.values())
    assert rows["clicked"].click_url == "https://example.org/spring"
    assert rows["opened"].user_agent == "UA"
    assert Suppression.objects.get().reason == "complaint"
    # Replaying events without an ESP id is idempotent too (a hash of the event).
    for payload in events:
        post(client, POSTMARK, payload)
    assert DeliveryEvent.objects.count() == 4


def test_an_unmatched_event_is_kept_never_an_error(client):
    payload = postmark_bounce(email="stranger@example.net")
    assert post(client, POSTMARK, payload).status_code == 200
    event = DeliveryEvent.objects.get()
    assert event.delivery is None and event.matched_by == ""
    # A bounce suppresses the address whether or not we know the message.
    assert Suppression.objects.get().address == "stranger@example.net"


def test_matched_by_the_only_recent_delivery_to_the_address(client, sent_delivery):
    post(client, POSTMARK, postmark_bounce(email="ADA@example.net", id_=1))
    assert DeliveryEvent.objects.get().matched_by == "recipient"
    # Two recent deliveries to the address: no guess.
    DeliveryFactory(email="ada@example.net")
    post(client, POSTMARK, postmark_bounce(email="ada@example.net", id_=2))
    assert DeliveryEvent.objects.get(esp_event_id="2").delivery is None


def test_matching_by_recipient_can_be_turned_off(client, sent_delivery, settings):
    settings.CAMPAIGNS_FEEDBACK_RECIPIENT_MATCH_HOURS = 0
    post(client, POSTMARK, postmark_bounce())
    assert DeliveryEvent.objects.get().delivery is None


def _mailgun(event_data: dict, key: str = MAILGUN_KEY) -> dict:
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature.hexdigest()},
        "event-data": event_data,
    }


def _mailgun_failed(message_id: str) -> dict:
    return {
        "event": "failed",
        "severity": "permanent",
        "recipient": "ada@example.net",
        "timestamp": time.time(),
        "message": {"headers": {"message-id": message_id, "to": "ada@example.net"}},
        "delivery-status": {"code": 550, "message": "5.1.1 No such user", "description": ""},
    }


def test_mailgun_matched_by_the_message_id(client, sent_delivery, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}
    payload = _mailgun(_mailgun_failed(f"{sent_delivery.message_uuid}@campaigns.example.org"))
    assert post(client, MAILGUN, payload).status_code == 200
    event = DeliveryEvent.objects.get()
    assert (event.delivery, event.matched_by, event.source) == (
        sent_delivery,
        "message_id",
        "Mailgun",
    )
    assert event.bounce_type == "hard"


def test_mailgun_with_a_bad_signature_is_refused(client, sent_delivery, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}
    payload = _mailgun(_mailgun_failed("<x@y>"), key="someone-elses-key")
    assert post(client, MAILGUN, payload).status_code == 400
    assert not DeliveryEvent.objects.exists() and not Suppression.objects.exists()


@pytest.mark.parametrize(
    "auth",
    [
        {},
        _auth(password="wrong"),
        _auth(user="other"),
        {"HTTP_AUTHORIZATION": "Bearer x"},
    ],
)
def test_bad_basic_auth_is_refused_and_touches_no_row(client, sent_delivery, auth):
    assert post(client, POSTMARK, postmark_bounce(), auth=auth).status_code == 400
    assert not DeliveryEvent.objects.exists() and not Suppression.objects.exists()


def test_without_a_secret_the_webhooks_are_off(client, sent_delivery, settings):
    settings.ANYMAIL = {}
    response = post(client, POSTMARK, postmark_bounce())
    assert response.status_code == 403
    assert NO_SECRET in response.content.decode()
    assert not DeliveryEvent.objects.exists()


def test_inbound_webhooks_are_not_mounted(client):
    assert post(client, "/anymail/postmark/inbound/", {}).status_code == 404


def test_ignored_event_types_record_nothing(client, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}
    payload = _mailgun({"event": "accepted", "recipient": "a@b.org", "timestamp": time.time()})
    assert post(client, MAILGUN, payload).status_code == 200
    assert not DeliveryEvent.objects.exists()


def test_sending_through_anymail_records_the_esp_id_and_stamps_metadata(client, sent_delivery):
    """Once a message carries X-ACE-Message-UUID, an anymail backend's send records the ESP's
    id for it (post_send) and puts the uuid in the ESP metadata (pre_send)."""
    mail.outbox = []
    message = EmailMultiAlternatives(
        "Hello",
        "Hi",
        "noreply@example.org",
        ["ada@example.net"],
        headers={"X-ACE-Message-UUID": str(sent_delivery.message_uuid)},
        connection=get_connection("anymail.backends.test.EmailBackend"),
    )
    message.send()
    params = mail.outbox[0].anymail_test_params
    assert params["metadata"] == {"ace_message_uuid": str(sent_delivery.message_uuid)}
    recorded = EspMessageId.objects.get()
    assert (recorded.esp_name, recorded.message_uuid) == ("Test", sent_delivery.message_uuid)
    # An event naming only the ESP's id finds the delivery.
    payload = {
        "RecordType": "Delivery",
        "MessageID": recorded.message_id,
        "Recipient": "ada@example.net",
        "DeliveredAt": "2026-12-01T10:00:01Z",
    }
    post(client, POSTMARK, payload)
    event = DeliveryEvent.objects.get()
    assert (event.delivery, event.matched_by) == (sent_delivery, "esp_message_id")


def test_a_header_echoed_by_the_esp_matches(client, sent_delivery):
    """Amazon SES-style header lists inside the raw event are searched too."""
    from anymail.signals import AnymailTrackingEvent, tracking

    event = AnymailTrackingEvent(
        event_type="delivered",
        recipient="ada@example.net",
        message_id="ses-123",
        esp_event={
            "mail": {
                "headers": [
                    {"name": "X-ACE-Message-UUID", "value": str(sent_delivery.message_uuid)}
                ]
            }
        },
    )
    tracking.send(sender=object, event=event, esp_name="Amazon SES")
    recorded = DeliveryEvent.objects.get()
    assert (recorded.delivery, recorded.matched_by) == (sent_delivery, "header")
