"""Campaign policies: each built-in (allow, deny, reason), toggles, plugins and batch prefetch."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
import zoneinfo
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from stevedore import ExtensionManager
from stevedore.extension import Extension

from ace import policy as ace_policy
from ace.channel import ChannelType
from ace.message import Message
from ace.policy import POLICY_PLUGIN_NAMESPACE, Policy, PolicyResult
from ace.recipient import Recipient
from campaigns import policies
from campaigns.models import Delivery
from campaigns.policies import (
    ExpiryPolicy,
    FrequencyCapPolicy,
    OptOutPolicy,
    PolicyToggleDenyPolicy,
    QuietHoursPolicy,
)
from campaigns.services.policies import policies_prefetched, policy_toggle_set
from tests.campaigns import factories as f

pytestmark = pytest.mark.django_db

EMAIL, PUSH = ChannelType.EMAIL, ChannelType.PUSH


def message(
    *,
    user_id=None,
    email="someone@example.org",
    message_type=None,
    app_label="campaigns",
    name="newsletter",
    expiration_time=None,
    send_uuid=None,
    **options,
):
    if message_type is not None:
        app_label, name = message_type.app_label, message_type.name
        options.setdefault("campaign_message_type_id", message_type.pk)
    return Message(
        app_label=app_label,
        name=name,
        recipient=Recipient(lms_user_id=user_id, email_address=email),
        expiration_time=expiration_time,
        send_uuid=send_uuid,
        options=options,
    )


def allowed_and_reasons(msg):
    """What ACE itself decides for the message with the configured policies."""
    return ace_policy.evaluate(msg)


def test_ace_loads_the_configured_campaign_policies(settings):
    assert settings.ACE_ENABLED_POLICIES == ["campaigns_optout", "campaigns_toggles"]
    loaded = ace_policy.policies()
    assert [type(p) for p in loaded] == [OptOutPolicy, PolicyToggleDenyPolicy]
    for name, cls in policies.installed_policy_classes().items():
        assert cls.name == name  # a policy knows its own entry-point name


# Opt-out ----------------------------------------------------------------------------------


def test_optout_allows_addresses_that_did_not_unsubscribe():
    f.OptOutFactory(email="other@example.org")
    assert OptOutPolicy().check(message(email="me@example.org")).deny == set()


def test_optout_from_everything_denies_every_channel_with_a_reason():
    f.OptOutFactory(email="me@example.org")
    result = OptOutPolicy().check(message(email="ME@example.org"))
    assert result.deny == {EMAIL, PUSH}
    assert result.reason == "unsubscribed from all messages"
    allowed, reasons = allowed_and_reasons(message(email="me@example.org"))
    assert allowed == set()
    assert reasons[EMAIL] == "OptOutPolicy: unsubscribed from all messages"


def test_optout_from_one_message_type_denies_only_that_type():
    newsletter = f.MessageTypeDefinitionFactory(name="newsletter")
    receipts = f.MessageTypeDefinitionFactory(name="receipt")
    f.OptOutFactory(email="me@example.org", message_type=newsletter)
    denied = OptOutPolicy().check(message(email="me@example.org", message_type=newsletter))
    assert denied.deny == {EMAIL, PUSH}
    assert denied.reason == "unsubscribed from campaigns/newsletter"
    # Matched by app_label/name too when the dispatcher did not set the type id.
    assert OptOutPolicy().check(message(email="me@example.org", name="newsletter")).deny
    assert (
        OptOutPolicy().check(message(email="me@example.org", message_type=receipts)).deny == set()
    )


def test_optout_matches_the_user_even_under_another_address():
    user = f.UserFactory(email="new@example.org")
    f.OptOutFactory(email="old@example.org", user=user)
    assert OptOutPolicy().check(message(user_id=user.pk, email="new@example.org")).deny


def test_optout_can_be_switched_off_for_one_message_type():
    receipts = f.MessageTypeDefinitionFactory(name="receipt")
    newsletter = f.MessageTypeDefinitionFactory(name="newsletter")
    f.OptOutFactory(email="me@example.org")
    policy_toggle_set(policy="campaigns_optout", message_type=receipts, enabled=False)
    assert (
        OptOutPolicy().check(message(email="me@example.org", message_type=receipts)).deny == set()
    )
    assert OptOutPolicy().check(message(email="me@example.org", message_type=newsletter)).deny


# Expiry -----------------------------------------------------------------------------------


def test_expiry_denies_expired_messages_and_allows_the_rest(clock):
    policy = ExpiryPolicy()
    past = clock.when - dt.timedelta(minutes=1)
    result = policy.check(message(expiration_time=past))
    assert result.deny == {EMAIL, PUSH}
    assert result.reason == f"expired at {past.isoformat()}"
    assert policy.check(message(expiration_time=clock.when + dt.timedelta(hours=1))).deny == set()
    assert policy.check(message()).deny == set()


def test_expiry_runs_through_the_toggle_policy_by_default_and_can_be_turned_off(clock):
    expired = message(expiration_time=clock.when - dt.timedelta(seconds=1))
    allowed, reasons = allowed_and_reasons(expired)
    assert allowed == set()
    assert reasons[EMAIL].startswith("PolicyToggleDenyPolicy: campaigns_expiry: expired at")
    policy_toggle_set(policy="campaigns_expiry", enabled=False)
    assert allowed_and_reasons(expired)[0] == {EMAIL, PUSH}


# Frequency cap ----------------------------------------------------------------------------


def sent(
    *, user_id=None, email="", hours_ago=1.0, clock, status=Delivery.Status.SENT, run=None, **kw
):
    return f.DeliveryFactory(
        user_id=user_id,
        email=email,
        recipient_key=f"user:{user_id}" if user_id else f"email:{email}",
        status=status,
        sent_at=clock.when - dt.timedelta(hours=hours_ago),
        **({"run": run} if run else {}),
        **kw,
    )


def test_frequency_cap_is_off_until_toggled(clock):
    sent(user_id=5, clock=clock)
    sent(user_id=5, clock=clock)
    assert allowed_and_reasons(message(user_id=5))[0] == {EMAIL, PUSH}


def test_frequency_cap_counts_sent_deliveries_in_the_period(clock):
    policy_toggle_set(
        policy="campaigns_frequency_cap",
        enabled=True,
        parameters={"max_messages": 2, "period_hours": 24},
    )
    user = 7
    run = f.CampaignRunFactory()
    sent(user_id=user, clock=clock, run=run)
    sent(user_id=user, clock=clock, run=run, channel="push")  # same run, other channel: 1 message
    sent(user_id=user, clock=clock, hours_ago=30)  # outside the period
    sent(user_id=user, clock=clock, status=Delivery.Status.FAILED)  # not sent
    cap = FrequencyCapPolicy()
    params = {"max_messages": 2, "period_hours": 24}
    assert cap.evaluate(message(user_id=user), params).deny == set()
    sent(user_id=user, clock=clock, hours_ago=23)
    result = cap.evaluate(message(user_id=user), params)
    assert result.deny == {EMAIL, PUSH}
    assert result.reason == "frequency cap: 2 messages in the last 24 h (max 2)"
    allowed, reasons = allowed_and_reasons(message(user_id=user))
    assert allowed == set()
    assert "campaigns_frequency_cap: frequency cap" in reasons[EMAIL]


def test_frequency_cap_ignores_the_message_own_run_and_counts_addresses(clock):
    params = {"max_messages": 1, "period_hours": 24}
    run = f.CampaignRunFactory()
    sent(user_id=3, clock=clock, run=run)
    cap = FrequencyCapPolicy()
    # A retry of the same run (same send_uuid) is not capped by its own other channel.
    assert cap.evaluate(message(user_id=3, send_uuid=run.send_uuid), params).deny == set()
    assert cap.evaluate(message(user_id=3, send_uuid=uuid.uuid4()), params).deny
    sent(email="list@example.org", clock=clock)
    assert cap.evaluate(message(email="List@example.org"), params).deny


# Quiet hours ------------------------------------------------------------------------------


@pytest.fixture
def quiet_hours():
    return policy_toggle_set(
        policy="campaigns_quiet_hours",
        enabled=True,
        parameters={"start_hour": 21, "end_hour": 8},
    )


def test_quiet_hours_use_the_recipient_time_zone(clock, quiet_hours):
    # 12:00 UTC is 21:00 in Tokyo (quiet) and 14:00 in Paris (not quiet).
    tokyo = message(recipient_time_zone="Asia/Tokyo")
    paris = message(recipient_time_zone="Europe/Paris")
    result = QuietHoursPolicy().check(tokyo)
    assert result.deny == {EMAIL, PUSH}
    allowed, reasons = allowed_and_reasons(tokyo)
    assert allowed == set()
    assert "quiet hours 21:00-08:00 in Asia/Tokyo (local time 21:00)" in reasons[EMAIL]
    assert allowed_and_reasons(paris)[0] == {EMAIL, PUSH}


def test_quiet_hours_fall_back_to_campaign_then_default_zone(clock):
    params = QuietHoursPolicy.clean_parameters(
        {"start_hour": 9, "end_hour": 17, "default_time_zone": "America/New_York"}
    )
    policy = QuietHoursPolicy()
    # No recipient zone: the campaign's (Tokyo, 21:00 -> outside 9-17).
    assert policy.evaluate(message(campaign_time_zone="Asia/Tokyo"), params).deny == set()
    # Neither: the toggle's default (New York, 08:00 -> outside); invalid names are skipped.
    assert policy.evaluate(message(recipient_time_zone="Mars/Base"), params).deny == set()
    clock.when = clock.when.replace(hour=15)  # 11:00 in New York
    assert policy.evaluate(message(), params).deny == {EMAIL, PUSH}


def test_quiet_hours_can_keep_only_some_channels_quiet(clock):
    params = QuietHoursPolicy.clean_parameters(
        {"start_hour": 11, "end_hour": 13, "channels": ["push"]}
    )
    result = QuietHoursPolicy().evaluate(message(recipient_time_zone="UTC"), params)
    assert result.deny == {PUSH}


def test_quiet_hours_postpone_until_they_end_in_the_recipients_zone(clock, quiet_hours):
    # 12:00 UTC is 21:00 in Tokyo: quiet until 08:00 there, 23:00 UTC.
    result = QuietHoursPolicy().check(message(recipient_time_zone="Asia/Tokyo"))
    assert result.defer_until == dt.datetime(2030, 6, 1, 23, 0, tzinfo=dt.UTC)
    assert result.reason.endswith("postponed until 08:00 Asia/Tokyo")
    decision = ace_policy.decide(message(recipient_time_zone="Asia/Tokyo"))
    assert decision.denials == {}
    assert decision.deferrals[EMAIL].until == result.defer_until
    assert "campaigns_quiet_hours: quiet hours 21:00-08:00" in decision.deferrals[EMAIL].reason


def test_quiet_hours_end_keeps_the_local_hour_across_a_dst_change():
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    # The night clocks go forward (30 March 2025): 07:00 is then UTC+2.
    evening = dt.datetime(2025, 3, 29, 22, 0, tzinfo=paris)
    assert QuietHoursPolicy.quiet_until(evening, 7) == dt.datetime(2025, 3, 30, 5, 0, tzinfo=dt.UTC)
    # Early morning: today's end, not tomorrow's.
    early = dt.datetime(2025, 10, 26, 1, 30, tzinfo=paris)
    assert QuietHoursPolicy.quiet_until(early, 7) == dt.datetime(2025, 10, 26, 6, 0, tzinfo=dt.UTC)


def test_a_deferral_and_a_denial_from_delegated_policies(clock, quiet_hours):
    tokyo = message(recipient_time_zone="Asia/Tokyo")
    with _with_third_party_plugin():
        # Quiet hours postpone both channels, a plugin denies push: push is postponed too
        # (checked again then, when the plugin still denies it), email is not dropped.
        policy_toggle_set(policy="acme_no_push", enabled=True)
        result = PolicyToggleDenyPolicy().check(tokyo)
        assert result.deny == {EMAIL, PUSH}
        assert result.defer_until == dt.datetime(2030, 6, 1, 23, 0, tzinfo=dt.UTC)
        assert "campaigns_quiet_hours" in result.reason and "acme_no_push" in result.reason
        # When the deferral covers only denied channels, the denial stands.
        policy_toggle_set(
            policy="campaigns_quiet_hours",
            enabled=True,
            parameters={"start_hour": 21, "end_hour": 8, "channels": ["push"]},
        )
        result = PolicyToggleDenyPolicy().check(tokyo)
        assert (result.deny, result.defer_until) == ({PUSH}, None)


@pytest.mark.parametrize(
    ("hour", "start", "end", "quiet"),
    [
        (22, 21, 8, True),
        (3, 21, 8, True),
        (8, 21, 8, False),
        (12, 21, 8, False),
        (13, 12, 14, True),
        (14, 12, 14, False),
        (11, 12, 14, False),
    ],
)
def test_quiet_hours_windows(hour, start, end, quiet):
    assert QuietHoursPolicy.is_quiet(hour, start, end) is quiet


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"start_hour": 24, "end_hour": 8}, "start_hour:"),
        ({"start_hour": 8, "end_hour": 8}, "start_hour and end_hour must differ"),
        ({"start_hour": 1, "end_hour": 2, "channels": ["fax"]}, "channels:"),
        ({"start_hour": 1, "end_hour": 2, "default_time_zone": "Mars/Base"}, "default_time_zone:"),
        ({"start_hour": 1, "end_hour": 2, "quiet": True}, "Unknown parameter: quiet"),
    ],
)
def test_quiet_hours_parameters_are_validated(parameters, fragment):
    with pytest.raises(ValidationError) as exc:
        policy_toggle_set(policy="campaigns_quiet_hours", enabled=True, parameters=parameters)
    assert any(fragment in m for m in exc.value.messages), exc.value.messages


# Toggles: global vs per message type --------------------------------------------------------


def test_per_type_toggle_overrides_the_global_one(clock):
    digest = f.MessageTypeDefinitionFactory(name="digest")
    alert = f.MessageTypeDefinitionFactory(name="alert")
    promo = f.MessageTypeDefinitionFactory(name="promo")
    for _ in range(2):
        sent(user_id=9, clock=clock)
    policy_toggle_set(
        policy="campaigns_frequency_cap", enabled=True, parameters={"max_messages": 2}
    )
    policy_toggle_set(policy="campaigns_frequency_cap", message_type=alert, enabled=False)
    policy_toggle_set(
        policy="campaigns_frequency_cap",
        message_type=promo,
        enabled=True,
        parameters={"max_messages": 5},
    )
    assert allowed_and_reasons(message(user_id=9, message_type=digest))[0] == set()
    assert allowed_and_reasons(message(user_id=9, message_type=alert))[0] == {EMAIL, PUSH}
    assert allowed_and_reasons(message(user_id=9, message_type=promo))[0] == {EMAIL, PUSH}
    # Per-type toggles match by app_label/name too (messages sent outside campaigns).
    assert allowed_and_reasons(message(user_id=9, name="alert"))[0] == {EMAIL, PUSH}


def test_toggle_set_updates_the_one_row_of_its_scope():
    first = policy_toggle_set(policy="campaigns_expiry", enabled=False)
    second = policy_toggle_set(policy="campaigns_expiry", enabled=True)
    assert first.pk == second.pk and second.enabled


def test_a_toggle_with_parameters_that_no_longer_validate_denies_with_the_reason():
    f.PolicyToggleFactory(
        policy="campaigns_frequency_cap", parameters={"max_messages": 0, "period_hours": 1}
    )
    allowed, reasons = allowed_and_reasons(message(user_id=1))
    assert allowed == set()
    assert "campaigns_frequency_cap is misconfigured (max_messages:" in reasons[EMAIL]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("nope", "Unknown policy 'nope'"),
        ("campaigns_toggles", "cannot be toggled itself"),
    ],
)
def test_toggle_set_refuses_unknown_or_meta_policies(name, fragment):
    with pytest.raises(ValidationError, match=fragment):
        policy_toggle_set(policy=name, enabled=True)


def test_toggles_have_no_effect_without_campaigns_toggles(settings):
    settings.ACE_ENABLED_POLICIES = ["campaigns_optout"]
    with pytest.raises(ValidationError, match="would have no effect"):
        policy_toggle_set(policy="campaigns_quiet_hours", enabled=True)
    policy_toggle_set(policy="campaigns_optout", enabled=False)  # runs directly: fine


class DenyPushPolicy(Policy):
    """A third-party plugin without parameters."""

    def check(self, message):
        return PolicyResult(deny={PUSH}, reason="no push here")


@contextlib.contextmanager
def _with_third_party_plugin():
    """The installed policy plugins plus ``acme_no_push``, as stevedore would find them."""
    classes = policies.installed_policy_classes()
    installed = [Extension(name, None, cls, None) for name, cls in classes.items()]
    extra = Extension("acme_no_push", None, DenyPushPolicy, None)
    manager = ExtensionManager.make_test_instance(
        [*installed, extra], namespace=POLICY_PLUGIN_NAMESPACE
    )
    policies.reset_plugin_caches()
    try:
        with mock.patch.object(policies.plugins, "ExtensionManager", return_value=manager):
            yield
    finally:
        policies.reset_plugin_caches()


def test_a_third_party_policy_runs_only_where_toggled_on():
    promo = f.MessageTypeDefinitionFactory(name="promo")
    with _with_third_party_plugin():
        assert allowed_and_reasons(message(message_type=promo))[0] == {EMAIL, PUSH}
        policy_toggle_set(policy="acme_no_push", message_type=promo, enabled=True)
        allowed, reasons = allowed_and_reasons(message(message_type=promo))
        assert allowed == {EMAIL}
        assert reasons[PUSH] == "PolicyToggleDenyPolicy: acme_no_push: no push here"
        assert allowed_and_reasons(message(name="other"))[0] == {EMAIL, PUSH}
        with pytest.raises(ValidationError, match="takes no parameters"):
            policy_toggle_set(policy="acme_no_push", enabled=True, parameters={"x": 1})


def test_a_third_party_policy_enabled_in_ace_cannot_be_toggled(settings):
    with _with_third_party_plugin():
        settings.ACE_ENABLED_POLICIES = ["campaigns_optout", "campaigns_toggles", "acme_no_push"]
        with pytest.raises(ValidationError, match="ACE runs it for every message"):
            policy_toggle_set(policy="acme_no_push", enabled=False)


# Batch prefetch ---------------------------------------------------------------------------


def _batch(n, clock, first=1000):
    users = [first + i for i in range(n)]
    for user_id in users[::7]:
        f.OptOutFactory(email=f"u{user_id}@example.org")
    for user_id in users[::5]:
        sent(user_id=user_id, clock=clock)
        sent(user_id=user_id, clock=clock, hours_ago=2)
    return [
        message(
            user_id=user_id,
            email=f"u{user_id}@example.org",
            recipient_time_zone="Asia/Tokyo" if user_id % 3 == 0 else "Europe/Paris",
            expiration_time=clock.when + dt.timedelta(hours=1),
        )
        for user_id in users
    ]


def _run_policies(messages):
    return [ace_policy.evaluate(m) for m in messages]


def test_a_batch_of_500_costs_a_constant_number_of_queries(clock, quiet_hours):
    policy_toggle_set(
        policy="campaigns_frequency_cap", enabled=True, parameters={"max_messages": 2}
    )
    small = _batch(20, clock, first=10_000)
    big = _batch(500, clock)
    ace_policy.policies()  # load plugins outside the measurement
    with CaptureQueriesContext(connection) as small_queries, policies_prefetched(small):
        expected_small = _run_policies(small)
    with CaptureQueriesContext(connection) as big_queries, policies_prefetched(big):
        results = _run_policies(big)
    assert len(big_queries) == len(small_queries) <= 4
    # The prefetched answers equal the query-per-message answers.
    unbatched = _run_policies(big)
    assert results == unbatched
    assert len(expected_small) == 20
    denied_optout = sum(
        1 for allowed, reasons in results if "OptOutPolicy" in reasons.get(EMAIL, "")
    )
    capped = sum(1 for _, reasons in results if "frequency cap" in reasons.get(EMAIL, ""))
    quiet = sum(1 for _, reasons in results if "quiet hours" in reasons.get(EMAIL, ""))
    assert denied_optout == len(range(0, 500, 7))  # every 7th user unsubscribed
    assert capped > 0 and quiet > 0


def test_without_prefetch_each_check_queries_and_still_works(clock):
    f.OptOutFactory(email="a@example.org")
    with CaptureQueriesContext(connection) as queries:
        result = OptOutPolicy().check(message(email="a@example.org"))
    assert result.deny and 1 <= len(queries) <= 2


def test_prefetch_caches_are_cleared_after_the_batch(clock):
    msgs = [message(email="late@example.org")]
    loaded = ace_policy.policies()[0]
    with policies_prefetched(msgs):
        f.OptOutFactory(email="late@example.org")
        assert loaded.check(msgs[0]).deny == set()  # answered from the batch's snapshot
    assert loaded.check(msgs[0]).deny == {EMAIL, PUSH}
