"""Tests for ace.batch.BatchSender: one connection per channel, no sleeping, outcomes."""

from __future__ import annotations

import time
from datetime import timedelta

import attrs
import pytest
from ace_stubs import DeferPolicy, make_message, recoverable
from django.utils import translation

from ace.batch import SENDER_CLOSED, TAGS_MISMATCH, BatchSender, PreparedDelivery
from ace.channel import ChannelType
from ace.channel.django_email import DjangoEmailChannel
from ace.errors import FatalChannelDeliveryError
from ace.outcome import OutcomeStatus, expiry_reason
from ace.policy import Policy, PolicyResult
from ace.recipient import Recipient
from ace.renderers import AbstractRenderer, RenderedEmail
from ace.signals import ACE_MESSAGE_FAILED, ACE_MESSAGE_SENT
from ace.test_utils import StubPolicy, patch_policies
from ace.utils.date import get_current_time


def people(count, **overrides):
    return [
        make_message(
            recipient=Recipient(lms_user_id=i, email_address=f"user{i}@example.org"),
            context={"name": f"User {i}", "topic": "batch", "items": ["a", "b"]},
            **overrides,
        )
        for i in range(count)
    ]


@pytest.fixture
def received_signals():
    sent, failed = [], []

    def on_sent(sender, message, **kwargs):
        sent.append(message)

    def on_failed(sender, message, **kwargs):
        failed.append(message)

    ACE_MESSAGE_SENT.connect(on_sent)
    ACE_MESSAGE_FAILED.connect(on_failed)
    yield sent, failed
    ACE_MESSAGE_SENT.disconnect(on_sent)
    ACE_MESSAGE_FAILED.disconnect(on_failed)


@pytest.fixture
def plain_smtp_session(settings):
    """Use DjangoEmailSession (one backend connection), not an optional faster transport."""
    settings.ACE_CHANNEL_DJANGO_EMAIL_FAST_SMTP = False


@pytest.mark.usefixtures("no_policies")
@pytest.mark.parametrize("plain_session", [True, False], ids=["plain-session", "default-session"])
def test_batch_over_smtp_arrives_complete(smtp_backend, received_signals, settings, plain_session):
    if plain_session:
        settings.ACE_CHANNEL_DJANGO_EMAIL_FAST_SMTP = False
    messages = people(20, language="fr")
    with BatchSender() as sender:
        outcomes = sender.send(messages)

    assert [o.status for o in outcomes] == [OutcomeStatus.SENT] * 20
    assert [o.message for o in outcomes] == messages
    assert {o.channel_name for o in outcomes} == {"django_email"}
    if plain_session:
        assert smtp_backend.connections == 1  # one SMTP connection for the whole batch
    else:
        assert smtp_backend.connections < 20  # connections are reused, whatever the transport
    received = {m.rcpt_tos[0]: m for m in smtp_backend.messages}
    assert len(received) == 20
    for i in range(20):
        message = received[f"user{i}@example.org"]
        email = message.message
        assert email["From"] == "Test Platform <noreply@example.org>"
        assert email["To"] == f"user{i}@example.org"
        assert email["Subject"] == f"Hello User {i}, your batch update"
        assert email["Content-Language"] == "fr"
        assert f"Hi User {i}! lang=fr yes=oui" in message.part("plain")
        assert f"<p>Hi <b>User {i}</b> lang=fr</p>" in message.part("html")
        assert "<style>p { color: #123456; }</style>" in message.part("html")
    sent, failed = received_signals
    assert len(sent) == 20 and failed == []


@pytest.mark.usefixtures("no_policies", "plain_smtp_session")
def test_sessions_stay_open_across_calls_and_close_on_exit(smtp_backend):
    sender = BatchSender()
    with sender:
        sender.send(people(3))
        prepared, decided = sender.prepare(people(2))
        assert decided == []
        sender.deliver(prepared)
        assert smtp_backend.connections == 1
    assert len(smtp_backend.messages) == 5
    with pytest.raises(RuntimeError, match=SENDER_CLOSED):
        sender.send(people(1))


