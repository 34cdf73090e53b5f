"""Signed one-click unsubscribe links (RFC 8058): signing, headers and the view."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core import signing as django_signing
from django.test import Client

from ace import ace as ace_api
from ace.message import Message, MessageType
from ace.recipient import Recipient
from campaigns.models import OptOut
from campaigns.policies import OptOutPolicy
from campaigns.signing import (
    read_unsubscribe_token,
    unsubscribe_headers,
    unsubscribe_headers_for,
    unsubscribe_token,
    unsubscribe_url,
)
from campaigns.views import INVALID_LINK
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


@pytest.mark.parametrize("method", ["get", "post"])
def test_tampered_links_are_refused_with_400(csrf_client, settings, newsletter, method):
    token = unsubscribe_token("ann@example.org", newsletter.pk)
    other = unsubscribe_token("bob@example.org", newsletter.pk)
    # Ann's payload with Bob's signature: the classic tampering.
    forged = token.rsplit(":", 1)[0] + ":" + other.rsplit(":", 1)[1]
    response = getattr(csrf_client, method)(f"/unsubscribe/{forged}/")
    assert response.status_code == 400
    assert INVALID_LINK in response.content.decode()
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
