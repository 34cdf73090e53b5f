"""Recipient list imports are bounded (V7): size, rows, XLSX decompression bombs, control
characters, and uploaded files never left behind."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import openpyxl
import pytest
from django.urls import reverse
from tablib import Dataset

import campaigns.admin.audience  # noqa: F401  (registers the audience admin)
from campaigns.models import RecipientListEntry
from campaigns.resources import RecipientListEntryResource
from campaigns.services import imports
from tests.campaigns import factories as f
from tests.campaigns.audience.test_recipient_import import (
    CSV_FORMAT,
    GOOD_ROWS,
    IMPORT_URL,
    XLSX_FORMAT,
    _errors_by_row,
    confirm,
    csv_file,
    preview,
    xlsx_file,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path: Path) -> Path:
    settings.VAR_DIR = tmp_path
    return tmp_path


def leftovers(var_dir: Path) -> list[Path]:
    folder = var_dir / "imports"
    return sorted(folder.iterdir()) if folder.exists() else []


def file_errors(response) -> list[str]:
    return response.context["form"].errors.get("import_file", [])


def test_a_file_over_the_size_limit_is_refused_with_a_form_error(admin_client, settings):
    settings.CAMPAIGNS_IMPORT_MAX_BYTES = 1000
    rows = [["email", "first_name"]] + [[f"u{i}@example.org", "x" * 20] for i in range(100)]
    response = preview(admin_client, f.RecipientListFactory(), csv_file(rows), CSV_FORMAT)
    [error] = file_errors(response)
    assert "the largest accepted is 1000" in error
    assert "result" not in response.context  # nothing was parsed
    assert RecipientListEntry.objects.count() == 0


def test_the_default_size_limit_is_20_mb(admin_client):
    big = csv_file([["email"], ["a@example.org"], ["x" * (20 * 1024 * 1024)]])
    response = preview(admin_client, f.RecipientListFactory(), big, CSV_FORMAT)
    [error] = file_errors(response)
    assert "the largest accepted is 20.0\xa0MB" in error


@pytest.mark.parametrize(("make_file", "fmt"), [(csv_file, CSV_FORMAT), (xlsx_file, XLSX_FORMAT)])
def test_a_file_over_the_row_limit_is_refused(admin_client, settings, make_file, fmt):
    settings.CAMPAIGNS_IMPORT_MAX_ROWS = 3
    rows = [["email"]] + [[f"u{i}@example.org"] for i in range(4)]
    response = preview(admin_client, f.RecipientListFactory(), make_file(rows), fmt)
    [error] = file_errors(response)
    assert "more than 3 rows" in error
    ok = preview(admin_client, f.RecipientListFactory(), make_file(rows[:4]), fmt)
    assert not ok.context["form"].errors and "confirm_form" in ok.context


def test_the_resource_refuses_too_many_rows_when_called_directly(settings):
    settings.CAMPAIGNS_IMPORT_MAX_ROWS = 2
    data = Dataset(headers=["email"])
    for i in range(3):
        data.append([f"u{i}@example.org"])
    result = RecipientListEntryResource(recipient_list=f.RecipientListFactory()).import_data(
        data, dry_run=True
    )
    assert result.has_errors()
    assert "the most one import accepts is 2" in str(result.base_errors[0].error)


def xlsx_bomb(unpacked: int) -> bytes:
    """A real workbook plus one member of zeros that unpacks to ``unpacked`` bytes."""
    book = openpyxl.Workbook()
    book.active.append(["email"])
    book.active.append(["a@example.org"])
    buffer = io.BytesIO()
    book.save(buffer)
    with (
        zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z,
        z.open("xl/media/padding.bin", "w", force_zip64=True) as member,
    ):
        chunk = bytes(1024 * 1024)
        for _ in range(unpacked // len(chunk)):
            member.write(chunk)
    return buffer.getvalue()


def test_an_xlsx_decompression_bomb_is_refused_before_it_is_parsed(admin_client, monkeypatch):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = xlsx_bomb(260 * 1024 * 1024)  # ~260 KB that unpack to 260 MB
    assert len(data) < 1024 * 1024
    parsed = []
    monkeypatch.setattr(openpyxl, "load_workbook", lambda *a, **k: parsed.append(1))
    upload = SimpleUploadedFile("bomb.xlsx", data)
    response = preview(admin_client, f.RecipientListFactory(), upload, XLSX_FORMAT)
    [error] = file_errors(response)
    assert "unpacks to 260.0\xa0MB" in error and "refused without being opened" in error
    assert parsed == []


def test_a_file_that_is_not_xlsx_is_refused_clearly(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("list.xlsx", b"email\na@example.org\n")
    response = preview(admin_client, f.RecipientListFactory(), upload, XLSX_FORMAT)
    assert file_errors(response) == [imports.NOT_XLSX]


def test_control_characters_are_refused_on_their_row(admin_client):
    rows = [
        ["email", "first_name", "last_name"],
        ["ok@example.org", "Ok\tTabbed", ""],
        ["nul@example.org", "Ann\x00", ""],
        ["bell@example.org", "", "Lee\x07"],
    ]
    response = preview(admin_client, f.RecipientListFactory(), csv_file(rows), CSV_FORMAT)
    errors = _errors_by_row(response.context["result"])
    assert set(errors) == {2, 3}
    assert errors[2]["first_name"] == [
        "Control character U+0000 is not allowed (only printable text and tabs): remove it."
    ]
    assert "U+0007" in errors[3]["last_name"][0]
    assert "confirm_form" not in response.context
    assert RecipientListEntry.objects.count() == 0


def test_control_characters_in_an_xlsx_file_are_refused_too():
    """openpyxl will not write them, but a file from elsewhere can hold them: the resource
    checks the parsed values whatever the format."""
    data = Dataset(headers=["email", "first_name"])
    data.append(["a@example.org", "A\x00"])
    data.append(["b@example.org", "B\x1b[31m"])
    result = RecipientListEntryResource(recipient_list=f.RecipientListFactory()).import_data(
        data, dry_run=True
    )
    errors = _errors_by_row(result)
    assert "U+0000" in errors[1]["first_name"][0] and "U+001B" in errors[2]["first_name"][0]


# Temporary files ------------------------------------------------------------------------------


def test_the_uploaded_file_waits_privately_and_is_removed_after_the_import(admin_client, var_dir):
    rlist = f.RecipientListFactory()
    response = preview(admin_client, rlist, csv_file(GOOD_ROWS), CSV_FORMAT)
    [waiting] = leftovers(var_dir)
    assert waiting.parent.stat().st_mode & 0o777 == 0o700
    assert waiting.stat().st_mode & 0o777 == 0o600
    done = confirm(admin_client, response)
    assert done.status_code == 302
    assert rlist.entries.count() == 3
    assert leftovers(var_dir) == []


def test_a_refused_preview_leaves_no_file(admin_client, var_dir):
    rows = [["email"], ["not-an-address"]]
    response = preview(admin_client, f.RecipientListFactory(), csv_file(rows), CSV_FORMAT)
    assert response.context["result"].has_validation_errors()
    assert leftovers(var_dir) == []


def test_a_failed_confirmation_leaves_no_file(admin_client, var_dir):
    rlist = f.RecipientListFactory()
    response = preview(admin_client, rlist, csv_file(GOOD_ROWS), CSV_FORMAT)
    f.RecipientListEntryFactory(recipient_list=rlist, email="carol@example.org")
    done = confirm(admin_client, response)
    assert done.status_code == 302 and rlist.entries.count() == 1
    assert leftovers(var_dir) == []


def test_confirming_twice_or_a_foreign_name_says_the_import_expired(admin_client, var_dir):
    rlist = f.RecipientListFactory()
    response = preview(admin_client, rlist, csv_file(GOOD_ROWS), CSV_FORMAT)
    assert confirm(admin_client, response).status_code == 302
    again = confirm(admin_client, response)
    assert again.status_code == 302 and again["Location"] == reverse(IMPORT_URL)
    assert rlist.entries.count() == 3
    page = admin_client.get(again["Location"])
    assert "This import has expired" in page.content.decode()


def test_files_never_confirmed_are_swept_after_their_maximum_age(settings, var_dir):
    settings.CAMPAIGNS_IMPORT_TMP_MAX_AGE_SECONDS = 60
    old, fresh = imports.PrivateTempStorage(), imports.PrivateTempStorage()
    old.save(b"email\n")
    stale = time.time() - 120
    os.utime(imports.import_dir() / old.name, (stale, stale))
    fresh.save(b"email\n")  # saving sweeps
    assert [p.name for p in leftovers(var_dir)] == [fresh.name]


def test_the_storage_refuses_names_that_are_not_its_own():
    storage = imports.PrivateTempStorage(name="../../etc/passwd", read_mode="rb")
    with pytest.raises(imports.ImportExpired):
        storage.read()


def test_xlsx_rows_are_counted_by_their_number_like_openpyxl_reads_them(settings):
    """A sheet with two rows, the second numbered 150000, is read as 150000 rows (openpyxl
    fills the gap), so it is over the limit; counted from the XML, without parsing cells."""
    book = openpyxl.Workbook()
    book.active["A1"] = "email"
    book.active["A150000"] = "a@example.org"
    buffer = io.BytesIO()
    book.save(buffer)
    buffer.size = len(buffer.getvalue())
    from django.core.exceptions import ValidationError
    from import_export.formats.base_formats import XLSX

    with pytest.raises(ValidationError, match="more than 100,000 rows"):
        imports.upload_check(buffer, XLSX())
    settings.CAMPAIGNS_IMPORT_MAX_ROWS = 200_000
    assert imports.upload_check(buffer, XLSX()) == 149_999
