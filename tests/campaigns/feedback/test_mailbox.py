"""Polling the bounce mailbox against a real IMAP server (Dovecot on 127.0.0.1): bounces become
events on their deliveries, unreadable messages are kept for review, processed messages are
flagged (or deleted) and a second poll records nothing new."""

from __future__ import annotations

import ssl
import uuid

import pytest

from campaigns.feedback import mailbox
from campaigns.feedback.models import DeliveryEvent, Suppression, UnparsedBounce
from campaigns.tasks import poll_bounce_mailbox
from tests.campaigns.factories import DeliveryFactory
from tests.campaigns.feedback import samples

pytestmark = pytest.mark.django_db


@pytest.fixture
def deliveries(db):
    return {
        name: DeliveryFactory(email=f"{name}@example.net", message_uuid=uuid.uuid4())
        for name in ("ada", "bob", "cy")
    }


def _mail(deliveries) -> list[bytes]:
    ada, bob, cy = deliveries["ada"], deliveries["bob"], deliveries["cy"]
    return [
        # RFC 3464, hard, matched by the X-ACE-Message-UUID header in the returned headers
        samples.dsn(
            recipients=[samples.failed("ada@example.net", "5.1.1")],
            headers=samples.original_headers(message_uuid=ada.message_uuid),
        ),
        # RFC 3464, soft, matched by a Message-ID derived from the uuid
        samples.dsn(
            recipients=[samples.failed("bob@example.net", "4.2.2")],
            headers=samples.original_headers(
                to="bob@example.net", message_id=f"<{bob.message_uuid}@campaigns.example.org>"
            ),
            returned="message",
        ),
        # qmail, matched by a VERP return address
        samples.qmail("cy@example.net", "550 5.1.1 user unknown", "").replace(
            f"To: {samples.RETURN_PATH}".encode(),
            f"To: bounces+{cy.message_uuid.hex}@campaigns.example.org".encode(),
        ),
        # not a bounce: kept for review
        b"From: friend@example.net\r\nSubject: Thanks!\r\n\r\nLoved the newsletter.\r\n",
    ]


def test_a_poll_records_bounces_and_keeps_the_rest(imap_server, deliveries, settings):
    settings.CAMPAIGNS_BOUNCE_IMAP_URL = imap_server.url
    imap_server.deliver(*_mail(deliveries))
    result = poll_bounce_mailbox()
    assert result == {
        "configured": True,
        "mailbox": f"imap://bounces@127.0.0.1:{imap_server.port}/INBOX",
        "read": 4,
        "events": 3,
        "unparsed": 1,
    }
    events = {e.recipient: e for e in DeliveryEvent.objects.all()}
    assert {r: (e.delivery_id, e.matched_by, e.bounce_type) for r, e in events.items()} == {
        "ada@example.net": (deliveries["ada"].pk, "header", "hard"),
        "bob@example.net": (deliveries["bob"].pk, "message_id", "soft"),
        "cy@example.net": (deliveries["cy"].pk, "verp", "hard"),
    }
    assert all(e.source == "mailbox" for e in events.values())
    assert sorted(Suppression.objects.values_list("address", flat=True)) == [
        "ada@example.net",
        "cy@example.net",
    ]
    kept = UnparsedBounce.objects.get()
    assert kept.subject == "Thanks!" and "Loved the newsletter." in kept.raw
    assert "bounces@127.0.0.1" in kept.mailbox and "mailbox-pass" not in kept.mailbox
    # Every message is flagged \Seen, none deleted; the next poll reads nothing.
    assert [flags for _, flags in imap_server.flags()] == ["\\Seen"] * 4
    assert poll_bounce_mailbox()["read"] == 0


def test_reading_the_same_messages_again_records_nothing_new(imap_server, deliveries):
    """As after a crash between recording a message and flagging it."""
    messages = _mail(deliveries)
    imap_server.deliver(*messages)
    mailbox.mailbox_poll(imap_server.url)
    imap_server.deliver(*messages)  # the same bytes, unseen again
    second = mailbox.mailbox_poll(imap_server.url)
    assert (second.read, second.events) == (4, 0)
    assert DeliveryEvent.objects.count() == 3
    assert UnparsedBounce.objects.count() == 1


def test_delete_mode_and_the_batch_limit(imap_server, deliveries, settings):
    settings.CAMPAIGNS_BOUNCE_IMAP_DELETE = True
    imap_server.deliver(*_mail(deliveries))
    first = mailbox.mailbox_poll(imap_server.url, limit=3)
    assert first.read == 3
    assert len(imap_server.flags()) == 1  # three deleted, one left for the next poll
    assert mailbox.mailbox_poll(imap_server.url, limit=3).read == 1
    assert imap_server.flags() == []


