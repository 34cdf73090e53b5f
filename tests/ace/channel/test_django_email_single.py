"""The single-message path of ace.channel.django_email (``ace.send`` once per message): one kept
connection per thread, checked when idle, and the reference's behaviour where callers rely on it."""

from __future__ import annotations

import os
import smtplib
import socket
import time
import types

import pytest
from ace_stubs import make_message
from django.core.mail import EmailMultiAlternatives

from ace import ace
from ace.channel import django_email_sessions
from ace.channel.django_email import DjangoEmailChannel
from ace.errors import FatalChannelDeliveryError
from ace.presentation import render
from ace.recipient import Recipient

pytestmark = pytest.mark.usefixtures("no_policies")


def send_many(count: int) -> None:
    for index in range(count):
        message = make_message(
            recipient=Recipient(lms_user_id=index, email_address=f"u{index}@example.org")
        )
        (outcome,) = ace.send(message)
        assert outcome.ok, outcome


def test_ace_send_reuses_one_connection_for_many_messages(smtp_backend):
    send_many(20)
    assert len(smtp_backend.messages) == 20
    assert smtp_backend.connections == 1


def test_a_zero_keepalive_opens_a_connection_per_message_as_the_reference(smtp_backend, settings):
    settings.ACE_CHANNEL_DJANGO_EMAIL_KEEPALIVE_SECONDS = 0
    send_many(3)
    assert smtp_backend.connections == 3


def test_a_connection_the_server_closed_while_idle_is_replaced(smtp_backend, monkeypatch):
    send_many(1)
    kept = django_email_sessions._kept.session
    kept._connection.connection.sock.shutdown(socket.SHUT_RDWR)  # a connection gone while idle
    monkeypatch.setattr(django_email_sessions, "KEPT_CHECK_AFTER", 0.0)
    send_many(2)
    assert len(smtp_backend.messages) == 3
    assert smtp_backend.connections == 2


def test_an_idle_or_old_connection_is_closed_and_a_new_one_opened(smtp_backend, monkeypatch):
    send_many(1)
    monkeypatch.setattr(django_email_sessions, "KEPT_MAX_AGE", 0.0)
    time.sleep(0.01)
    send_many(1)
    assert smtp_backend.connections == 2


def test_a_forked_child_never_writes_on_its_parents_connection(smtp_backend, monkeypatch):
    send_many(1)
    parent = django_email_sessions._kept.session
    monkeypatch.setattr(os, "getpid", lambda: django_email_sessions._kept.pid + 1)
    send_many(1)
    assert django_email_sessions._kept.session is not parent
    assert smtp_backend.connections == 2


def test_changed_email_settings_get_a_new_connection(smtp_backend, settings):
    send_many(1)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    send_many(1)
    assert len(smtp_backend.messages) == 1  # the second went to the locmem outbox


def test_an_smtp_exception_from_email_send_is_fatal(smtp_backend, monkeypatch):
    """The reference's tests patch EmailMultiAlternatives.send; the error it raises is fatal."""

    def refuse(self, fail_silently=False):
        raise smtplib.SMTPException("boom")

    monkeypatch.setattr(EmailMultiAlternatives, "send", refuse)
    message = make_message()
    with pytest.raises(FatalChannelDeliveryError, match="boom"):
        DjangoEmailChannel().deliver(message, render(DjangoEmailChannel(), message))
    assert smtp_backend.messages == []


def test_a_rendered_message_with_only_subject_and_bodies_is_sent(smtp_backend, settings):
    settings.DEFAULT_FROM_EMAIL = "Fallback <fallback@example.org>"
    rendered = types.SimpleNamespace(
        subject="Hi", body="Plain", body_html="<p>Html</p>", head_html=7
    )
    DjangoEmailChannel().deliver(make_message(), rendered)
    (received,) = smtp_backend.messages
    assert received.message["Subject"] == "Hi"
    assert received.mail_from == "fallback@example.org"
    assert "Plain" in received.part("plain") and "<p>Html</p>" in received.part("html")
