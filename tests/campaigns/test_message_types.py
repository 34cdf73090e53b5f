"""Message type services: template validation (sandbox), part completeness, code-type sync."""

import pytest
from django.core.exceptions import ValidationError

from ace import MessageType
from campaigns.message_types import CampaignAnnouncement, registered_message_types
from campaigns.models import MessageTypeDefinition, TemplatePart
from campaigns.services import message_types as svc
from campaigns.templating import ERROR_FORBIDDEN_NAME
from tests.campaigns.factories import MessageTypeDefinitionFactory, TemplatePartFactory

pytestmark = pytest.mark.django_db


def _error(content, filename="body.txt"):
    with pytest.raises(ValidationError) as info:
        svc.template_source_validate(content=content, filename=filename)
    return " ".join(info.value.messages)


def test_valid_template_passes():
    svc.template_source_validate(
        content="{% load i18n static %}{% trans 'Hi' %} {{ name|default:'you' }}",
        filename="body.html",
    )


def test_syntax_error_names_line():
    message = _error("line one\n{% if x %}no end")
    assert "Line 2" in message or "line 2" in message
    assert "endif" in message


def test_unknown_tag_names_line():
    message = _error("ok\n\n{% frobnicate %}")
    assert "line 3" in message and "frobnicate" in message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ settings.SECRET_KEY }}", ERROR_FORBIDDEN_NAME % "settings"),
        ("{% if request %}x{% endif %}", ERROR_FORBIDDEN_NAME % "request"),
        ("{% for p in perms %}{% endfor %}", ERROR_FORBIDDEN_NAME % "perms"),
        ("{% debug %}", "The {% debug %} tag is not allowed"),
        ("{% load admin_urls %}", "'admin_urls' is not a registered tag library"),
        ("{% load log from admin_list %}", "'admin_list' is not a registered tag library"),
        ("{% include 'admin/base.html' %}", "may only use ACE template paths"),
        ("{% include name %}", "needs a quoted ACE template path"),
        ("{% extends 'base.html' %}", "may only use ACE template paths"),
        ("{% include 'campaigns/edx_ace/../../etc/x' %}", "may only use ACE template paths"),
    ],
)
def test_sandbox_rules_refused_with_clear_message(source, expected):
    assert expected in _error(source)


def test_allowed_libraries_and_ace_includes_pass():
    svc.template_source_validate(
        content="{% load i18n l10n tz static acetags %}"
        "{% include 'campaigns/edx_ace/common/footer.html' %}",
        filename="body.html",
    )


def test_single_line_parts():
    assert "single line" in _error("Hello\nWorld", filename="subject.txt")
    svc.template_source_validate(content="Hello\n", filename="subject.txt")


def test_parts_validate_requires_fallback_required_files():
    with pytest.raises(ValidationError) as info:
        svc.template_parts_validate(
            channel="email", parts=[("subject.txt", ""), ("body.txt", "fr")]
        )
    text = " ".join(info.value.messages)
    assert "Body (text)" in text and "Body (HTML)" in text and "any language" in text


def test_parts_validate_duplicates_and_wrong_channel():
    with pytest.raises(ValidationError) as info:
        svc.template_parts_validate(
            channel="push",
            parts=[("title.txt", ""), ("title.txt", ""), ("body.txt", ""), ("subject.txt", "")],
        )
    text = " ".join(info.value.messages)
    assert "two Push notification “Title (push)” parts" in text
    assert "Subject is not a Push notification template" in text


def test_parts_validate_accepts_complete_set_and_empty():
    svc.template_parts_validate(
        channel="email",
        parts=[("subject.txt", ""), ("body.txt", ""), ("body.html", ""), ("subject.txt", "fr")],
    )
    svc.template_parts_validate(channel="email", parts=[])


def test_fill_optional_parts_creates_empty_ones_once():
    mt = MessageTypeDefinitionFactory()
    for filename in ("subject.txt", "body.txt", "body.html"):
        TemplatePartFactory(message_type=mt, filename=filename)
    created = svc.message_type_fill_optional_parts(message_type=mt)
    assert {p.filename for p in created} == {"from_name.txt", "head.html"}
    assert all(p.content == "" for p in created)
    assert svc.message_type_fill_optional_parts(message_type=mt) == []


