"""Message types in the admin: templates per channel and language, validation on the field,
code-defined types read-only, preview with missing variables, test send with permissions."""

import pytest
from django.core import mail
from django.urls import reverse

from campaigns.models import MessageTypeDefinition, TemplatePart
from tests.campaigns.admin.helpers import admin_form_data, inline_prefixes, messages_of
from tests.campaigns.factories import (
    MessageTypeDefinitionFactory,
    TemplatePartFactory,
    email_template_parts,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("camp_admin_env")]

ADD_URL = reverse("admin:campaigns_messagetypedefinition_add")
LIST_URL = reverse("admin:campaigns_messagetypedefinition_changelist")


def _change_url(obj):
    return reverse("admin:campaigns_messagetypedefinition_change", args=[obj.pk])


def _add_data(client, **overrides):
    page = client.get(ADD_URL)
    assert page.status_code == 200
    email, push = inline_prefixes(page)
    base = {
        "app_label": "campaigns",
        "name": "welcome",
        "default_language": "en",
        "sample_context": '{"first_name": "Ada"}',
        f"{email}-0-content": "Welcome {{ first_name }}",
        f"{email}-1-content": "Hello {{ first_name }}",
        f"{email}-2-content": "<p>Hello {{ first_name }}</p>",
    }
    base.update({k.format(email=email, push=push): v for k, v in overrides.items()})
    return admin_form_data(page, **base), email, push


def test_operator_creates_message_type_with_email_templates(client, operator):
    client.force_login(operator)
    data, _email, _push = _add_data(client)
    response = client.post(ADD_URL, data)
    assert response.status_code == 302, response.context and response.context["errors"]
    definition = MessageTypeDefinition.objects.get(name="welcome")
    assert definition.source == MessageTypeDefinition.Source.DATABASE
    parts = {p.filename: p.content for p in definition.template_parts.all()}
    assert parts["subject.txt"] == "Welcome {{ first_name }}"
    # The optional parts were created empty, so ace can render the message.
    assert parts["from_name.txt"] == "" and parts["head.html"] == ""
    assert definition.sample_context == {"first_name": "Ada"}


def test_syntax_error_is_shown_on_the_content_field(client, operator):
    client.force_login(operator)
    data, _email, _push = _add_data(client, **{"{email}-0-content": "Hi {% if x %}"})
    response = client.post(ADD_URL, data)
    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    errors = formset.forms[0].errors["content"]
    assert any("endif" in e for e in errors), errors
    assert "endif" in response.content.decode()
    assert not MessageTypeDefinition.objects.filter(name="welcome").exists()


def test_forbidden_template_features_refused_on_save(client, operator):
    client.force_login(operator)
    data, _email, _push = _add_data(client, **{"{email}-1-content": "{{ settings.SECRET_KEY }}"})
    response = client.post(ADD_URL, data)
    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.forms[1].errors["content"]
    assert "'settings' is not available" in errors[0]


def test_missing_required_part_is_refused(client, operator):
    client.force_login(operator)
    data, _email, _push = _add_data(client, **{"{email}-2-content": ""})
    response = client.post(ADD_URL, data)
    assert response.status_code == 200
    non_form = response.context["inline_admin_formsets"][0].formset.non_form_errors()
    assert "Body (HTML)" in " ".join(non_form)


def test_sample_context_must_be_an_object(client, operator):
    client.force_login(operator)
    data, _e, _p = _add_data(client, sample_context="[1, 2]")
    response = client.post(ADD_URL, data)
    assert response.status_code == 200
    assert "Must be a JSON object" in str(response.context["adminform"].form.errors)


def test_duplicate_language_part_refused(client, operator):
    client.force_login(operator)
    data, _email, _push = _add_data(
        client,
        **{
            "{email}-TOTAL_FORMS": "5",
            "{email}-3-channel": "email",
            "{email}-3-filename": "subject.txt",
            "{email}-3-language": "fr",
            "{email}-3-content": "Bienvenue",
            "{email}-4-channel": "email",
            "{email}-4-filename": "subject.txt",
            "{email}-4-language": "fr",
            "{email}-4-content": "Bienvenue encore",
        },
    )
    response = client.post(ADD_URL, data)
    assert response.status_code == 200
    text = response.content.decode()
    assert "duplicate data for channel, filename and language" in text
    assert not MessageTypeDefinition.objects.filter(name="welcome").exists()


def test_code_defined_type_is_listed_and_read_only(client, operator):
    MessageTypeDefinition.objects.filter(name="campaignannouncement").delete()
    client.force_login(operator)
    listing = client.get(LIST_URL)
    assert listing.status_code == 200
    row = MessageTypeDefinition.objects.get(name="campaignannouncement")  # synced on list load
    assert row.source == MessageTypeDefinition.Source.CODE
    page = client.get(_change_url(row))
    assert page.status_code == 200
    assert page.context["inline_admin_formsets"] == []
    assert "campaigns/edx_ace/campaignannouncement/email/body.html" in page.content.decode()
    assert not page.context["has_change_permission"]
    post = client.post(_change_url(row), {"name": "hijack"})
    assert post.status_code == 403
    row.refresh_from_db()
    assert row.name == "campaignannouncement"


