"""Previews and test sends of templates that attack the sandbox: an error on the page, never a
500, a hang or 300 MB (V3, V4)."""

from __future__ import annotations

import time

import pytest
from django.core import mail
from django.urls import reverse

from campaigns.models import TemplatePart
from campaigns.services.previews import message_preview, recipient_for_user
from tests.campaigns.admin.helpers import messages_of
from tests.campaigns.factories import MessageTypeDefinitionFactory, email_template_parts

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("camp_admin_env")]

SELF = "campaigns/edx_ace/attack/email/body.txt"


def _definition(**parts):
    """A message type whose parts were stored without the admin's validation (as an attacker
    with database access, or an older version, could have left them)."""
    definition = MessageTypeDefinitionFactory(
        name="attack", sample_context={"width": "300000000", "prefs": {"a": 1}, "items": [1, 2]}
    )
    email_template_parts(definition, **parts)
    return definition


def _preview_page(client, operator, definition):
    client.force_login(operator)
    url = reverse("admin:campaigns_messagetypedefinition_preview", args=[definition.pk])
    started = time.monotonic()
    response = client.get(url, {"recipient": operator.email})
    return response, time.monotonic() - started


def test_preview_of_a_huge_ljust_is_an_error_on_the_page(client, operator):
    """A preview of {{ "x"|ljust:"300000000" }} returned 300 MB after 28 s."""
    definition = _definition(body_html='{{ "x"|ljust:width }}')
    response, seconds = _preview_page(client, operator, definition)
    assert response.status_code == 200 and seconds < 5
    channel = response.context["preview"].channels[0]
    assert "body_html: |ljust:300000000 is over the limit of 1000" in channel.error
    assert "over the limit of 1000" in response.content.decode()
    assert len(response.content) < 200_000


def test_preview_of_nested_loops_stops_at_the_time_limit(client, operator, settings):
    """Five nested loops timed the web worker out."""
    settings.CAMPAIGNS_TEMPLATE_MAX_RENDER_SECONDS = 0.3
    loops = "".join(f"{{% for v{i} in width %}}" for i in range(5)) + "x" + "{% endfor %}" * 5
    definition = _definition(subject=loops, body_html=loops, body_text=loops)
    response, seconds = _preview_page(client, operator, definition)
    assert response.status_code == 200
    assert seconds < 3  # one part spends the limit, the preview stops there
    channel = response.context["preview"].channels[0]
    assert "longer than the limit of 0.3 s" in channel.error


def test_test_send_of_a_self_including_template_is_refused_not_a_500(client, operator):
    """A template including itself raised RecursionError (HTTP 500 on test send)."""
    definition = _definition(body_text=f"x{{% include '{SELF}' %}}")
    client.force_login(operator)
    url = reverse("admin:campaigns_messagetypedefinition_test_send", args=[definition.pk])
    response = client.post(url, follow=True)
    assert response.status_code == 200
    assert mail.outbox == []
    text = " ".join(messages_of(response))
    assert "was not sent" in text and "nest more than 5 deep" in text


def test_preview_renders_plain_data_and_refuses_side_effects(operator):
    definition = _definition(
        subject="S",
        body_text="{% for k, v in prefs.items %}{{ k }}={{ v }}{% endfor %}"
        "[{{ prefs.popitem }}][{{ items.pop }}]{{ items|length }}",
    )
    preview = message_preview(definition=definition, recipient=recipient_for_user(operator))
    channel = preview.channels[0]
    assert channel.error == ""
    assert channel.fields["body"] == "a=1[][]2"
    definition.refresh_from_db()
    assert definition.sample_context["items"] == [1, 2]
    assert TemplatePart.objects.filter(message_type=definition).count() == 5