def test_a_wrong_password_fails_loudly_and_touches_nothing(imap_server, deliveries):
    imap_server.deliver(*_mail(deliveries))
    url = imap_server.url.replace("mailbox-pass", "wrong")
    with pytest.raises(mailbox.MailboxError) as raised:
        mailbox.mailbox_poll(url)
    assert "wrong" not in str(raised.value)
    assert not DeliveryEvent.objects.exists()
    assert [flags for _, flags in imap_server.flags()] == [""] * 4


def test_nothing_to_do_without_a_url(settings):
    settings.CAMPAIGNS_BOUNCE_IMAP_URL = ""
    assert poll_bounce_mailbox() == {
        "configured": False,
        "mailbox": "",
        "read": 0,
        "events": 0,
        "unparsed": 0,
    }


def test_an_unreachable_mailbox_is_an_error_naming_it():
    with pytest.raises(mailbox.MailboxError, match=r"imap://u@127\.0\.0\.1:1/INBOX"):
        mailbox.mailbox_poll("imap://u:p@127.0.0.1:1/INBOX")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "imaps://bounce%40example.org:p%2Fw@mail.example.org/Bounces%20In",
            ("imaps", "mail.example.org", 993, "bounce@example.org", "p/w", "Bounces In"),
        ),
        (
            "imap+starttls://u:p@127.0.0.1:1143",
            ("imap+starttls", "127.0.0.1", 1143, "u", "p", "INBOX"),
        ),
        ("pop3s://u:p@pop.example.org", ("pop3s", "pop.example.org", 995, "u", "p", "INBOX")),
    ],
)
def test_mailbox_urls(url, expected):
    box = mailbox.MailboxURL.parse(url)
    assert (box.scheme, box.host, box.port, box.username, box.password, box.folder) == expected
    scheme, host, port, user, password, folder = expected
    assert box.label == f"{scheme}://{user}@{host}:{port}/{folder}"  # no password
    assert f"password='{password}'" not in repr(box)


@pytest.mark.parametrize("url", ["http://x/", "imaps:///INBOX", "imap://h:notaport/"])
def test_bad_mailbox_urls(url):
    with pytest.raises(mailbox.MailboxError, match="CAMPAIGNS_BOUNCE_IMAP_URL"):
        mailbox.MailboxURL.parse(url)


def test_pop3_records_then_deletes(imap_server, deliveries, require_service):
    require_service("dovecot-pop3d", lambda: imap_server.pop3_port or 1 / 0)
    imap_server.deliver(*_mail(deliveries))
    url = f"pop3://bounces:mailbox-pass@127.0.0.1:{imap_server.pop3_port}"
    result = mailbox.mailbox_poll(url, limit=3)
    assert (result.read, result.events, result.unparsed) == (3, 3, 0)
    assert len(imap_server.flags()) == 1  # the three read are deleted, one is left
    assert mailbox.mailbox_poll(url).as_dict()["unparsed"] == 1
    assert imap_server.flags() == []
    assert DeliveryEvent.objects.count() == 3


# TLS ------------------------------------------------------------------------------------------


@pytest.fixture
def trust_test_ca(imap_tls_server, monkeypatch):
    """The poller's TLS context trusts the test server's self-signed certificate (and, like the
    real one, verifies the host name)."""
    monkeypatch.setattr(
        mailbox, "tls_context", lambda: ssl.create_default_context(cafile=imap_tls_server.cafile)
    )


@pytest.mark.usefixtures("trust_test_ca")
@pytest.mark.parametrize("scheme", ["imaps", "imap+starttls"])
def test_tls_and_starttls(imap_tls_server, deliveries, scheme):
    imap_tls_server.deliver(*_mail(deliveries))
    port = imap_tls_server.tls_port if scheme == "imaps" else imap_tls_server.port
    url = f"{scheme}://bounces:mailbox-pass@127.0.0.1:{port}/INBOX"
    result = mailbox.mailbox_poll(url)
    assert (result.read, result.events, result.unparsed) == (4, 3, 1)


def test_an_untrusted_certificate_is_refused(imap_tls_server, deliveries):
    imap_tls_server.deliver(*_mail(deliveries))
    url = f"imaps://bounces:mailbox-pass@127.0.0.1:{imap_tls_server.tls_port}/INBOX"
    with pytest.raises(mailbox.MailboxError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        mailbox.mailbox_poll(url)
    assert not DeliveryEvent.objects.exists()
