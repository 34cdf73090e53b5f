"""The main admin flows in a real browser (headless Chromium): what each role sees and can do.

1. An operator defines a message type; a template syntax error shows on its field.
2. An operator composes a campaign (bad JSON refused), previews it (HTML in a sandboxed
   iframe) and sends themselves a test.
3. Approval needs a second person: the author is told so, an approver approves.
4. An auditor filters the delivery log and gets no way to change or delete it.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from selenium.webdriver.common.by import By

from campaigns.models import Campaign, Delivery, MessageTypeDefinition
from tests.browser.admin_browser import AdminBrowser
from tests.campaigns.factories import (
    CampaignFactory,
    CampaignRunFactory,
    DeliveryFactory,
    MessageTypeDefinitionFactory,
    RecipientSourceFactory,
    StaffUserFactory,
    email_template_parts,
)

pytestmark = pytest.mark.django_db(transaction=True)

#: The sandboxed preview must not run this: it would overwrite the greeting.
BODY_HTML = (
    '<p id="greeting">Hello {{ first_name }}</p>'
    '<script>document.getElementById("greeting").textContent = "script ran";</script>'
)


def staff_in(*groups: str, username: str):
    """A staff user (password "password") in the given role groups."""
    user = StaffUserFactory(username=username)
    user.groups.add(*Group.objects.filter(name__in=groups))
    return user


def newsletter() -> MessageTypeDefinition:
    definition = MessageTypeDefinitionFactory(name="newsletter")
    email_template_parts(
        definition,
        subject="{{ headline }} for {{ first_name }}",
        body_text="Hello {{ first_name }}. {{ headline }}",
        body_html=BODY_HTML,
    )
    return definition


def inline_form_for(browser: AdminBrowser, filename: str) -> str:
    """The id prefix (``id_template_parts-N``) of the email inline form editing ``filename``."""
    for select in browser.find_all("#template_parts-group select[name$='-filename']"):
        if select.get_attribute("value") == filename:
            return select.get_attribute("id").removesuffix("-filename")
    raise AssertionError(f"no email template form for {filename}")


def test_operator_creates_a_message_type_and_sees_template_errors(browser: AdminBrowser):
    staff_in("Operators", username="olivia")
    browser.log_in("olivia")
    browser.open_model("Message type definitions")
    browser.press(".object-tools a.addlink")

    browser.fill("id_name", "spring-news")
    browser.fill("id_sample_context", '{"headline": "Spring is here"}')
    subject = inline_form_for(browser, "subject.txt") + "-content"
    browser.fill(subject, "{% if headline %}{{ headline }}")  # no {% endif %}
    browser.fill(inline_form_for(browser, "body.txt") + "-content", "Hello {{ first_name }}")
    browser.fill(inline_form_for(browser, "body.html") + "-content", "<p>{{ headline }}</p>")
    browser.press("input[name=_save]")

    assert "Please correct the error" in browser.find("p.errornote").text
    assert "Unclosed tag" in browser.field_error(subject)
    assert "endif" in browser.field_error(subject)
    assert not MessageTypeDefinition.objects.filter(name="spring-news").exists()

    browser.fill(subject, "{% if headline %}{{ headline }}{% endif %}")
    browser.press("input[name=_save]")

    assert any("was added successfully" in m for m in browser.messages())
    row = browser.result_row("campaigns/spring-news")
    assert row.find_element(By.CSS_SELECTOR, "td.field-source").text == "Edited in the admin"
    assert row.find_element(By.CSS_SELECTOR, "td.field-channels_display").text == "email"


def test_operator_composes_previews_and_test_sends_a_campaign(browser: AdminBrowser):
    operator = staff_in("Operators", username="olivia")
    definition = newsletter()
    audience = RecipientSourceFactory(name="Everyone")
    browser.log_in("olivia")
    browser.open_model("Campaigns")
    browser.press(".object-tools a.addlink")

    browser.fill("id_name", "Spring")
    browser.choose("id_message_type", value=str(definition.pk))
    browser.choose("id_recipient_source", value=str(audience.pk))
    assert browser.find("input[name=channels][value=email]").is_selected()
    browser.fill("id_context", '{"headline": "Spring is here",}')  # trailing comma
    browser.press("input[name=_continue]")

    assert browser.field_error("id_context") == "Enter a valid JSON."
    assert not Campaign.objects.exists()

    browser.fill("id_context", '{"headline": "Spring is here"}')
    browser.press("input[name=_continue]")
    assert any("was added successfully" in m for m in browser.messages())
    assert browser.readonly("status") == "Draft"

    # The preview renders for the audience's first recipient (the operator, the only user).
    browser.click_link("Preview")
    assert f"For {operator.email}" in browser.page_text()
    fields = {label.text: label for label in browser.find_all("fieldset .form-row label")}
    subject = fields["subject"].find_element(By.XPATH, "following-sibling::pre")
    assert subject.text == f"Spring is here for {operator.first_name}"
    frame = browser.find("iframe.preview-html")
    assert frame.get_attribute("sandbox") == ""  # present and empty: no scripts, no forms
    browser.driver.switch_to.frame(frame)
    try:
        greeting = browser.find("#greeting").text
    finally:
        browser.driver.switch_to.default_content()
    assert greeting == f"Hello {operator.first_name}"  # the script in the HTML did not run

    browser.press_button(f"Send me a test ({operator.email})")
    assert f"Test sent to {operator.email}: email sent." in browser.messages()
    assert [m.to for m in mail.outbox] == [[operator.email]]
    assert mail.outbox[0].subject == f"[TEST] Spring is here for {operator.first_name}"


def test_a_second_person_approves_the_campaign(browser: AdminBrowser):
    lead = staff_in("Operators", "Approvers", username="lena")  # may approve, but not her own
    approver = staff_in("Approvers", username="arthur")
    campaign = CampaignFactory(
        name="Spring",
        message_type=newsletter(),
        recipient_source=RecipientSourceFactory(),
        context={"headline": "Spring is here"},
        created_by=lead,
    )
    change_url = f"/admin/campaigns/campaign/{campaign.pk}/change/"

    browser.log_in("lena")
    browser.visit(change_url)
    browser.press_button("Approve")
    assert browser.messages() == ["You can't approve a campaign you created; ask another approver."]
    assert browser.readonly("status") == "Draft"

    browser.log_in("arthur")
    browser.visit(change_url)
    browser.press_button("Approve")
    assert browser.messages() == ["Campaign “Spring” is approved."]
    assert browser.readonly("status") == "Approved"
    assert browser.readonly("approved_by") == approver.username
    assert not browser.find_all("form[action$='/approve/'] button")  # nothing left to approve


def test_auditor_filters_the_delivery_log_without_change_controls(browser: AdminBrowser):
    staff_in("Auditors", username="audrey")
    run = CampaignRunFactory(campaign=CampaignFactory(name="Spring"))
    DeliveryFactory(run=run, email="ok1@example.org")
    DeliveryFactory(run=run, email="ok2@example.org")
    failed = DeliveryFactory(
        run=run,
        email="bounced@example.org",
        status=Delivery.Status.FAILED,
        reason="550 mailbox unavailable",
        sent_at=None,
    )

    browser.log_in("audrey")
    browser.open_model("Deliveries")
    assert sorted(browser.texts("#result_list td.field-email")) == [
        "bounced@example.org",
        "ok1@example.org",
        "ok2@example.org",
    ]
    browser.press("#changelist-filter a[href*='status__exact=failed']")

    assert "status__exact=failed" in browser.driver.current_url
    assert browser.texts("#result_list td.field-email") == ["bounced@example.org"]
    assert browser.texts("#result_list td.field-status") == ["Failed"]
    assert browser.texts("#result_list td.field-short_reason") == ["550 mailbox unavailable"]
    # Read-only: no add button, no bulk actions (delete), but the export is there.
    assert not browser.find_all("#content a.addlink")
    assert not browser.find_all("select[name=action]")
    assert not browser.find_all("#action-toggle")
    assert browser.find_all("a.export_link, a[href*='/export/']")

    browser.press(f"#result_list a[href*='/{failed.pk}/']")
    assert browser.find("#content h1").text == "View delivery"
    assert browser.readonly("reason") == "550 mailbox unavailable"
    assert not browser.find_all(".submit-row input[type=submit]")
    assert not browser.find_all("a.deletelink")