def test_staff_without_permission_gets_403(client, bare_staff):
    client.force_login(bare_staff)
    assert client.get(LIST_URL).status_code == 403
    assert client.get(ADD_URL).status_code == 403


def test_preview_reports_missing_variables_and_sandboxes_html(client, operator):
    definition = MessageTypeDefinitionFactory(name="promo", sample_context={"headline": "Sale"})
    email_template_parts(
        definition,
        subject="{{ headline }}: {{ promo_code }}",
        body_text="{{ headline }} {% if vip %}VIP{% endif %} {{ user.nickname }} <b>x</b>",
        body_html='<p onclick="x()">{{ headline }}</p><script>alert("x")</script>',
    )
    client.force_login(operator)
    url = reverse("admin:campaigns_messagetypedefinition_preview", args=[definition.pk])
    response = client.get(url, {"recipient": operator.email, "language": "fr"})
    assert response.status_code == 200
    channel = response.context["preview"].channels[0]
    assert channel.fields["subject"] == "Sale: "
    assert "promo_code" in channel.missing and "user" in channel.missing
    assert channel.missing_optional == ["vip"]
    html = response.content.decode()
    assert 'sandbox=""' in html
    # The HTML is only in the iframe's srcdoc attribute, escaped: no live script in the page.
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert '<script>alert("x")' not in html
    assert "<b>x</b>" not in html  # text parts are escaped too
    assert "Missing variables" in html and "promo_code" in html


def test_preview_of_unknown_user_is_a_form_error(client, operator, email_type):
    client.force_login(operator)
    url = reverse("admin:campaigns_messagetypedefinition_preview", args=[email_type.pk])
    response = client.get(url, {"recipient": "nobody@nowhere.example"})
    assert response.status_code == 200
    assert "No user with id or email" in str(response.context["form"].errors)
    assert response.context["preview"] is None


def test_preview_uses_language_specific_part(client, operator, email_type):
    TemplatePartFactory(message_type=email_type, language="fr", content="Bonjour {{ first_name }}")
    client.force_login(operator)
    url = reverse("admin:campaigns_messagetypedefinition_preview", args=[email_type.pk])
    fr = client.get(url, {"language": "fr"}).context["preview"].channels[0]
    assert fr.fields["subject"] == f"Bonjour {operator.first_name}"
    en = client.get(url, {"language": "en"}).context["preview"].channels[0]
    assert en.fields["subject"] == f"Sample headline for {operator.first_name}"


def test_test_send_arrives_in_outbox(client, operator, email_type):
    client.force_login(operator)
    url = reverse("admin:campaigns_messagetypedefinition_test_send", args=[email_type.pk])
    response = client.post(url, follow=True)
    assert response.status_code == 200
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == [operator.email]
    assert sent.subject == f"[TEST] Sample headline for {operator.first_name}"
    assert any("Test sent to" in m for m in messages_of(response))


def test_test_send_needs_permission(client, approver, auditor, email_type):
    url = reverse("admin:campaigns_messagetypedefinition_test_send", args=[email_type.pk])
    for user in (approver, auditor):
        client.force_login(user)
        assert client.post(url).status_code == 403
    assert mail.outbox == []


def test_test_send_get_sends_nothing(client, operator, email_type):
    client.force_login(operator)
    url = reverse("admin:campaigns_messagetypedefinition_test_send", args=[email_type.pk])
    assert client.get(url).status_code == 302
    assert mail.outbox == []


def test_test_send_without_own_address_explains(client, operator, email_type):
    operator.email = ""
    operator.save()
    client.force_login(operator)
    url = reverse("admin:campaigns_messagetypedefinition_test_send", args=[email_type.pk])
    response = client.post(url, follow=True)
    assert mail.outbox == []
    assert any("no email address" in m for m in messages_of(response))


def test_test_send_through_real_smtp(client, operator, email_type, smtp_backend):
    client.force_login(operator)
    url = reverse("admin:campaigns_messagetypedefinition_test_send", args=[email_type.pk])
    client.post(url)
    received = smtp_backend.messages_to(operator.email)
    assert len(received) == 1
    assert "Hello <b>" in received[0].part("html")
    assert received[0].message["List-Unsubscribe"]


def test_saving_a_part_in_the_admin_changes_the_next_render(client, operator, email_type):
    from django.template import loader

    path = "campaigns/edx_ace/newsletter/email/subject.txt"
    assert loader.get_template(path).render({"headline": "H", "first_name": "A"}) == "H for A"
    client.force_login(operator)
    page = client.get(_change_url(email_type))
    email_prefix = inline_prefixes(page)[0]
    data = admin_form_data(page)
    subject_index = next(
        i
        for i, form in enumerate(page.context["inline_admin_formsets"][0].formset.forms)
        if form.instance.filename == "subject.txt"
    )
    data[f"{email_prefix}-{subject_index}-content"] = "New {{ headline }}"
    response = client.post(_change_url(email_type), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    assert TemplatePart.objects.get(message_type=email_type, filename="subject.txt").content == (
        "New {{ headline }}"
    )
    assert loader.get_template(path).render({"headline": "H"}) == "New H"
