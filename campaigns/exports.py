"""File exports that stream: CSV row by row, XLSX through a temporary file, in constant memory.

The delivery log (``DeliveryAdmin``) and the recipient lists (``RecipientListEntryAdmin``)
export through here instead of import-export's tablib path, which builds the whole file in
memory and writes text cells as they are. Every text cell goes through :func:`csv_safe`, in
CSV and XLSX alike, and XLSX cells are written by type (text as text, never as a formula).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from import_export.formats.base_formats import XLSX
from import_export.resources import Resource

#: Rows written between two chunks of a streamed CSV.
CSV_CHUNK_ROWS = 500


def export_response(
    *,
    resource: Resource,
    queryset: Any,
    fields: Sequence[str] | None,
    file_format: Any,
    filename: str,
    sheet: str = "deliveries",
) -> HttpResponse:
    """The export as a download: XLSX from a temporary file, anything else as streamed CSV."""
    if isinstance(file_format, XLSX):
        return FileResponse(
            xlsx_file(resource, queryset, fields, sheet=sheet),
            as_attachment=True,
            filename=filename,
            content_type=file_format.get_content_type(),
        )
    response = StreamingHttpResponse(
        csv_stream(resource, queryset, fields), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


#: What a spreadsheet may read as the start of a formula (OWASP, "CSV Injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formulas in text cells (CSV injection; OWASP's advice): a text
    starting with ``= + - @``, a tab or a carriage return gets a leading ``'``."""
    if isinstance(value, str) and value[:1] in FORMULA_PREFIXES:
        return "'" + value
    return value


def csv_unsafe(value: Any) -> Any:
    """Undo :func:`csv_safe` on a cell read back from an export (``'=x`` -> ``=x``), so an
    exported list imports unchanged; any other text is left alone."""
    if isinstance(value, str) and value[:1] == "'" and value[1:2] in FORMULA_PREFIXES:
        return value[1:]
    return value


def csv_stream(resource: Resource, queryset: Any, fields: Sequence[str] | None) -> Iterator[str]:
    """The header, then the rows in chunks of :data:`CSV_CHUNK_ROWS` (first bytes at once)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return value

    resource.before_export(queryset)
    writer.writerow([csv_safe(h) for h in resource.get_export_headers(selected_fields=fields)])
    yield flush()
    for count, obj in enumerate(resource.iter_queryset(queryset), start=1):
        writer.writerow(
            [csv_safe(value) for value in resource.export_resource(obj, selected_fields=fields)]
        )
        if count % CSV_CHUNK_ROWS == 0:
            yield flush()
    yield flush()


def xlsx_file(
    resource: Resource, queryset: Any, fields: Sequence[str] | None, *, sheet: str = "deliveries"
) -> IO[bytes]:
    """The export as an .xlsx in a temporary file (deleted when the response is closed).

    XlsxWriter's constant-memory mode flushes each row to disk. Cells are written by type:
    text with ``write_string`` after :func:`csv_safe` (an address like "=cmd|..." is the text
    "'=cmd|...", never a formula or a link), numbers as numbers, datetimes as datetimes.
    """
    import xlsxwriter

    handle = tempfile.TemporaryFile()  # noqa: SIM115 - FileResponse closes (and so deletes) it
    workbook = xlsxwriter.Workbook(
        handle,
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "remove_timezone": True,
        },
    )
    worksheet = workbook.add_worksheet(sheet)
    when = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    resource.before_export(queryset)
    for col, header in enumerate(resource.get_export_headers(selected_fields=fields)):
        worksheet.write_string(0, col, csv_safe(str(header)))
    for row_index, obj in enumerate(resource.iter_queryset(queryset), start=1):
        row = resource.export_resource(obj, selected_fields=fields, force_native_type=True)
        for col, value in enumerate(row):
            _write_cell(worksheet, row_index, col, value, when)
    workbook.close()
    handle.seek(0)
    return handle


def _write_cell(worksheet: Any, row: int, col: int, value: Any, when: Any) -> None:
    """One XLSX cell by its Python type; anything that is not a number or a date is text."""
    if value is None or value == "":
        return
    if isinstance(value, bool):
        worksheet.write_boolean(row, col, value)
    elif isinstance(value, int | float):
        worksheet.write_number(row, col, value)
    elif isinstance(value, dt.datetime):
        worksheet.write_datetime(row, col, value, when)
    elif isinstance(value, dt.date):
        worksheet.write_datetime(row, col, dt.datetime.combine(value, dt.time()), when)
    else:
        worksheet.write_string(row, col, csv_safe(str(value)))