def test_templates_are_looked_up_once_per_language(stub_email, monkeypatch):
    lookups = []
    original = AbstractRenderer.get_template_for_message

    def counting(self, channel, message, filename):
        lookups.append((message.name, filename, translation.get_language()))
        return original(self, channel, message, filename)

    monkeypatch.setattr(AbstractRenderer, "get_template_for_message", counting)
    messages = people(6, language="fr") + people(4, language="de") + people(5, language="fr")
    with BatchSender() as sender:
        outcomes = sender.send(messages)
        sender.send(people(3, language="fr"))

    assert [o.status for o in outcomes] == [OutcomeStatus.SENT] * 15
    # Five files per language, looked up once for the whole life of the sender.
    assert len(lookups) == 10
    assert {language for _name, _file, language in lookups} == {"fr", "de"}


def test_translation_is_activated_once_per_language_group(stub_email, monkeypatch):
    activations = []
    original = translation.override

    def counting(language, *args, **kwargs):
        activations.append(language)
        return original(language, *args, **kwargs)

    monkeypatch.setattr("ace.batch.translation.override", counting)
    messages = [
        m
        for pair in zip(people(5, language="fr"), people(5, language="de"), strict=True)
        for m in pair
    ]
    with BatchSender() as sender:
        prepared, _decided = sender.prepare(messages)

    assert sorted(activations) == ["de", "fr"]
    # Each message was still rendered in its own language, and order is preserved.
    assert [p.message for p in prepared] == messages
    for item in prepared:
        assert f"lang={item.message.language}" in item.rendered.body


def test_prepare_returns_ready_deliveries(stub_email):
    (message,) = people(1)
    with BatchSender() as sender:
        prepared, decided = sender.prepare([message])
    assert decided == []
    (item,) = prepared
    assert isinstance(item, PreparedDelivery)
    assert item.message is message
    assert item.channel is stub_email
    assert item.channel_name == "stub_email"
    assert item.channel_type is ChannelType.EMAIL
    assert isinstance(item.rendered, RenderedEmail)
    assert stub_email.delivered == []  # nothing left during prepare


def test_policy_denial_expiry_and_missing_template_are_decided_up_front(stub_email, request):
    patch_policies(request, [DenyFor("denied")])
    denied = make_message(context={"name": "x", "items": []}, options={"deny": True})
    expired = make_message(expiration_time=get_current_time() - timedelta(seconds=1))
    missing = make_message(name="nosuchmessage")
    missing_again = make_message(name="nosuchmessage")
    fine = make_message()
    with BatchSender() as sender:
        outcomes = sender.send([denied, expired, missing, fine, missing_again])

    by_message = {id(o.message): o for o in outcomes}
    assert by_message[id(denied)].status is OutcomeStatus.DENIED
    assert by_message[id(denied)].reason == "DenyFor: denied"
    assert by_message[id(expired)].status is OutcomeStatus.EXPIRED
    assert by_message[id(expired)].reason == expiry_reason(expired_at=expired.expiration_time)
    assert by_message[id(missing)].status is OutcomeStatus.FAILED
    assert "testapp/edx_ace/nosuchmessage/email/" in by_message[id(missing)].reason
    assert by_message[id(missing_again)].status is OutcomeStatus.FAILED
    assert by_message[id(missing_again)].exception_type == "TemplateNotFoundError"
    assert by_message[id(fine)].status is OutcomeStatus.SENT
    assert [m for m, _r in stub_email.delivered] == [fine]
    assert [o.message for o in outcomes] == [denied, expired, missing, fine, missing_again]


class DenyFor(StubPolicy):
    def __init__(self, reason):
        super().__init__([ChannelType.EMAIL])
        self.reason = reason

    def check(self, message):
        from ace.policy import PolicyResult

        if message.options.get("deny"):
            return PolicyResult(deny={ChannelType.EMAIL}, reason=self.reason)
        return PolicyResult()


