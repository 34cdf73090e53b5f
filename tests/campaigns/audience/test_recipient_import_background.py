"""Big recipient list imports run in a Celery task, never in the web request, with their
progress and outcome on an admin page (V7)."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery import current_app
from django.urls import reverse

import campaigns.admin.audience  # noqa: F401  (registers the audience admin)
from campaigns.models import RecipientListEntry
from campaigns.resources import RecipientListEntryResource
from campaigns.services import imports
from tests.campaigns import factories as f
from tests.campaigns.audience.test_recipient_import import (
    CSV_FORMAT,
    IMPORT_URL,
    XLSX_FORMAT,
    csv_file,
    xlsx_file,
)

pytestmark = pytest.mark.django_db

STATUS_URL = "admin:campaigns_recipientlistentry_import_status"


@pytest.fixture(autouse=True)
def small_threshold(settings, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    settings.CAMPAIGNS_IMPORT_BACKGROUND_ROWS = 3


@pytest.fixture
def queued(monkeypatch) -> list[list]:
    """Tasks sent to the broker are kept here instead of run (as with a real worker, later)."""
    sent: list[list] = []
    task = current_app.tasks[imports.IMPORT_TASK]
    monkeypatch.setattr(task, "apply_async", lambda args=None, **kw: sent.append(args))
    return sent


def rows(count: int, bad: set[int] = frozenset()) -> list[list[str]]:
    return [["email", "first_name"]] + [
        ["not-an-address" if i in bad else f"u{i}@example.org", f"U{i}"] for i in range(count)
    ]


def text(response) -> str:
    """The page's HTML with its whitespace collapsed."""
    return " ".join(response.content.decode().split())


def upload(admin_client, rlist, file, fmt=CSV_FORMAT):
    return admin_client.post(
        reverse(IMPORT_URL),
        {"recipient_list": rlist.pk, "resource": "0", "format": fmt, "import_file": file},
    )


def test_a_big_file_is_not_parsed_in_the_request(admin_client, queued, monkeypatch):
    def no_parsing_here(*args, **kwargs):
        raise AssertionError("the web request imported rows")

    monkeypatch.setattr(RecipientListEntryResource, "import_data", no_parsing_here)
    rlist = f.RecipientListFactory(name="Big")
    response = upload(admin_client, rlist, csv_file(rows(5)))

    [[job_id]] = queued
    assert response.status_code == 302
    assert response["Location"] == reverse(STATUS_URL, args=[job_id])
    body = text(admin_client.get(response["Location"]))
    assert "Waiting for a worker" in body
    assert '<meta http-equiv="refresh" content="2">' in body  # follows the progress by itself
    assert "5 rows" in body and "“Big”" in body
    assert RecipientListEntry.objects.count() == 0


@pytest.mark.parametrize(("make_file", "fmt"), [(csv_file, CSV_FORMAT), (xlsx_file, XLSX_FORMAT)])
def test_the_worker_imports_it_and_the_page_shows_the_outcome(
    admin_client, queued, make_file, fmt, tmp_path
):
    rlist = f.RecipientListFactory(name="Big")
    response = upload(admin_client, rlist, make_file(rows(6)), fmt)
    [[job_id]] = queued

    job = imports.job_run(job_id=job_id)  # what the Celery worker does
    assert (job.status, job.imported, job.processed) == (imports.JOB_DONE, 6, 6)
    assert rlist.entries.count() == 6
    body = text(admin_client.get(response["Location"]))
    assert "Imported 6 recipients into “Big”" in body
    assert "http-equiv" not in body  # finished: no more reloading
    # The uploaded file is gone; only the job's outcome stays (swept like uploads).
    assert [p.suffix for p in (tmp_path / "imports").iterdir()] == [".json"]

    assert imports.job_run(job_id=job_id).imported == 6  # a redelivered task does nothing
    assert rlist.entries.count() == 6


def test_with_eager_celery_the_task_runs_through_the_registered_task(admin_client):
    rlist = f.RecipientListFactory()
    response = upload(admin_client, rlist, csv_file(rows(4)))
    assert response.status_code == 302
    assert rlist.entries.count() == 4  # CELERY_TASK_ALWAYS_EAGER in the test settings
    assert "Imported 4 recipients" in text(admin_client.get(response["Location"]))


def test_a_bad_row_imports_nothing_and_every_error_is_listed(admin_client, queued):
    rlist = f.RecipientListFactory()
    f.RecipientListEntryFactory(recipient_list=rlist, email="u0@example.org")
    response = upload(admin_client, rlist, csv_file(rows(5, bad={3})))
    [[job_id]] = queued

    job = imports.job_run(job_id=job_id)
    assert job.status == imports.JOB_FAILED and job.error_count == 2
    assert {(e["row"], e["column"]) for e in job.errors} == {(1, "email"), (4, "email")}
    assert list(rlist.entries.values_list("email", flat=True)) == ["u0@example.org"]
    body = text(admin_client.get(response["Location"]))
    assert "Nothing was imported." in body and "Enter a valid email address." in body
    assert "Duplicate address" in body


def test_progress_is_recorded_while_the_rows_are_imported(admin_client, queued, monkeypatch):
    monkeypatch.setattr(imports, "JOB_PROGRESS_EVERY", 2)
    seen: list[tuple[str, int]] = []
    save = imports.job_save
    monkeypatch.setattr(
        imports, "job_save", lambda job: (seen.append((job.status, job.processed)), save(job))
    )
    upload(admin_client, f.RecipientListFactory(), csv_file(rows(7)))
    [[job_id]] = queued
    imports.job_run(job_id=job_id)
    assert seen[0] == ("queued", 0)
    assert ("running", 2) in seen and ("running", 4) in seen and ("running", 6) in seen
    assert seen[-1] == ("done", 7)


def test_a_small_file_still_gets_the_preview(admin_client, queued):
    response = upload(admin_client, f.RecipientListFactory(), csv_file(rows(3)))
    assert response.status_code == 200 and "confirm_form" in response.context
    assert queued == []


def test_an_unknown_job_says_the_import_expired(admin_client):
    response = admin_client.get(reverse(STATUS_URL, args=["0" * 32]))
    assert response.status_code == 302 and response["Location"] == reverse(IMPORT_URL)
    assert "This import has expired" in text(admin_client.get(response["Location"]))
    outside = reverse(IMPORT_URL) + "..%2F..%2Fetc%2Fpasswd/"
    assert admin_client.get(outside).status_code in (302, 404)


def test_a_job_whose_file_is_gone_fails_saying_so(admin_client, queued):
    upload(admin_client, f.RecipientListFactory(), csv_file(rows(5)))
    [[job_id]] = queued
    imports.tmp_discard(imports.job_get(job_id).data_name)
    job = imports.job_run(job_id=job_id)
    assert (job.status, job.message) == (imports.JOB_FAILED, imports.JOB_LOST)
