"""The feedback admin: the suppression list (see, search, export, add by hand, lift with its
permission), the events (unmatched ones listed), and bounces kept for review."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from campaigns.feedback import services
from campaigns.feedback.models import DeliveryEvent, Suppression, UnparsedBounce
from tests.campaigns.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

LIST = reverse("admin:campaigns_suppression_changelist")
ADD = reverse("admin:campaigns_suppression_add")
EXPORT = reverse("admin:campaigns_suppression_export")
EVENTS = reverse("admin:campaigns_deliveryevent_changelist")
UNPARSED = reverse("admin:campaigns_unparsedbounce_changelist")
Reason = Suppression.Reason


def staff(*perms: str):
    user = StaffUserFactory()
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


@pytest.fixture
def listed(db):
    made = {
        address: services.suppression_add(
            address=address, reason=reason, detail=f"because {reason}"
        )[0]
        for address, reason in [
            ("ada@example.net", Reason.HARD_BOUNCE),
            ("bob@example.net", Reason.COMPLAINT),
        ]
    }
    # Not a valid address, so not through the service: an export must still be safe.
    formula = "=cmd|' /C calc'!A0@example.net"
    made[formula] = Suppression.objects.create(address=formula, reason=Reason.MANUAL)
    return made


def _ids(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


def test_viewers_see_and_search_but_cannot_change_or_delete(client, listed):
    viewer = staff("campaigns.view_suppression")
    client.force_login(viewer)
    assert client.get(LIST).status_code == 200
    assert _ids(client.get(LIST, {"q": "ADA@"})) == {listed["ada@example.net"].pk}
    assert _ids(client.get(LIST, {"reason": "complaint"})) == {listed["bob@example.net"].pk}
    change = reverse("admin:campaigns_suppression_change", args=[listed["ada@example.net"].pk])
    page = client.get(change)
    assert page.status_code == 200 and b"because hard_bounce" in page.content
    assert b'name="_save"' not in page.content
    assert client.get(ADD).status_code == 403
    delete = reverse("admin:campaigns_suppression_delete", args=[listed["ada@example.net"].pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    # The lift action is not offered without the permission.
    assert b"lift_suppressions" not in client.get(LIST).content


def test_lifting_from_the_list_needs_the_permission(client, listed):
    ada = listed["ada@example.net"]
    viewer = staff("campaigns.view_suppression")
    client.force_login(viewer)
    client.post(LIST, {"action": "lift_suppressions", "_selected_action": [ada.pk]})
    ada.refresh_from_db()
    assert ada.active
    lifter = staff("campaigns.view_suppression", "campaigns.lift_suppression")
    client.force_login(lifter)
    assert b"lift_suppressions" in client.get(LIST).content
    response = client.post(
        LIST, {"action": "lift_suppressions", "_selected_action": [ada.pk]}, follow=True
    )
    assert "1 suppression lifted." in [str(m) for m in response.context["messages"]]
    ada.refresh_from_db()
    assert not ada.active and ada.lifted_by == lifter
    assert _ids(client.get(LIST, {"state": "lifted"})) == {ada.pk}


def test_adding_by_hand(client, listed):
    user = staff("campaigns.view_suppression", "campaigns.add_suppression")
    client.force_login(user)
    response = client.post(ADD, {"address": " Cy@Example.net ", "detail": "asked by phone"})
    assert response.status_code == 302
    added = Suppression.objects.get(address="cy@example.net")
    assert (added.reason, added.detail, added.created_by) == ("manual", "asked by phone", user)
    again = client.post(ADD, {"address": "ada@example.net", "detail": ""})
    assert again.status_code == 200
    assert "Already suppressed: Hard bounce." in again.content.decode()
    bad = client.post(ADD, {"address": "nope", "detail": ""})
    assert "not an email address" in bad.content.decode()


def _export(client, fmt: int, **params):
    query = "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""
    page = client.get(EXPORT + query)
    assert page.status_code == 200
    data = {"format": str(fmt), "resource": "0"}
    for name in page.context["form"].fields:
        if name.startswith("suppressionresource_"):
            data[name] = "on"
    return client.post(EXPORT + query, data)


def test_export_csv_and_xlsx_neutralise_formulas(client, listed):
    client.force_login(staff("campaigns.view_suppression"))
    response = _export(client, 0, reason="hard_bounce")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(r["address"], r["reason"]) for r in rows] == [("ada@example.net", "hard_bounce")]
    everything = _export(client, 1)
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(everything.streaming_content))).active
    header = [cell.value for cell in sheet[1]]
    assert header[:3] == ["address", "reason", "detail"]
    addresses = {row[0].value for row in sheet.iter_rows(min_row=2)}
    assert "'=cmd|' /C calc'!A0@example.net" in addresses
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)


def test_export_needs_view_permission(client, listed):
    client.force_login(staff())
    assert client.get(EXPORT).status_code == 403


def test_events_list_shows_unmatched_ones(client, sent_delivery):
    matched, _ = services.event_record(
        services.Feedback(
            source="Postmark",
            kind="opened",
            recipient="ada@example.net",
            esp_event_id="1",
            clues=services.Clues(header_uuids=[str(sent_delivery.message_uuid)]),
        )
    )
    unmatched, _ = services.event_record(
        services.Feedback(source="Postmark", kind="opened", recipient="x@y.org", esp_event_id="2")
    )
    client.force_login(staff("campaigns.view_deliveryevent"))
    page = client.get(EVENTS)
    assert page.status_code == 200
    assert b"unmatched" in page.content
    assert _ids(client.get(EVENTS, {"matched": "no"})) == {unmatched.pk}
    assert _ids(client.get(EVENTS, {"matched": "yes"})) == {matched.pk}
    assert _ids(client.get(EVENTS, {"q": "x@y"})) == {unmatched.pk}
    detail = client.get(reverse("admin:campaigns_deliveryevent_change", args=[matched.pk]))
    assert detail.status_code == 200
    assert reverse("admin:campaigns_delivery_change", args=[sent_delivery.pk]) in (
        detail.content.decode()
    )
    assert DeliveryEvent.objects.count() == 2


def test_unparsed_bounces_are_shown_escaped_and_can_be_marked_reviewed(client):
    outcome = services.bounce_record(
        b"From: someone@example.net\r\nSubject: <script>alert(1)</script>\r\n\r\nhello\r\n",
        mailbox="imap://bounces@127.0.0.1:143/INBOX",
    )
    bounce = outcome.unparsed
    assert bounce is not None and "not recognised" in bounce.error
    viewer = staff("campaigns.view_unparsedbounce")
    client.force_login(viewer)
    page = client.get(reverse("admin:campaigns_unparsedbounce_change", args=[bounce.pk]))
    assert page.status_code == 200
    assert b"<script>alert(1)</script>" not in page.content
    assert b"&lt;script&gt;" in page.content
    client.post(UNPARSED, {"action": "mark_reviewed", "_selected_action": [bounce.pk]})
    bounce.refresh_from_db()
    assert bounce.reviewed_at is None  # needs the change permission
    reviewer = staff("campaigns.view_unparsedbounce", "campaigns.change_unparsedbounce")
    client.force_login(reviewer)
    client.post(UNPARSED, {"action": "mark_reviewed", "_selected_action": [bounce.pk]})
    bounce.refresh_from_db()
    assert bounce.reviewed_by == reviewer
    assert UnparsedBounce.objects.count() == 1
