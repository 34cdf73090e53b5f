"""Tests for ace.errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ace import errors


def test_error_tree():
    assert issubclass(errors.ChannelError, Exception)
    for cls in (
        errors.RecoverableChannelDeliveryError,
        errors.FatalChannelDeliveryError,
        errors.UnsupportedChannelError,
    ):
        assert issubclass(cls, errors.ChannelError)
    assert issubclass(errors.RecipientAddressMissingError, errors.FatalChannelDeliveryError)
    assert issubclass(errors.TemplateNotFoundError, errors.FatalChannelDeliveryError)
    assert not issubclass(errors.InvalidMessageError, errors.ChannelError)


def test_recoverable_error_arguments():
    when = datetime(2030, 1, 1, tzinfo=UTC)
    error = errors.RecoverableChannelDeliveryError("busy", when)
    assert error.message == "busy"
    assert error.next_attempt_time is when
    assert str(error) == "busy (retry at 2030-01-01T00:00:00+00:00)"
    with pytest.raises(TypeError):
        errors.RecoverableChannelDeliveryError("missing the time")
