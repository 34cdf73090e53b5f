"""campaigns.messages: one builder for what is sent, previewed, test-sent and dry-run."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from campaigns.messages import (
    DELIVERY_HEADER,
    TEST_SUBJECT_PREFIX,
    Option,
    campaign_message_builder,
)
from campaigns.models import Delivery, OptOut
from campaigns.services import batches
from campaigns.services.previews import (
    campaign_preview,
    campaign_sample_recipients,
    campaign_test_send,
)
from campaigns.services.runs import run_start
from campaigns.signing import read_unsubscribe_token
from campaigns.views import TEST_LINK
from tests.campaigns.services.helpers import address, make_campaign

pytestmark = pytest.mark.django_db


def _shape(message) -> dict:
    """A message without what differs by design between a run and a preview: the run's
    identity (uuids, expiry, run id) and the second its unsubscribe link was made in (the
    link itself is compared by what it reads as)."""
    fields = {
        name: getattr(message, name)
        for name in ("app_label", "name", "recipient", "language", "context", "options")
    }
    link = message.context["unsubscribe_url"]
    unsub = read_unsubscribe_token(_token(link))
    what = (link.rsplit("/", 2)[0], unsub.email, unsub.message_type_id, unsub.test)
    fields["context"] = {**message.context, "unsubscribe_url": what}
    options = {k: v for k, v in message.options.items() if k != Option.RUN_ID}
    assert options[Option.HEADERS]["List-Unsubscribe"] == f"<{link}>"
    headers = {**options[Option.HEADERS], "List-Unsubscribe": what}
    headers.pop(DELIVERY_HEADER, None)  # names the run's delivery row: none in a preview
    options[Option.HEADERS] = headers
    fields["options"] = options
    return fields


def test_preview_and_dispatch_build_the_same_message_for_a_recipient(
    dispatch_settings, django_capture_on_commit_callbacks, monkeypatch
):
    campaign = make_campaign(3, language="fr", context={"headline": "Spring"})
    sent = {}
    build = batches._messages

    def capture(batch, due):
        messages = build(batch, due)
        sent.update({m.recipient.email_address: m for m in messages})
        return messages

    monkeypatch.setattr(batches, "_messages", capture)
    with django_capture_on_commit_callbacks(execute=True):
        run_start(campaign_id=campaign.pk, due_at=timezone.now().replace(microsecond=0))

    recipient = next(
        r for r in campaign_sample_recipients(campaign=campaign) if r.email == address(0)
    )
    previewed = campaign_preview(campaign=campaign, recipient=recipient).message
    dispatched = sent[address(0)]
    assert _shape(previewed) == _shape(dispatched)
    # What the operator checks in the preview is there: the signed link and its headers.
    link = dispatched.context["unsubscribe_url"]
    assert dispatched.options[Option.HEADERS]["List-Unsubscribe"] == f"<{link}>"
    assert dispatched.options[Option.RUN_ID] == campaign.runs.get().pk
    assert Option.RUN_ID not in previewed.options
    # The sent email names its delivery row, so ESP events and bounces find it.
    row = Delivery.objects.get(email=address(0))
    assert dispatched.options[Option.HEADERS][DELIVERY_HEADER] == str(row.message_uuid)
    assert DELIVERY_HEADER not in previewed.options[Option.HEADERS]


def test_each_built_message_has_its_own_context_and_options(db):
    campaign = make_campaign(2, context={"items": [1, 2]})
    builder = campaign_message_builder(campaign=campaign)
    first, second = campaign_sample_recipients(campaign=campaign)
    one, two = builder.build(first), builder.build(second)
    one.context["extra"] = True
    one.options[Option.HEADERS]["X-Test"] = "1"
    assert "extra" not in two.context
    assert "X-Test" not in two.options[Option.HEADERS]
    assert one.context["unsubscribe_url"] != two.context["unsubscribe_url"]


def _token(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


def test_a_test_send_is_marked_and_its_unsubscribe_link_is_a_test_link(db):
    campaign = make_campaign(1)
    (recipient,) = campaign_sample_recipients(campaign=campaign)
    real = campaign_message_builder(campaign=campaign).build(recipient)
    test = campaign_message_builder(campaign=campaign, options={Option.TEST_SEND: True}).build(
        recipient
    )
    assert Option.SUBJECT_PREFIX not in real.options
    assert read_unsubscribe_token(_token(real.context["unsubscribe_url"])).test is False
    assert test.options[Option.SUBJECT_PREFIX] == TEST_SUBJECT_PREFIX == "[TEST] "
    link = test.context["unsubscribe_url"]
    assert test.options[Option.HEADERS]["List-Unsubscribe"] == f"<{link}>"
    unsub = read_unsubscribe_token(_token(link))
    assert (unsub.test, unsub.email) == (True, recipient.email)


def test_a_test_send_arrives_with_test_in_the_subject_and_a_link_that_changes_nothing(
    dispatch_settings, operator
):
    campaign = make_campaign(1)
    result = campaign_test_send(campaign=campaign, user=operator)
    assert result.sent
    (sent,) = mail.outbox
    assert sent.subject.startswith("[TEST] ")
    assert sent.subject == "[TEST] " + result.preview.channels[0].fields["subject"].strip()
    link = sent.body.rsplit("Leave: ", 1)[1].split()[0]
    assert sent.extra_headers["List-Unsubscribe"] == f"<{link}>"
    path = link[len(dispatch_settings.SITE_URL.rstrip("/")) :]
    client = Client(enforce_csrf_checks=True)
    for response in (client.get(path), client.post(path, {"scope": "all"})):
        assert response.status_code == 200
        assert TEST_LINK in response.content.decode()
    one_click = client.post(
        path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert one_click.status_code == 200 and TEST_LINK in one_click.content.decode()
    assert OptOut.objects.count() == 0
