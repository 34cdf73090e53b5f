"""Tests for the Sailthru email channel, over real HTTP against a loopback fake Sailthru API."""

from __future__ import annotations

import datetime
import json
import logging
import socket
import time
from unittest import mock

import pytest
import requests
from fake_sailthru import TEST_API_KEY as SAILTHRU_API_KEY
from fake_sailthru import TEST_SECRET as SAILTHRU_SECRET
from fake_sailthru import TEST_TEMPLATE as SAILTHRU_TEMPLATE
from fake_sailthru import expected_signature
from sailthru.sailthru_error import SailthruClientError

from ace.channel import ChannelType
from ace.channel import sailthru as sailthru_module
from ace.channel.sailthru import (
    DEFAULT_RETRY_DELAY,
    LIBRARY_MISSING_REASON,
    REQUIRED_SETTINGS,
    RecoverableErrorCodes,
    ResponseHeaders,
    SailthruAPIError,
    SailthruEmailChannel,
)
from ace.errors import (
    DeliveryOutcomeUnknownError,
    FatalChannelDeliveryError,
    InvalidMessageError,
    RecipientAddressMissingError,
    RecoverableChannelDeliveryError,
)
from ace.message import Message
from ace.recipient import Recipient
from ace.renderers import RenderedEmail

RENDERED = RenderedEmail(
    from_name="Demo Course Team",
    subject="Welcome, Ada ✓",
    body_html="<p>Hello Ada, <a href='{view_url}'>view online</a></p>",
    head_html="<style>p { color: #333 }</style>",
    body="Hello Ada",
)


def make_message(email: str | None = "ada@example.com") -> Message:
    return Message(
        app_label="campaigns",
        name="welcome",
        recipient=Recipient(lms_user_id=7, email_address=email),
        context={"first_name": "Ada"},
    )


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def test_spec_enums_and_channel_type():
    assert RecoverableErrorCodes.INTERNAL_ERROR == 9
    assert RecoverableErrorCodes.RATE_LIMIT == 43
    assert ResponseHeaders.RATE_LIMIT_REMAINING.value == "X-Rate-Limit-Remaining"
    assert ResponseHeaders.RATE_LIMIT_RESET.value == "X-Rate-Limit-Reset"
    assert SailthruEmailChannel.channel_type is ChannelType.EMAIL


def test_deliver_sends_rendered_parts_to_the_configured_template(sailthru_settings, fake_sailthru):
    SailthruEmailChannel().deliver(make_message(), RENDERED)

    assert len(fake_sailthru.sends) == 1
    sent = fake_sailthru.sends[0]
    assert sent["template"] == SAILTHRU_TEMPLATE
    assert sent["email"] == "ada@example.com"
    assert sent["vars"] == {
        "ace_template_from_name": "Demo Course Team",
        "ace_template_subject": "Welcome, Ada ✓",
        "ace_template_head_html": "<style>p { color: #333 }</style>",
        "ace_template_body_html": "<p>Hello Ada, <a href='{view_url}'>view online</a></p>",
        "ace_template_body": "Hello Ada",
    }
    # The fake accepted the signature and saw our key: the request was authenticated.
    [request] = fake_sailthru.requests
    assert (request.status, request.error_code) == (200, None)
    assert request.fields["api_key"] == SAILTHRU_API_KEY
    assert request.fields["sig"] == expected_signature(request.fields, SAILTHRU_SECRET)


def test_parts_that_were_not_rendered_are_not_sent(sailthru_settings, fake_sailthru):
    rendered = RenderedEmail(
        from_name=None, subject="Hi", body_html="<p>Hi</p>", head_html=None, body="Hi"
    )
    SailthruEmailChannel().deliver(make_message(), rendered)

    assert set(fake_sailthru.sends[0]["vars"]) == {
        "ace_template_subject",
        "ace_template_body_html",
        "ace_template_body",
    }


@pytest.mark.parametrize("code", list(RecoverableErrorCodes))
def test_recoverable_error_codes_retry_at_the_rate_limit_reset(
    sailthru_settings, fake_sailthru, code
):
    reset = int(time.time()) + 90
    fake_sailthru.queue_error(int(code), "try later", headers={"X-Rate-Limit-Reset": str(reset)})

    with pytest.raises(RecoverableChannelDeliveryError) as excinfo:
        SailthruEmailChannel().deliver(make_message(), RENDERED)

    assert excinfo.value.next_attempt_time == datetime.datetime.fromtimestamp(reset, datetime.UTC)
    cause = excinfo.value.__cause__
    assert isinstance(cause, SailthruAPIError)
    assert cause.code == code
    assert "try later" in str(excinfo.value)
    assert fake_sailthru.sends == []