def test_sync_creates_updates_and_reports():
    MessageTypeDefinition.objects.filter(source="code").delete()

    class Reminder(MessageType):
        """Reminds people.

        More text."""

        APP_LABEL = "campaigns"
        SAMPLE_CONTEXT = {"a": 1}

    report = svc.message_type_sync_code_defined(classes={"reminder": Reminder})
    assert report.created == ["campaigns/reminder"]
    row = MessageTypeDefinition.objects.get(name="reminder")
    assert row.source == MessageTypeDefinition.Source.CODE
    assert row.description == "Reminds people."
    assert row.sample_context == {"a": 1}
    assert row.code_path.endswith("Reminder")

    again = svc.message_type_sync_code_defined(classes={"reminder": Reminder})
    assert again.unchanged == ["campaigns/reminder"] and not again.created

    Reminder.SAMPLE_CONTEXT = {"a": 2}
    assert svc.message_type_sync_code_defined(classes={"reminder": Reminder}).updated
    assert svc.message_type_sync_code_defined(classes={}).stale == ["campaigns/reminder"]


def test_sync_never_overwrites_database_type():
    MessageTypeDefinition.objects.filter(name="campaignannouncement").delete()
    MessageTypeDefinitionFactory(app_label="campaigns", name="campaignannouncement")
    report = svc.message_type_sync_code_defined(
        classes={"campaignannouncement": CampaignAnnouncement}
    )
    assert report.conflicts == ["campaigns/campaignannouncement"]
    row = MessageTypeDefinition.objects.get(name="campaignannouncement")
    assert row.source == MessageTypeDefinition.Source.DATABASE


def test_entry_point_registers_sample_type_and_migrate_synced_it():
    assert registered_message_types()["campaignannouncement"] is CampaignAnnouncement
    row = MessageTypeDefinition.objects.get(app_label="campaigns", name="campaignannouncement")
    assert row.source == MessageTypeDefinition.Source.CODE
    assert row.sample_context["headline"]


def test_message_type_instance_for_code_and_database_types():
    code_row = MessageTypeDefinition.objects.get(name="campaignannouncement")
    instance = svc.message_type_instance(definition=code_row, context={"x": 1})
    assert isinstance(instance, CampaignAnnouncement)
    assert instance.options["campaign_message_type_id"] == code_row.pk
    db_row = MessageTypeDefinitionFactory(app_label="campaigns", name="hello")
    plain = svc.message_type_instance(definition=db_row)
    assert type(plain) is MessageType
    assert (plain.app_label, plain.name) == ("campaigns", "hello")


def test_broken_code_path_is_a_campaign_error():
    from campaigns.exceptions import CampaignError

    row = MessageTypeDefinitionFactory(source="code", code_path="nowhere.Missing")
    with pytest.raises(CampaignError, match="cannot be imported"):
        svc.message_type_class(definition=row)


def test_template_part_constraint_language_normalised_by_form():
    from campaigns.forms import EmailTemplatePartForm

    form = EmailTemplatePartForm(
        data={"channel": "push", "filename": "subject.txt", "language": "pt-br", "content": "x"}
    )
    assert form.is_valid(), form.errors
    assert form.cleaned_data["channel"] == "email"  # the inline decides, not the browser
    assert form.cleaned_data["language"] == "pt-br"
    bad = EmailTemplatePartForm(
        data={"filename": "title.txt", "language": "", "content": "{% if %}"}
    )
    assert not bad.is_valid()
    assert "filename" in bad.errors
    assert TemplatePart.objects.count() == 0


# ----------------------------------------------------------------------------------------------
# Limits refused when a template is saved (V4)
# ----------------------------------------------------------------------------------------------

