"""File exports that stream: CSV row by row, XLSX through a temporary file, in constant memory.

The delivery log admin (``DeliveryAdmin``) exports through here instead of import-export's
tablib path, which builds the whole file in memory.
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
) -> HttpResponse:
    """The export as a download: XLSX from a temporary file, anything else as streamed CSV."""
    if isinstance(file_format, XLSX):
        return FileResponse(
            xlsx_file(resource, queryset, fields),
            as_attachment=True,
            filename=filename,
            content_type=file_format.get_content_type(),
        )
    response = StreamingHttpResponse(
        csv_stream(resource, queryset, fields), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formulas in text cells (CSV injection; OWASP's advice)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
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

    writer.writerow(resource.get_export_headers(selected_fields=fields))
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

    XlsxWriter's constant-memory mode flushes each row to disk; strings are never turned into
    formulas or links (an address like "=cmd|..." stays text).
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
    worksheet.write_row(0, 0, resource.get_export_headers(selected_fields=fields))
    for row_index, obj in enumerate(resource.iter_queryset(queryset), start=1):
        row = resource.export_resource(obj, selected_fields=fields, force_native_type=True)
        for col, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, dt.datetime):
                worksheet.write_datetime(row_index, col, value, when)
            else:
                worksheet.write(row_index, col, value)
    workbook.close()
    handle.seek(0)
    return handle