def test_a_rendering_error_fails_only_that_message(stub_email):
    class Boom:
        def __str__(self):
            raise ValueError("cannot render me")

    bad = make_message(context={"name": Boom(), "items": []})
    good = make_message()
    with BatchSender() as sender:
        outcomes = sender.send([bad, good])
    assert [o.status for o in outcomes] == [OutcomeStatus.FAILED, OutcomeStatus.SENT]
    assert outcomes[0].exception_type == "ValueError"
    assert "cannot render me" in outcomes[0].reason


@pytest.mark.usefixtures("no_policies")
def test_recoverable_errors_come_back_as_retry_without_sleeping(smtp_backend, no_sleep, settings):
    settings.ACE_CHANNEL_DJANGO_EMAIL_RETRY_DELAY = 600
    smtp_backend.reply("user1@example.org", "451 4.7.1 Greylisted")
    smtp_backend.reply("user2@example.org", "550 5.1.1 No such user")
    messages = people(4)
    started = time.monotonic()
    with BatchSender() as sender:
        outcomes = sender.send(messages)
    assert time.monotonic() - started < 5
    assert no_sleep == []

    assert [o.status for o in outcomes] == [
        OutcomeStatus.SENT,
        OutcomeStatus.RETRY,
        OutcomeStatus.FAILED,
        OutcomeStatus.SENT,
    ]
    retry = outcomes[1]
    assert retry.next_attempt_time > get_current_time() + timedelta(seconds=590)
    assert "451 4.7.1 Greylisted" in retry.reason
    assert retry.exception_type == "SMTPRecipientsRefused"
    failed = outcomes[2]
    assert "550 5.1.1 No such user" in failed.reason
    assert failed.exception_type == "SMTPRecipientsRefused"
    assert failed.next_attempt_time is None


def test_retry_after_the_expiration_is_reported_expired(stub_email):
    error = recoverable(3600)
    stub_email.errors = [error]
    message = make_message(expiration_time=get_current_time() + timedelta(seconds=60))
    with BatchSender() as sender:
        (outcome,) = sender.send([message])
    assert outcome.status is OutcomeStatus.EXPIRED
    assert "try later" in outcome.reason
    assert outcome.reason == expiry_reason("try later", at=error.next_attempt_time)


def test_a_policy_deferral_is_decided_up_front_as_a_retry_at_its_time(
    stub_channels, request, received_signals
):
    until = get_current_time() + timedelta(hours=9)

    class QuietForSome(DeferPolicy):
        def check(self, message):
            if message.options.get("quiet"):
                return super().check(message)
            return PolicyResult()

    patch_policies(request, [QuietForSome(until, [ChannelType.EMAIL])])
    quiet = make_message(options={"quiet": True})
    awake = make_message()
    expiring = make_message(
        options={"quiet": True}, expiration_time=get_current_time() + timedelta(hours=1)
    )
    with BatchSender(limit_to_channels=[ChannelType.EMAIL]) as sender:
        prepared, decided = sender.prepare([quiet, awake, expiring])
        assert [item.message for item in prepared] == [awake]
        deferred, expired = decided
        assert (deferred.message, deferred.status) == (quiet, OutcomeStatus.RETRY)
        assert deferred.deferred and deferred.next_attempt_time == until
        assert deferred.reason == "QuietForSome: quiet hours until 07:00 Europe/Paris"
        assert (expired.message, expired.status) == (expiring, OutcomeStatus.EXPIRED)
        outcomes = sender.send([quiet, awake])
    assert [o.status for o in outcomes] == [OutcomeStatus.RETRY, OutcomeStatus.SENT]
    assert [m for m, _r in stub_channels["stub_email"].delivered] == [awake]
    _sent, failed = received_signals
    assert [payload["status"] for payload in failed] == ["expired"]  # not the postponed ones


