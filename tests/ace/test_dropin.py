"""Drop-in fidelity of ace.ace.send with edx-ace 1.15: the names its tests patch
(``ace.ace.policy.channels_for``, ``ace.ace.log``, ``ace.ace.presentation.render``,
``ace.ace.delivery.deliver``), duck-typed messages, and the template error report."""

from __future__ import annotations

import logging
from types import MappingProxyType
from unittest import mock

import pytest
from ace_stubs import make_message
from django.template import TemplateDoesNotExist

from ace import ace
from ace.channel import ChannelType
from ace.message import Message
from ace.outcome import OutcomeStatus
from ace.policy import PolicyResult
from ace.recipient import Recipient
from ace.test_utils import StubPolicy, patch_policies

# -- policy.channels_for: once per message, looked up at call time ---------------------------


def test_send_asks_the_patched_channels_for_once(stub_channels):
    message = make_message()
    with mock.patch("ace.ace.policy.channels_for", return_value={ChannelType.EMAIL}) as patched:
        outcomes = ace.send(message)
    patched.assert_called_once_with(message)
    assert [(o.channel_type, o.status) for o in outcomes] == [
        (ChannelType.EMAIL, OutcomeStatus.SENT),
        (ChannelType.PUSH, OutcomeStatus.DENIED),
    ]
    assert outcomes[1].reason == ace.DENIED_BY_POLICY
    assert stub_channels["stub_push"].calls == 0


def test_a_patched_channels_for_may_return_a_list(stub_channels):
    with mock.patch("ace.ace.policy.channels_for", return_value=[ChannelType.PUSH]):
        outcomes = ace.send(make_message())
    assert [(o.channel_type, o.status) for o in outcomes] == [
        (ChannelType.EMAIL, OutcomeStatus.DENIED),
        (ChannelType.PUSH, OutcomeStatus.SENT),
    ]


def test_policies_run_once_per_send_and_keep_their_reasons(stub_channels, request):
    checks = []

    class NoPush(StubPolicy):
        def check(self, message):
            checks.append(message)
            return PolicyResult(deny={ChannelType.PUSH}, reason="no devices")

    patch_policies(request, [NoPush([])])
    email, push = ace.send(make_message())
    assert len(checks) == 1
    assert email.status is OutcomeStatus.SENT
    assert (push.status, push.reason) == (OutcomeStatus.DENIED, "NoPush: no devices")


def test_channels_for_is_a_set_carrying_its_decision(request):
    from ace.policy import AllowedChannels, channels_for

    patch_policies(request, [StubPolicy([ChannelType.PUSH])])
    allowed = channels_for(make_message())
    assert isinstance(allowed, AllowedChannels)
    assert allowed == {ChannelType.EMAIL}
    assert allowed.decision.allowed == {ChannelType.EMAIL}
    assert ChannelType.PUSH in allowed.decision.denials


def test_a_wrapper_that_narrows_channels_for_is_obeyed(stub_channels, request):
    from ace import policy

    patch_policies(request, [])
    real = policy.channels_for

    def no_email(message):
        result = real(message)
        result.discard(ChannelType.EMAIL)  # the attached decision still allows email
        return result

    with mock.patch("ace.ace.policy.channels_for", side_effect=no_email):
        email, push = ace.send(make_message())
    assert (email.status, email.reason) == (OutcomeStatus.DENIED, ace.DENIED_BY_POLICY)
    assert push.status is OutcomeStatus.SENT
    assert stub_channels["stub_email"].calls == 0


# -- limit_to_channels: "Skipping channel %s" through ace.ace.log, and really skipped --------


def test_skipped_channels_are_logged_through_ace_ace_log(stub_channels):
    with mock.patch("ace.ace.log") as mock_log:
        outcomes = ace.send(make_message(), limit_to_channels=[ChannelType.PUSH])
    mock_log.debug.assert_called_with("Skipping channel %s", ChannelType.EMAIL)
    assert [o.channel_type for o in outcomes] == [ChannelType.PUSH]
    assert stub_channels["stub_email"].calls == 0