@pytest.mark.parametrize("reset_header", ["1000000000", "0", "9" * 30])
def test_unusable_reset_header_gives_a_near_future_retry(
    sailthru_settings, fake_sailthru, reset_header
):
    """A reset in the past (clock skew, a slow reply) or absurdly far must not crash and must
    not produce a past retry time."""
    fake_sailthru.queue_error(
        RecoverableErrorCodes.RATE_LIMIT, "slow down", headers={"X-Rate-Limit-Reset": reset_header}
    )
    before = utcnow()

    with pytest.raises(RecoverableChannelDeliveryError) as excinfo:
        SailthruEmailChannel().deliver(make_message(), RENDERED)

    assert before + DEFAULT_RETRY_DELAY <= excinfo.value.next_attempt_time
    assert excinfo.value.next_attempt_time <= utcnow() + DEFAULT_RETRY_DELAY


@pytest.mark.parametrize("reset_header", ["", "soon"])
def test_garbled_reset_header_is_a_fatal_channel_error(
    sailthru_settings, fake_sailthru, reset_header
):
    """The client library itself chokes on a non-numeric header (ValueError); the channel
    must still raise a channel error, and a fatal one: the reply is lost, so Sailthru may have
    accepted the send."""
    fake_sailthru.queue_reply(200, b'{"send_id": "x"}', {"X-Rate-Limit-Reset": reset_header})

    with pytest.raises(FatalChannelDeliveryError, match="Unreadable reply"):
        SailthruEmailChannel().deliver(make_message(), RENDERED)


def test_missing_reset_header_falls_back_to_the_default_delay(sailthru_settings, fake_sailthru):
    fake_sailthru.send_rate_limit_headers = False
    fake_sailthru.queue_error(RecoverableErrorCodes.INTERNAL_ERROR, "oops")
    before = utcnow()

    with pytest.raises(RecoverableChannelDeliveryError) as excinfo:
        SailthruEmailChannel().deliver(make_message(), RENDERED)

    assert before + DEFAULT_RETRY_DELAY <= excinfo.value.next_attempt_time
    assert excinfo.value.next_attempt_time <= utcnow() + DEFAULT_RETRY_DELAY


def test_other_error_codes_are_fatal(sailthru_settings, fake_sailthru):
    sailthru_settings.ACE_CHANNEL_SAILTHRU_TEMPLATE_NAME = "No such template"

    with pytest.raises(FatalChannelDeliveryError) as excinfo:
        SailthruEmailChannel().deliver(make_message(), RENDERED)

    assert isinstance(excinfo.value.__cause__, SailthruAPIError)
    assert excinfo.value.__cause__.code == 14
    assert "Unknown template" in str(excinfo.value)
    assert fake_sailthru.sends == []


def test_invalid_email_reported_by_sailthru_is_fatal(sailthru_settings, fake_sailthru):
    with pytest.raises(FatalChannelDeliveryError, match="error 11"):
        SailthruEmailChannel().deliver(make_message("not-an-address"), RENDERED)
    assert fake_sailthru.sends == []


def test_wrong_secret_is_refused_by_the_signature_check(sailthru_settings, fake_sailthru):
    sailthru_settings.ACE_CHANNEL_SAILTHRU_API_SECRET = "not the shared secret"

    with pytest.raises(FatalChannelDeliveryError) as excinfo:
        SailthruEmailChannel().deliver(make_message(), RENDERED)

    assert excinfo.value.__cause__.code == 5  # Sailthru: authentication failed
    [request] = fake_sailthru.requests
    assert (request.status, request.error_code) == (401, 5)
    assert fake_sailthru.sends == []


def test_wrong_api_key_is_refused(sailthru_settings, fake_sailthru):
    sailthru_settings.ACE_CHANNEL_SAILTHRU_API_KEY = "someone-elses-key"

    with pytest.raises(FatalChannelDeliveryError, match="error 3"):
        SailthruEmailChannel().deliver(make_message(), RENDERED)
    assert fake_sailthru.sends == []


def test_fake_rejects_a_tampered_request(fake_sailthru):
    """The fake's check is independent of the client: a correctly signed request passes, the
    same request with one value changed after signing does not."""
    fields = {"api_key": SAILTHRU_API_KEY, "format": "json"}
    fields["json"] = json.dumps(
        {"template": SAILTHRU_TEMPLATE, "email": "ada@example.com", "vars": {}}
    )
    fields["sig"] = expected_signature(fields, SAILTHRU_SECRET)
    assert requests.post(f"{fake_sailthru.url}/send", data=fields, timeout=5).status_code == 200

    tampered = {**fields, "json": fields["json"].replace("ada@", "eve@")}
    reply = requests.post(f"{fake_sailthru.url}/send", data=tampered, timeout=5)
    assert reply.status_code == 401
    assert reply.json()["error"] == 5
    assert [s["email"] for s in fake_sailthru.sends] == ["ada@example.com"]


