"""The opt-out policy (campaigns/policies/optout.py)."""

from __future__ import annotations

import pytest

from campaigns.policies import OptOutPolicy
from campaigns.services.policies import policy_toggle_set
from tests.campaigns import factories as f
from tests.campaigns.policies.helpers import EMAIL, PUSH, allowed_and_reasons, message

pytestmark = pytest.mark.django_db


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