def test_every_left_out_channel_is_logged_once(stub_channels, caplog):
    with caplog.at_level(logging.DEBUG, logger="ace.ace"):
        assert ace.send(make_message(), limit_to_channels=[]) == []
    skipped = [r.args for r in caplog.records if r.msg == "Skipping channel %s"]
    assert skipped == [(ChannelType.EMAIL,), (ChannelType.PUSH,)]
    assert stub_channels["stub_email"].calls == stub_channels["stub_push"].calls == 0


def test_no_limit_logs_no_skip(stub_channels):
    with mock.patch("ace.ace.log") as mock_log:
        ace.send(make_message())
    assert mock.call("Skipping channel %s", mock.ANY) not in mock_log.debug.call_args_list


# -- duck-typed messages ----------------------------------------------------------------------


def test_a_mock_message_with_a_missing_template_is_reported_not_raised():
    msg = mock.Mock()
    error = TemplateDoesNotExist("template not found")
    with (
        mock.patch("ace.ace.policy.channels_for", return_value=[ChannelType.EMAIL]),
        mock.patch("ace.ace.presentation.render", side_effect=error),
        mock.patch("ace.ace.delivery.deliver") as deliver,
    ):
        (outcome,) = ace.send(msg)
    msg.report.assert_called_with(
        "template_error", "Unable to send message because template not found\ntemplate not found"
    )
    deliver.assert_not_called()
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.exception_type == "TemplateNotFoundError"
    assert outcome.channel_name == "django_email"


def test_a_mock_message_goes_through_the_patched_pipeline():
    msg = mock.Mock()
    with (
        mock.patch("ace.ace.policy.channels_for", return_value=[ChannelType.EMAIL]),
        mock.patch("ace.ace.presentation.render", return_value="rendered") as render,
        mock.patch("ace.ace.delivery.deliver") as deliver,
    ):
        ace.send(msg)
    msg.report_basics.assert_called_once_with()
    (channel, _msg), _kwargs = render.call_args
    deliver.assert_called_once_with(channel, "rendered", msg)


def test_a_real_missing_template_is_reported_as_a_template_error(stub_email):
    message = make_message(name="nohtml")
    with mock.patch.object(Message, "report", autospec=True) as report:
        (outcome,) = ace.send(message)
    report.assert_called_with(
        message,
        "template_error",
        "Unable to send message because template not found\ntestapp/edx_ace/nohtml/email/body.html",
    )
    assert outcome.status is OutcomeStatus.FAILED
    assert stub_email.calls == 0


class DuckMessage:
    """Not an ace.message.Message: only the attributes ace.send and delivery read."""

    def __init__(self, options):
        self.app_label = "testapp"
        self.name = "testmessage"
        self.recipient = Recipient(lms_user_id=7, email_address="learner@example.org")
        self.context = {"name": "Ada", "topic": "course", "items": ["one"]}
        self.options = options
        self.language = None
        self.expiration_time = None
        self.reports = []

    def report(self, key, value):
        self.reports.append((key, value))

    def report_basics(self):
        self.reports.append(("basics", None))

    def get_message_specific_logger(self, logger):
        return logger


@pytest.mark.parametrize("options", [None, "not a mapping", 42, mock.Mock()])
def test_duck_typed_options_that_are_not_a_mapping_mean_no_options(stub_channels, options):
    message = DuckMessage(options)
    email, push = ace.send(message)
    assert (email.status, email.channel_name) == (OutcomeStatus.SENT, "stub_email")
    assert push.status is OutcomeStatus.SENT
    assert stub_channels["stub_email"].delivered[0][0] is message
    assert message.reports[0] == ("basics", None)


def test_duck_typed_options_can_be_any_mapping(stub_channels):
    message = DuckMessage(MappingProxyType({"transactional": True}))
    ace.send(message, limit_to_channels=[ChannelType.EMAIL])
    assert stub_channels["stub_transactional"].delivered[0][0] is message
    assert stub_channels["stub_email"].calls == 0