def test_connection_refused_is_recoverable(sailthru_settings, fake_sailthru):
    with socket.socket() as sock:  # a loopback port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sailthru_settings.ACE_CHANNEL_SAILTHRU_API_URL = f"http://127.0.0.1:{port}"
    before = utcnow()

    with pytest.raises(RecoverableChannelDeliveryError) as excinfo:
        SailthruEmailChannel().deliver(make_message(), RENDERED)

    assert isinstance(excinfo.value.__cause__, SailthruClientError)
    assert excinfo.value.next_attempt_time >= before + DEFAULT_RETRY_DELAY


def test_a_read_timeout_is_an_unknown_outcome_not_a_retry(sailthru_settings, fake_sailthru):
    sailthru_settings.ACE_CHANNEL_SAILTHRU_TIMEOUT = 0.2
    fake_sailthru.delay = 1.0

    started = time.monotonic()
    with pytest.raises(DeliveryOutcomeUnknownError, match="No answer from Sailthru") as excinfo:
        SailthruEmailChannel().deliver(make_message(), RENDERED)
    assert time.monotonic() - started < 0.9  # gave up at the timeout, did not wait the reply
    assert not isinstance(excinfo.value, RecoverableChannelDeliveryError)
    # The request had gone out: the slow fake accepts it after the client gave up, so a retry
    # would have sent the email twice.
    deadline = time.monotonic() + 5
    while not fake_sailthru.sends and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [s["email"] for s in fake_sailthru.sends] == ["ada@example.com"]


def test_after_an_unanswered_request_the_batch_holds_the_rest_back(
    sailthru_settings, fake_sailthru
):
    sailthru_settings.ACE_CHANNEL_SAILTHRU_TIMEOUT = 0.2
    fake_sailthru.delay = 1.0
    with SailthruEmailChannel().open_session() as session:
        started = time.monotonic()
        errors = session.deliver_many([(make_message(), RENDERED)] * 3)
    assert time.monotonic() - started < 0.9  # one timeout, not three
    assert isinstance(errors[0], DeliveryOutcomeUnknownError)
    assert all(type(e) is RecoverableChannelDeliveryError for e in errors[1:])
    assert all("left a request unanswered earlier in this batch" in e.message for e in errors[1:])


def test_non_json_503_from_a_proxy_is_recoverable(sailthru_settings, fake_sailthru):
    fake_sailthru.queue_reply(503, b"<html>Service Unavailable</html>")
    with pytest.raises(RecoverableChannelDeliveryError):
        SailthruEmailChannel().deliver(make_message(), RENDERED)


def test_non_json_success_is_fatal_not_retried(sailthru_settings, fake_sailthru):
    """Sailthru may have sent it; retrying could send twice (the channel is at-most-once)."""
    fake_sailthru.queue_reply(200, b"OK")
    with pytest.raises(FatalChannelDeliveryError):
        SailthruEmailChannel().deliver(make_message(), RENDERED)


@pytest.mark.parametrize(
    "status, body",
    [(400, b"{}"), (400, b'{"error": "bad", "errormsg": "?"}'), (200, b'"OK"'), (500, b"[]")],
)
def test_odd_json_replies_are_channel_errors(sailthru_settings, fake_sailthru, status, body):
    """Replies the client library cannot interpret must still end as a channel error."""
    fake_sailthru.queue_reply(status, body)
    if status == 200:  # the library calls any JSON reply without error keys a success
        SailthruEmailChannel().deliver(make_message(), RENDERED)
        return
    with pytest.raises(FatalChannelDeliveryError, match="Sailthru error 0"):
        SailthruEmailChannel().deliver(make_message(), RENDERED)


def test_debug_mode_logs_and_sends_nothing(sailthru_settings, fake_sailthru, caplog):
    sailthru_settings.ACE_CHANNEL_SAILTHRU_DEBUG = True

    with caplog.at_level(logging.INFO, logger="ace.channel.sailthru"):
        SailthruEmailChannel().deliver(make_message(), RENDERED)

    assert fake_sailthru.requests == []
    [record] = [r for r in caplog.records if r.name == "ace.channel.sailthru"]
    text = record.getMessage()
    assert "ACE_CHANNEL_SAILTHRU_DEBUG" in text
    assert "nothing was sent" in text
    assert "ada@example.com" in text
    assert SAILTHRU_TEMPLATE in text


@pytest.mark.parametrize("email", [None, ""])
def test_recipient_without_email_is_refused_before_any_request(
    sailthru_settings, fake_sailthru, email
):
    # The reference raises InvalidMessageError; this library's NO_ADDRESS outcome needs
    # RecipientAddressMissingError: the error is both.
    with pytest.raises(InvalidMessageError, match="No email address") as excinfo:
        SailthruEmailChannel().deliver(make_message(email=email), RENDERED)
    assert isinstance(excinfo.value, RecipientAddressMissingError)
    assert "lms_user_id=7" in str(excinfo.value)
    assert fake_sailthru.requests == []