def test_no_address_outcome(smtp_backend, no_policies):
    message = make_message(recipient=Recipient(lms_user_id=3))
    with BatchSender() as sender:
        (outcome,) = sender.send([message])
    assert outcome.status is OutcomeStatus.NO_ADDRESS
    assert smtp_backend.messages == []


def test_failure_signals_carry_the_outcome(stub_email, received_signals):
    stub_email.errors = [FatalChannelDeliveryError("nope")]
    with BatchSender() as sender:
        sender.send(people(2))
    sent, failed = received_signals
    assert len(sent) == 1
    (payload,) = failed
    assert payload["status"] == "failed"
    assert payload["reason"] == "nope"
    assert payload["channel_name"] == "stub_email"
    assert payload["exception_type"] == "FatalChannelDeliveryError"


def test_limit_to_channels(stub_channels):
    message = make_message()
    with BatchSender(limit_to_channels=[ChannelType.PUSH]) as sender:
        outcomes = sender.send([message])
    assert [o.channel_type for o in outcomes] == [ChannelType.PUSH], outcomes
    assert stub_channels["stub_email"].delivered == []
    assert len(stub_channels["stub_push"].delivered) == 1, outcomes


def test_one_session_per_channel_closed_on_exit(stub_channels, settings):
    transactional = make_message(options={"transactional": True})
    with BatchSender() as sender:
        sender.send([make_message(), transactional, make_message()])
        sender.send([make_message()])
        sessions = {name: chan.sessions for name, chan in stub_channels.items()}
        assert {name: len(s) for name, s in sessions.items()} == {
            "stub_email": 1,
            "stub_transactional": 1,
            "stub_push": 1,
        }
        assert sessions["stub_email"][0].batches == [2, 1]
        assert not sessions["stub_email"][0].closed
    assert all(s[0].closed for s in sessions.values())


def test_empty_batch(stub_email):
    with BatchSender() as sender:
        assert sender.send([]) == []
        assert sender.deliver([]) == []


def test_real_django_email_channel_is_used_from_settings(settings, no_policies):
    settings.ACE_ENABLED_CHANNELS = ["django_email"]
    with BatchSender() as sender:
        prepared, _ = sender.prepare(people(1))
    assert isinstance(prepared[0].channel, DjangoEmailChannel)


# Tags ----------------------------------------------------------------------------------------


class EmailQuietPushDenied(Policy):
    """Per message, by option: postpone email ("quiet"), deny push ("no_push")."""

    def __init__(self, until):
        self.until = until

    def check(self, message):
        if message.options.get("quiet"):
            return PolicyResult(deny={ChannelType.EMAIL}, reason="quiet", defer_until=self.until)
        if message.options.get("no_push"):
            return PolicyResult(deny={ChannelType.PUSH}, reason="no push")
        return PolicyResult()


def test_prepared_items_carry_their_messages_tag_on_every_channel(stub_channels):
    first, second = make_message(), make_message()
    with BatchSender() as sender:
        prepared, decided = sender.prepare([first, second], tags=["row-1", ("row", 2)])
    assert decided == []
    assert [(p.message, p.channel_type, p.tag) for p in prepared] == [
        (first, ChannelType.EMAIL, "row-1"),
        (first, ChannelType.PUSH, "row-1"),
        (second, ChannelType.EMAIL, ("row", 2)),
        (second, ChannelType.PUSH, ("row", 2)),
    ]


