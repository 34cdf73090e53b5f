"""Recipient list imports: bounded uploads, private temporary files, and the background path.

An upload is checked before anything parses it (:func:`upload_check`): its size, for an XLSX
file what its zip members unpack to (a decompression bomb is refused without being unpacked),
and its number of rows. The file then waits for the confirmation step in a private folder
(:class:`PrivateTempStorage`, ``VAR_DIR/imports``, owner-only), and is deleted once the import
is done, refused, or left unconfirmed for longer than ``CAMPAIGNS_IMPORT_TMP_MAX_AGE_SECONDS``.

A file of more than ``CAMPAIGNS_IMPORT_BACKGROUND_ROWS`` rows is imported by a Celery task
instead (:func:`job_create`, then ``campaigns.tasks.import_recipient_list`` runs
:func:`job_run`): all or nothing, as in the admin, with its progress and outcome kept in a job
file next to the upload, which the admin's status page reads. The web server and the workers
must therefore share ``VAR_DIR/imports`` (they do on one machine).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import posixpath
import re
import time
import uuid
import zipfile
from pathlib import Path
from typing import IO, Any
from xml.etree import ElementTree

import attrs
from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from import_export.formats.base_formats import XLSX
from import_export.tmp_storages import BaseStorage

from campaigns import conf

logger = logging.getLogger(__name__)

FILE_TOO_LARGE = (
    "This file is {size}; the largest accepted is {limit}. Split it into smaller files."
)
TOO_MANY_ROWS = (
    "This file has more than {limit:,} rows; the most one import accepts is {limit:,}. "
    "Split it into smaller files."
)
XLSX_TOO_LARGE = (
    "This XLSX file unpacks to {size} (the most accepted is {limit}); it is refused "
    "without being opened. Save it again from a spreadsheet, or export it as CSV."
)
NOT_XLSX = "This is not an XLSX file (it is not a valid zip archive); choose the right format."
NOT_TEXT = "This file is not text in {encoding}; save it as CSV in UTF-8."

_TMP_NAME = re.compile(r"^[0-9a-f]{32}$")


class ImportExpired(FileNotFoundError):
    """The uploaded file of an import is gone (confirmed already, or swept as stale), or the
    name the confirmation form sent back is not one of ours."""


# Checking an upload -----------------------------------------------------------------------


def upload_check(upload: Any, input_format: Any) -> int:
    """Refuse an upload over the limits, before it is parsed; return its number of data rows.

    Raises ``ValidationError`` with a message for the import form. ``upload`` is a Django
    ``UploadedFile`` (or any file object with ``size``), ``input_format`` an import-export
    format instance.
    """
    limit = conf.import_max_bytes()
    size = getattr(upload, "size", None)
    if size is None:
        upload.seek(0, os.SEEK_END)
        size = upload.tell()
    if size > limit:
        raise ValidationError(
            FILE_TOO_LARGE.format(size=filesizeformat(size), limit=filesizeformat(limit)),
            code="too_large",
        )
    upload.seek(0)
    try:
        if isinstance(input_format, XLSX):
            rows = _xlsx_rows(upload)
        else:
            rows = _csv_rows(upload, getattr(input_format, "encoding", None) or "utf-8-sig")
    finally:
        upload.seek(0)
    if rows > conf.import_max_rows():
        raise ValidationError(
            TOO_MANY_ROWS.format(limit=conf.import_max_rows()), code="too_many_rows"
        )
    return rows


def _csv_rows(upload: Any, encoding: str) -> int:
    """Data rows of a CSV file (records, so quoted line breaks count once), stopping after the
    limit; blank lines are not rows."""
    stop = conf.import_max_rows() + 1
    text = io.TextIOWrapper(io.BufferedReader(_Unclosable(upload)), encoding=encoding, newline="")
    count = -1  # the header
    try:
        for record in csv.reader(text):
            if record:
                count += 1
                if count >= stop:
                    break
    except UnicodeDecodeError as exc:
        raise ValidationError(NOT_TEXT.format(encoding=encoding), code="encoding") from exc
    except csv.Error:
        pass  # import-export reports the parse error itself
    finally:
        text.detach()
    return max(count, 0)


class _Unclosable(io.RawIOBase):
    """A read-only view of an upload that a text wrapper can read without closing it."""

    def __init__(self, upload: Any) -> None:
        self._upload = upload

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._upload.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def xlsx_unpacked_size(upload: Any) -> int:
    """What the members of an XLSX (zip) file add up to once unpacked, read from its directory.

    Python's zipfile never inflates a member past the size its directory declares (it fails
    the CRC check instead), so this is also the most parsing the file can unpack.
    """
    try:
        with zipfile.ZipFile(upload) as archive:
            return sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValidationError(NOT_XLSX, code="not_xlsx") from exc


def _xlsx_rows(upload: Any) -> int:
    """Rows of the sheet an import reads (the active one), counted from its XML without
    parsing cells: the highest row number, as openpyxl yields every row up to it."""
    unpacked, limit = xlsx_unpacked_size(upload), conf.import_max_unpacked_bytes()
    if unpacked > limit:
        raise ValidationError(
            XLSX_TOO_LARGE.format(size=filesizeformat(unpacked), limit=filesizeformat(limit)),
            code="xlsx_bomb",
        )
    upload.seek(0)
    try:
        with zipfile.ZipFile(upload) as archive:
            sheet = _xlsx_active_sheet(archive)
            if sheet is None:
                return 0
            with archive.open(sheet) as member:
                return max(_xlsx_count_rows(member) - 1, 0)  # the header
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, OSError) as exc:
        raise ValidationError(NOT_XLSX, code="not_xlsx") from exc


_NS_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_NS_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_ROW_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?row(?=[\s/>])([^>]*)>")
_ROW_NUMBER = re.compile(rb"\br\s*=\s*[\"'](\d+)[\"']")


def _xlsx_rels(archive: zipfile.ZipFile, part: str) -> dict[str, str]:
    """Relationship id -> target part of ``part`` (e.g. xl/workbook.xml)."""
    folder, name = posixpath.split(part)
    rels = posixpath.join(folder, "_rels", name + ".rels")
    if rels not in archive.namelist():
        return {}
    targets = {}
    for rel in ElementTree.fromstring(archive.read(rels)).iter(f"{_NS_PKG_REL}Relationship"):
        target = rel.get("Target", "")
        path = target.lstrip("/") if target.startswith("/") else posixpath.join(folder, target)
        targets[rel.get("Id", "")] = posixpath.normpath(path)
    return targets


def _xlsx_active_sheet(archive: zipfile.ZipFile) -> str | None:
    """The zip member of the workbook's active sheet (what openpyxl's ``book.active`` is)."""
    workbook = next(
        (t for t in _xlsx_rels(archive, "").values() if t.endswith(".xml")), "xl/workbook.xml"
    )
    root = ElementTree.fromstring(archive.read(workbook))
    view = root.find(f"{_NS_MAIN}bookViews/{_NS_MAIN}workbookView")
    active = int(view.get("activeTab", "0")) if view is not None else 0
    sheets = root.findall(f"{_NS_MAIN}sheets/{_NS_MAIN}sheet")
    if not sheets:
        return None
    sheet = sheets[active] if 0 <= active < len(sheets) else sheets[0]
    return _xlsx_rels(archive, workbook).get(sheet.get(f"{_NS_REL}id", ""))


def _xlsx_count_rows(member: IO[bytes], chunk_size: int = 1 << 20) -> int:
    """The highest row number in a sheet's XML (rows without a number count one more than
    the previous), streamed in chunks cut before a ``<`` so no tag is split."""
    highest = current = 0
    tail = b""
    while True:
        chunk = member.read(chunk_size)
        buffer = tail + chunk
        cut = len(buffer) if not chunk else buffer.rfind(b"<")
        if cut < 0:
            tail = buffer
            continue
        for match in _ROW_TAG.finditer(buffer, 0, cut):
            number = _ROW_NUMBER.search(match.group(1))
            current = int(number.group(1)) if number else current + 1
            highest = max(highest, current)
        tail = buffer[cut:]
        if not chunk:
            return highest


# Temporary files between the preview and the confirmation -----------------------------------


def import_dir() -> Path:
    """The private folder of uploaded files waiting for their import (made ``0700``)."""
    folder = Path(settings.VAR_DIR) / "imports"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        folder.chmod(0o700)
    return folder


def tmp_sweep(now: float | None = None) -> int:
    """Delete uploaded files older than ``CAMPAIGNS_IMPORT_TMP_MAX_AGE_SECONDS`` (imports
    previewed and never confirmed); returns how many were deleted."""
    cutoff = (now or time.time()) - conf.import_tmp_max_age().total_seconds()
    removed = 0
    for path in import_dir().iterdir():
        if not _TMP_NAME.match(path.name.split(".", 1)[0]):
            continue
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


class PrivateTempStorage(BaseStorage):
    """import-export's temporary storage (``IMPORT_EXPORT_TMP_STORAGE_CLASS``), private.

    Instead of world-readable files in the system temp folder that stay there whenever an
    import is not confirmed, each upload is a ``0600`` file named by a random UUID in
    :func:`import_dir`; a name that is not such a UUID is refused (it comes back from the
    browser in the confirmation form). Saving sweeps out stale files (:func:`tmp_sweep`).
    """

    def save(self, data: bytes | str) -> None:
        tmp_sweep()
        self.name = uuid.uuid4().hex
        raw = data.encode(self.encoding or "utf-8") if isinstance(data, str) else data
        fd = os.open(self._path(), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)

    def read(self) -> bytes | str:
        with open(self._path(), "rb") as handle:
            raw = handle.read()
        if "b" in (self.read_mode or "r"):
            return raw
        return raw.decode(self.encoding or "utf-8")

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path().unlink()

    def _path(self) -> Path:
        name = os.path.basename(str(self.name or ""))
        if not _TMP_NAME.match(name):
            raise ImportExpired(name)
        return import_dir() / name


def tmp_discard(name: str) -> None:
    """Delete the temporary file ``name`` if it is one of ours (no error if it is gone)."""
    with contextlib.suppress(ImportExpired):
        PrivateTempStorage(name=name).remove()


# Background imports -------------------------------------------------------------------------

IMPORT_TASK = "campaigns.tasks.import_recipient_list"
JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED = "queued", "running", "done", "failed"
#: Rows between two progress writes of a running job.
JOB_PROGRESS_EVERY = 250
#: Row errors kept in a failed job (the count is kept in full).
JOB_MAX_ERRORS = 200
JOB_TOO_SLOW = "The import took longer than its time limit and was rolled back; split the file."
JOB_LOST = "The uploaded file is gone (the import expired); upload it again."
JOB_CRASHED = "The import failed ({error}); nothing was imported."


@attrs.define
class ImportJob:
    """A background import: what to import where, and how far it got."""

    id: str
    recipient_list_id: int
    list_name: str
    file_name: str
    file_format: str  # "csv" or "xlsx"
    data_name: str  # the PrivateTempStorage name of the uploaded file
    total: int
    user_id: int | None = None
    status: str = JOB_QUEUED
    processed: int = 0
    imported: int = 0
    error_count: int = 0
    errors: list[dict] = attrs.field(factory=list)
    message: str = ""
    created_at: float = attrs.field(factory=time.time)
    updated_at: float = attrs.field(factory=time.time)

    @property
    def finished(self) -> bool:
        return self.status in (JOB_DONE, JOB_FAILED)


def _job_path(job_id: str) -> Path:
    if not _TMP_NAME.match(job_id or ""):
        raise ImportExpired(job_id)
    return import_dir() / f"{job_id}.json"


def job_save(job: ImportJob) -> None:
    """Write the job file atomically (readers never see half of it), owner-only."""
    job.updated_at = time.time()
    path = _job_path(job.id)
    partial = path.with_suffix(".part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(attrs.asdict(job), handle)
    os.replace(partial, path)


def job_get(job_id: str) -> ImportJob | None:
    """The job ``job_id``, or ``None`` if there is no such job (or it was swept)."""
    try:
        data = json.loads(_job_path(job_id).read_text())
    except (ImportExpired, OSError, ValueError):
        return None
    fields = {a.name for a in attrs.fields(ImportJob)}
    return ImportJob(**{k: v for k, v in data.items() if k in fields})


def job_create(
    *, data: bytes, file_format: str, recipient_list: Any, file_name: str, total: int, user: Any
) -> ImportJob:
    """Keep the upload privately and describe its import; the caller enqueues the task."""
    storage = PrivateTempStorage(read_mode="rb")
    storage.save(data)
    job = ImportJob(
        id=uuid.uuid4().hex,
        recipient_list_id=recipient_list.pk,
        list_name=str(recipient_list),
        file_name=os.path.basename(file_name or "")[:200],
        file_format=file_format,
        data_name=storage.name,
        total=total,
        user_id=getattr(user, "pk", None),
    )
    job_save(job)
    return job


def job_enqueue(job: ImportJob) -> None:
    """Hand the job to a worker (the task is named: ``campaigns.tasks`` imports services)."""
    from celery import current_app

    current_app.tasks[IMPORT_TASK].apply_async(args=[job.id])


def job_run(*, job_id: str) -> ImportJob | None:
    """Import a job's file (once: a finished job is left as it is), recording progress every
    :data:`JOB_PROGRESS_EVERY` rows; the uploaded file is deleted afterwards either way."""
    from celery.exceptions import SoftTimeLimitExceeded
    from import_export.formats.base_formats import CSV

    from campaigns.models import RecipientList
    from campaigns.resources import RecipientListEntryResource

    job = job_get(job_id)
    if job is None or job.finished:
        return job
    job.status, job.processed = JOB_RUNNING, 0
    job_save(job)

    def progress() -> None:
        job.processed += 1
        if job.processed % JOB_PROGRESS_EVERY == 0:
            job_save(job)

    class Resource(RecipientListEntryResource):
        class Meta:
            skip_diff = True  # no per-row copies of the old values: constant memory per row

    storage = PrivateTempStorage(name=job.data_name, read_mode="rb")
    try:
        input_format = XLSX() if job.file_format == "xlsx" else CSV(encoding="utf-8-sig")
        raw = storage.read()
        dataset = input_format.create_dataset(raw if job.file_format == "xlsx" else raw.decode())
        resource = Resource(
            recipient_list=RecipientList.objects.get(pk=job.recipient_list_id), on_row=progress
        )
        result = resource.import_data(
            dataset,
            dry_run=False,
            raise_errors=False,
            use_transactions=True,
            rollback_on_validation_errors=True,
        )
        _job_outcome(job, result)
    except FileNotFoundError:  # ImportExpired included
        job.status, job.message = JOB_FAILED, JOB_LOST
    except SoftTimeLimitExceeded:
        job.status, job.message = JOB_FAILED, JOB_TOO_SLOW
    except Exception as exc:  # the job must end, and say why
        logger.exception("recipient list import %s failed", job.id)
        job.status, job.message = JOB_FAILED, JOB_CRASHED.format(error=type(exc).__name__)
    finally:
        storage.remove()
    job_save(job)
    return job


def _job_outcome(job: ImportJob, result: Any) -> None:
    errors: list[dict] = []
    for error in result.base_errors:
        errors.append({"row": None, "column": "", "message": str(error.error)})
    for number, row_errors in result.row_errors():
        for error in row_errors:
            errors.append({"row": number, "column": "", "message": str(error.error)})
    for row in result.invalid_rows:
        for column, messages in row.error_dict.items():
            for message in messages:
                errors.append({"row": row.number, "column": column, "message": str(message)})
    job.error_count = len(errors)
    job.errors = errors[:JOB_MAX_ERRORS]
    if errors:
        job.status, job.imported = JOB_FAILED, 0
    else:
        job.status, job.imported = JOB_DONE, int(result.totals.get("new", 0))
    job.processed = max(job.processed, len(result.rows))