def test_enabled_when_all_settings_are_set(sailthru_settings):
    assert SailthruEmailChannel.enabled() is True
    assert SailthruEmailChannel.disabled_reason() is None


@pytest.mark.parametrize("missing", REQUIRED_SETTINGS)
def test_disabled_when_a_setting_is_empty(sailthru_settings, missing):
    setattr(sailthru_settings, missing, "")

    assert SailthruEmailChannel.enabled() is False
    assert missing in SailthruEmailChannel.disabled_reason()


@pytest.mark.parametrize("missing", REQUIRED_SETTINGS)
def test_deliver_does_not_check_the_settings_again(sailthru_settings, missing):
    """As in the reference, enabled() is the check (channels() leaves the channel out);
    deliver itself builds the client and calls it."""
    setattr(sailthru_settings, missing, "")
    with mock.patch("ace.channel.sailthru.SailthruClient.send") as send:
        SailthruEmailChannel().deliver(make_message(), RENDERED)
    send.assert_called_once()


def test_deliver_calls_the_client_with_the_reference_arguments(settings):
    """The reference's own test set-up: only the four flat settings, SailthruClient.send
    patched, no from_address: empty send options."""
    settings.ACE_CHANNEL_SAILTHRU_DEBUG = False
    settings.ACE_CHANNEL_SAILTHRU_TEMPLATE_NAME = "template"
    settings.ACE_CHANNEL_SAILTHRU_API_KEY = "key"
    settings.ACE_CHANNEL_SAILTHRU_API_SECRET = "secret"
    rendered = RenderedEmail(
        from_name="\nTeam\n", subject=" Hi\n", body_html="<p>Hi</p>", head_html="", body="Hi"
    )
    with mock.patch("ace.channel.sailthru.SailthruClient.send") as send:
        SailthruEmailChannel().deliver(make_message(), rendered)
    send.assert_called_once_with(
        template="template",
        email="ada@example.com",
        _vars={
            "ace_template_from_name": "Team",
            "ace_template_subject": "Hi",
            "ace_template_body_html": "<p>Hi</p>",
            "ace_template_head_html": "",
            "ace_template_body": "Hi",
        },
        options={},
    )


@pytest.mark.parametrize(
    "options, behalf",
    [
        ({"from_address": "custom@example.com"}, "custom@example.com"),
        ({"reply_to": "replies@example.com"}, "replies@example.com"),
        ({"reply_to": ["first@example.com", "second@example.com"]}, "first@example.com"),
        ({"from_address": "custom@example.com", "reply_to": "r@example.com"}, "custom@example.com"),
    ],
)
def test_behalf_email_from_the_from_address_or_reply_to(sailthru_settings, options, behalf):
    message = Message(
        app_label="campaigns",
        name="welcome",
        recipient=Recipient(lms_user_id=7, email_address="ada@example.com"),
        options=options,
    )
    with mock.patch("ace.channel.sailthru.SailthruClient.send") as send:
        SailthruEmailChannel().deliver(message, RENDERED)
    assert send.call_args.kwargs["options"] == {"behalf_email": behalf}


def test_behalf_email_reaches_sailthru(sailthru_settings, fake_sailthru):
    message = Message(
        app_label="campaigns",
        name="welcome",
        recipient=Recipient(lms_user_id=7, email_address="ada@example.com"),
        options={"from_address": "custom@example.com"},
    )
    SailthruEmailChannel().deliver(message, RENDERED)
    [request] = fake_sailthru.requests
    assert json.loads(request.fields["json"])["options"] == {"behalf_email": "custom@example.com"}


def test_a_newline_in_the_behalf_address_is_refused(sailthru_settings, fake_sailthru):
    message = Message(
        app_label="campaigns",
        name="welcome",
        recipient=Recipient(lms_user_id=7, email_address="ada@example.com"),
        options={"from_address": "a@example.com\nBcc: eve@example.com"},
    )
    with pytest.raises(FatalChannelDeliveryError, match="Newlines"):
        SailthruEmailChannel().deliver(message, RENDERED)
    assert fake_sailthru.requests == []


def test_disabled_when_the_client_library_is_missing(sailthru_settings, monkeypatch):
    monkeypatch.setattr(sailthru_module, "SailthruClient", None)

    assert SailthruEmailChannel.enabled() is False
    assert SailthruEmailChannel.disabled_reason() == LIBRARY_MISSING_REASON


def test_links_and_trackers_are_sailthru_placeholders():
    channel = SailthruEmailChannel()
    assert channel.action_links == [
        ("{view_url}", "View on Web"),
        ("{optout_confirm_url}", "Unsubscribe from this list"),
    ]
    assert channel.tracker_image_sources == ["{beacon_src}"]
