"""Tests for ace.recipient."""

import pytest

from ace.recipient import Recipient


def test_recipient_fields_and_defaults():
    recipient = Recipient(lms_user_id=12)
    assert recipient.lms_user_id == 12
    assert recipient.email_address is None


def test_recipient_round_trips_through_string():
    recipient = Recipient(lms_user_id=12, email_address="a@example.org")
    assert Recipient.from_string(str(recipient)) == recipient


def test_recipient_rejects_the_email_keyword_of_the_spec_example():
    # The reference's docstring example passes email=...; the real keyword is email_address.
    with pytest.raises(TypeError):
        Recipient(lms_user_id=1, email="a@example.org")
