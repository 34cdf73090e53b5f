"""Audiences: recipient lists (CSV/XLSX import and export) and recipient sources (a resolver
with its parameters, and a preview of who it reaches)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template import engines
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import ngettext, ngettext_lazy
from import_export.admin import ImportExportModelAdmin
from import_export.formats.base_formats import CSV, XLSX

from campaigns import conf, exports
from campaigns.admin.campaigns import report_withdrawn_approvals
from campaigns.forms import (
    RecipientListConfirmImportForm,
    RecipientListImportForm,
    RecipientSourceForm,
)
from campaigns.models import RecipientList, RecipientListEntry, RecipientSource
from campaigns.resolvers import available_resolvers
from campaigns.resources import RecipientListEntryResource
from campaigns.services import approvals, imports
from campaigns.services.recipients import recipient_source_preview

PREVIEW_LIMIT = 20
IMPORT_FAILED = ngettext_lazy(
    "Nothing was imported: %(count)d row had errors. Fix the file and upload it again.",
    "Nothing was imported: %(count)d rows had errors. Fix the file and upload it again.",
    "count",
)
IMPORT_EXPIRED = "This import has expired or was already done; upload the file again."
IMPORT_STATUS_TEMPLATE = """{% extends "admin/base_site.html" %}
{% block extrahead %}{{ block.super }}{% if not job.finished %}
<meta http-equiv="refresh" content="2">{% endif %}{% endblock %}
{% block breadcrumbs %}<div class="breadcrumbs"><a href="{% url 'admin:index' %}">Home</a>
&rsaquo; <a href="{{ entries_url }}">Recipient list entries</a> &rsaquo; Import</div>
{% endblock %}
{% block content %}<div id="content-main" class="import-job import-job-{{ job.status }}">
<p>{{ job.file_name }}: {{ job.total }} row{{ job.total|pluralize }}, imported in the
background into the list “{{ job.list_name }}”, all or nothing.</p>
{% if job.status == "queued" %}<p class="import-job-state">Waiting for a worker…</p>
{% elif job.status == "running" %}<p class="import-job-state">Checked and imported
{{ job.processed }} of {{ job.total }} rows ({{ percent }}%).</p>
<progress max="{{ job.total }}" value="{{ job.processed }}">{{ percent }}%</progress>
{% elif job.status == "done" %}<ul class="messagelist"><li class="success">Imported
{{ job.imported }} recipient{{ job.imported|pluralize }} into “{{ job.list_name }}”.
<a href="{{ entries_url }}">See the entries</a>.</li></ul>
{% else %}<ul class="messagelist"><li class="error">Nothing was imported.
{% if job.message %}{{ job.message }}{% else %}{{ job.error_count }}
error{{ job.error_count|pluralize }}: fix the file and
<a href="{{ import_url }}">upload it again</a>.{% endif %}</li></ul>
{% if job.errors %}<table><thead><tr><th>Row</th><th>Column</th><th>Error</th></tr></thead>
<tbody>{% for e in job.errors %}<tr><td>{{ e.row|default_if_none:"" }}</td>
<td>{{ e.column }}</td><td>{{ e.message }}</td></tr>{% endfor %}</tbody></table>
{% if job.error_count > job.errors|length %}<p>The first {{ job.errors|length }} of
{{ job.error_count }} errors.</p>{% endif %}{% endif %}{% endif %}
</div>{% endblock %}
"""


class BoundedRecipientListImportForm(RecipientListImportForm):
    """The import form, refusing a file over the size, unpacked-size or row limits before it is
    parsed (``campaigns.services.imports.upload_check``); ``row_count`` is then its rows."""

    def __init__(self, formats, resources, **kwargs: Any) -> None:
        super().__init__(formats, resources, **kwargs)
        self._formats = formats
        self.row_count: int | None = None

    def clean(self) -> dict:
        cleaned = super().clean()
        upload, fmt = cleaned.get("import_file"), cleaned.get("format")
        if upload is not None and fmt not in (None, ""):
            try:
                self.row_count = imports.upload_check(upload, self._formats[int(fmt)]())
            except ValidationError as exc:
                self.add_error("import_file", exc)
        return cleaned


# Recipient lists ----------------------------------------------------------------------------


@admin.register(RecipientList)
class RecipientListAdmin(admin.ModelAdmin):
    """Imported lists; entries are imported and browsed on the entries page."""

    list_display = ("name", "entry_count", "created_at", "entries_links")
    search_fields = ("name", "description")
    readonly_fields = ("created_at", "entries_links")
    fields = ("name", "description", "created_at", "entries_links")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(_entry_count=Count("entries"))

    @admin.display(description="Entries", ordering="_entry_count")
    def entry_count(self, obj: RecipientList) -> int:
        return getattr(obj, "_entry_count", None) or obj.entries.count()

    @admin.display(description="Entries")
    def entries_links(self, obj: RecipientList) -> str:
        if not obj.pk:
            return "Save the list first, then import its entries."
        entries = reverse("admin:campaigns_recipientlistentry_changelist")
        import_url = reverse("admin:campaigns_recipientlistentry_import")
        export_url = reverse("admin:campaigns_recipientlistentry_export")
        query = f"recipient_list__id__exact={obj.pk}"
        return format_html(
            '<a href="{}?{}">Browse</a> · <a href="{}?recipient_list={}">Import CSV/XLSX</a>'
            ' · <a href="{}?{}">Export</a>',
            entries,
            query,
            import_url,
            obj.pk,
            export_url,
            query,
        )


@admin.register(RecipientListEntry)
class RecipientListEntryAdmin(ImportExportModelAdmin):
    """Entries of the lists, with import (into a chosen list) and export in CSV or XLSX.

    An import is all or nothing: rows with errors (invalid or duplicate address, unknown
    column, bad language or time zone) are listed in the preview and nothing is saved.
    """

    list_display = (
        "email",
        "first_name",
        "last_name",
        "language",
        "time_zone",
        "user",
        "recipient_list",
    )
    list_filter = ("recipient_list",)
    search_fields = ("email", "first_name", "last_name")
    list_select_related = ("recipient_list", "user")
    raw_id_fields = ("user",)
    resource_classes = [RecipientListEntryResource]
    formats = [CSV, XLSX]
    import_form_class = BoundedRecipientListImportForm
    confirm_form_class = RecipientListConfirmImportForm
    # One admin log row per imported address would dwarf the list itself.
    skip_admin_log = True
    # Uploads wait for confirmation in a private folder, and never stay there (V7).
    tmp_storage_class = imports.PrivateTempStorage

    def has_import_permission(self, request: HttpRequest) -> bool:
        """Importing adds entries: import-export's default lets every staff user do it."""
        return request.user.has_perm("campaigns.add_recipientlistentry")

    def has_export_permission(self, request: HttpRequest) -> bool:
        """Exporting shows every address: import-export's default lets every staff user do it."""
        return request.user.has_perm("campaigns.view_recipientlistentry")

    def get_urls(self) -> list:
        status = path(
            "import/<str:job_id>/",
            self.admin_site.admin_view(self.import_status_view),
            name="campaigns_recipientlistentry_import_status",
        )
        return [status, *super().get_urls()]

    def import_action(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        """The upload and preview; the uploaded file is kept only when the preview offers to
        confirm the import (a refused or invalid file is deleted at once). A file of more than
        ``CAMPAIGNS_IMPORT_BACKGROUND_ROWS`` rows is not parsed here: it goes to a Celery task,
        and the page shows its progress."""
        if request.method == "POST" and self.has_import_permission(request):
            form = self.create_import_form(request)
            if form.is_valid() and (form.row_count or 0) > conf.import_background_rows():
                return self._import_in_background(request, form)
        response = super().import_action(request, **kwargs)
        context = getattr(response, "context_data", None) or {}
        form = context.get("form")
        upload = (getattr(form, "cleaned_data", None) or {}).get("import_file")
        name = getattr(upload, "tmp_storage_name", None)
        if name and "confirm_form" not in context:
            imports.tmp_discard(name)
        return response

    def _import_in_background(self, request: HttpRequest, form: Any) -> HttpResponse:
        upload = form.cleaned_data["import_file"]
        file_format = self.get_import_formats()[int(form.cleaned_data["format"])]
        job = imports.job_create(
            data=b"".join(upload.chunks()),
            file_format="xlsx" if issubclass(file_format, XLSX) else "csv",
            recipient_list=form.cleaned_data["recipient_list"],
            file_name=upload.name,
            total=form.row_count,
            user=request.user,
        )
        imports.job_enqueue(job)
        return HttpResponseRedirect(
            reverse("admin:campaigns_recipientlistentry_import_status", args=[job.id])
        )

    def import_status_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        """A background import's progress (the page reloads itself until it ends) and outcome:
        the rows imported, or every row error and nothing imported."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        job = imports.job_get(job_id)
        if job is None:
            messages.error(request, IMPORT_EXPIRED)
            return HttpResponseRedirect(reverse("admin:campaigns_recipientlistentry_import"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Import into “{job.list_name}”",
            "job": job,
            "percent": int(100 * job.processed / job.total) if job.total else 0,
            "entries_url": reverse("admin:campaigns_recipientlistentry_changelist")
            + f"?recipient_list__id__exact={job.recipient_list_id}",
            "import_url": reverse("admin:campaigns_recipientlistentry_import")
            + f"?recipient_list={job.recipient_list_id}",
        }
        return HttpResponse(
            engines["django"].from_string(IMPORT_STATUS_TEMPLATE).render(context, request)
        )

    def process_import(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        """The confirmed import; its uploaded file is deleted whatever the outcome."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        name = request.POST.get("import_file_name", "")
        try:
            return super().process_import(request, **kwargs)
        except FileNotFoundError:
            messages.error(request, IMPORT_EXPIRED)
            return HttpResponseRedirect(reverse("admin:campaigns_recipientlistentry_import"))
        finally:
            imports.tmp_discard(name)

    def get_import_form_initial(self, request: HttpRequest) -> dict:
        initial = super().get_import_form_initial(request)
        if request.GET.get("recipient_list"):
            initial["recipient_list"] = request.GET["recipient_list"]
        return initial

    def get_confirm_form_initial(self, request: HttpRequest, import_form: Any) -> dict:
        initial = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            initial["recipient_list"] = import_form.cleaned_data["recipient_list"].pk
        return initial

    def get_import_resource_kwargs(self, request: HttpRequest, **kwargs: Any) -> dict:
        form = kwargs.get("form")
        resource_kwargs = super().get_import_resource_kwargs(request, **kwargs)
        resource_kwargs.pop("form", None)
        if form is not None and form.is_bound and form.is_valid():
            resource_kwargs["recipient_list"] = form.cleaned_data.get("recipient_list")
        return resource_kwargs

    def get_import_data_kwargs(self, **kwargs: Any) -> dict:
        data_kwargs = super().get_import_data_kwargs(**kwargs)
        # The confirmed import re-checks every row; a row that became invalid meanwhile
        # (e.g. the address was added by hand) rolls the whole import back.
        data_kwargs["rollback_on_validation_errors"] = True
        return data_kwargs

    def process_result(self, result: Any, request: HttpRequest) -> HttpResponse:
        if result.has_errors() or result.has_validation_errors():
            messages.error(
                request,
                IMPORT_FAILED % {"count": len(result.invalid_rows) + len(result.row_errors())},
            )
            return HttpResponseRedirect(reverse("admin:campaigns_recipientlistentry_import"))
        return super().process_result(result, request)

    def _do_file_export(self, file_format, request, queryset, export_form=None):
        """CSV and XLSX go through :mod:`campaigns.exports`: streamed, and every text cell
        neutralised (a name like ``=HYPERLINK(...)`` is exported as ``'=HYPERLINK(...)``)."""
        if not isinstance(file_format, CSV | XLSX):
            return super()._do_file_export(file_format, request, queryset, export_form)
        if not self.has_export_permission(request):
            raise PermissionDenied
        return exports.export_response(
            resource=RecipientListEntryResource(**self.get_export_resource_kwargs(request)),
            queryset=queryset,
            fields=self.get_export_resource_fields_from_form(export_form),
            file_format=file_format,
            filename=self.get_export_filename(request, queryset, file_format),
            sheet="recipients",
        )


# Recipient sources --------------------------------------------------------------------------


@admin.register(RecipientSource)
class RecipientSourceAdmin(admin.ModelAdmin):
    """Audiences; the change page shows how many recipients there are and the first ones."""

    form = RecipientSourceForm
    list_display = ("name", "resolver_label", "parameters_summary", "updated_at")
    list_filter = ("resolver",)
    search_fields = ("name",)
    readonly_fields = ("last_edited_by", "audience")

    def get_fields(self, request: HttpRequest, obj: RecipientSource | None = None) -> list[str]:
        fields = ["name", "resolver", "parameters"]
        return [*fields, "last_edited_by", "audience"] if obj is not None else fields

    def save_model(self, request: HttpRequest, obj: RecipientSource, form, change: bool) -> None:
        """Save; the editor can't approve campaigns sent to it, and approvals of campaigns
        whose audience this changed are withdrawn (back to draft, schedules deleted)."""
        super().save_model(request, obj, form, change)
        withdrawn = approvals.content_edited(
            user=request.user,
            recipient_source=obj,
            changed=not change or form.has_changed(),
        )
        report_withdrawn_approvals(self, request, withdrawn, what=f"recipient source “{obj}”")

    @admin.display(description="Resolver", ordering="resolver")
    def resolver_label(self, obj: RecipientSource) -> str:
        cls = available_resolvers().get(obj.resolver)
        return cls.label if cls and cls.label else f"{obj.resolver} (not installed)"

    @admin.display(description="Parameters")
    def parameters_summary(self, obj: RecipientSource) -> str:
        return json.dumps(obj.parameters, sort_keys=True) if obj.parameters else "—"

    @admin.display(description="Audience")
    def audience(self, obj: RecipientSource) -> str:
        preview = recipient_source_preview(source=obj, limit=PREVIEW_LIMIT)
        if preview.error:
            return format_html('<span class="errornote">Cannot resolve: {}</span>', preview.error)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (r.key, r.email, r.context.get("first_name", ""), r.language, r.time_zone)
                for r in preview.recipients
            ),
        )
        return format_html(
            ngettext(
                "<p><strong>{}</strong> recipient. First {}:</p>",
                "<p><strong>{}</strong> recipients. First {}:</p>",
                preview.count,
            )
            + "<table><thead><tr><th>Key</th><th>Email</th><th>First name</th><th>Language</th>"
            "<th>Time zone</th></tr></thead><tbody>{}</tbody></table>",
            preview.count,
            len(preview.recipients),
            rows,
        )
