"""Tests for the file_email channel (ace.channel.file.FileEmailChannel)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ace import ace
from ace.channel import ChannelType, channels
from ace.channel.file import (
    DEFAULT_DIRECTORY,
    PATH_OVERRIDE_KEY,
    FileEmailChannel,
)
from ace.errors import FatalChannelDeliveryError
from ace.message import Message
from ace.outcome import OutcomeStatus
from ace.recipient import Recipient
from ace.renderers import RenderedEmail

RENDERED = RenderedEmail(
    from_name="Demo Team",
    subject="Welcome, O&#x27;Brien",
    body_html="<p>Hello <b>Ada</b></p>",
    head_html="<style>p { color: red }</style>",
    body="Hello Ada -- see you --> soon",
)


def make_message(**options) -> Message:
    return Message(
        app_label="testapp",
        name="welcome",
        recipient=Recipient(lms_user_id=7, email_address="ada@example.org"),
        options=options,
    )


@pytest.fixture
def file_dir(settings, tmp_path) -> Path:
    settings.ACE_CHANNEL_FILE_EMAIL_DIRECTORY = str(tmp_path / "messages")
    return tmp_path / "messages"


def test_the_message_is_written_to_a_file_named_by_its_uuid(file_dir):
    message = make_message()
    path = FileEmailChannel().deliver(message, RENDERED)

    assert path == file_dir / f"{message.uuid}.html"
    text = path.read_text(encoding="utf-8")
    assert "<style>p { color: red }</style>" in text
    assert "<p>Hello <b>Ada</b></p>" in text
    assert "To: ada@example.org" in text
    assert "Subject: Welcome, O'Brien" in text
    assert "From: Platform <noreply@example.org>" in text  # DEFAULT_FROM_EMAIL (conftest)
    assert message.log_id in text


def test_the_plain_text_part_cannot_end_the_header_comment(file_dir):
    text = FileEmailChannel().deliver(make_message(), RENDERED).read_text(encoding="utf-8")
    comment, _, document = text.partition("-->")
    assert comment.startswith("<!--")
    assert "Hello Ada - - see you - -> soon" in comment
    assert document.lstrip().startswith("<!DOCTYPE html>")


def test_path_override_key_chooses_the_file(file_dir, tmp_path):
    target = tmp_path / "nested" / "dir" / "out.html"
    message = make_message(**{PATH_OVERRIDE_KEY: str(target)})
    assert FileEmailChannel().deliver(message, RENDERED) == target
    assert "<p>Hello <b>Ada</b></p>" in target.read_text(encoding="utf-8")
    assert not file_dir.exists()


def test_a_second_message_to_the_same_path_replaces_the_first(tmp_path):
    target = tmp_path / "out.html"
    channel = FileEmailChannel()
    channel.deliver(make_message(**{PATH_OVERRIDE_KEY: target}), RENDERED)
    second = RenderedEmail(
        from_name="", subject="Second", body_html="<p>2</p>", head_html="", body="2"
    )
    channel.deliver(make_message(**{PATH_OVERRIDE_KEY: target}), second)
    text = target.read_text(encoding="utf-8")
    assert "Subject: Second" in text and "Hello" not in text
    assert [p.name for p in tmp_path.iterdir()] == ["out.html"]  # no temporary file left


def test_files_are_private_and_a_planted_symlink_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "out.html"
    link.symlink_to(victim)

    FileEmailChannel().deliver(make_message(**{PATH_OVERRIDE_KEY: link}), RENDERED)

    assert victim.read_text() == "keep me"
    assert not link.is_symlink()
    assert stat.S_IMODE(os.stat(link).st_mode) == 0o600


def test_an_unwritable_path_is_a_fatal_channel_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    message = make_message(**{PATH_OVERRIDE_KEY: str(blocker / "out.html")})
    with pytest.raises(FatalChannelDeliveryError, match="Could not write the message"):
        FileEmailChannel().deliver(message, RENDERED)


def test_the_default_directory_is_under_the_temporary_directory(settings):
    import tempfile

    del settings.ACE_CHANNEL_FILE_EMAIL_DIRECTORY
    assert Path(tempfile.gettempdir()) / "ace_messages" == DEFAULT_DIRECTORY
    message = make_message()
    assert FileEmailChannel.output_path(message) == DEFAULT_DIRECTORY / f"{message.uuid}.html"


def test_enabled_and_registered_as_file_email(settings, file_dir):
    assert FileEmailChannel.enabled() is True
    assert FileEmailChannel.channel_type is ChannelType.EMAIL
    settings.ACE_ENABLED_CHANNELS = ["file_email"]
    settings.ACE_CHANNEL_DEFAULT_EMAIL = "file_email"
    channel = channels().get_channel_by_name(ChannelType.EMAIL, "file_email")
    assert isinstance(channel, FileEmailChannel)


def test_ace_send_renders_the_templates_into_the_file(settings, file_dir, tmp_path):
    settings.ACE_ENABLED_CHANNELS = ["file_email"]
    settings.ACE_CHANNEL_DEFAULT_EMAIL = "file_email"
    settings.ACE_CHANNEL_TRANSACTIONAL_EMAIL = "file_email"
    target = tmp_path / "sent.html"
    message = Message(
        app_label="testapp",
        name="testmessage",
        recipient=Recipient(lms_user_id=7, email_address="learner@example.org"),
        context={"name": "Ada", "topic": "course", "items": ["one", "two"]},
        options={PATH_OVERRIDE_KEY: str(target)},
    )
    [outcome] = ace.send(message)
    assert (outcome.status, outcome.channel_name) == (OutcomeStatus.SENT, "file_email")
    text = target.read_text(encoding="utf-8")
    assert "To: learner@example.org" in text
    assert "Ada" in text