OWN_PATH = svc.template_part_path(
    app_label="campaigns", name="promo", channel="email", filename="body.html"
)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{{ "x"|ljust:"300000000" }}', "|ljust:300000000 is over the limit of 1000"),
        ("ok\n{{ name|center:'5000' }}", "Line 2: |center:5000 is over the limit of 1000"),
        ('{{ price|floatformat:"100000" }}', "|floatformat:100000 is over the limit"),
        ('{{ n|stringformat:"99999s" }}', "|stringformat:99999s is over the limit"),
        ("{% lorem 100000000 w %}", "The {% lorem %} tag is not allowed"),
        ("{% if a %}" * 60 + "{% endif %}" * 60, "Tags are nested more than 50 deep"),
    ],
)
def test_amplifying_arguments_refused_with_clear_message(source, expected):
    assert expected in _error(source)


def test_width_within_the_limit_passes(settings):
    svc.template_source_validate(content='{{ name|ljust:"40" }}{{ p|floatformat:2 }}')
    settings.CAMPAIGNS_TEMPLATE_MAX_FILTER_WIDTH = 20
    assert "over the limit of 20" in _error('{{ name|ljust:"40" }}')


def _path_error(content, path=OWN_PATH):
    with pytest.raises(ValidationError) as info:
        svc.template_source_validate(content=content, filename="body.html", path=path)
    return " ".join(info.value.messages)


@pytest.mark.parametrize("tag", ["include", "extends"])
def test_a_template_including_itself_is_refused_at_save(tag):
    message = _path_error(f"{{% {tag} '{OWN_PATH}' %}}")
    assert "Line 1" in message and "would include itself" in message


def test_a_template_including_itself_through_another_is_refused_at_save():
    footer = MessageTypeDefinitionFactory(name="footer")
    TemplatePartFactory(
        message_type=footer,
        channel="email",
        filename="body.html",
        content=f"{{% include '{OWN_PATH}' %}}",
    )
    footer_path = svc.template_part_path(
        app_label="campaigns", name="footer", channel="email", filename="body.html"
    )
    message = _path_error(f"Hi\n{{% include '{footer_path}' %}}")
    assert "Line 2" in message and f"{OWN_PATH} → {footer_path} → itself" in message
    # Without the template's own path (older callers), the same source still compiles.
    svc.template_source_validate(content=f"{{% include '{footer_path}' %}}", filename="body.html")


def test_includes_nesting_deeper_than_the_render_limit_are_refused_at_save(settings):
    settings.CAMPAIGNS_TEMPLATE_MAX_INCLUDE_DEPTH = 2
    paths = [
        svc.template_part_path(
            app_label="campaigns", name=f"l{i}", channel="email", filename="body.html"
        )
        for i in range(3)
    ]
    for i in range(3):
        TemplatePartFactory(
            message_type=MessageTypeDefinitionFactory(name=f"l{i}"),
            channel="email",
            filename="body.html",
            content="end" if i == 2 else f"{{% include '{paths[i + 1]}' %}}",
        )
    message = _path_error(f"x\n{{% include '{paths[0]}' %}}")
    assert "Line 2" in message and "nest more than 2 deep" in message and paths[2] in message
    settings.CAMPAIGNS_TEMPLATE_MAX_INCLUDE_DEPTH = 3
    svc.template_source_validate(content=f"{{% include '{paths[0]}' %}}", path=OWN_PATH)


def test_the_admin_part_form_refuses_a_part_that_includes_itself():
    from campaigns.forms import EmailTemplatePartForm

    owner = MessageTypeDefinitionFactory()
    own = svc.template_part_path(
        app_label=owner.app_label, name=owner.name, channel="email", filename="body.html"
    )
    data = {"filename": "body.html", "language": "", "content": f"{{% include '{own}' %}}"}
    form = EmailTemplatePartForm(data=data, instance=TemplatePart(message_type=owner))
    assert not form.is_valid()
    assert "would include itself" in " ".join(form.errors["content"])
    fine = {**data, "content": "Hello {{ name }}"}
    assert EmailTemplatePartForm(data=fine, instance=TemplatePart(message_type=owner)).is_valid()
