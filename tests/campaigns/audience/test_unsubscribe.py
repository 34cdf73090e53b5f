"""Signed one-click unsubscribe links (RFC 8058): signing, headers and the view."""

from __future__ import annotations

import base64
import string
import time
import zlib

import pytest
from django.core import mail
from django.core import signing as django_signing
from django.test import Client

from ace import ace as ace_api
from ace.message import Message, MessageType
from ace.recipient import Recipient
from campaigns import signing as signing_module
from campaigns.models import OptOut
from campaigns.policies import OptOutPolicy
from campaigns.signing import (
    SALT,
    read_unsubscribe_token,
    unsubscribe_headers,
    unsubscribe_headers_for,
    unsubscribe_token,
    unsubscribe_url,
)
from campaigns.views import EXPIRED_LINK, INVALID_LINK, TEST_LINK
from tests.campaigns import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def csrf_client() -> Client:
    """A client that enforces CSRF like a browser-less mail provider would meet it."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def newsletter():
    return f.MessageTypeDefinitionFactory(name="newsletter", description="Monthly newsletter")


def path_of(url: str, site: str) -> str:
    assert url.startswith(site)
    return url[len(site) :]


def test_url_is_absolute_signed_and_round_trips(settings, newsletter):
    settings.SITE_URL = "https://mail.example.org/"
    url = unsubscribe_url("Ann@Example.org", newsletter.pk)
    assert url.startswith("https://mail.example.org/unsubscribe/")
    token = url.rstrip("/").rsplit("/", 1)[1]
    unsub = read_unsubscribe_token(token)
    assert (unsub.email, unsub.message_type_id) == ("ann@example.org", newsletter.pk)
    assert read_unsubscribe_token(unsubscribe_token("a@b.org")).message_type_id is None


def test_tokens_cannot_be_forged_or_altered():
    token = unsubscribe_token("ann@example.org", 3)
    with pytest.raises(django_signing.BadSignature):
        read_unsubscribe_token(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    # Signed with another salt (e.g. a session cookie) is refused too.
    with pytest.raises(django_signing.BadSignature):
        read_unsubscribe_token(django_signing.dumps({"e": "ann@example.org"}))
    with pytest.raises(ValueError, match="not an email address"):
        unsubscribe_token("nobody")


def test_list_unsubscribe_headers_follow_rfc_8058(settings, newsletter):
    settings.SITE_URL = "https://mail.example.org"
    headers = unsubscribe_headers_for("ann@example.org", newsletter.pk)
    assert set(headers) == {"List-Unsubscribe", "List-Unsubscribe-Post"}
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    value = headers["List-Unsubscribe"]
    assert value.startswith("<https://mail.example.org/unsubscribe/") and value.endswith(">")
    with pytest.raises(ValueError, match="line breaks"):
        unsubscribe_headers("https://x.example/u\r\nBcc: victim@example.org")


def test_get_shows_a_confirmation_form_and_changes_nothing(client, settings, newsletter):
    url = unsubscribe_url("ann@example.org", newsletter.pk)
    response = client.get(path_of(url, settings.SITE_URL))
    assert response.status_code == 200
    body = response.content.decode()
    assert '<form method="post">' in body
    assert "ann@example.org" in body and "Monthly newsletter" in body
    assert OptOut.objects.count() == 0


def test_confirmed_post_unsubscribes_from_the_message_type(csrf_client, settings, newsletter):
    user = f.UserFactory(email="Ann@example.org")
    path = path_of(unsubscribe_url("ann@example.org", newsletter.pk), settings.SITE_URL)
    response = csrf_client.post(path, {"scope": "type"})
    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    optout = OptOut.objects.get()
    assert (optout.email, optout.message_type, optout.user) == ("ann@example.org", newsletter, user)
    # The policy now denies that type for this address.
    msg = Message(
        app_label=newsletter.app_label,
        name=newsletter.name,
        recipient=Recipient(lms_user_id=None, email_address="ann@example.org"),
    )
    assert OptOutPolicy().check(msg).deny


def test_post_can_choose_everything(csrf_client, settings, newsletter):
    path = path_of(unsubscribe_url("ann@example.org", newsletter.pk), settings.SITE_URL)
    assert csrf_client.post(path, {"scope": "all"}).status_code == 200
    assert OptOut.objects.get().message_type is None


def test_one_click_post_works_without_a_csrf_token_and_is_idempotent(
    csrf_client, settings, newsletter
):
    path = path_of(unsubscribe_url("ann@example.org", newsletter.pk), settings.SITE_URL)
    for _ in range(2):
        response = csrf_client.post(
            path,
            data="List-Unsubscribe=One-Click",
            content_type="application/x-www-form-urlencoded",
        )
        assert response.status_code == 200
    assert OptOut.objects.filter(email="ann@example.org", message_type=newsletter).count() == 1


def legacy_token(email: str, message_type_id: int | None = None) -> str:
    """A link as the signed (readable) format made them, before the opaque one."""
    payload = {"e": email.strip().lower()}
    if message_type_id is not None:
        payload["t"] = int(message_type_id)
    return django_signing.dumps(payload, salt=SALT, compress=True)


def _tampered(token: str, other: str) -> list[str]:
    flip = "B" if token[30] == "A" else "A"
    return [
        token[:30] + other[30:],  # Ann's start with Bob's end
        token[:30] + flip + token[31:],  # one character changed
        token[:-1],  # cut
        token + "A",  # lengthened
        "A" * len(token),
        "!!not-base64!!",
        "Ag" + token[2:],  # another format version
    ]


@pytest.mark.parametrize("method", ["get", "post"])
def test_tampered_links_are_refused_with_400(csrf_client, settings, newsletter, method):
    token = unsubscribe_token("ann@example.org", newsletter.pk)
    other = unsubscribe_token("bob@example.org", newsletter.pk)
    old, old_other = legacy_token("ann@example.org", 1), legacy_token("bob@example.org", 1)
    # Ann's payload with Bob's signature: the classic tampering of the signed format.
    forged_legacy = old.rsplit(":", 1)[0] + ":" + old_other.rsplit(":", 1)[1]
    for forged in [*_tampered(token, other), forged_legacy]:
        response = getattr(csrf_client, method)(f"/unsubscribe/{forged}/")
        assert response.status_code == 400, forged
        assert INVALID_LINK in response.content.decode()
    assert OptOut.objects.count() == 0


def test_tokens_are_opaque_no_address_can_be_read_from_them():
    email = "ann.lovelace@example.org"
    token = unsubscribe_token(email, 7)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert "@" not in token
    for blob in (token.encode(), raw, _inflated(raw)):
        for part in (b"ann.lovelace", b"lovelace", b"example"):
            assert part not in blob.lower()
    assert set(token) <= set(string.ascii_letters + string.digits + "-_")
    # Each link is its own: another address, type, or test flag gives an unrelated token.
    tokens = {
        token,
        unsubscribe_token("bob@example.org", 7),
        unsubscribe_token(email, 8),
        unsubscribe_token(email),
        unsubscribe_token(email, 7, test=True),
    }
    assert len(tokens) == 5
    assert len(token) < 80  # shorter than the signed format's link for the same address


def _inflated(raw: bytes) -> bytes:
    try:
        return zlib.decompress(raw)
    except zlib.error:
        return b""


def test_tokens_made_with_a_rotated_key_still_open_and_others_do_not(settings):
    settings.SECRET_KEY = "the-old-key-" + "x" * 40
    token = unsubscribe_token("ann@example.org", 3)
    settings.SECRET_KEY = "the-new-key-" + "y" * 40
    with pytest.raises(django_signing.BadSignature):
        read_unsubscribe_token(token)
    settings.SECRET_KEY_FALLBACKS = ["the-old-key-" + "x" * 40]
    assert read_unsubscribe_token(token).email == "ann@example.org"


@pytest.mark.parametrize("message_type_id", [None, 4])
def test_links_already_sent_in_the_signed_format_keep_working(
    csrf_client, settings, message_type_id
):
    newsletter = f.MessageTypeDefinitionFactory(pk=4, name="old", description="Old letter")
    token = legacy_token("Ann@Example.org", message_type_id)
    unsub = read_unsubscribe_token(token)
    assert (unsub.email, unsub.message_type_id, unsub.test) == (
        "ann@example.org",
        message_type_id,
        False,
    )
    response = csrf_client.get(f"/unsubscribe/{token}/")
    assert response.status_code == 200 and "ann@example.org" in response.content.decode()
    assert csrf_client.post(f"/unsubscribe/{token}/", {"scope": "type"}).status_code == 200
    optout = OptOut.objects.get()
    assert optout.email == "ann@example.org"
    assert optout.message_type == (newsletter if message_type_id else None)


_REAL_TIME = time.time


def _issued_days_ago(monkeypatch, days: float) -> None:
    past = _REAL_TIME() - days * 86400
    monkeypatch.setattr(signing_module, "_clock", lambda: past)
    monkeypatch.setattr(django_signing.time, "time", lambda: past)  # the signed format's clock


@pytest.mark.parametrize("legacy", [False, True], ids=["opaque", "signed"])
def test_an_expired_link_says_so_and_changes_nothing(
    csrf_client, settings, newsletter, monkeypatch, legacy
):
    settings.CAMPAIGNS_UNSUBSCRIBE_MAX_AGE_DAYS = 30
    make = legacy_token if legacy else unsubscribe_token
    with monkeypatch.context() as patched:
        _issued_days_ago(patched, 31)
        expired = make("ann@example.org", newsletter.pk)
        _issued_days_ago(patched, 29)
        recent = make("ann@example.org", newsletter.pk)
    with pytest.raises(django_signing.SignatureExpired):
        read_unsubscribe_token(expired)
    response = csrf_client.get(f"/unsubscribe/{expired}/")
    assert response.status_code == 410
    assert EXPIRED_LINK in response.content.decode()
    assert "<h1>Link expired</h1>" in response.content.decode()
    assert csrf_client.post(f"/unsubscribe/{expired}/", {"scope": "all"}).status_code == 410
    one_click = csrf_client.post(
        f"/unsubscribe/{expired}/",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert one_click.status_code == 410 and one_click.content.decode() == EXPIRED_LINK + "\n"
    assert OptOut.objects.count() == 0
    assert csrf_client.post(f"/unsubscribe/{recent}/", {"scope": "all"}).status_code == 200
    assert OptOut.objects.count() == 1


def test_links_never_expire_by_default(csrf_client, settings, newsletter, monkeypatch):
    settings.CAMPAIGNS_UNSUBSCRIBE_MAX_AGE_DAYS = None
    with monkeypatch.context() as patched:
        _issued_days_ago(patched, 3650)
        tokens = [unsubscribe_token("ann@example.org"), legacy_token("bob@example.org")]
    for token in tokens:
        assert csrf_client.post(f"/unsubscribe/{token}/").status_code == 200
    assert OptOut.objects.count() == 2


def test_a_test_send_link_says_it_was_a_test_and_changes_nothing(csrf_client, newsletter):
    token = unsubscribe_token("ann@example.org", newsletter.pk, test=True)
    assert read_unsubscribe_token(token).test is True
    path = f"/unsubscribe/{token}/"
    for response in (
        csrf_client.get(path),
        csrf_client.post(path, {"scope": "type"}),
        csrf_client.post(path, {"scope": "all"}),
    ):
        assert response.status_code == 200
        assert TEST_LINK in response.content.decode()
        assert "<form" not in response.content.decode()
    one_click = csrf_client.post(
        path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert one_click.status_code == 200 and one_click.content.decode() == TEST_LINK + "\n"
    assert OptOut.objects.count() == 0


def test_a_deleted_message_type_offers_unsubscribing_from_everything(csrf_client, settings):
    gone = f.MessageTypeDefinitionFactory()
    path = path_of(unsubscribe_url("ann@example.org", gone.pk), settings.SITE_URL)
    gone.delete()
    response = csrf_client.post(path, {"scope": "type"})
    assert response.status_code == 404
    assert 'value="all"' in response.content.decode()
    assert OptOut.objects.count() == 0
    assert csrf_client.post(path, {"scope": "all"}).status_code == 200
    assert OptOut.objects.get().message_type is None


def test_an_email_sent_through_ace_carries_the_link_and_the_headers(settings, newsletter):
    """The pieces the dispatcher puts together: the link in the context, the RFC 8058
    headers in ``options["headers"]``, delivered by ace's django_email channel."""
    settings.ACE_ENABLED_CHANNELS = ["django_email"]
    settings.ACE_CHANNEL_DEFAULT_EMAIL = "django_email"
    settings.ACE_CHANNEL_TRANSACTIONAL_EMAIL = "django_email"
    settings.SITE_URL = "https://mail.example.org"
    f.email_template_parts(
        newsletter,
        subject="News",
        body_text="Bye: {{ unsubscribe_url }}",
        body_html='<a href="{{ unsubscribe_url }}">Unsubscribe</a>',
    )
    url = unsubscribe_url("ann@example.org", newsletter.pk)
    msg_type = MessageType(app_label=newsletter.app_label, name=newsletter.name)
    message = msg_type.personalize(
        Recipient(lms_user_id=None, email_address="ann@example.org"),
        "en",
        {"unsubscribe_url": url},
    )
    message.options["headers"] = unsubscribe_headers(url)
    ace_api.send(message)
    [sent] = mail.outbox
    assert sent.extra_headers["List-Unsubscribe"] == f"<{url}>"
    assert sent.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert url in sent.body
    raw = sent.message().as_string()
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
