"""The delivery log in the admin: read-only, searchable, filterable, exportable (CSV streamed)."""

import csv
import io

import openpyxl
import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse

from campaigns.models import Delivery
from campaigns.resources import DeliveryResource
from tests.campaigns.factories import CampaignRunFactory, DeliveryFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("camp_admin_env")]

LIST_URL = reverse("admin:campaigns_delivery_changelist")
EXPORT_URL = reverse("admin:campaigns_delivery_export")


@pytest.fixture
def log(db):
    run_a = CampaignRunFactory(campaign__name="Alpha")
    run_b = CampaignRunFactory(campaign__name="Beta")
    return {
        "ada": DeliveryFactory(run=run_a, email="ada@example.org", user_id=900101),
        "bob": DeliveryFactory(
            run=run_a,
            email="bob@example.org",
            user_id=900102,
            status=Delivery.Status.FAILED,
            reason="550 mailbox unavailable",
            exception_type="FatalChannelDeliveryError",
        ),
        "cy": DeliveryFactory(
            run=run_b, email="=cmd|' /C calc'!A0", user_id=900103, channel="push"
        ),
    }


def _ids(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


def test_auditor_reads_but_cannot_add_change_or_delete(client, auditor, log):
    client.force_login(auditor)
    assert client.get(LIST_URL).status_code == 200
    ada = log["ada"]
    change = reverse("admin:campaigns_delivery_change", args=[ada.pk])
    page = client.get(change)
    assert page.status_code == 200 and not page.context["has_change_permission"]
    assert client.post(change, {"status": "sent"}).status_code == 403
    assert client.get(reverse("admin:campaigns_delivery_add")).status_code == 403
    delete = reverse("admin:campaigns_delivery_delete", args=[ada.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Delivery.objects.filter(pk=ada.pk).exists()


def test_even_superuser_cannot_edit_the_log(admin_client, log):
    change = reverse("admin:campaigns_delivery_change", args=[log["ada"].pk])
    assert admin_client.post(change, {"status": "failed"}).status_code == 403
    assert admin_client.get(reverse("admin:campaigns_delivery_add")).status_code == 403
    actions = admin_client.get(LIST_URL).context["action_form"]
    assert actions is None or "delete_selected" not in dict(actions.fields["action"].choices)


def test_search_by_email_and_user_id(client, auditor, log):
    client.force_login(auditor)
    assert _ids(client.get(LIST_URL, {"q": "bob@"})) == {log["bob"].pk}
    assert _ids(client.get(LIST_URL, {"q": "900103"})) == {log["cy"].pk}
    assert _ids(client.get(LIST_URL, {"q": "nobody"})) == set()


def test_filters(client, auditor, log):
    client.force_login(auditor)
    alpha = log["ada"].run.campaign
    assert _ids(client.get(LIST_URL, {"run__campaign__id__exact": alpha.pk})) == {
        log["ada"].pk,
        log["bob"].pk,
    }
    assert _ids(client.get(LIST_URL, {"status": "failed"})) == {log["bob"].pk}
    assert _ids(client.get(LIST_URL, {"channel": "push"})) == {log["cy"].pk}
    assert _ids(client.get(LIST_URL, {"run__id__exact": log["cy"].run.pk})) == {log["cy"].pk}


def test_list_query_count_does_not_grow(client, auditor, log, django_assert_max_num_queries):
    DeliveryFactory.create_batch(30, run=log["ada"].run)
    client.force_login(auditor)
    with django_assert_max_num_queries(12):
        assert client.get(LIST_URL).status_code == 200


def _export(client, fmt: int, **params):
    page = client.get(EXPORT_URL + ("?" + "&".join(f"{k}={v}" for k, v in params.items())))
    assert page.status_code == 200
    form = page.context["form"]
    data = {"format": str(fmt), "resource": "0"}
    for name in form.fields:
        if name.startswith("deliveryresource_"):
            data[name] = "on"
    target = EXPORT_URL + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")
    return client.post(target, data)


def test_csv_export_streams_every_row_with_campaign(client, auditor, log):
    client.force_login(auditor)
    response = _export(client, 0)
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_email = {row["email"]: row for row in rows}
    assert len(rows) == 3
    assert by_email["bob@example.org"]["campaign"] == "Alpha"
    assert by_email["bob@example.org"]["reason"] == "550 mailbox unavailable"
    assert by_email["bob@example.org"]["status"] == "failed"
    # A formula in a cell is neutralised.
    assert "'=cmd|' /C calc'!A0" in by_email


def test_csv_export_respects_filters(client, auditor, log):
    client.force_login(auditor)
    response = _export(client, 0, status="failed")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["email"] for row in rows] == ["bob@example.org"]


def test_xlsx_export(client, auditor, log):
    client.force_login(auditor)
    response = _export(client, 1)
    assert response.status_code == 200
    content = b"".join(response.streaming_content)
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    header = [cell.value for cell in sheet[1]]
    assert "campaign" in header and "email" in header
    assert sheet.max_row == 4
    column = header.index("email")
    cells = {row[column].value: row[column] for row in sheet.iter_rows(min_row=2)}
    # Neutralised as in the CSV file, and a text cell (never a formula).
    assert "'=cmd|' /C calc'!A0" in cells
    assert cells["'=cmd|' /C calc'!A0"].data_type == "s"
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)


def test_export_needs_view_permission(client, bare_staff, log):
    client.force_login(bare_staff)
    assert client.get(EXPORT_URL).status_code == 403
    assert client.post(EXPORT_URL, {"format": "0", "resource": "0"}).status_code == 403


def test_export_queries_are_constant(log, django_assert_max_num_queries):
    DeliveryFactory.create_batch(50, run=log["bob"].run)
    resource = DeliveryResource()
    with django_assert_max_num_queries(3):
        dataset = resource.export()
    assert len(dataset) == 53
    row = dict(zip(dataset.headers, dataset[-1], strict=True))
    assert row["campaign"] == log["ada"].run.campaign.name
    assert row["sent_at"].endswith("+00:00")  # ISO 8601, UTC