def test_outcomes_decided_in_prepare_carry_the_tag(stub_channels, request):
    until = get_current_time() + timedelta(hours=9)
    patch_policies(request, [EmailQuietPushDenied(until)])
    expired = make_message(expiration_time=get_current_time() - timedelta(seconds=1))
    quiet = make_message(options={"quiet": True})  # email deferred, push goes
    quiet_expiring = make_message(  # email would expire before the deferral ends
        options={"quiet": True}, expiration_time=get_current_time() + timedelta(hours=1)
    )
    denied = make_message(options={"no_push": True})  # push denied, email goes
    missing = make_message(name="nosuchmessage")  # no template on either channel

    class Boom:
        def __str__(self):
            raise ValueError("cannot render me")

    broken = make_message(context={"name": Boom(), "items": []})
    messages = [expired, quiet, quiet_expiring, denied, missing, broken]
    tags = ["expired", "quiet", "quiet_expiring", "denied", "missing", "broken"]
    with BatchSender() as sender:
        prepared, decided = sender.prepare(messages, tags=tags)

    tag_of = dict(zip(map(id, messages), tags, strict=True))
    assert [(tag_of[id(o.message)], o.channel_type, o.status) for o in decided] == [
        ("expired", ChannelType.EMAIL, OutcomeStatus.EXPIRED),
        ("expired", ChannelType.PUSH, OutcomeStatus.EXPIRED),
        ("quiet", ChannelType.EMAIL, OutcomeStatus.RETRY),
        ("quiet_expiring", ChannelType.EMAIL, OutcomeStatus.EXPIRED),
        ("denied", ChannelType.PUSH, OutcomeStatus.DENIED),
        ("missing", ChannelType.EMAIL, OutcomeStatus.FAILED),
        ("missing", ChannelType.PUSH, OutcomeStatus.FAILED),
        ("broken", ChannelType.EMAIL, OutcomeStatus.FAILED),
        ("broken", ChannelType.PUSH, OutcomeStatus.FAILED),
    ]
    assert [o.tag for o in decided] == [tag_of[id(o.message)] for o in decided]
    assert [(p.tag, p.channel_type) for p in prepared] == [
        ("quiet", ChannelType.PUSH),
        ("quiet_expiring", ChannelType.PUSH),
        ("denied", ChannelType.EMAIL),
    ]


def test_delivered_outcomes_carry_the_tag(stub_channels):
    stub_channels["stub_email"].errors = [recoverable(60), FatalChannelDeliveryError("nope")]
    messages = [make_message() for _ in range(3)]
    with BatchSender() as sender:
        outcomes = sender.send(messages, tags=[10, 20, 30])
    # Two channel types: each message gives two outcomes, both with its tag.
    assert [(o.tag, o.channel_type, o.status) for o in outcomes] == [
        (10, ChannelType.EMAIL, OutcomeStatus.RETRY),
        (10, ChannelType.PUSH, OutcomeStatus.SENT),
        (20, ChannelType.EMAIL, OutcomeStatus.FAILED),
        (20, ChannelType.PUSH, OutcomeStatus.SENT),
        (30, ChannelType.EMAIL, OutcomeStatus.SENT),
        (30, ChannelType.PUSH, OutcomeStatus.SENT),
    ]
    assert [o.message for o in outcomes] == [m for m in messages for _ in range(2)]


def test_deliver_passes_each_items_tag_on(stub_channels):
    message = make_message()
    with BatchSender() as sender:
        prepared, _ = sender.prepare([message], tags=["mine"])
        delivered = sender.deliver(prepared)
        untagged = sender.deliver([attrs.evolve(prepared[0], tag=None)])
    assert [(o.channel_type, o.tag) for o in delivered] == [
        (ChannelType.EMAIL, "mine"),
        (ChannelType.PUSH, "mine"),
    ]
    assert [o.tag for o in untagged] == [None]


def test_without_tags_the_tag_is_none(stub_channels):
    with BatchSender() as sender:
        prepared, _ = sender.prepare([make_message()])
        outcomes = sender.send([make_message(expiration_time=get_current_time()), make_message()])
    assert [p.tag for p in prepared] == [None, None]
    assert [o.tag for o in outcomes] == [None] * 4


def test_tags_must_be_parallel_to_the_messages(stub_email):
    with BatchSender() as sender:
        with pytest.raises(ValueError) as info:
            sender.prepare([make_message(), make_message()], tags=["one"])
        assert str(info.value) == TAGS_MISMATCH.format(tags=1, messages=2)
        with pytest.raises(ValueError):
            sender.send([make_message()], tags=[])
    assert stub_email.delivered == []
